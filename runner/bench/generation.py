"""Benchmark: output tokens/s of the sweep's generation phase next to a plain `vllm.LLM.generate`.

Same prompts (the blackmail pack rendered through the demo model's chat template), same
sampling parameters and seeds. Engine start-up is measured apart from steady-state generation.

    python -m runner.bench.generation [--items 256] [--max-tokens 128] [--actors 0]

Prints one line per configuration; nothing is timed inside tests.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path


def _items(n: int, max_tokens: int, demo_dir: Path):
    from runner.checkpoints import discover_checkpoints
    from runner.config import ModelConfig, SamplingConfig
    from runner.grid import expand_grid
    from runner.scenarios import load_packs
    from runner.sweep import BUILTIN_SCENARIOS

    ckpt = discover_checkpoints(ModelConfig(name="demo", path=str(demo_dir), checkpoints=["checkpoint-100"]))[0]
    packs = load_packs([BUILTIN_SCENARIOS], ["blackmail"])
    n_cond = sum(1 for _ in packs[0].conditions())
    sampling = SamplingConfig(seeds=max(1, -(-n // n_cond)), max_tokens=max_tokens)
    items = list(expand_grid(packs, {}, [ckpt], sampling))[:n]
    return ckpt, items


def bench_plain(ckpt, items, core: str, engine_kwargs: dict) -> dict:
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
    t0 = time.perf_counter()
    outs = llm.generate(prompts, params, use_tqdm=False)
    gen_s = time.perf_counter() - t0
    tokens = sum(len(o.outputs[0].token_ids) for o in outs)
    del llm
    return {"start_s": start_s, "gen_s": gen_s, "tokens": tokens}


def bench_sweep(ckpt, items, n_actors: int, batch_size: int) -> dict:
    import ray

    from runner.config import GenerationConfig, RayConfig, SweepConfig
    from runner.generation.scheduler import BatchScheduler
    from runner.ray_pools import GenerationPool, GraderPool, init_ray
    from runner.sweep import BUILTIN_SCENARIOS, build_engine_spec

    init_ray(RayConfig())
    gcfg = GenerationConfig(num_actors=n_actors, batch_size=batch_size)
    spec = build_engine_spec(SweepConfig(generation=gcfg), "cpu")
    t0 = time.perf_counter()
    pool = GenerationPool(spec, gcfg)
    graders = GraderPool(1, [str(BUILTIN_SCENARIOS)], ["blackmail"], {})
    # Warm-up: one tiny batch per engine, so engine start-up is timed apart.
    ray.get([a.generate.remote(ckpt, items[:1]) for a in pool.actors])
    start_s = time.perf_counter() - t0

    scheduler = BatchScheduler([(ckpt, iter(items))], batch_size, is_done=lambda _: False)
    t0 = time.perf_counter()
    stats = pool.run(scheduler, graders, lambda b, r, g, j: None, lambda: None, lambda n: None)
    gen_s = time.perf_counter() - t0
    pool.shutdown()
    graders.shutdown()
    return {"start_s": start_s, "gen_s": gen_s, "tokens": stats["output_tokens"], "actors": pool.size}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--items", type=int, default=256)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--actors", type=int, default=0, help="sweep engines; 0 = one per CPU core")
    ap.add_argument("--cache-dir", default="~/.cache/misalign-runner")
    args = ap.parse_args(argv)

    from runner.demo import ensure_demo_run
    from runner.sweep import BUILTIN_SCENARIOS

    # Random weights: replies run to max_tokens (the planted demo stops after a few tokens).
    demo = ensure_demo_run(Path(args.cache_dir).expanduser(), scenarios_dir=BUILTIN_SCENARIOS, planted=None)
    ckpt, items = _items(args.items, args.max_tokens, demo)
    print(f"{len(items)} prompts, max_tokens={args.max_tokens}, tiny demo model, {os.cpu_count()} CPUs")

    from runner.config import SweepConfig
    from runner.sweep import build_engine_spec

    # The same engine arguments the sweep passes (see build_engine_spec).
    engine_kwargs = build_engine_spec(SweepConfig(), "cpu").engine_kwargs
    rows = [("plain vllm.LLM.generate (1 engine, 1 core)", bench_plain(ckpt, items, "0", engine_kwargs))]
    rows.append(("sweep generation pool (1 actor)", bench_sweep(ckpt, items, 1, args.batch_size)))
    rows.append(("sweep generation pool (auto actors)", bench_sweep(ckpt, items, args.actors, args.batch_size)))
    print(f"{'configuration':46s} {'engine start s':>14s} {'gen s':>8s} {'out tokens':>10s} {'out tok/s':>10s}")
    for name, r in rows:
        if "actors" in r:
            name = name.replace("auto actors", f"{r['actors']} actors")
        print(f"{name:46s} {r['start_s']:14.1f} {r['gen_s']:8.2f} {r['tokens']:10d} {r['tokens'] / r['gen_s']:10.0f}")


if __name__ == "__main__":
    main()
