"""A running evaluation: Ray, the pipeline's stages and the sinks, kept alive across `run` calls.

    session = SweepSession(plan)                 # starts Ray and the actors; writes nothing yet
    summary = session.run(plan.checkpoints, progress)   # generate, grade, write, log
    where = session.close()                      # W&B runs; actors stopped

`runner sweep` opens one session for its grid; `runner watch` keeps one open for hours and runs
each new checkpoint through it, so engines stay up and move by weight swap. Items whose newest
grading failed (a grader or judge died) are graded again from their stored reply, not regenerated.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

from runner.checkpoints import Checkpoint
from runner.config import config_to_dict, config_to_yaml
from runner.generation.pretokenize import build_prompt_tokenizer
from runner.generation.prompt_stats import prompt_token_summary
from runner.graders.awareness import AwarenessClassifier
from runner.graders.version import grading_version as make_grading_version
from runner.pipeline.adaptive import build_adaptive_source
from runner.pipeline.build import build_stages
from runner.pipeline.loop import run_pipeline
from runner.pipeline.ray_setup import init_ray
from runner.pipeline.sources import Batch, GridSource, StoredSource
from runner.plan import Progress, SweepPlan
from runner.rows import generation_row, regraded_row, unbuildable_row
from runner.sinks import build_sinks
from runner.sinks.console import ConsoleProgress
from runner.sinks.metrics import read_checkpoint
from runner.sinks.runs import make_run_id, record_run


@dataclass
class SweepSummary:
    run_id: str
    results_dir: str
    total_items: int
    wandb: list[str] = field(default_factory=list)
    skipped: int = 0
    rows_written: int = 0
    errors: int = 0                  # error rows written by this run
    regraded: int = 0                # items graded again from their stored reply
    wall_seconds: float = 0.0
    output_tokens: int = 0
    engine_load_seconds: float = 0.0  # summed over engines (they load in parallel)
    batch_failures: int = 0          # batches resubmitted or given up because an actor died
    batch_fallbacks: int = 0         # engine batches that raised and were redone item by item
    engine_loads: dict = field(default_factory=dict)  # fresh engines vs in-place weight swaps
    prompt_tokens: dict = field(default_factory=dict)  # sent vs computed (prefix cache), prompt_stats.py
    metrics: dict[str, dict] = field(default_factory=dict)

    @property
    def left(self) -> tuple[int, int]:
        """(items whose newest row is an error, items whose grading failed), over the grid of
        every checkpoint this run finished (rows of earlier runs included)."""
        return (sum(int(m.get("overall/errors", 0)) for m in self.metrics.values()),
                sum(int(m.get("overall/failed_grading", 0)) for m in self.metrics.values()))


def report_file(results_dir, out):
    """The HTML report for W&B's report artifact (imported here, when it is written: it is heavy)."""
    from runner.report import write_report_file

    return write_report_file(results_dir, out)


