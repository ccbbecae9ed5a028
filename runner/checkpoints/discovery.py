"""Finding the checkpoints of a model: which layout wrote the run directory, and for each of
its step directories whether the model directory inside is ready to evaluate, or why not.

The driver only lists and reads small files (config, index, tokenizer JSON, safetensors
headers); generation actors copy remote checkpoints before loading (`localize_checkpoint`).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field

from runner.checkpoints import files as F
from runner.checkpoints.layout import Candidate, Layout, RunListing
from runner.checkpoints.layouts import AUTO, LAYOUTS, find_layout, is_pattern, layout_problem
from runner.checkpoints.layouts.pattern import DEFAULT_PATTERN, pattern_layout
from runner.checkpoints.model import Checkpoint, CheckpointStatus
from runner.config import ModelConfig
from runner.errors import CheckpointError, ConfigError
from runner.remote import Entry, Location, open_location

log = logging.getLogger(__name__)

_MAX_LORA_RANK = 512   # vLLM's largest max_lora_rank: refuse here, not as error rows in the actors


@dataclass
class RunReport:
    """Everything discovery found in one run directory."""

    model: str
    run: str                      # the run directory as given (path or URI)
    layout: str                   # the layout that read it
    statuses: list[CheckpointStatus]
    warnings: list[str] = field(default_factory=list)

    @property
    def checkpoints(self) -> list[Checkpoint]:
        return [s.checkpoint for s in self.statuses if s.checkpoint is not None]


def list_checkpoints(model: ModelConfig) -> RunReport:
    """Every step directory of the model's run, ready or not. Raises CheckpointError when the
    path is not a model or run directory at all, ConfigError for a bad layout setting."""
    root = _open_root(model)
    try:
        run = RunListing.read(root)
    except CheckpointError as e:
        raise CheckpointError(f"models '{model.name}': {e}") from None
    layout = choose_layout(model, run)
    if layout is None:
        raise CheckpointError(_not_a_run(model))
    run.warnings.clear()   # only what the chosen layout noticed, not the layouts tried before it
    candidates = layout.candidates(run)
    if model.checkpoints:
        names = {c.name for c in candidates}
        unknown = [c for c in model.checkpoints if c not in names]
        if unknown:
            raise CheckpointError(f"models '{model.name}'.checkpoints: not found in {model.path}: {', '.join(unknown)} "
                                  f"(found: {', '.join(sorted(names)) or 'none'})")
        candidates = [c for c in candidates if c.name in model.checkpoints]
    if not candidates:
        raise CheckpointError(_not_a_run(model, layout))
    checker = _Checker(model, run)
    statuses = [checker.status(c) for c in candidates]
    return RunReport(model.name, model.path, layout.name, statuses, list(dict.fromkeys(run.warnings)))


def discover_checkpoints(model: ModelConfig) -> list[Checkpoint]:
    """The model's ready checkpoints in step order, with a warning per reason for the others.
    Raises CheckpointError when none is usable (or a checkpoint named in `checkpoints` is not)."""
    report = list_checkpoints(model)
    problems = [s for s in report.statuses if not s.ready]
    out = report.checkpoints
    if problems and (not out or model.checkpoints):
        raise CheckpointError(f"models '{model.name}': unusable checkpoint(s) in {model.path}: "
                              + "; ".join(f"{s.name}: {s.reason}" for s in problems))
    for w in report.warnings:
        log.warning("models '%s': %s", model.name, w)
    for names, reason in group_reasons(problems):  # e.g. a checkpoint still being written by the trainer
        log.warning("models '%s': skipping checkpoint %s: %s", model.name, names, reason)
    return out


def group_reasons(statuses: list[CheckpointStatus]) -> list[tuple[str, str]]:
    """(names, reason) per distinct reason: a run saved without HF weights is one line, not one per step."""
    by_reason: dict[str, list[str]] = defaultdict(list)
    for s in statuses:
        by_reason[s.reason].append(s.name)
    return [(", ".join(names), reason) for reason, names in by_reason.items()]


def effective_layout_setting(model: ModelConfig) -> str:
    """`checkpoint_layout`, or a non-default `checkpoint_pattern` (which is a pattern override)."""
    if model.checkpoint_layout != AUTO:
        return model.checkpoint_layout
    if model.checkpoint_pattern != DEFAULT_PATTERN:
        return model.checkpoint_pattern
    return AUTO


def choose_layout(model: ModelConfig, run: RunListing) -> Layout | None:
    setting = effective_layout_setting(model)
    if why := layout_problem(setting):
        raise ConfigError(f"config error: models '{model.name}'.checkpoint_layout: {why}")
    if setting == AUTO:
        return next((lay for lay in LAYOUTS if lay.recognise(run)), None)
    return find_layout(setting) or (pattern_layout(setting) if is_pattern(setting) else None)


def _not_a_run(model: ModelConfig, layout: Layout | None = None) -> str:
    what = "a LoRA adapter directory (no adapter_config.json)" if model.base_model else \
        "a HF model directory (no config.json)"
    how = (f"a {layout.trainer} run directory (layout '{layout.name}' found no step directories)" if layout else
           "a run directory of a trainer it knows (HF Trainer/TRL/Unsloth checkpoint-N, verl or SkyRL global_step_N, "
           "OpenRLHF global_stepN_hf, NeMo-RL step_N, torchtune epoch_N, ART 0001) nor one with subdirectories named "
           f"like '{model.checkpoint_pattern}'")
    return f"models '{model.name}': {model.path} is neither {what} nor {how}"


def _open_root(model: ModelConfig) -> Location:
    """`model.path` with builtin names already resolved (runner.plan.resolve_model)."""
    root = open_location(model.path, f"models '{model.name}'.path")
    kind = _kind(root, model.name)
    if kind == "missing":
        raise CheckpointError(f"models '{model.name}': path not found: {model.path}")
    if kind != "dir":
        raise CheckpointError(f"models '{model.name}': path is not a directory: {model.path}")
    return root


def _kind(loc: Location, model_name: str) -> str:
    try:
        return loc.kind()
    except CheckpointError as e:
        raise CheckpointError(f"models '{model_name}': {e}") from None


class _Checker:
    """Checks candidates' model directories from the run's one listing; other directories
    (base model, an explicit tokenizer) are listed once each."""

    def __init__(self, model: ModelConfig, run: RunListing):
        self.model, self.run = model, run
        self.explicit_base = _base_model(model) if model.base_model else None
        self.explicit_tok = open_location(model.tokenizer, f"models '{model.name}'.tokenizer") if model.tokenizer else None
        self._outside: dict[str, dict[str, Entry]] = {}
        self._bases: dict[str, tuple[Location | None, str | None]] = {}

    def files(self, loc: Location, recursive: bool = False) -> dict[str, Entry]:
        """Files below `loc`: from the run's listing when inside it, else listed now (once)."""
        root = self.run.root
        if loc.uri == root.uri or loc.uri.startswith(root.uri.split("?")[0].rstrip("/") + "/"):
            rel = loc.path[len(root.path.rstrip("/")) + 1:] if loc.path != root.path else ""
            prefix = f"{rel}/" if rel else ""
            return {f[len(prefix):]: e for f, e in self.run.files.items()
                    if f.startswith(prefix) and (recursive or "/" not in f[len(prefix):])}
        key = f"{loc.uri}|{recursive}"
        if key not in self._outside:
            try:
                self._outside[key] = {e.rel: e for e in loc.entries(recursive=recursive) if not e.is_dir} \
                    if loc.kind() == "dir" else {}
            except CheckpointError:
                self._outside[key] = {}
        return self._outside[key]

    def status(self, c: Candidate) -> CheckpointStatus:
        loc = self.run.root.child(c.model_rel) if c.model_rel else self.run.root
        files = self.files(loc, recursive=True)
        adapter = self.explicit_base is not None or (
            "config.json" not in files and F.ADAPTER_CONFIG in files and not c.full_only)
        kind = "adapter" if adapter else "full"

        def result(reason, base=None, ckpt=None):
            return CheckpointStatus(c.name, c.step, loc.uri, kind, base, reason, ckpt)

        try:
            base = None
            if adapter:
                base, why = self.explicit_base, None
                if base is None and F.ADAPTER_CONFIG in files:
                    base, why = self._adapter_base(loc)
                if c.blocked:
                    return result(c.blocked, base.uri if base else None)
                why = why or F.adapter_problem(loc, files)
            elif c.blocked:
                return result(c.blocked)
            else:
                why = F.config_problem(loc, files) or F.weights_problem(loc, files)
            base_uri = base.uri if base else None
            why = why or self._gate(c, loc, files)
            if why:
                return result(why, base_uri)
            tok, why = self._tokenizer(loc, base, c)
            if why:
                return result(why, base_uri)
            if not adapter:
                return result(None, None, Checkpoint(self.model.name, c.name, c.step, loc.uri, tok))
            rank = max(F.adapter_rank(loc), self.model.max_lora_rank or 0)
            if rank > _MAX_LORA_RANK:
                return result(f"LoRA rank {rank} is above {_MAX_LORA_RANK}, the largest vLLM supports", base_uri)
            return result(None, base_uri, Checkpoint(self.model.name, c.name, c.step, base_uri, tok,
                                                     adapter=loc.uri, lora_rank=rank))
        except CheckpointError as e:   # e.g. a file removed between listing and reading
            return result(str(e))

    def _gate(self, c: Candidate, loc: Location, files: dict[str, Entry]) -> str | None:
        """The user's marker / quiet period, else the layout's default quiet period."""
        marker = self.model.complete_marker
        if marker:
            step_dir = c.model_rel.split("/", 1)[0]
            if marker not in files and not self.run.has(f"{step_dir}/{marker}" if step_dir else marker):
                return f"no {marker} marker yet"
        if self.model.complete_after_seconds is not None:
            return F.quiet_problem(files, self.model.complete_after_seconds, strict=True)
        return F.quiet_problem(files, c.quiet_seconds, strict=False)

    def _adapter_base(self, adapter: Location) -> tuple[Location | None, str | None]:
        """The base model an adapter names (`base_model_name_or_path`) when that directory exists here."""
        try:
            cfg = F.read_json(adapter, F.ADAPTER_CONFIG)
        except (ValueError, CheckpointError) as e:
            return None, str(e)
        named = cfg.get("base_model_name_or_path") if isinstance(cfg, dict) else None
        hint = "LoRA adapter: set models[].base_model to its base model's HF directory (adapter_config.json's " \
               "base_model_name_or_path"
        if not isinstance(named, str) or not named.strip():
            return None, hint + " is not set)"
        if named not in self._bases:
            try:
                base = open_location(named, "adapter_config.json base_model_name_or_path")
                found = base.kind() == "dir"
            except (CheckpointError, ConfigError):
                base, found = None, False
            if not found:
                self._bases[named] = (None, f"{hint} '{named}' is not a directory here)")
            elif why := F.incomplete_reason(base):
                self._bases[named] = (None, f"{hint} '{named}' is not a complete HF model: {why})")
            else:
                self._bases[named] = (base, None)
        return self._bases[named]

    def _tokenizer(self, loc: Location, base: Location | None, c: Candidate) -> tuple[str | None, str | None]:
        """(tokenizer directory, None) or (None, why): models[].tokenizer if set, else the
        checkpoint's own (adapters: the base model's first), where the layout keeps it, the run's."""
        if self.explicit_tok:
            order = [self.explicit_tok]
        else:
            extra = [self.run.root.child(r) for r in c.tokenizer_rels]
            order = [x for x in (base, loc) if x is not None] + extra + [self.run.root]
        for d in order:
            files = self.files(d)
            if F.has_tokenizer(files):
                why = F.tokenizer_problem(d, files)
                return (None, f"tokenizer in {d.uri}: {why}") if why else (d.uri, None)
        return None, "no tokenizer files; set models[].tokenizer"


def _base_model(model: ModelConfig) -> Location:
    base = open_location(model.base_model, f"models '{model.name}'.base_model")
    if _kind(base, model.name) != "dir":
        raise CheckpointError(f"models '{model.name}'.base_model: directory not found: {model.base_model}")
    why = F.incomplete_reason(base)
    if why:
        raise CheckpointError(f"models '{model.name}'.base_model {model.base_model} is not a complete "
                              f"Hugging Face model directory: {why}")
    return base


__all__ = ["RunReport", "choose_layout", "discover_checkpoints", "group_reasons", "list_checkpoints"]
