"""Benchmark P1: the sweep's generation stage against a plain `vllm.LLM.generate`, side by side.

Same prompts (the blackmail pack rendered through the demo model's chat template), same
sampling parameters and seeds, and replies of varied length as real replies are (max_tokens
cycling 32/64/128/256; the random-weight demo checkpoint writes to max_tokens, so the tail of
every batch is real). Engines are started and warmed before the clock starts; the timed part
is the sweep's generation stage through the pipeline loop (alone, as P1 defines the pool, and
with the rule stage after it, as a sweep runs) against building the same prompts and one plain
call. Ray is up for all, as it is for any sweep.

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

    def ids(it):  # the prompt the runner sends: the pack's tools rendered by the chat template
        tools = {"tools": it.tool_list()} if it.tool_list() else {}
        out = tok.apply_chat_template(it.messages(), add_generation_prompt=True, tokenize=True, **tools)
        return list(out["input_ids"] if hasattr(out, "keys") else out)

    llm.generate([TokensPrompt(prompt_token_ids=ids(it)) for it in items[:2]], use_tqdm=False)  # warm-up
    # The clock includes building the prompts: the runner's engines render and tokenize theirs too.
    t0 = time.perf_counter()
    prompts = [TokensPrompt(prompt_token_ids=ids(it)) for it in items]
    # As the runner's engine (a native tool parser reads special tokens, so they are kept).
    params = [vllm.SamplingParams(temperature=it.sampling.temperature, top_p=it.sampling.top_p,
                                  max_tokens=it.sampling.max_tokens, seed=it.engine_seed,
                                  skip_special_tokens=False) for it in items]
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
    from runner.generation.specs import build_engine_spec
    from runner.pipeline.ray_setup import init_ray

    # Random weights: replies run to their max_tokens (the planted demo stops after a few tokens).
    ckpt, items = bench_items(args.items, args.cache_dir)
    print(f"{len(items)} prompts, max_tokens cycling {MAX_TOKENS_CYCLE}, tiny random demo model, "
          f"{os.cpu_count()} CPUs")
    engine_kwargs = build_engine_spec(SweepConfig(), "cpu").engine_kwargs  # what the sweep passes vLLM
    # Ray first: its daemons share the 2 cores with whichever engine is being timed.
    init_ray(RayConfig())
    plain = bench_plain(ckpt, items, "0", engine_kwargs)
    runs = {(n, grade): run_generation_pool(ckpt, items, n, args.batch_size, args.max_inflight, grade=grade, warm=True)
            for n in (1, 2) for grade in (False, True)}
    depth = runs[(1, False)]["depth"]
    print(f"{'configuration (warm engines)':72s} {'s':>6s} {'out tokens':>10s} {'out tok/s':>10s}")
    rows = [("plain vllm.LLM.generate, 1 engine, 1 core, one call (prompts built in the clock)", plain)]
    for (n, grade), r in runs.items():
        what = "generation pool + rule grading" if grade else "generation pool"
        rows.append((f"runner {what}, {n} engine(s) on {n} core(s), {depth} batches of {args.batch_size} each", r))
    for name, r in rows:
        print(f"{name:72s} {r['wall_s']:6.2f} {r['tokens']:10d} {r['tokens'] / r['wall_s']:10.0f}")
    same = sum(runs[(1, False)]["replies"][k] == v for k, v in plain["replies"].items())
    print(f"identical replies, pool (1 engine) vs plain, same seeds: {same}/{len(items)}")
    rate = {k: r["tokens"] / r["wall_s"] for k, r in runs.items()}
    base = plain["tokens"] / plain["wall_s"]
    print(f"P1 pool/plain 1 engine: {rate[(1, False)] / base:.2f}x (goal >= 0.95x); "
          f"with rule grading {rate[(1, True)] / base:.2f}x")
    print(f"P1b pool 2 engines on 2 cores / plain on 1 core: {rate[(2, False)] / base:.2f}x (goal >= 1.6x); "
          f"with rule grading {rate[(2, True)] / base:.2f}x")

if __name__ == "__main__":
    main()
