"""`runner grade RESULTS_DIR`: re-grade an existing dataset with another judge or rubric, without regenerating.

    cfg = load_regrade_config("results/demo", None, ["grading.judge.enabled=true", ...])
    plan = plan_regrade(cfg)                 # reads the dataset, rebuilds items; writes nothing
    summary = run_regrade(plan)              # rule graders (+ judges), appends rows, logs W&B

The grading is identified by its grading version (`runner.graders.version`). For each item with
an `ok` generation row (its newest) and no row of that version yet, the WorkItem is rebuilt from
the scenario packs (family + condition id) and the row's own model, checkpoint, seed and
sampling, and its item_id is checked against the row's: a mismatch means the prompt the agent
saw can no longer be rebuilt (the pack changed since generation), so that item gets a row that
is unscored with the reason instead of a grade of a reply to another prompt. Then the rule
grader pool and (when enabled) the judge pool grade it, and a new row is appended with the
generation columns copied unchanged, a new run_id and the new grading_version. Earlier rows are
never touched; readers pick each item's newest `ok` row (`latest_rows`). No generation engine
starts. Every graded batch is on disk before the next, and a re-run skips items that have a row
of this version, so an interrupted re-grade resumes and a finished one adds nothing.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from runner.checkpoints import Checkpoint
from runner.config import SweepConfig, config_to_yaml
from runner.errors import ConfigError, ScenarioError, UserError
from runner.generation.engine import GenerationResult
from runner.graders.awareness import AwarenessClassifier
from runner.graders.judge import Judgment, grading_columns, judge_columns
from runner.graders.rules import Grading
from runner.grid import SEED_SCHEME, SamplingParams, WorkItem, make_item_id, prompt_digest
from runner.sinks.parquet import PARTITION_COLUMN, SCHEMA_VERSION


# Copied unchanged from the generation row into every re-graded row.
GENERATION_COLUMNS = ("item_id", "scenario", "condition", "model", "checkpoint", "checkpoint_step", "seed",
                      "response", "status", "error", "num_output_tokens", "finish_reason", "temperature", "top_p",
                      "max_tokens", "prompt_digest")
PACK_CHANGED = "scenario pack changed since generation"


@dataclass
class RegradePlan:
    """Everything read and checked, before Ray starts or anything is written."""

    cfg: SweepConfig
    results_dir: Path
    pack_dirs: list[str]
    families: list[str]
    packs: list
    grading_version: str
    todo: list[tuple[WorkItem, GenerationResult, dict]]   # (rebuilt item, its reply, the generation row)
    unbuildable: list[tuple[dict, str]]                   # (generation row, why it cannot be rebuilt)
    already: int                                          # items with a row of this grading version
    ok_items: int                                         # items with an `ok` generation row, in the selected families
    judge_model: Checkpoint | None = None


@dataclass
class RegradeSummary:
    run_id: str | None                # None: nothing to grade, no run started
    results_dir: str
    grading_version: str
    rows_written: int = 0
    skipped: int = 0                  # items that already had a row of this grading version
    unbuildable: int = 0              # written unscored: the item could not be rebuilt
    wall_seconds: float = 0.0
    metrics: dict[str, dict] = field(default_factory=dict)
    wandb: list[str] = field(default_factory=list)


def load_regrade_config(results_dir: str, config: str | None, overrides: list[str]) -> SweepConfig:
    """The config for re-grading RESULTS_DIR; `output.dir` is RESULTS_DIR itself."""
    from runner.config import load_config

    root = Path(results_dir).expanduser()
    if not root.exists():
        raise UserError(f"results directory not found: {results_dir}")
    if not root.is_dir():
        raise UserError(f"not a results directory: {results_dir} is a file")
    if not any(root.glob(f"{PARTITION_COLUMN}=*/*.parquet")):
        raise UserError(f"not a results dataset: {results_dir} holds no {PARTITION_COLUMN}=*/*.parquet files "
                        f"(give the output.dir of a sweep)")
    for o in overrides:
        if o.split("=", 1)[0].strip() == "output.dir":
            raise ConfigError("config error: output.dir cannot be set for `runner grade`: rows are added to "
                              "RESULTS_DIR itself")
    return load_config(config, [*overrides, f"output.dir={root.resolve()}"])


def plan_regrade(cfg: SweepConfig) -> RegradePlan:
    """Read RESULTS_DIR, load the packs, resolve the judge, rebuild every item still to grade."""
    import pyarrow.compute as pc

    from runner.graders.version import grading_version
    from runner.scenarios import load_packs
    from runner.sweep import pa_strings, resolve_pack_dirs

    root = Path(cfg.output.dir)
    table = _read_dataset(root)  # first: a dataset that does not read stops everything
    pack_dirs = resolve_pack_dirs(cfg)
    packs = load_packs([Path(d) for d in pack_dirs], cfg.scenarios.families or None)
    by_name = {p.name: p for p in packs}
    version = grading_version(cfg.grading, packs)
    judge_model = _resolve_judge(cfg)

    if cfg.scenarios.families:
        table = table.filter(pc.is_in(table[PARTITION_COLUMN], value_set=pa_strings(cfg.scenarios.families)))
    unknown = sorted(set(table[PARTITION_COLUMN].to_pylist()) - set(by_name))
    if unknown:  # a config mistake (the sweep's scenarios.dirs not given), not a changed pack
        raise ConfigError(f"config error: {root} holds families with no loaded scenario pack: {', '.join(unknown)}; "
                          f"add their packs with scenarios.dirs=[...] (as the sweep had), or re-grade the others "
                          f"with scenarios.families=[{', '.join(sorted(set(by_name)))}]")
    graded = set(_graded_item_ids(table, version))
    generated = _newest_ok_rows(table)

    todo, unbuildable, rendered = [], [], {}
    for row in generated:
        if row["item_id"] in graded:
            continue
        item, why = rebuild_item(row, by_name, rendered)
        if item is None:
            unbuildable.append((row, why))
            continue
        result = GenerationResult(row["item_id"], "ok", row["response"] or "", None,
                                  row["num_output_tokens"] or 0, row["finish_reason"],
                                  tool_calls=row.get("tool_calls"))  # the calls as parsed at generation
        todo.append((item, result, row))
    return RegradePlan(cfg, root, pack_dirs, [p.name for p in packs], packs, version, todo, unbuildable,
                       already=len({r["item_id"] for r in generated} & graded), ok_items=len(generated),
                       judge_model=judge_model)


def rebuild_item(row: dict, packs: dict, rendered: dict) -> tuple[WorkItem | None, str | None]:
    """The row's WorkItem, re-rendered from the packs; (None, why) when its item_id cannot be reproduced."""
    family, condition = row["scenario"], row["condition"]
    pack = packs.get(family)
    if pack is None:
        return None, f"{PACK_CHANGED}: no loaded scenario pack is named '{family}' (scenarios.builtin, scenarios.dirs)"
    key = (family, condition)
    if key not in rendered:
        try:
            rendered[key] = pack.render(pack.condition_from_id(condition))
        except ScenarioError as e:
            rendered[key] = e.problems[0]
    sc = rendered[key]
    if isinstance(sc, str):
        return None, f"{PACK_CHANGED}: {sc}"
    if None in (row["temperature"], row["top_p"], row["max_tokens"], row["checkpoint_step"], row["seed"]):
        return None, "the generation row lacks its sampling parameters, step or seed: its item_id cannot be checked"
    sampling = SamplingParams(row["temperature"], row["top_p"], row["max_tokens"])
    if row.get("prompt_digest"):
        # Rows that record their prompt's digest are checked on it alone: their item_id may hold
        # what the row does not store (a LoRA checkpoint's base model).
        same = prompt_digest(sc.system, sc.user) == row["prompt_digest"]
    else:  # older rows: rebuild the item_id, under the current seed scheme or the one before it
        ckpt = Checkpoint(model=row["model"], name=row["checkpoint"], step=row["checkpoint_step"], path="", tokenizer="")
        same = row["item_id"] in {make_item_id(sc.system, sc.user, sampling, ckpt, row["seed"], seed_scheme=s)
                                  for s in (SEED_SCHEME, 1)}
    if not same:
        return None, (f"{PACK_CHANGED}: re-rendering {family} condition '{condition}' gives another prompt "
                      f"than the row's reply was generated from; the reply is not graded against it")
    item_id = row["item_id"]
    return WorkItem(item_id=item_id, scenario=family, condition=condition, model=row["model"],
                    checkpoint=row["checkpoint"], checkpoint_step=row["checkpoint_step"], seed=row["seed"],
                    system=sc.system, user=sc.user, sampling=sampling), None


