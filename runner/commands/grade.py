"""`runner grade RESULTS_DIR`: re-grade an existing dataset with another judge or rubric, without regenerating.

    cfg = load_regrade_config("results/demo", None, ["grading.judge.enabled=true", ...])
    plan = plan_regrade(cfg)                 # reads the dataset, rebuilds items; writes nothing
    summary = run_regrade(plan)              # graders, appends rows, logs W&B

The grading is identified by its grading version (`runner.graders.version`). For each item with
an `ok` generation row (its newest) and no final row of that version yet, the WorkItem is rebuilt
from the scenario packs (family + condition id) and the row's own model, checkpoint, seed and
sampling, and its prompt is checked against the row's: a mismatch means the prompt the agent saw
can no longer be rebuilt (the pack changed since generation), so that item gets a row that is
unscored with the reason instead of a grade of a reply to another prompt. Then the grader stages
grade it, and a new row is appended with the generation columns copied unchanged, a new run_id
and the grading_version. Earlier rows are never touched; readers pick each item's newest `ok`
row. No generation engine starts. Every graded batch is on disk before the next, and a re-run
skips items that have a final row of this version (a row whose grading failed is not final), so
an interrupted re-grade resumes, a finished one adds nothing, and no item gets two final rows.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

from runner.checkpoints import Checkpoint
from runner.commands._output import exit_status, print_checkpoint_metrics
from runner.config import config_to_dict, config_to_yaml
from runner.graders.awareness import AwarenessClassifier
from runner.pipeline.build import build_stages
from runner.pipeline.loop import run_pipeline
from runner.pipeline.ray_setup import init_ray
from runner.pipeline.sources import Batch, StoredSource
from runner.plan import RegradePlan, load_regrade_config, plan_regrade, read_stored
from runner.rows import regraded_row, unbuildable_row
from runner.session import report_file
from runner.sinks import build_sinks
from runner.sinks.console import ConsoleProgress
from runner.sinks.lock import results_writer
from runner.sinks.metrics import read_checkpoint
from runner.sinks.runs import make_run_id, record_run


@dataclass
class RegradeSummary:
    run_id: str | None                # None: nothing to grade, no run started
    results_dir: str
    grading_version: str
    rows_written: int = 0
    skipped: int = 0                  # items that already had a final row of this grading version
    unbuildable: int = 0              # written unscored: the item could not be rebuilt
    wall_seconds: float = 0.0
    metrics: dict[str, dict] = field(default_factory=dict)
    wandb: list[str] = field(default_factory=list)

    @property
    def left(self) -> tuple[int, int]:
        return 0, sum(int(m.get("overall/failed_grading", 0)) for m in self.metrics.values())


def run_regrade(plan: RegradePlan, *, stream=None) -> RegradeSummary:
    """Grade `plan.todo`, write `plan.unbuildable` unscored, log metrics. Nothing to do: no run at all."""
    t0 = time.monotonic()
    cfg = plan.cfg
    summary = RegradeSummary(None, str(plan.results_dir), plan.grading_version, skipped=plan.already)
    progress = ConsoleProgress(len(plan.todo) + len(plan.unbuildable), 0, stream=stream)
    progress.message(f"grading version {plan.grading_version}: {plan.ok_items} items with an ok reply in "
                     f"{plan.results_dir}; {plan.already} already graded with it, {len(plan.todo)} to grade, "
                     f"{len(plan.unbuildable)} cannot be rebuilt (written unscored)")
    if not plan.todo and not plan.unbuildable:
        summary.metrics = {k: m for k, (_, m, _, _) in version_metrics(plan, 0).items()}
        summary.wall_seconds = time.monotonic() - t0
        return summary

    run_id = make_run_id(f"{cfg.name}-regrade")
    summary.run_id = run_id
    stages = None
    if plan.todo:  # fails before anything is written
        init_ray(cfg.ray)
        stages = build_stages(cfg, pack_dirs=plan.pack_dirs, families=plan.families, packs=plan.packs,
                              judge_model=plan.judge_model, generation=False, where={})
    try:
        record_run(plan.results_dir, run_id, config_to_yaml(cfg),
                   header=f"# runner grade: grading_version {plan.grading_version}\n")
        # W&B is logged per checkpoint after all rows, in step order, never attached to a training run.
        sinks = build_sinks(cfg, plan.results_dir, run_id,
                            {**config_to_dict(cfg), "grading_version": plan.grading_version},
                            progress=progress, job_type="regrade", report_writer=report_file,
                            wandb_cfg=dataclasses.replace(cfg.wandb, attach_run_id=None))
        if plan.unbuildable:
            now = datetime.now(timezone.utc)
            awareness = AwarenessClassifier()
            sinks.write([unbuildable_row(run_id, gen, why, plan.grading_version, now, awareness)
                         for gen, why in plan.unbuildable])
        if stages is not None:
            combine = cfg.grading.judge.combine

            def on_done(batch: Batch) -> None:
                now = datetime.now(timezone.utc)
                sinks.write([regraded_row(run_id, gen, {k: v[i] for k, v in batch.grades.items()}, combine,
                                          plan.grading_version, now) for i, gen in enumerate(batch.context)])

            # The sweep's pipeline with stored replies as its source and no generation stage.
            run_pipeline(StoredSource(plan.todo, cfg.generation.batch_size), stages.ordered(), on_done)
        per_ckpt = version_metrics(plan, cfg.wandb.transcripts_per_checkpoint)
        sinks.expect([c for c, _, _, _ in per_ckpt.values()])
        for ckpt, metrics, transcripts, labels in per_ckpt.values():
            sinks.checkpoint_done(ckpt, metrics, transcripts, labels)
        summary.rows_written = sinks.sinks[0].rows_written
        summary.wandb = sinks.close()
    finally:
        if stages is not None:
            stages.shutdown()
    summary.unbuildable = len(plan.unbuildable)
    summary.metrics = {k: m for k, (_, m, _, _) in per_ckpt.items()}
    summary.wall_seconds = time.monotonic() - t0
    return summary


def version_metrics(plan: RegradePlan, n_transcripts: int) -> dict[str, tuple[Checkpoint, dict, list, dict]]:
    """Per checkpoint (`model@checkpoint`, in model then step order): its metrics over this grading
    version's rows only, sample transcripts and paired labels."""
    import pyarrow.compute as pc

    t = read_stored(plan.results_dir, ["model", "checkpoint", "checkpoint_step", "grading_version"])
    rows = t.filter(pc.equal(t["grading_version"], plan.grading_version)).to_pylist()
    seen = {}
    for r in rows:
        ckpt = Checkpoint(model=r["model"], name=r["checkpoint"], step=r["checkpoint_step"], path="", tokenizer="")
        seen.setdefault(ckpt.key, ckpt)
    out = {}
    for key, ckpt in sorted(seen.items(), key=lambda kv: (kv[1].model, kv[1].step, kv[1].name)):
        out[key] = (ckpt, *read_checkpoint(plan.results_dir, ckpt, None, n_transcripts, plan.grading_version))
    return out


__all__ = ["RegradeSummary", "run_regrade"]


def grade_command(results_dir: str, config: str | None, overrides: list[str]) -> int:
    cfg = load_regrade_config(results_dir, config, overrides)
    with results_writer(cfg.output.dir, "runner grade"):
        plan = plan_regrade(cfg)  # dataset, packs, judge model: all checked before Ray starts
        s = run_regrade(plan)
    if s.run_id is None:
        print(f"nothing to grade: all {s.skipped} items with an ok reply already have grading version "
              f"{s.grading_version}")
    else:
        print(f"done in {s.wall_seconds:.1f}s: run {s.run_id}, grading version {s.grading_version}: "
              f"{s.rows_written} new rows ({s.unbuildable} unscored: prompt no longer rebuilds), "
              f"{s.skipped} items already graded with this version")
    print_checkpoint_metrics(s.metrics)
    print(f"results: {s.results_dir} (rows with grading_version={s.grading_version})")
    for w in s.wandb:
        print(f"wandb: {w}")
    return exit_status(s.left, "the re-grade")
