"""Benchmark: the cost of moving an engine to the next checkpoint, weight swap vs fresh engine.

    python -m runner.bench.switch [--cache-dir ~/.cache/misalign-runner]

Loads the demo run's checkpoints one after another, first with a fresh engine each time, then
with in-place weight swaps (after the one-off equality check), and prints seconds per switch.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cache-dir", default="~/.cache/misalign-runner")
    ap.add_argument("--rounds", type=int, default=3, help="passes over the checkpoints")
    args = ap.parse_args(argv)
    os.environ.update(VLLM_ENABLE_V1_MULTIPROCESSING="0", VLLM_CPU_KVCACHE_SPACE="1",
                      VLLM_CPU_OMP_THREADS_BIND="0", VLLM_LOGGING_LEVEL="WARNING")

    from runner.checkpoints import discover_checkpoints
    from runner.config import ModelConfig, SweepConfig
    from runner.demo import ensure_demo_run
    from runner.generation.specs import build_engine_spec
    from runner.generation.vllm_backend import VllmBackend, import_vllm
    from runner.plan import BUILTIN_SCENARIOS

    import_vllm()  # pay the import once, outside the timings
    run = ensure_demo_run(Path(args.cache_dir).expanduser(), scenarios_dir=BUILTIN_SCENARIOS)
    ckpts = discover_checkpoints(ModelConfig(name="demo", path=str(run)))
    spec = build_engine_spec(SweepConfig(), "cpu")

    def timed_loads(weight_swap: bool) -> tuple[list[float], dict]:
        from dataclasses import replace

        backend = VllmBackend(replace(spec, weight_swap=weight_swap))
        backend.load(ckpts[0])
        backend.load(ckpts[1])  # with swaps on: the one-off equality check happens here
        times = []
        for _ in range(args.rounds):
            for c in ckpts[2:] + ckpts[:2]:
                t0 = time.perf_counter()
                backend.load(c)
                times.append(time.perf_counter() - t0)
        counts = dict(backend.counts)
        backend.close()
        return times, counts

    fresh, fresh_counts = timed_loads(False)
    swap, swap_counts = timed_loads(True)
    print(f"{len(ckpts)} checkpoints of the demo model, {len(fresh)} timed switches each way")
    print(f"{'switch':22s} {'median s':>9s} {'min s':>8s} {'max s':>8s}  counts")
    for name, ts, counts in (("fresh engine", fresh, fresh_counts), ("weight swap", swap, swap_counts)):
        print(f"{name:22s} {statistics.median(ts):9.3f} {min(ts):8.3f} {max(ts):8.3f}  {counts}")


if __name__ == "__main__":
    main()
