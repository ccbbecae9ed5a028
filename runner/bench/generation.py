"""Benchmark P1: the sweep's generation stage against a plain `vllm.LLM.generate`, side by side.

Same prompts (the blackmail pack rendered through the demo model's chat template), same
sampling parameters and seeds, and replies of varied length as real replies are (max_tokens
cycling 32/64/128/256; the random-weight demo checkpoint writes to max_tokens, so the tail of
every batch is real). Engines are started and warmed before the clock starts; the timed part
is the sweep's pipeline (generation stage, then the rule stage) against one plain call.

    python -m runner.bench.generation [--items 512] [--batch-size 64] [--max-inflight 0]

Prints one line per configuration and the P1 ratios against their goals; nothing is timed
inside tests.
"""

from __future__ import annotations

import argparse
import os
import time


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
    wall_s = time.perf_counter() - t0
    tokens = sum(len(o.outputs[0].token_ids) for o in outs)
    replies = {it.item_id: o.outputs[0].text for it, o in zip(items, outs)}
    del llm
    return {"start_s": start_s, "wall_s": wall_s, "tokens": tokens, "replies": replies}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--items", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--max-inflight", type=int, default=0, help="requests in flight per engine; 0 = auto")
    ap.add_argument("--cache-dir", default="~/.cache/misalign-runner")
    args = ap.parse_args(argv)

    from runner.bench.pipeline import MAX_TOKENS_CYCLE, bench_items, run_generation_pool
    from runner.config import RayConfig, SweepConfig
    from runner.pipeline.ray_setup import init_ray
    from runner.specs import build_engine_spec

    # Random weights: replies run to their max_tokens (the planted demo stops after a few tokens).
    ckpt, items = bench_items(args.items, args.cache_dir)
    print(f"{len(items)} prompts, max_tokens cycling {MAX_TOKENS_CYCLE}, tiny random demo model, "
          f"{os.cpu_count()} CPUs")
    engine_kwargs = build_engine_spec(SweepConfig(), "cpu").engine_kwargs  # what the sweep passes vLLM
    plain = bench_plain(ckpt, items, "0", engine_kwargs)
    init_ray(RayConfig())
    one = run_generation_pool(ckpt, items, 1, args.batch_size, args.max_inflight, grade=True, warm=True)
    two = run_generation_pool(ckpt, items, 2, args.batch_size, args.max_inflight, grade=True, warm=True)
    print(f"{'configuration (warm engines; generation + rule grading)':64s} {'gen s':>7s} {'out tokens':>10s} "
          f"{'out tok/s':>10s}")
    for name, r in [("plain vllm.LLM.generate, 1 engine, 1 core, one call", plain),
                    (f"runner pipeline, 1 engine ({one['depth']} batches of {args.batch_size} in flight)", one),
                    (f"runner pipeline, 2 engines on 2 cores ({two['depth']} batches in flight each)", two)]:
        print(f"{name:64s} {r['wall_s']:7.2f} {r['tokens']:10d} {r['tokens'] / r['wall_s']:10.0f}")
    same = sum(one["replies"][k] == v for k, v in plain["replies"].items())
    print(f"identical replies, pipeline (1 engine) vs plain, same seeds: {same}/{len(items)}")
    rate = {k: r["tokens"] / r["wall_s"] for k, r in (("plain", plain), ("one", one), ("two", two))}
    print(f"P1 pool(1 actor)/plain: {rate['one'] / rate['plain']:.2f}x (goal >= 0.95x)")
    print(f"P1 pool(2 actors, 2 cores)/plain(1 core): {rate['two'] / rate['plain']:.2f}x (goal >= 1.6x)")


if __name__ == "__main__":
    main()