def regraded_row(run_id: str, gen: dict, grading: Grading, judgment: Judgment | None, cfg: SweepConfig,
                 version: str, now) -> dict:
    """A new row: the generation columns as they were, this grading's columns, a new run_id."""
    return {**{c: gen[c] for c in GENERATION_COLUMNS}, "run_id": run_id, "schema_version": SCHEMA_VERSION,
            "created_at": now, **grading_columns(grading, judgment, cfg.grading.judge.combine, ok=True),
            "grading_version": version}


def unbuildable_row(run_id: str, gen: dict, why: str, version: str, now, awareness: AwarenessClassifier) -> dict:
    """Unscored with the reason; eval awareness needs only the reply, so it is still classified."""
    label, evidence = awareness.classify(gen["response"])
    return {**{c: gen[c] for c in GENERATION_COLUMNS}, "run_id": run_id, "schema_version": SCHEMA_VERSION,
            "harmful": None, "unscored_reason": why, "grader": None, "evidence": None, "tool_calls": None,
            "created_at": now, "rule_harmful": None, **judge_columns(None),
            "eval_awareness": label, "eval_awareness_evidence": evidence, "grading_version": version}


def run_regrade(plan: RegradePlan, *, stream=None) -> RegradeSummary:
    """Grade `plan.todo`, write `plan.unbuildable` unscored, log metrics. Nothing to do: no run at all."""
    from runner.pipeline.loop import run_pipeline
    from runner.pipeline.sources import StoredSource
    from runner.sinks.console import ConsoleProgress
    from runner.sinks.parquet import ParquetSink
    from runner.sweep import make_run_id, metrics_for, write_atomic

    t0 = time.monotonic()
    cfg = plan.cfg
    summary = RegradeSummary(None, str(plan.results_dir), plan.grading_version, skipped=plan.already)
    progress = ConsoleProgress(len(plan.todo) + len(plan.unbuildable), 0, stream=stream)
    progress.message(f"grading version {plan.grading_version}: {plan.ok_items} items with an ok reply in "
                     f"{plan.results_dir}; {plan.already} already graded with it, {len(plan.todo)} to grade, "
                     f"{len(plan.unbuildable)} cannot be rebuilt (written unscored)")
    if not plan.todo and not plan.unbuildable:
        summary.metrics = {k: m for k, (_, m, _) in _version_metrics(plan, metrics_for, 0).items()}
        summary.wall_seconds = time.monotonic() - t0
        return summary

    run_id = make_run_id(f"{cfg.name}-regrade")
    summary.run_id = run_id
    stages = _start_stages(cfg, plan) if plan.todo else None  # fails before anything is written
    try:
        (plan.results_dir / "_runs").mkdir(exist_ok=True)
        write_atomic(plan.results_dir / "_runs" / f"{run_id}.yaml",
                      f"# runner grade: grading_version {plan.grading_version}\n" + config_to_yaml(cfg))
        sink = ParquetSink(plan.results_dir, run_id)
        if plan.unbuildable:
            now = datetime.now(timezone.utc)
            awareness = AwarenessClassifier()
            sink.write([unbuildable_row(run_id, gen, why, plan.grading_version, now, awareness)
                        for gen, why in plan.unbuildable])
            progress.update(len(plan.unbuildable))
        if stages is not None:
            def on_done(batch) -> None:
                now = datetime.now(timezone.utc)
                judged = batch.judgments or [None] * len(batch.items)
                rows = [regraded_row(run_id, gen, g, j, cfg, plan.grading_version, now)
                        for gen, g, j in zip(batch.context, batch.gradings, judged)]
                sink.write(rows)
                progress.update(len(rows), harmful=sum(bool(r["harmful"]) for r in rows))

            # The sweep's pipeline with stored replies as its source and no generation stage.
            run_pipeline(StoredSource(plan.todo, cfg.generation.batch_size), stages.ordered(), on_done)
    finally:
        if stages is not None:
            stages.shutdown()
    summary.rows_written = sink.rows_written
    summary.unbuildable = len(plan.unbuildable)
    per_ckpt = _version_metrics(plan, metrics_for, cfg.wandb.transcripts_per_checkpoint)
    summary.wandb = _log_wandb(plan, run_id, per_ckpt)
    summary.metrics = {k: m for k, (_, m, _) in per_ckpt.items()}
    summary.wall_seconds = time.monotonic() - t0
    return summary


