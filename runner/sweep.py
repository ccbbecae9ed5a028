"""Run a sweep: validate everything, then stream grid -> generation -> rules -> judge -> sinks.

    summary = run_sweep(load_config(None, []))

Order matters: config, scenario packs and checkpoints are all validated before Ray starts, an
engine loads or anything is written. Work is written batch by batch as soon as it is graded,
so an interrupted sweep keeps every finished batch and the next run resumes after it.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from runner.checkpoints import Checkpoint, discover_checkpoints
from runner.config import (BUILTIN_DEMO_MODEL, REPO_ROOT, JudgeCombine, ModelBackend, ModelConfig, SweepConfig,
                           config_to_yaml)
from runner.errors import ConfigError
from runner.generation.engine import GenerationResult
from runner.graders.judge import Judgment, grading_columns
from runner.graders.rules import Grading
from runner.graders.version import grading_version as make_grading_version
from runner.grid import WorkItem, count_items, expand_grid, grid_item_ids, prompt_digest
from runner.pipeline.sources import Batch, GridSource
from runner.sinks.console import ConsoleProgress
from runner.specs import build_api_spec
from runner.sinks.metrics import awareness_summary, checkpoint_metrics, sample_transcripts
from runner.sinks.parquet import SCHEMA_VERSION, ParquetSink, done_item_ids, latest_rows, read_results

log = logging.getLogger(__name__)

BUILTIN_SCENARIOS = REPO_ROOT / "scenarios"


@dataclass
class SweepPlan:
    """Everything validated and resolved, before any engine starts or anything is written."""

    cfg: SweepConfig
    pack_dirs: list[str]
    families: list[str]
    checkpoints: list[Checkpoint]
    total_items: int
    packs: list = field(default_factory=list)
    # (family, condition id) -> RenderedScenario, filled lazily and shared by every grid expansion.
    rendered: dict = field(default_factory=dict)
    # The judge model, resolved (`builtin:demo-rl` -> the demo run's checkpoint-100); None: no judge.
    judge_model: Checkpoint | None = None


@dataclass
class SweepSummary:
    run_id: str
    results_dir: str
    total_items: int
    wandb: list[str] = field(default_factory=list)
    skipped: int = 0
    rows_written: int = 0
    errors: int = 0
    wall_seconds: float = 0.0
    output_tokens: int = 0
    engine_load_seconds: float = 0.0
    batch_failures: int = 0          # batches resubmitted or given up because an actor died
    batch_fallbacks: int = 0         # engine batches that raised and were redone item by item
    engine_loads: dict = field(default_factory=dict)  # fresh engines vs in-place weight swaps
    metrics: dict[str, dict] = field(default_factory=dict)


def resolve_pack_dirs(cfg: SweepConfig) -> list[str]:
    dirs = [str(BUILTIN_SCENARIOS)] if cfg.scenarios.builtin else []
    dirs += [str(Path(d).expanduser().resolve()) for d in cfg.scenarios.dirs]
    if not dirs:
        raise ConfigError("config error: no scenario packs: scenarios.builtin is false and scenarios.dirs is empty")
    return dirs


def _check_where(packs, where: dict[str, list[str]]) -> None:
    problems = []
    for var, values in where.items():
        owners = [p for p in packs if var in p.variables]
        if not owners:
            known = sorted({v for p in packs for v in p.variable_names})
            problems.append(f"scenarios.where: unknown variable '{var}' (variables: {', '.join(known)})")
            continue
        allowed = sorted({v for p in owners for v in p.variables[var]})
        for v in values:
            if v not in allowed:
                problems.append(f"scenarios.where.{var}: unknown value '{v}' (allowed: {', '.join(allowed)})")
    if problems:
        raise ConfigError("config error: " + "; ".join(problems))


def plan_sweep(cfg: SweepConfig, allow_no_checkpoints: bool = False) -> SweepPlan:
    """Load packs, build (or find) checkpoints, size the grid. Writes nothing to output.dir."""
    from runner.scenarios import load_packs

    pack_dirs = resolve_pack_dirs(cfg)
    packs = load_packs([Path(d) for d in pack_dirs], cfg.scenarios.families or None)
    _check_where(packs, cfg.scenarios.where)
    demo_dir = None
    judge = cfg.grading.judge
    local_judge = judge.enabled and judge.backend == ModelBackend.vllm
    if any(m.path == BUILTIN_DEMO_MODEL and m.backend == ModelBackend.vllm for m in cfg.models) or (
            local_judge and judge.model == BUILTIN_DEMO_MODEL):
        from runner.demo import ensure_demo_run

        demo_dir = ensure_demo_run(Path(cfg.cache_dir).expanduser(), scenarios_dir=BUILTIN_SCENARIOS)
    checkpoints = [c for m in cfg.models for c in (
        [api_checkpoint(m)] if m.backend == ModelBackend.openai else discover_checkpoints(m, demo_dir))]
    total = count_items(packs, cfg.scenarios.where, checkpoints, cfg.sampling.seeds)
    if total == 0 and not (allow_no_checkpoints and not checkpoints):
        raise ConfigError("config error: the grid is empty: scenarios.where selects no condition")
    judge_model = None
    if judge.enabled:
        judge_model = Checkpoint(model="judge", name=judge.model, step=0, path=judge.model, tokenizer="") \
            if judge.backend == ModelBackend.openai else resolve_judge_model(judge.model, demo_dir)
    check_api_servers(cfg, checkpoints, judge_model)
    return SweepPlan(cfg, pack_dirs, [p.name for p in packs], checkpoints, total, packs=packs, judge_model=judge_model)


def resolve_judge_model(model: str, demo_dir: Path | None) -> Checkpoint:
    """The judge model as a Checkpoint (plain data the judge actors load)."""
    if model == BUILTIN_DEMO_MODEL:
        path = Path(demo_dir) / "checkpoint-100"
    else:
        path = Path(model).expanduser().resolve()
        if not (path / "config.json").is_file():
            raise ConfigError(f"config error: grading.judge.model '{model}' is not a Hugging Face model "
                              f"directory (no config.json in {path}); or use {BUILTIN_DEMO_MODEL}")
    tokenizer = path
    if not any((path / f).is_file() for f in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")):
        if (path.parent / "tokenizer").is_dir():  # a run directory keeps one tokenizer beside its checkpoints
            tokenizer = path.parent / "tokenizer"
    return Checkpoint(model="judge", name=path.name, step=0, path=str(path), tokenizer=str(tokenizer))


def api_checkpoint(m: ModelConfig) -> Checkpoint:
    """A model served over an OpenAI-compatible API: one checkpoint, named as the server names it."""
    return Checkpoint(model=m.name, name=m.path, step=0, path=m.path, tokenizer="")


def check_api_servers(cfg: SweepConfig, checkpoints: list[Checkpoint], judge_model: Checkpoint | None) -> None:
    """Before anything starts: every vLLM server named in config answers and serves its model."""
    from runner.generation.openai_backend import ApiError, OpenAIBackend

    targets = [(f"models '{m.name}'.api", m.api, c) for m in cfg.models if m.backend == ModelBackend.openai
               for c in checkpoints if c.model == m.name]
    j = cfg.grading.judge
    if judge_model is not None and j.backend == ModelBackend.openai:
        targets.append(("grading.judge.api", j.api, judge_model))
    for where, api, ckpt in targets:
        if not api.vllm_extensions:  # other servers: the first request tells
            continue
        backend = OpenAIBackend(build_api_spec(api), where=where)
        try:
            backend.load(ckpt)
        except ApiError as e:
            raise ConfigError(f"config error: {where}: {e}") from None
        finally:
            backend.close()


def make_run_id(name: str) -> str:
    return f"{name}-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex}-{path.name}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _row(run_id: str, item: WorkItem, res: GenerationResult, grading: Grading, judgment: Judgment | None,
         combine: JudgeCombine, now, grading_version: str | None = None) -> dict:
    return {
        "run_id": run_id, "item_id": item.item_id, "scenario": item.scenario, "condition": item.condition,
        "model": item.model, "checkpoint": item.checkpoint, "checkpoint_step": item.checkpoint_step,
        "seed": item.seed, "response": res.response, "status": res.status, "error": res.error,
        "schema_version": SCHEMA_VERSION,
        "num_output_tokens": res.num_output_tokens, "finish_reason": res.finish_reason,
        "temperature": item.sampling.temperature, "top_p": item.sampling.top_p,
        "max_tokens": item.sampling.max_tokens, "created_at": now,
        **grading_columns(grading, judgment, combine, ok=res.status == "ok"),
        "grading_version": grading_version,
        "prompt_digest": prompt_digest(item.system, item.user),
    }


class SweepSession:
    """Ray, the pipeline's stages and the sinks, kept alive across `run` calls.

    `run_sweep` uses one session for one grid; `runner watch` keeps one open for hours and runs
    each new checkpoint through it, so engines stay up and move by weight swap.
    """

    def __init__(self, cfg: SweepConfig, plan: SweepPlan, *, stream=None, run_id: str | None = None):
        from runner.pipeline.ray_setup import init_ray
        from runner.sinks.wandb_sink import WandbSink
        from runner.specs import build_stages

        self.cfg, self.plan, self.stream = cfg, plan, stream
        self.out_dir = Path(cfg.output.dir).expanduser().resolve()
        self.run_id = run_id or make_run_id(cfg.name)
        init_ray(cfg.ray)
        # Stages first: a cluster that cannot host them fails here, before anything is written.
        self.stages = build_stages(cfg, pack_dirs=plan.pack_dirs, families=plan.families, packs=plan.packs,
                                   judge_model=plan.judge_model, generation=True)
        self.device = self.stages.device
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / "_runs").mkdir(exist_ok=True)
        write_atomic(self.out_dir / "_runs" / f"{self.run_id}.yaml", config_to_yaml(cfg))
        self.sink = ParquetSink(self.out_dir, self.run_id)
        self.grading_version = make_grading_version(cfg.grading, plan.packs)
        self.wandb = WandbSink(cfg.wandb, self.out_dir, self.run_id, plain_config(cfg))
        self.logged: set[str] = set()

    def run(self, checkpoints: list[Checkpoint]) -> SweepSummary:
        """Generate, grade and write every not-yet-done item of `checkpoints`."""
        from runner.pipeline.loop import run_pipeline

        t_start = time.monotonic()
        cfg, plan, stages = self.cfg, self.plan, self.stages
        gen = stages.generation
        done = done_item_ids(self.out_dir)
        total = count_items(plan.packs, cfg.scenarios.where, checkpoints, cfg.sampling.seeds)
        progress = ConsoleProgress(total, 0, stream=self.stream)
        progress.message(f"run {self.run_id}: {total} items = {len(plan.families)} families x "
                         f"{len(checkpoints)} checkpoints x {cfg.sampling.seeds} seeds x conditions; "
                         f"{len(done)} items already ok in {self.out_dir}")
        judges = f", {stages.judge.size} judge engine(s)" if stages.judge else ""
        nodes = sorted({n.get("node") or "?" for n in gen.slots.nodes})
        progress.message(f"{gen.size} generation engine(s) on {self.device}, node(s) {', '.join(nodes)} "
                         f"({gen.slots.depth} batches of {cfg.generation.batch_size} in flight each), "
                         f"{stages.rules.size} grader(s){judges}")
        source = GridSource(
            [(c, expand_grid(plan.packs, cfg.scenarios.where, [c], cfg.sampling, plan.rendered)) for c in checkpoints],
            cfg.generation.batch_size, is_done=done.__contains__)
        summary = SweepSummary(self.run_id, str(self.out_dir), total)
        rows_before = self.sink.rows_written
        stats_before = dict(gen.stats)
        combine = cfg.grading.judge.combine
        seen_skipped = 0

        def on_done(batch: Batch) -> None:
            now = datetime.now(timezone.utc)
            judged = batch.judgments or [None] * len(batch.items)
            rows = [_row(self.run_id, it, res, g, j, combine, now, self.grading_version)
                    for it, res, g, j in zip(batch.items, batch.results, batch.gradings, judged)]
            self.sink.write(rows)
            errors = sum(r["status"] != "ok" for r in rows)
            summary.errors += errors
            progress.update(len(rows), errors=errors, harmful=sum(bool(r["harmful"]) for r in rows))

        def on_tick() -> None:
            nonlocal seen_skipped
            if source.skipped != seen_skipped:
                progress.update(source.skipped - seen_skipped)
                seen_skipped = source.skipped
            for ckpt in source.complete_checkpoints():
                if ckpt.key not in self.logged:
                    self.logged.add(ckpt.key)
                    summary.metrics[ckpt.key] = self._log_checkpoint(ckpt, source.item_ids(ckpt.key), progress)

        run_pipeline(source, stages.ordered(), on_done, on_tick)
        on_tick()
        summary.output_tokens = gen.stats["output_tokens"] - stats_before["output_tokens"]
        summary.engine_load_seconds = gen.stats["load_seconds"] - stats_before["load_seconds"]
        summary.batch_failures = gen.stats["batch_failures"] - stats_before["batch_failures"]
        summary.batch_fallbacks = gen.stats["fallbacks"] - stats_before["fallbacks"]
        summary.engine_loads = gen.engine_loads()
        summary.skipped = source.skipped
        summary.rows_written = self.sink.rows_written - rows_before
        summary.wall_seconds = time.monotonic() - t_start
        return summary

    def _log_checkpoint(self, ckpt: Checkpoint, item_ids: set[str], progress) -> dict:
        """Metrics of a checkpoint whose items are all written: to W&B and the console."""
        metrics, transcripts = metrics_for(self.out_dir, ckpt, item_ids, self.cfg.wandb.transcripts_per_checkpoint,
                                           prefer=self.grading_version)
        reg = self.wandb.log_checkpoint(ckpt.model, ckpt.step, metrics, transcripts)
        metrics.update(reg)
        if reg.get("overall/regression"):
            progress.message(f"REGRESSION: {ckpt.key} harmful rate is significantly above baseline step "
                             f"{reg['overall/baseline_step']} (one-sided p={reg['overall/regression_p']:.3g})")
        progress.message(f"{ckpt.key} (step {ckpt.step}): harmful {metrics.get('overall/harmful', 0)}"
                         f"/{metrics.get('overall/n', 0)}, unscored {metrics.get('overall/unscored', 0)}, "
                         f"errors {metrics.get('overall/errors', 0)}{_agreement_line(metrics)}")
        if awareness_summary(metrics):
            progress.message(f"{ckpt.key}: {awareness_summary(metrics)}")
        return metrics

    def close(self) -> list[str]:
        """Finish W&B runs and stop the actors; returns where the W&B runs are."""
        try:
            return self.wandb.finish()
        finally:
            self.stages.shutdown()


def run_sweep(cfg: SweepConfig, *, stream=None, plan: SweepPlan | None = None) -> SweepSummary:
    """Run the whole grid once. Finished batches are on disk even if this raises."""
    t_start = time.monotonic()
    plan = plan or plan_sweep(cfg)
    if nothing_left(cfg, plan):  # a finished sweep: Ray and the engines never start, nothing is written
        out_dir = str(Path(cfg.output.dir).expanduser().resolve())
        return SweepSummary(make_run_id(cfg.name), out_dir, plan.total_items, skipped=plan.total_items,
                            wall_seconds=time.monotonic() - t_start)
    session = SweepSession(cfg, plan, stream=stream)
    summary = None
    try:
        summary = session.run(plan.checkpoints)
    finally:
        where = session.close()
    summary.wandb = where
    summary.wall_seconds = time.monotonic() - t_start
    return summary


def nothing_left(cfg: SweepConfig, plan: SweepPlan) -> bool:
    """Every item of the plan's grid already has an `ok` row in output.dir (stops at the first that has not)."""
    done = done_item_ids(Path(cfg.output.dir).expanduser().resolve())
    ids = grid_item_ids(plan.packs, cfg.scenarios.where, plan.checkpoints, cfg.sampling, plan.rendered)
    return bool(done) and all(i in done for i in ids)


