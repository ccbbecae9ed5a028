"""Benchmark P2: the same prompts through Ray Data LLM and through this runner's generation pool.

    python -m runner.bench.ray_data_llm [--items 256] [--timeout 900]

Same model (the random-weight demo model), same engine arguments, same sampling parameters and
seeds, one engine on one core each. Wall time runs from building the pipeline (engine start
included) to the last reply; each half runs in its own process with its own local Ray, whose
start-up is not counted for either. Prints one line:

    P2 runner/ray-data-llm wall: 2.3x (goal >= 2x) ...

Ray Data LLM on CPU (ray 2.60): `vLLMEngineStage` asks Ray for `num_gpus = tp x pp` per engine
unless `placement_group_config` is given, so on a cluster without GPUs the engine actor is never
scheduled and the dataset waits forever without an error. A placement group of CPU bundles makes
it ask for CPUs instead (`num_cpus` = the bundles' CPUs, no GPU); the vLLM CPU build then picks
the CPU platform by itself. Its CPU stages (chat template, tokenizer) are actors too and get a
fraction of a core so they fit beside the engine; detokenizing is left off (vLLM already returns
the text).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time

P2_GOAL = 2.0
ENGINE_CORE = "0"
LIGHT_STAGE_CPUS = 0.1  # Ray Data LLM's CPU-side stages (templating, tokenizing, row mapping)


def engine_env() -> dict[str, str]:
    """What the runner's actor sets for its engine on CPU (one core)."""
    return {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": ENGINE_CORE, "OMP_NUM_THREADS": "1",
            "VLLM_LOGGING_LEVEL": "WARNING"}


def runner_engine_kwargs(ckpt) -> dict:
    """The engine arguments this runner's vLLM backend passes for `ckpt` on CPU."""
    from runner.config import SweepConfig
    from runner.generation.specs import build_engine_spec

    spec = build_engine_spec(SweepConfig(), "cpu")
    return {"tokenizer": ckpt.tokenizer, "dtype": spec.dtype, "max_model_len": spec.max_model_len,
            "tensor_parallel_size": 1, "enforce_eager": True, "seed": 0, **spec.engine_kwargs}


def run_ray_data_llm(ckpt, items, timeout_s: float = 900.0, batch_size: int = 64) -> dict:
    """Generate `items` with `ray.data.llm` (Ray must be up). Returns wall seconds from building
    the processor to the last reply and output tokens, or {"error": why} when it cannot run."""
    import ray
    from ray.data.llm import build_processor, vLLMEngineProcessorConfig

    rows = [{"messages": it.messages(),
             "sampling_params": {"temperature": it.sampling.temperature, "top_p": it.sampling.top_p,
                                 "max_tokens": it.sampling.max_tokens, "seed": it.engine_seed}} for it in items]
    t0 = time.perf_counter()
    config = vLLMEngineProcessorConfig(
        model_source=ckpt.path,
        engine_kwargs=runner_engine_kwargs(ckpt),
        runtime_env={"env_vars": engine_env()},
        batch_size=batch_size,
        concurrency=1,
        # Without this the engine asks for a GPU and never schedules on a CPU-only cluster.
        placement_group_config={"bundles": [{"CPU": 1}]},
        chat_template_stage={"model_source": ckpt.tokenizer, "num_cpus": LIGHT_STAGE_CPUS},
        tokenize_stage={"model_source": ckpt.tokenizer, "num_cpus": LIGHT_STAGE_CPUS},
        detokenize_stage=False,
        log_engine_metrics=False,
    )
    # Its row-mapping tasks ask for a whole CPU each by default: beside a 1-CPU engine on a
    # 2-CPU cluster they are held back by Ray Data's resource budget and nothing moves.
    light = {"num_cpus": LIGHT_STAGE_CPUS}
    processor = build_processor(config, preprocess_map_kwargs=light, postprocess_map_kwargs=light)
    result: dict = {}

    def consume() -> None:
        try:
            tokens = n = 0
            for r in processor(ray.data.from_items(rows)).iter_rows():
                result.setdefault("first_s", time.perf_counter() - t0)
                tokens += int(r["num_generated_tokens"])
                n += 1
            result["tokens"], result["rows"] = tokens, n
        except Exception as e:  # reported, not raised: the benchmark prints why
            result["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"

    worker = threading.Thread(target=consume, daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        return {"error": f"no result after {timeout_s:.0f}s; {_stuck_reason()}"}
    if "error" in result:
        return result
    return {"wall_s": time.perf_counter() - t0, "first_s": result["first_s"], "tokens": result["tokens"],
            "rows": result["rows"]}


def _stuck_reason() -> str:
    """What Ray can tell about a pipeline that makes no progress: resources left unclaimed."""
    import ray

    def cpu_gpu(res: dict) -> dict:
        return {k: round(v, 2) for k, v in res.items() if k in ("CPU", "GPU")}

    return (f"cluster {cpu_gpu(ray.cluster_resources())}, available {cpu_gpu(ray.available_resources())} "
            f"(an actor or task waiting for resources the cluster lacks never fails, it waits)")


def _half(which: str, n_items: int, timeout_s: float) -> dict:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    from runner.bench.pipeline import bench_items, run_generation_pool

    ckpt, items = bench_items(n_items)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    try:
        if which == "runner":
            return run_generation_pool(ckpt, items, n_actors=1)
        return run_ray_data_llm(ckpt, items, timeout_s)
    finally:
        ray.shutdown()


def _run_half(which: str, n_items: int, timeout_s: float) -> dict:
    cmd = [sys.executable, "-m", "runner.bench.ray_data_llm", "_half", which, str(n_items), str(timeout_s)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s + 300)
    except subprocess.TimeoutExpired:
        return {"error": f"the {which} half did not finish in {timeout_s + 300:.0f}s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"the {which} half exited {proc.returncode}: {tail}"}
    return json.loads(lines[-1])


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_half":  # inside a child process
        print(json.dumps(_half(argv[1], int(argv[2]), float(argv[3]))))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--items", type=int, default=256)
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds before Ray Data LLM counts as stuck")
    args = ap.parse_args(argv)
    from runner.bench.pipeline import bench_items

    bench_items(args.items)  # build the demo model once, outside both timings
    ours = _run_half("runner", args.items, args.timeout)
    theirs = _run_half("ray", args.items, args.timeout)
    if "error" in ours:
        print(f"P2 runner/ray-data-llm wall: n/a (goal >= {P2_GOAL:.0f}x): the runner's pool failed: {ours['error']}")
    elif "error" in theirs:
        print(f"P2 runner/ray-data-llm wall: n/a (goal >= {P2_GOAL:.0f}x): Ray Data LLM did not run on CPU: "
              f"{theirs['error']}; runner {ours['wall_s']:.1f}s for {ours['tokens']} tokens")
    else:
        print(f"P2 runner/ray-data-llm wall: {theirs['wall_s'] / ours['wall_s']:.1f}x (goal >= {P2_GOAL:.0f}x): "
              f"runner {ours['wall_s']:.1f}s (first reply {ours['first_s']:.1f}s) / {ours['tokens']} tokens, "
              f"Ray Data LLM {theirs['wall_s']:.1f}s (first reply {theirs['first_s']:.1f}s) / {theirs['tokens']} "
              f"tokens; {args.items} prompts, 1 engine on 1 core each, engine start included")


if __name__ == "__main__":
    main()