def _start_stages(cfg: SweepConfig, plan: RegradePlan):
    """The sweep's rule and judge stages, without generation engines (the judge's cores start at 0)."""
    from runner.pipeline.ray_setup import init_ray
    from runner.specs import build_stages

    init_ray(cfg.ray)
    return build_stages(cfg, pack_dirs=plan.pack_dirs, families=plan.families, packs=plan.packs,
                        judge_model=plan.judge_model, generation=False, where={})


def _resolve_judge(cfg: SweepConfig) -> Checkpoint | None:
    """The judge model as plan_sweep resolves it (the demo run is built if the judge is builtin)."""
    from runner.config import ModelBackend
    from runner.sweep import check_api_servers, resolve_judge_model

    judge = cfg.grading.judge
    if not judge.enabled:
        return None
    if judge.backend == ModelBackend.openai:
        model = Checkpoint(model="judge", name=judge.model, step=0, path=judge.model, tokenizer="")
        check_api_servers(dataclasses.replace(cfg, models=[]), [], model)
        return model
    from runner.builtins import ensure_builtins

    return resolve_judge_model(judge.model, ensure_builtins([judge.model], cfg.cache_dir))


def _read_dataset(root: Path, cols: list[str] | None = None):
    """The dataset's generation and grading-version columns; a dataset that does not read is bad input."""
    import pyarrow as pa

    from runner.sinks.parquet import read_results

    cols = cols or [*GENERATION_COLUMNS, "created_at", "grading_version", "unscored_reason", "tool_calls"]
    try:
        return read_results(root, columns=cols)
    except (pa.ArrowException, OSError) as e:
        raise UserError(f"not a results dataset: {root} does not read as one ({str(e).splitlines()[0][:300]})") from None