def metrics_for(out_dir: Path, ckpt: Checkpoint, item_ids: set[str] | None, n_transcripts: int,
                 grading_version: str | None = None, prefer: str | None = None) -> tuple[dict, list[dict]]:
    """Metrics over the checkpoint's grid items (rows from earlier runs included), plus samples.

    item_ids None: every item of the checkpoint. `grading_version`: only that grading's rows
    (`runner grade`); otherwise each item's newest `ok` row, one of grading `prefer` first.
    """
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    flt = (ds.field("model") == ckpt.model) & (ds.field("checkpoint") == ckpt.name)
    cols = ["item_id", "scenario", "condition", "seed", "status", "harmful", "unscored_reason", "response",
            "rule_harmful", "judge_verdict", "judge_model", "eval_awareness", "grading_version", "created_at",
            "checkpoint", "evidence", "prompt_digest"]
    table = read_results(out_dir, columns=cols, filter=flt)
    if item_ids is not None:
        table = table.filter(pc.is_in(table["item_id"], value_set=pa_strings(item_ids)))
    rows = latest_rows(table, grading_version, prefer=prefer).to_pylist()
    rows.sort(key=lambda r: (r["scenario"], r["condition"], r["seed"]))
    return checkpoint_metrics(rows), sample_transcripts(rows, n_transcripts)


def _agreement_line(metrics: dict) -> str:
    if "overall/agree_both" not in metrics:
        return ""
    return ("; judge vs rules: both {agree_both}, judge only {judge_only}, rules only {rules_only}, "
            "neither {agree_neither}, judge unscored {judge_unscored}").format(
        **{k.split("/", 1)[1]: v for k, v in metrics.items() if k.startswith("overall/")})


def pa_strings(values):
    """Values as a sorted pyarrow string array (for `is_in` filters)."""
    import pyarrow as pa

    return pa.array(sorted(values), type=pa.string())


def plain_config(cfg: SweepConfig) -> dict:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.structured(cfg), enum_to_str=True)


__all__ = ["SweepPlan", "SweepSession", "SweepSummary", "plan_sweep", "run_sweep"]
