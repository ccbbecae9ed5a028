"""The runner's half of the side-by-side benchmarks: the same prompts through this runner's
generation pool. Kept to two small functions so the benchmarks follow the pool's API."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

# Replies of different lengths, as real replies are: the tail of a batch matters.
MAX_TOKENS_CYCLE = (32, 64, 128, 256)


def bench_items(n: int, cache_dir: str = "~/.cache/misalign-runner", cycle: tuple[int, ...] = MAX_TOKENS_CYCLE,
                run_dir: str | None = None):
    """(checkpoint, items): `n` blackmail prompts on the random-weight demo model (its replies run
    to max_tokens), max_tokens cycling through `cycle`, seeds as the sweep derives them.
    `run_dir`: a random-weight demo run already built (else it is built in `cache_dir`)."""
    from runner.checkpoints import discover_checkpoints
    from runner.config import ModelConfig, SamplingConfig
    from runner.demo import ensure_demo_run
    from runner.grid import SamplingParams, expand_grid
    from runner.plan import BUILTIN_SCENARIOS
    from runner.scenarios import load_packs

    demo = run_dir or ensure_demo_run(Path(cache_dir).expanduser(), scenarios_dir=BUILTIN_SCENARIOS, planted=None)
    ckpt = discover_checkpoints(ModelConfig(name="demo", path=str(demo), checkpoints=["checkpoint-100"]))[0]
    packs = load_packs([BUILTIN_SCENARIOS], ["blackmail"])
    n_cond = sum(1 for _ in packs[0].conditions({}))
    items = list(expand_grid(packs, {}, [ckpt], SamplingConfig(seeds=max(1, -(-n // n_cond)))))[:n]
    return ckpt, [replace(it, sampling=SamplingParams(it.sampling.temperature, it.sampling.top_p,
                                                      cycle[i % len(cycle)]))
                  for i, it in enumerate(items)]


def run_generation_pool(ckpt, items, n_actors: int = 1, batch_size: int = 64, max_inflight: int = 0,
                        grade: bool = True, warm: bool = False) -> dict:
    """Generate `items` through the sweep's pipeline: the generation stage and (`grade`) the rule
    stage, as a sweep runs them. Ray must be up. `warm`: start and warm the engines before the
    clock starts (throughput), else the clock includes engine start (wall time as a user sees it).
    Returns wall seconds to the last batch and to the first, output tokens, engines, batches in
    flight per engine, and the replies by item_id."""
    import ray

    from runner.config import GenerationConfig, SweepConfig
    from runner.generation.specs import build_engine_spec, inflight
    from runner.pipeline.loop import run_pipeline
    from runner.pipeline.pools import build_generation_stage, build_rule_stage
    from runner.pipeline.sources import GridSource
    from runner.plan import BUILTIN_SCENARIOS

    spec = build_engine_spec(SweepConfig(generation=GenerationConfig(batch_size=batch_size)), "cpu")
    families = sorted({it.scenario for it in items})
    first: list[float] = []
    replies: dict[str, str] = {}

    def on_done(batch) -> None:
        if not first:
            first.append(time.perf_counter() - t0)
        replies.update((r.item_id, r.response) for r in batch.results)

    t0 = time.perf_counter()
    stages = [build_generation_stage(spec, num_actors=n_actors, per_actor=1, batch_size=batch_size,
                                     max_inflight=inflight(max_inflight, "cpu"), max_retries=0)]
    try:
        if grade:
            stages.append(build_rule_stage(1, [str(BUILTIN_SCENARIOS)], families, {}))
        if warm:
            ray.get([a.generate.remote(ckpt, items[:2]) for a in stages[0].slots.actors])
            t0 = time.perf_counter()
        tokens_before = stages[0].stats["output_tokens"]
        run_pipeline(GridSource([(ckpt, iter(items))], batch_size, is_done=lambda _: False), stages, on_done)
        wall = time.perf_counter() - t0
    finally:
        for s in stages:
            s.shutdown()
    return {"wall_s": wall, "first_s": first[0], "tokens": stages[0].stats["output_tokens"] - tokens_before,
            "engines": stages[0].size, "depth": stages[0].slots.depth, "replies": replies}
