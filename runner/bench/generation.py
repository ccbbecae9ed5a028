"""Benchmark P1: the sweep's generation stage against a plain `vllm.LLM.generate`, side by side.

Same prompts (the blackmail pack rendered through the demo model's chat template), same
sampling parameters and seeds, and replies of varied length as real replies are (max_tokens
from 32 to 256 across prompts; the random-weight demo checkpoint writes to max_tokens, so the
tail of every batch is real). Engines are started and warmed before the clock starts; the
timed part is generation only, through the pipeline (`run_pipeline` with the generation stage).

    python -m runner.bench.generation [--items 512] [--batch-size 64] [--max-inflight 0]

Prints one line per configuration and the P1 ratios against their goals; nothing is timed
inside tests.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from pathlib import Path


def varied_items(n: int, demo_dir: Path, lo: int = 32, hi: int = 256):
    """n blackmail prompts on checkpoint-100 with max_tokens spread over [lo, hi]."""
    from runner.checkpoints import discover_checkpoints
    from runner.config import ModelConfig, SamplingConfig
    from runner.grid import expand_grid
    from runner.scenarios import load_packs
    from runner.sweep import BUILTIN_SCENARIOS

    ckpt = discover_checkpoints(ModelConfig(name="demo", path=str(demo_dir), checkpoints=["checkpoint-100"]))[0]
    packs = load_packs([BUILTIN_SCENARIOS], ["blackmail"])
    n_cond = sum(1 for _ in packs[0].conditions())
    sampling = SamplingConfig(seeds=max(1, -(-n // n_cond)), max_tokens=hi)
    items = list(expand_grid(packs, {}, [ckpt], sampling))[:n]
    spread = [lo + (i * 97) % (hi - lo + 1) for i in range(len(items))]
    return ckpt, [dataclasses.replace(it, sampling=dataclasses.replace(it.sampling, max_tokens=m))
                  for it, m in zip(items, spread)]


def bench_plain(ckpt, items, core: str, engine_kwargs: dict) -> dict:
    """One `vllm.LLM` in this process on one core; all prompts in one `generate` call."""
    os.environ.update(VLLM_ENABLE_V1_MULTIPROCESSING="0", VLLM_CPU_KVCACHE_SPACE="1",
                      VLLM_CPU_OMP_THREADS_BIND=core, VLLM_LOGGING_LEVEL="WARNING")
    import vllm
    from vllm.inputs import TokensPrompt

    t0 = time.perf_counter()
    llm = vllm.LLM(model=ckpt.path, dtype="float32", enforce_eager=True, max_model_len=4096, seed=0,
                   **engine_kwargs)
    start_s = time.perf_counter() - t0
    tok = llm.get_tokenizer()

    def ids(msgs):
        out = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True)
        return list(out["input_ids"] if hasattr(out, "keys") else out)

    prompts = [TokensPrompt(prompt_token_ids=ids(it.messages())) for it in items]
    params = [vllm.SamplingParams(temperature=it.sampling.temperature, top_p=it.sampling.top_p,
                                  max_tokens=it.sampling.max_tokens, seed=it.engine_seed) for it in items]
    llm.generate(prompts[:2], params[:2], use_tqdm=False)  # warm-up, as the pool's
    t0 = time.perf_counter()
    outs = llm.generate(prompts, params, use_tqdm=False)
    gen_s = time.perf_counter() - t0
    tokens = sum(len(o.outputs[0].token_ids) for o in outs)
    replies = {it.item_id: o.outputs[0].text for it, o in zip(items, outs)}
    del llm
    return {"start_s": start_s, "gen_s": gen_s, "tokens": tokens, "replies": replies}


def bench_pool(ckpt, items, n_actors: int, batch_size: int, max_inflight: int) -> dict:
    """The sweep's generation stage (Ray actors, engine loops) fed by the pipeline loop."""
    import ray

    from runner.config import GenerationConfig, RayConfig, SweepConfig
    from runner.pipeline.loop import run_pipeline
    from runner.pipeline.pools import build_generation_stage
    from runner.pipeline.ray_setup import init_ray
    from runner.pipeline.sources import GridSource
    from runner.specs import build_engine_spec, inflight

    init_ray(RayConfig())
    gcfg = GenerationConfig(num_actors=n_actors, batch_size=batch_size)
    spec = build_engine_spec(SweepConfig(generation=gcfg), "cpu")
    t0 = time.perf_counter()
    stage = build_generation_stage(spec, num_actors=n_actors, per_actor=1, batch_size=batch_size,
                                   max_inflight=inflight(max_inflight, "cpu"), max_retries=0)
    ray.get([a.generate.remote(ckpt, items[:2]) for a in stage.slots.actors])  # start + warm every engine
    start_s = time.perf_counter() - t0
    source = GridSource([(ckpt, iter(items))], batch_size, is_done=lambda _: False)
    replies = {}

    def on_done(batch):
        replies.update((r.item_id, r.response) for r in batch.results)

    tokens_before = stage.stats["output_tokens"]
    t0 = time.perf_counter()
    run_pipeline(source, [stage], on_done)
    gen_s = time.perf_counter() - t0
    tokens = stage.stats["output_tokens"] - tokens_before
    stage.shutdown()
    return {"start_s": start_s, "gen_s": gen_s, "tokens": tokens, "actors": stage.size,
            "depth": stage.slots.depth, "replies": replies}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--items", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--max-inflight", type=int, default=0, help="requests in flight per engine; 0 = auto")
    ap.add_argument("--cache-dir", default="~/.cache/misalign-runner")
    args = ap.parse_args(argv)

    from runner.config import SweepConfig
    from runner.demo import ensure_demo_run
    from runner.specs import build_engine_spec
    from runner.sweep import BUILTIN_SCENARIOS

    # Random weights: replies run to their max_tokens (the planted demo stops after a few tokens).
    demo = ensure_demo_run(Path(args.cache_dir).expanduser(), scenarios_dir=BUILTIN_SCENARIOS, planted=None)
    ckpt, items = varied_items(args.items, demo)
    print(f"{len(items)} prompts, max_tokens 32-256 (varied), tiny random demo model, {os.cpu_count()} CPUs")
    engine_kwargs = build_engine_spec(SweepConfig(), "cpu").engine_kwargs  # what the sweep passes vLLM
    plain = bench_plain(ckpt, items, "0", engine_kwargs)
    one = bench_pool(ckpt, items, 1, args.batch_size, args.max_inflight)
    two = bench_pool(ckpt, items, 2, args.batch_size, args.max_inflight)
    print(f"{'configuration':52s} {'start s':>8s} {'gen s':>7s} {'out tokens':>10s} {'out tok/s':>10s}")
    for name, r in [("plain vllm.LLM.generate, 1 engine, 1 core, one call", plain),
                    (f"runner pool, 1 actor ({one['depth']} batches of {args.batch_size} in flight)", one),
                    (f"runner pool, 2 actors on 2 cores ({two['depth']} batches in flight each)", two)]:
        print(f"{name:52s} {r['start_s']:8.1f} {r['gen_s']:7.2f} {r['tokens']:10d} {r['tokens'] / r['gen_s']:10.0f}")
    same = sum(one["replies"][k] == v for k, v in plain["replies"].items())
    print(f"identical replies, pool (1 actor) vs plain, same seeds: {same}/{len(items)}")
    rate = {k: r["tokens"] / r["gen_s"] for k, r in (("plain", plain), ("one", one), ("two", two))}
    print(f"P1 pool(1 actor)/plain: {rate['one'] / rate['plain']:.2f}x (goal >= 0.95x)")
    print(f"P1 pool(2 actors, 2 cores)/plain(1 core): {rate['two'] / rate['plain']:.2f}x (goal >= 1.6x)")


if __name__ == "__main__":
    main()
