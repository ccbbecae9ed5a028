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
                        grade: bool = True, warm: bool = False, engine_kwargs: dict | None = None,
                        sources=None) -> dict:
    """Generate `items` through the sweep's pipeline: the generation stage and (`grade`) the rule
    stage, as a sweep builds and runs them (prompts tokenized in the source, as a sweep does). Ray
    must be up. `warm`: start and warm the engines before the clock starts (throughput), else the
    clock includes engine start (wall time as a user sees it). `engine_kwargs`: added to what the
    sweep passes vLLM. `sources`: [(checkpoint, items)] instead of one checkpoint's `items`.
    Returns wall seconds to the last batch and to the first, output tokens, prompt tokens (sent,
    computed), engines, batches in flight per engine, and the replies by item_id."""
    import ray

    from runner.config import GenerationConfig, SweepConfig
    from runner.generation.backends import engine_placement
    from runner.generation.pretokenize import PromptTokenizer
    from runner.generation.specs import build_engine_spec, inflight
    from runner.graders.base import StageContext
    from runner.graders.registry import GRADERS
    from runner.pipeline.loop import run_pipeline
    from runner.pipeline.pools import build_generation_stage, build_grading_stage
    from runner.pipeline.sources import GridSource
    from runner.plan import BUILTIN_SCENARIOS
    from runner.scenarios import load_packs

    cfg = SweepConfig(generation=GenerationConfig(batch_size=batch_size, num_actors=n_actors))
    spec = build_engine_spec(cfg, "cpu")
    if engine_kwargs:
        spec = replace(spec, engine_kwargs={**spec.engine_kwargs, **engine_kwargs})
    sources = sources or [(ckpt, items)]
    all_items = [it for _, its in sources for it in its]
    families = sorted({it.scenario for it in all_items})
    first: list[float] = []
    replies: dict[str, str] = {}

    def on_done(batch) -> None:
        if not first:
            first.append(time.perf_counter() - t0)
        replies.update((r.item_id, r.response) for r in batch.results)

    t0 = time.perf_counter()
    stages = [build_generation_stage(spec, engine_placement("cpu", 1, spec.cpu_kv_cache_gib), num_actors=n_actors,
                                     batch_size=batch_size, max_inflight=inflight(max_inflight, "cpu"), max_retries=0)]
    try:
        if grade:
            ctx = StageContext(cfg=cfg, device="cpu", packs=load_packs([BUILTIN_SCENARIOS], families),
                               pack_dirs=[str(BUILTIN_SCENARIOS)], families=families, where={})
            stages.append(build_grading_stage(GRADERS["rules"], GRADERS["rules"].stage(ctx)))
        if warm:
            ray.get([a.generate.remote(sources[0][0], sources[0][1][:2]) for a in stages[0].slots.actors])
            t0 = time.perf_counter()
        tokens_before, prompts_before = stages[0].stats["output_tokens"], stages[0].prompt_tokens()
        prompts = PromptTokenizer(lambda _: True)  # as the sweep's source: token ids made here
        run_pipeline(GridSource([(c, iter(its)) for c, its in sources], batch_size, is_done=lambda _: False,
                                prepare=prompts.prepare), stages, on_done)
        wall = time.perf_counter() - t0
        prompt_tokens = {k: v - prompts_before[k] for k, v in stages[0].prompt_tokens().items()}
    finally:
        for s in stages:
            s.shutdown()
    return {"wall_s": wall, "first_s": first[0], "tokens": stages[0].stats["output_tokens"] - tokens_before,
            "engines": stages[0].size, "depth": stages[0].slots.depth, "replies": replies,
            "prompt_tokens": prompt_tokens, "items": len(all_items)}