# Unscored because an actor or server failed, not because of the reply: a re-run grades them again.
TRANSIENT_UNSCORED = ("grader failed:", "judge failed:", "judge engine error")


def _graded_item_ids(table, version: str) -> list[str]:
    """Items with an `ok` row of this grading that is final (graded, or unscored for a reason of
    the reply's own): a resumed re-grade skips them."""
    import pyarrow.compute as pc

    rows = table.filter(pc.and_(_equal(table, "grading_version", version), _equal(table, "status", "ok")))
    return [i for i, why in zip(rows["item_id"].to_pylist(), rows["unscored_reason"].to_pylist())
            if not (why and any(t in why for t in TRANSIENT_UNSCORED))]


def _equal(table, column: str, value: str):
    import pyarrow.compute as pc

    return pc.fill_null(pc.equal(table[column], value), False)


def _newest_ok_rows(table) -> list[dict]:
    """One `ok` generation row per item_id (the newest: every `ok` row of an item has the same reply)."""
    import pyarrow.compute as pc

    from runner.sinks.parquet import latest_rows

    ok = table.filter(pc.equal(table["status"], "ok"))
    rows = latest_rows(ok).to_pylist()
    # Null-safe: a row missing its step or seed is reported by rebuild_item, not a sort crash.
    rows.sort(key=lambda r: tuple((r[k] is None, r[k] if r[k] is not None else 0) for k in (
        "model", "checkpoint_step", "checkpoint", "scenario", "condition", "seed")))
    return rows


def _version_metrics(plan: RegradePlan, metrics_for, n_transcripts: int) -> dict[str, tuple[Checkpoint, dict, list]]:
    """Per checkpoint (`model@checkpoint`, in model then step order): its metrics over this grading
    version's rows only, and sample transcripts."""
    import pyarrow.compute as pc

    t = _read_dataset(plan.results_dir, ["model", "checkpoint", "checkpoint_step", "grading_version"])
    rows = t.filter(pc.equal(t["grading_version"], plan.grading_version)).to_pylist()
    seen = {}
    for r in rows:
        ckpt = Checkpoint(model=r["model"], name=r["checkpoint"], step=r["checkpoint_step"], path="", tokenizer="")
        seen.setdefault(ckpt.key, ckpt)
    out = {}
    for key, ckpt in sorted(seen.items(), key=lambda kv: (kv[1].model, kv[1].step, kv[1].name)):
        metrics, transcripts = metrics_for(plan.results_dir, ckpt, None, n_transcripts, plan.grading_version)
        out[key] = (ckpt, metrics, transcripts)
    return out


def _log_wandb(plan: RegradePlan, run_id: str, per_ckpt: dict[str, tuple[Checkpoint, dict, list]]) -> list[str]:
    """One W&B run per model (job_type `regrade`), step = checkpoint_step, in step order.

    Never attached to the training run (wandb.attach_run_id): its eval curves stay the sweep's.
    """
    from runner.sinks.wandb_sink import WandbSink
    from runner.sweep import plain_config

    wcfg = dataclasses.replace(plan.cfg.wandb, attach_run_id=None)
    config = {**plain_config(plan.cfg), "grading_version": plan.grading_version}
    sink = WandbSink(wcfg, plan.results_dir, run_id, config, job_type="regrade")
    for ckpt, metrics, transcripts in per_ckpt.values():
        metrics.update(sink.log_checkpoint(ckpt.model, ckpt.step, metrics, transcripts))
    return sink.finish()





__all__ = ["RegradePlan", "RegradeSummary", "load_regrade_config", "plan_regrade", "rebuild_item", "run_regrade"]
