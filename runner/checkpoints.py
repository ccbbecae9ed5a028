"""Finding the checkpoints of a model: one HF directory, or a run directory of `checkpoint-{step}`,
local or on a remote filesystem (a URI, see `runner.remote`); or a base model plus a run
directory of LoRA adapter checkpoints (PEFT format), when `models[].base_model` is set.

A checkpoint counts only when it is complete: a `config.json` and its weights (every shard a
`*.safetensors.index.json` names, or a single `*.safetensors` / `pytorch_model*.bin`), every
safetensors file whole. An adapter checkpoint: `adapter_config.json` with its rank `r`, and a
whole `adapter_model.safetensors` (or `adapter_model.bin`). The driver only lists and reads
headers; generation actors copy remote checkpoints to local disk before loading them
(`localize_checkpoint`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from runner.config import ModelConfig
from runner.errors import CheckpointError
from runner.remote import Entry, Location, fetch_directory, is_model_file, is_tokenizer_file, is_uri, open_location

log = logging.getLogger(__name__)

ADAPTER_CONFIG = "adapter_config.json"


@dataclass(frozen=True)
class Checkpoint:
    """One set of weights to evaluate. Plain data: this is what generation actors receive."""

    model: str          # ModelConfig.name
    name: str           # directory name, e.g. checkpoint-200 (or the model dir's name)
    step: int           # training step; 0 for a single model directory
    path: str           # the HF directory the engine loads: absolute local path or URI; with
                        # `adapter` set, the base model
    tokenizer: str      # the tokenizer directory: absolute local path or URI
    adapter: str | None = None   # LoRA adapter directory (PEFT; local path or URI); None: full weights
    lora_rank: int = 0           # LoRA rank the engine must support for `adapter`

    @property
    def key(self) -> str:
        return f"{self.model}@{self.name}"


def pattern_regex(pattern: str) -> re.Pattern:
    return re.compile("^" + re.escape(pattern).replace(re.escape("{step}"), r"(\d+)") + "$")


def safetensors_truncated(loc: Location, rel: str, size: int | None) -> str | None:
    """Why the .safetensors file `rel` below `loc` is not whole (still being written), or None.

    The format is an 8-byte header length, a JSON header whose tensors' data_offsets end at the
    data size, then the data: a file shorter than that is a partial write. Only the header is
    read, so this is cheap on object stores too.
    """
    try:
        with loc.open(rel) as fh:
            if size is None:
                size = fh.size()
            head = fh.read(8)
            if len(head) < 8:
                return f"{rel} is truncated"
            n = int.from_bytes(head, "little")
            if n <= 0 or 8 + n > size:
                return f"{rel} is truncated (header)"
            header = json.loads(fh.read(n))
    except (OSError, ValueError, CheckpointError) as e:
        return f"{rel} is unreadable ({e})"
    end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
    return f"{rel} is truncated ({size} of {8 + n + end} bytes)" if size < 8 + n + end else None


def incomplete_reason(path: Location | Path | str, marker: str | None = None, stable_seconds: float = 0,
                      adapter: bool = False) -> str | None:
    """Why `path` is not a complete HF checkpoint (or, with `adapter`, LoRA adapter), or None.

    Always: config.json, every weight shard the index names, and every safetensors file whole
    (adapters: adapter_config.json with a rank, and a whole adapter_model.safetensors).
    Optionally: a marker file the trainer writes last, and no file modified for stable_seconds.
    """
    loc = path if isinstance(path, Location) else open_location(str(path))
    entries = loc.entries(recursive=True)
    files = {e.rel: e for e in entries if not e.is_dir}
    why = _adapter_problem(loc, files) if adapter else _weights_problem(loc, files)
    if why:
        return why
    if marker and not any(e.rel == marker for e in entries):
        return f"no {marker} marker yet"
    if stable_seconds > 0:
        mtimes = [e.mtime_ns for e in files.values()]
        if any(m is None for m in mtimes):
            return "file modification times are unknown on this filesystem; complete_after_seconds cannot apply"
        age = time.time() - max(mtimes) / 1e9
        if age < stable_seconds:
            return f"modified {age:.0f}s ago (waiting for {stable_seconds:.0f}s without changes)"
    return None


def _weights_problem(loc: Location, files: dict[str, Entry]) -> str | None:
    top = sorted(rel for rel in files if "/" not in rel)
    if "config.json" not in files:
        return "no config.json"
    indexes = [n for n in top if n.endswith(".safetensors.index.json")]
    indexes += [n for n in top if n == "pytorch_model.bin.index.json"]
    if indexes:
        try:
            shards = sorted(set(json.loads(loc.read_text(indexes[0]))["weight_map"].values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError, CheckpointError):
            return f"unreadable weight index {indexes[0]}"
        missing = [s for s in shards if s not in files]
        if missing:
            return f"missing weight shards {', '.join(missing)}"
        weights = shards
    else:
        weights = [n for n in top if n.endswith(".safetensors")]
        weights += [n for n in top if n.startswith("pytorch_model") and n.endswith(".bin")]
        if not weights:
            return "no weight files (*.safetensors or pytorch_model*.bin)"
    for w in weights:
        if w.endswith(".safetensors") and (why := safetensors_truncated(loc, w, files[w].size)):
            return why
    return None


def _adapter_problem(loc: Location, files: dict[str, Entry]) -> str | None:
    if ADAPTER_CONFIG not in files:
        return f"no {ADAPTER_CONFIG}"
    try:
        adapter_rank(loc)
    except CheckpointError as e:
        return str(e)
    if "adapter_model.safetensors" in files:
        return safetensors_truncated(loc, "adapter_model.safetensors", files["adapter_model.safetensors"].size)
    if "adapter_model.bin" not in files:
        return "no adapter weights (adapter_model.safetensors)"
    return None


def adapter_rank(loc: Location) -> int:
    """The largest LoRA rank in a PEFT adapter_config.json (`r` and any `rank_pattern` value)."""
    try:
        cfg = json.loads(loc.read_text(ADAPTER_CONFIG))
        ranks = [cfg["r"], *(cfg.get("rank_pattern") or {}).values()]
        if not all(isinstance(r, int) and r > 0 for r in ranks):
            raise ValueError
    except (ValueError, KeyError, TypeError, AttributeError):
        raise CheckpointError(f"{ADAPTER_CONFIG} is not a PEFT LoRA config with a positive integer rank 'r'") from None
    return max(ranks)


def _has_tokenizer(names: set[str]) -> bool:
    return "tokenizer.json" in names or "tokenizer_config.json" in names


def _builtin_dir(value: str, key: str, built: Mapping[str, Path] | None, one_model: bool = False) -> str:
    """A builtin model's directory, as the planner built it; any other value unchanged.
    `one_model`: where one model is wanted (a LoRA base), not a run of checkpoints."""
    from runner.builtins import is_builtin, model_dir

    if not is_builtin(value):
        return value
    if value not in (built or {}):
        raise CheckpointError(f"{key}: the builtin model {value} has not been built")
    return str(model_dir(value, dict(built))) if one_model else str(built[value])


def _open_root(model: ModelConfig, built: Mapping[str, Path] | None) -> Location:
    raw = _builtin_dir(model.path, f"models '{model.name}'.path", built)
    root = open_location(raw, f"models '{model.name}'.path")
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


def _base_model(model: ModelConfig, built: Mapping[str, Path] | None) -> Location:
    raw = _builtin_dir(model.base_model, f"models '{model.name}'.base_model", built, one_model=True)
    base = open_location(raw, f"models '{model.name}'.base_model")
    if _kind(base, model.name) != "dir":
        raise CheckpointError(f"models '{model.name}'.base_model: directory not found: {model.base_model}")
    why = incomplete_reason(base)
    if why:
        raise CheckpointError(f"models '{model.name}'.base_model {model.base_model} is not a complete "
                              f"Hugging Face model directory: {why}")
    return base


def discover_checkpoints(model: ModelConfig, built: Mapping[str, Path] | None = None) -> list[Checkpoint]:
    """The model's checkpoints in step order. Raises CheckpointError when there is none usable.

    `built`: {builtin name: directory} for the builtin models the planner built (runner.builtins)."""
    raw = model.path
    root = _open_root(model, built)
    lora = bool(model.base_model)
    base = _base_model(model, built) if lora else None
    single = ADAPTER_CONFIG if lora else "config.json"

    rx = pattern_regex(model.checkpoint_pattern)
    try:
        top = root.entries()
    except CheckpointError as e:
        raise CheckpointError(f"models '{model.name}': {e}") from None
    if any(e.rel == single and not e.is_dir for e in top):
        m = rx.match(root.name)
        found = [(int(m.group(1)) if m else 0, root)]
    else:
        found = sorted(((int(m.group(1)), root.child(e.rel)) for e in top if e.is_dir and (m := rx.match(e.rel))),
                       key=lambda t: (t[0], t[1].name))
        if not found:
            what = "a LoRA adapter directory (no adapter_config.json)" if lora else \
                "a HF model directory (no config.json)"
            raise CheckpointError(
                f"models '{model.name}': {raw} is neither {what} nor a run "
                f"directory with subdirectories named like '{model.checkpoint_pattern}'")
    if model.checkpoints:
        names = {c.name for _, c in found}
        unknown = [c for c in model.checkpoints if c not in names]
        if unknown:
            raise CheckpointError(f"models '{model.name}'.checkpoints: not found in {raw}: {', '.join(unknown)} "
                                  f"(found: {', '.join(sorted(names))})")
        found = [(s, c) for s, c in found if c.name in model.checkpoints]

    tokenizers = _TokenizerFinder(model, root, base)
    out, problems = [], []
    for step, loc in found:
        try:
            reason = incomplete_reason(loc, model.complete_marker, model.complete_after_seconds, adapter=lora)
            tok = None if reason else tokenizers.find(loc)
        except CheckpointError as e:  # e.g. a file removed between listing and reading
            reason, tok = str(e), None
        if reason:
            problems.append(f"{loc.name}: {reason}")
            continue
        if tok is None:
            problems.append(f"{loc.name}: no tokenizer files; set models[].tokenizer")
            continue
        if lora:
            rank = max(adapter_rank(loc), model.max_lora_rank or 0)
            if rank > 512:  # vLLM's largest max_lora_rank: fail here, not as error rows in the actors
                problems.append(f"{loc.name}: LoRA rank {rank} is above 512, the largest vLLM supports")
                continue
            out.append(Checkpoint(model.name, loc.name, step, base.uri, tok, adapter=loc.uri, lora_rank=rank))
        else:
            out.append(Checkpoint(model.name, loc.name, step, loc.uri, tok))
    if problems and (not out or model.checkpoints):
        raise CheckpointError(f"models '{model.name}': unusable checkpoint(s) in {raw}: " + "; ".join(problems))
    for p in problems:  # e.g. a checkpoint still being written by the trainer
        log.warning("models '%s': skipping incomplete checkpoint %s", model.name, p)
    return out


class _TokenizerFinder:
    """models[].tokenizer if set, else the checkpoint's own (for adapters: the base model's
    first), else the run directory's. Listings are read once per directory."""

    def __init__(self, model: ModelConfig, root: Location, base: Location | None):
        self.explicit = open_location(model.tokenizer, f"models '{model.name}'.tokenizer") if model.tokenizer else None
        self.root, self.base = root, base
        self.seen: dict[str, bool] = {}

    def _has(self, loc: Location) -> bool:
        if loc.uri not in self.seen:
            self.seen[loc.uri] = _has_tokenizer({e.rel for e in loc.entries() if not e.is_dir})
        return self.seen[loc.uri]

    def find(self, ckpt: Location) -> str | None:
        first = [self.explicit] if self.explicit else [c for c in (self.base, ckpt) if c is not None]
        for loc in first + [self.root]:
            if loc.kind() == "dir" and self._has(loc):
                return loc.uri
        return None


