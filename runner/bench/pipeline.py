"""The runner's half of the side-by-side benchmarks: the same prompts through this runner's
generation pool. Kept to two small functions so the benchmarks follow the pool's API."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

# Replies of different lengths, as real replies are: the tail of a batch matters.
MAX_TOKENS_CYCLE = (32, 64, 128, 256)


def bench_items(n: int, cache_dir: str = "~/.cache/misalign-runner"):
    """(checkpoint, items): `n` blackmail prompts on the random-weight demo model (its replies run
    to max_tokens), max_tokens cycling through MAX_TOKENS_CYCLE, seeds as the sweep derives them."""
    from runner.checkpoints import discover_checkpoints
    from runner.config import ModelConfig, SamplingConfig
    from runner.demo import ensure_demo_run
    from runner.grid import SamplingParams, expand_grid
    from runner.scenarios import load_packs
    from runner.sweep import BUILTIN_SCENARIOS

    demo = ensure_demo_run(Path(cache_dir).expanduser(), scenarios_dir=BUILTIN_SCENARIOS, planted=None)
    ckpt = discover_checkpoints(ModelConfig(name="demo", path=str(demo), checkpoints=["checkpoint-100"]))[0]
    packs = load_packs([BUILTIN_SCENARIOS], ["blackmail"])
    n_cond = sum(1 for _ in packs[0].conditions({}))
    items = list(expand_grid(packs, {}, [ckpt], SamplingConfig(seeds=max(1, -(-n // n_cond)))))[:n]
    return ckpt, [replace(it, sampling=SamplingParams(it.sampling.temperature, it.sampling.top_p,
                                                      MAX_TOKENS_CYCLE[i % len(MAX_TOKENS_CYCLE)]))
                  for i, it in enumerate(items)]


def run_generation_pool(ckpt, items, n_actors: int = 1, batch_size: int = 64) -> dict:
    """Generate `items` through the pool as a sweep does (rule grading included). Ray must be up.
    Returns wall seconds from pool start (engine loads included) to the last graded batch and
    to the first, output tokens, and the pool's size."""
    from runner.config import GenerationConfig, SweepConfig
    from runner.generation.scheduler import BatchScheduler
    from runner.ray_pools import GenerationPool, GraderPool
    from runner.sweep import BUILTIN_SCENARIOS, build_engine_spec

    gcfg = GenerationConfig(num_actors=n_actors, batch_size=batch_size)
    spec = build_engine_spec(SweepConfig(generation=gcfg), "cpu")
    families = sorted({it.scenario for it in items})
    first: list[float] = []
    t0 = time.perf_counter()
    pool = GenerationPool(spec, gcfg)
    graders = GraderPool(1, [str(BUILTIN_SCENARIOS)], families, {})
    try:
        scheduler = BatchScheduler([(ckpt, iter(items))], batch_size, is_done=lambda _: False)
        stats = pool.run(scheduler, graders, lambda b, r, g, j: first or first.append(time.perf_counter() - t0),
                         lambda: None, lambda n: None)
        wall = time.perf_counter() - t0
    finally:
        pool.shutdown()
        graders.shutdown()
    return {"wall_s": wall, "first_s": first[0], "tokens": stats["output_tokens"], "engines": pool.size}