class SweepSession:
    def __init__(self, plan: SweepPlan, *, stream=None, run_id: str | None = None, generation: bool = True):
        """`generation=False`: only re-grading is left (no engine starts)."""
        self.plan, self.cfg = plan, plan.cfg
        self.out_dir = plan.paths.output_dir
        self.run_id = run_id or make_run_id(self.cfg.name)
        self.grading_version = make_grading_version(self.cfg.grading, plan.packs)
        self.progress = ConsoleProgress(0, 0, stream=stream)
        init_ray(self.cfg.ray)
        # Stages first: a cluster that cannot host them fails here, before anything is written.
        self.stages = build_stages(self.cfg, pack_dirs=plan.pack_dirs, families=plan.families, packs=plan.packs,
                                   judge_model=plan.judge_model, generation=generation)
        try:
            record_run(self.out_dir, self.run_id, config_to_yaml(self.cfg))
            self.sinks = build_sinks(self.cfg, self.out_dir, self.run_id, config_to_dict(self.cfg),
                                     progress=self.progress, report_writer=report_file)
        except BaseException:
            self.stages.shutdown()  # nothing may outlive a session that failed to open
            raise
        self.logged: set[str] = set()
        self.prompts = build_prompt_tokenizer(self.cfg)  # tokenizers kept across runs (watch)

    @property
    def rows_written(self) -> int:
        return self.sinks.sinks[0].rows_written

    def run(self, checkpoints: list[Checkpoint], progress: Progress) -> SweepSummary:
        """Generate, grade and write every item of `checkpoints` not done in `progress`, and grade
        again the items whose grading failed before."""
        t_start = time.monotonic()
        cfg, plan, stages = self.cfg, self.plan, self.stages
        gen = stages.generation
        total = plan.count(checkpoints)  # --limit included
        summary = SweepSummary(self.run_id, str(self.out_dir), total)
        self.progress.reset(total + len(progress.regrade) + len(progress.unbuildable))
        n_conditions = plan.n_conditions
        self.progress.message(
            f"run {self.run_id}: {total} items{f' (--limit {plan.limit})' if plan.limit else ''} = "
            f"{len(checkpoints)} checkpoint(s) x {n_conditions} conditions "
            f"({len(plan.families)} families) x {cfg.sampling.seeds} seeds; {len(progress.done)} items already ok "
            f"in {self.out_dir}" + (f"; {len(progress.regrade)} to grade again (their grading failed)"
                                    if progress.regrade else ""))
        graders = ', '.join(stages.described) or 'no graders'
        if gen is None:
            self.progress.message(f"nothing to generate; {graders}")
        else:
            nodes = sorted({n.get("node") or "?" for n in gen.slots.nodes})
            self.progress.message(f"{gen.size} generation engine(s) on {stages.device}, node(s) {', '.join(nodes)} "
                                  f"({gen.slots.depth} batches of {cfg.generation.batch_size} in flight each), "
                                  f"{graders}")
        rows_before = self.rows_written
        if progress.regrade or progress.unbuildable:
            summary.regraded = self._regrade(progress)
        self.sinks.expect(checkpoints)
        if gen is None:  # every item was generated before: report each checkpoint as it now stands
            for ckpt in checkpoints:
                summary.metrics[ckpt.key] = self._checkpoint_done(ckpt, set(plan.grid_ids([ckpt])))
            summary.skipped = total
            summary.rows_written = self.rows_written - rows_before
            summary.wall_seconds = time.monotonic() - t_start
            return summary
        stats_before, prompts_before = dict(gen.stats), gen.prompt_tokens()
        combine = cfg.grading.judge.combine
        prepare = self.prompts.prepare  # prompts to token ids here, not in the engine's actor
        if cfg.sampling.adaptive.enabled:  # seeds drawn in rounds per (checkpoint, family)
            source = build_adaptive_source(plan, checkpoints, cfg.generation.batch_size, progress.done.__contains__,
                                           progress.done, self.grading_version, combine, prepare)
        else:
            source = GridSource(plan.grid(checkpoints), cfg.generation.batch_size, is_done=progress.done.__contains__,
                                prepare=prepare)
        seen_skipped = 0

        def on_done(batch: Batch) -> None:
            now = datetime.now(timezone.utc)
            rows = [generation_row(self.run_id, it, res, {k: v[i] for k, v in batch.grades.items()}, combine, now,
                                   self.grading_version) for i, (it, res) in enumerate(zip(batch.items, batch.results))]
            self.sinks.write(rows)
            summary.errors += sum(r["status"] != "ok" for r in rows)

        def on_tick() -> None:
            nonlocal seen_skipped
            if source.skipped != seen_skipped:
                self.progress.update(source.skipped - seen_skipped)
                seen_skipped = source.skipped
            for ckpt in source.complete_checkpoints():
                if ckpt.key not in self.logged:
                    self.logged.add(ckpt.key)
                    summary.metrics[ckpt.key] = self._checkpoint_done(ckpt, source.item_ids(ckpt.key),
                                                                      source.cell_metrics(ckpt.key))

        run_pipeline(source, stages.ordered(), on_done, on_tick)
        on_tick()
        summary.output_tokens = gen.stats["output_tokens"] - stats_before["output_tokens"]
        summary.engine_load_seconds = gen.stats["load_seconds"] - stats_before["load_seconds"]
        summary.batch_failures = gen.stats["batch_failures"] - stats_before["batch_failures"]
        summary.batch_fallbacks = gen.stats["fallbacks"] - stats_before["fallbacks"]
        summary.engine_loads = gen.engine_loads()
        summary.prompt_tokens = prompt_token_summary(
            {k: v - prompts_before.get(k, 0) for k, v in gen.prompt_tokens().items()})
        self.sinks.run_summary(summary.prompt_tokens)
        summary.skipped = source.skipped
        summary.rows_written = self.rows_written - rows_before
        summary.wall_seconds = time.monotonic() - t_start
        return summary

    def _regrade(self, progress: Progress) -> int:
        """Grade again, from the stored reply, items whose last grading failed; no generation."""
        now = datetime.now(timezone.utc)
        combine = self.cfg.grading.judge.combine
        if progress.unbuildable:
            awareness = AwarenessClassifier()
            self.sinks.write([unbuildable_row(self.run_id, gen, why, self.grading_version, now, awareness)
                              for gen, why in progress.unbuildable])

        def on_done(batch: Batch) -> None:
            rows = [regraded_row(self.run_id, row, {k: v[i] for k, v in batch.grades.items()}, combine,
                                 self.grading_version, datetime.now(timezone.utc))
                    for i, row in enumerate(batch.context)]
            self.sinks.write(rows)

        if progress.regrade and self.stages.graders:
            run_pipeline(StoredSource(progress.regrade, self.cfg.generation.batch_size), self.stages.graders, on_done)
        return len(progress.regrade) + len(progress.unbuildable)

    def _checkpoint_done(self, ckpt: Checkpoint, item_ids: set[str], extra: dict | None = None) -> dict:
        """A checkpoint whose items are all written: its metrics, read back, to every sink."""
        metrics, transcripts, labels = read_checkpoint(self.out_dir, ckpt, item_ids,
                                                       self.cfg.wandb.transcripts_per_checkpoint,
                                                       prefer=self.grading_version)
        metrics.update(extra or {})
        self.sinks.checkpoint_done(ckpt, metrics, transcripts, labels)
        return metrics

    def close(self) -> list[str]:
        """Finish the sinks (W&B) and stop the actors; returns where the W&B runs are."""
        try:
            return self.sinks.close()
        finally:
            self.stages.shutdown()


__all__ = ["SweepSession", "SweepSummary"]
