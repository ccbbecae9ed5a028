"""`runner sweep`: validate everything, then stream grid -> generation -> graders -> sinks.

    summary = run_sweep(load_config(None, []))           # plans first (or pass plan=plan_sweep(cfg))

Order matters: config, scenario packs and checkpoints are all validated before Ray starts, an
engine loads or anything is written. Work is written batch by batch as soon as it is graded,
so an interrupted sweep keeps every finished batch and the next run resumes after it; items
whose grading failed are graded again from the stored reply.
"""

from __future__ import annotations

import time

from runner.commands._output import exit_status, print_checkpoint_metrics, report_after_run
from runner.config import SweepConfig, load_config
from runner.generation.prompt_stats import describe_prompt_tokens
from runner.plan import SweepPlan, nothing_left, plan_sweep, sweep_progress
from runner.session import SweepSession, SweepSummary
from runner.sinks.lock import results_writer
from runner.sinks.runs import make_run_id
from runner.sinks.wandb_sink import resolve_mode


def run_sweep(cfg: SweepConfig, *, plan: SweepPlan | None = None, stream=None) -> SweepSummary:
    """Run the whole grid once. Finished batches are on disk even if this raises."""
    t_start = time.monotonic()
    plan = plan or plan_sweep(cfg)
    progress = sweep_progress(plan)
    # A finished sweep: Ray and the engines never start, nothing is written. (Adaptive seeds: what
    # is left is known only by replaying the rounds, with Ray up.)
    if not cfg.sampling.adaptive.enabled and nothing_left(plan, progress):
        return SweepSummary(make_run_id(plan.cfg.name), str(plan.paths.output_dir), plan.total_items,
                            skipped=plan.total_items, wall_seconds=time.monotonic() - t_start)
    # Only failed gradings left: re-grade from the stored replies, no engine starts.
    generate = cfg.sampling.adaptive.enabled or not all(i in progress.done for i in plan.grid_ids())
    session = SweepSession(plan, stream=stream, generation=generate)
    summary = None
    try:
        summary = session.run(plan.checkpoints, progress)
    finally:
        where = session.close()
    summary.wandb = where
    summary.wall_seconds = time.monotonic() - t_start
    return summary


def describe_plan(plan: SweepPlan) -> list[str]:
    """What `--dry-run` prints: the grid, what is new, where results go, W&B, engines."""
    cfg = plan.cfg
    progress = sweep_progress(plan)
    done = sum(1 for i in plan.grid_ids() if i in progress.done)
    n_conditions = plan.n_conditions
    g = cfg.generation
    engines = (f"{g.num_actors} generation engine(s)" if g.num_actors else "generation engines: one per "
               f"{g.cpu_threads_per_actor} core(s) (CPU) or {g.tensor_parallel_size} GPU(s) (CUDA) of the cluster")
    judge = f"; judge {plan.judge_model.path} on {cfg.grading.judge.num_actors} actor(s)" if plan.judge_model else ""
    limit = f" (--limit {plan.limit})" if plan.limit else ""
    return [
        f"{plan.total_items} items{limit} = {len(plan.checkpoints)} checkpoint(s) x {n_conditions} conditions "
        f"({len(plan.families)} families: {', '.join(plan.families)}) x {cfg.sampling.seeds} seeds",
        f"new: {plan.total_items - done}, already ok: {done}"
        + (f", to grade again (grading failed): {len(progress.regrade)}" if progress.regrade else ""),
        f"checkpoints: {', '.join(c.key for c in plan.checkpoints)}",
        f"output: {plan.paths.output_dir}; W&B mode: {resolve_mode(cfg.wandb)}",
        engines + judge,
    ]


__all__ = ["describe_plan", "run_sweep"]


def sweep_command(config: str | None, overrides: list[str], *, dry_run: bool = False, limit: int | None = None) -> int:
    cfg = load_config(config, overrides)
    if dry_run:
        for line in describe_plan(plan_sweep(cfg, limit=limit)):
            print(line)
        return 0
    # The writer lock first: an output.dir that cannot be written, or that another run writes,
    # fails at once, before the demo run is built or any checkpoint is read.
    with results_writer(cfg.output.dir, "runner sweep"):
        plan = plan_sweep(cfg, limit=limit)  # packs, checkpoints, grid: all checked before any engine starts
        s = run_sweep(cfg, plan=plan)  # Ray starts only if work is left
    print(f"done in {s.wall_seconds:.1f}s: {s.rows_written} new rows, {s.skipped} items already done, "
          f"{s.errors} errors" + (f", {s.regraded} graded again" if s.regraded else "")
          + f"; generation {s.output_tokens} output tokens ({s.output_tokens / max(s.wall_seconds, 1e-9):.0f}/s "
          f"over the run; engine loads {s.engine_load_seconds:.1f}s summed over engines)"
          + (f"; {describe_prompt_tokens(s.prompt_tokens)}" if s.prompt_tokens else ""))
    e = s.engine_loads
    if e:
        print(f"  engines: {e.get('fresh', 0)} fresh starts, {e.get('swap', 0) + e.get('swap_verified', 0)} "
              f"weight swaps ({e.get('swap_rejected', 0)} rejected by the equality check)"
              + (f", {e['adapter']} LoRA adapter switches" if e.get("adapter") else ""))
    if s.batch_failures or s.batch_fallbacks:
        print(f"  {s.batch_failures} batches lost an engine and were resubmitted; "
              f"{s.batch_fallbacks} engine batches failed and were redone item by item (see Ray logs)")
    print_checkpoint_metrics(s.metrics, plan.families)
    print(f"results: {s.results_dir}")
    for w in s.wandb:
        print(f"wandb: {w}")
    report_after_run(cfg.report.auto, plan.paths.output_dir)
    return exit_status(s.left, "the sweep")