# ---------------------------------------------------------------------------------------------
# Local copies, in generation actors


def localize_checkpoint(ckpt: Checkpoint, cache_dir: str | Path) -> Checkpoint:
    """`ckpt` with every remote directory replaced by a local copy (see `runner.remote`).

    Called by the engine right before it loads, on the node that loads. A copy that turns out
    incomplete (changed since discovery) raises CheckpointError and is not cached.
    """
    if not any(p and is_uri(p) for p in (ckpt.path, ckpt.tokenizer, ckpt.adapter)):
        return ckpt

    def local(uri: str, adapter: bool) -> str:
        if not is_uri(uri):
            return uri
        # Flat and without trainer state: HF checkpoints keep what an engine reads at the top.
        return str(fetch_directory(open_location(uri), cache_dir, recursive=False, keep=is_model_file,
                                   check=lambda d: incomplete_reason(d, adapter=adapter)))

    path = local(ckpt.path, adapter=False)
    adapter = local(ckpt.adapter, adapter=True) if ckpt.adapter else None
    if ckpt.tokenizer == ckpt.path:
        tok = path
    elif ckpt.adapter and ckpt.tokenizer == ckpt.adapter:
        tok = adapter
    elif is_uri(ckpt.tokenizer):  # e.g. the run directory: its tokenizer files only
        tok = str(fetch_directory(open_location(ckpt.tokenizer), cache_dir, recursive=False, keep=is_tokenizer_file))
    else:
        tok = ckpt.tokenizer
    return dataclasses.replace(ckpt, path=path, tokenizer=tok, adapter=adapter)


__all__ = ["Checkpoint", "discover_checkpoints", "incomplete_reason", "localize_checkpoint", "pattern_regex"]
