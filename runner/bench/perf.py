"""Benchmarks P1, P1b, P6, P7, P8 side by side in one run (issue 19), each on its own line:

    P1 pool/plain 1 engine: 0.97x (goal >= 0.95x)
    P1b pool 2 engines on 2 cores / plain on 1 core: 1.71x (goal >= 1.6x)
    P6 prompt tokens computed / distinct prompt tokens, 8 seeds per condition: 1.10 (goal <= 1.2)
    P7 4 adapter checkpoints / 1 adapter checkpoint, items per second: 0.93x (goal >= 0.9x)
    P8 adaptive / fixed seeds to half-width 0.05, samples drawn on the demo: 0.26x (goal <= 0.5x)

    python -m runner.bench.perf [--only P1,P6] [--items 512] [--p7-items 256] [--cache-dir DIR]

It reports and exits 0 whatever the figures (CI does not run it). Everything runs on the CPU
build with the tiny demo model; no figure here is a GPU figure.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

NAMES = ("P1", "P1b", "P6", "P7", "P8")


def bench_p1(items: int, cache_dir: str) -> list[str]:
    """The pool with 1 and 2 engines against one plain `LLM.generate` on 1 core (runner.bench.generation)."""
    from runner.bench.generation import bench_plain
    from runner.bench.pipeline import bench_items, run_generation_pool
    from runner.config import SweepConfig
    from runner.generation.specs import build_engine_spec

    ckpt, its = bench_items(items, cache_dir)
    plain = bench_plain(ckpt, its, "0", build_engine_spec(SweepConfig(), "cpu").engine_kwargs)
    one = run_generation_pool(ckpt, its, 1, grade=False, warm=True)
    two = run_generation_pool(ckpt, its, 2, grade=False, warm=True)
    base = plain["tokens"] / plain["wall_s"]
    r1, r2 = one["tokens"] / one["wall_s"] / base, two["tokens"] / two["wall_s"] / base
    same = sum(one["replies"][k] == v for k, v in plain["replies"].items())
    return [f"  P1 detail: {len(its)} prompts; plain {base:,.0f} out tok/s ({plain['wall_s']:.2f} s), pool 1 engine "
            f"{one['tokens'] / one['wall_s']:,.0f} ({one['wall_s']:.2f} s), 2 engines "
            f"{two['tokens'] / two['wall_s']:,.0f} ({two['wall_s']:.2f} s); replies identical to plain: "
            f"{same}/{len(its)}",
            f"P1 pool/plain 1 engine: {r1:.2f}x (goal >= 0.95x)",
            f"P1b pool 2 engines on 2 cores / plain on 1 core: {r2:.2f}x (goal >= 1.6x)"]


def _grid_items(ckpts, seeds: int, max_tokens: int, families=None):
    from runner.config import SamplingConfig
    from runner.grid import expand_grid
    from runner.plan import BUILTIN_SCENARIOS
    from runner.scenarios import load_packs

    packs = load_packs([BUILTIN_SCENARIOS], families)
    return [(c, list(expand_grid(packs, {}, [c], SamplingConfig(seeds=seeds, max_tokens=max_tokens))))
            for c in ckpts]


def bench_p6(cache_dir: str, seeds: int = 8) -> list[str]:
    """Every shipped pack's conditions x 8 seeds on one engine: prompt tokens vLLM computed over
    the tokens of the distinct prompts (1.0 = each prompt paid once); prefix caching off for reference."""
    from runner.bench.pipeline import bench_items, run_generation_pool
    from runner.generation.pretokenize import PromptTokenizer

    ckpt, _ = bench_items(1, cache_dir)
    ((_, items),) = _grid_items([ckpt], seeds, 16)
    ahead = PromptTokenizer(lambda _: True)
    distinct = {it.prompt_ids for it in ahead.prepare(ckpt, items)}
    distinct_tokens = sum(map(len, distinct))
    out = []
    for caching in (False, True):
        # Not warmed: a warm-up request would leave its prompt cached before the count starts.
        r = run_generation_pool(ckpt, items, 1, grade=False, warm=False,
                                engine_kwargs={"enable_prefix_caching": caching})
        p = r["prompt_tokens"]
        ratio = p["prompt_tokens_computed"] / distinct_tokens
        out.append(f"  P6 detail, prefix caching {'on' if caching else 'off'}: {len(items)} requests, "
                   f"{len(distinct)} distinct prompts of {distinct_tokens:,} tokens; vLLM counted "
                   f"{p['prompt_tokens_sent']:,} sent, {p['prompt_tokens_computed']:,} computed, "
                   f"{p['prompt_tokens_cached']:,} from the prefix cache; computed/distinct {ratio:.2f}")
    out.append(f"P6 prompt tokens computed / distinct prompt tokens, {seeds} seeds per condition: {ratio:.2f} "
               f"(goal <= 1.2)")
    return out


def bench_p7(cache_dir: str, items: int = 256) -> list[str]:
    """The same items over 4 adapter checkpoints of one base model vs all on 1 adapter, 1 engine."""
    from runner.bench.pipeline import bench_items, run_generation_pool
    from runner.checkpoints import discover_checkpoints
    from runner.config import ModelConfig
    from tests.lora_adapters import write_adapter  # the PEFT adapters the LoRA tests use

    base_ckpt, _ = bench_items(1, cache_dir)
    base = Path(base_ckpt.path)
    run = Path(tempfile.mkdtemp(prefix="p7-adapters-"))
    for i in range(1, 5):
        write_adapter(run / f"checkpoint-{i}", base, rank=8, seed=i)
    adapters = discover_checkpoints(ModelConfig(name="lora", path=str(run), base_model=str(base)))
    cycle = (32, 64, 128)

    def first(ckpts, n):
        """The first `n` items of each checkpoint's grid (8 seeds per condition), replies of varied length."""
        return [(c, [replace(it, sampling=replace(it.sampling, max_tokens=cycle[i % len(cycle)]))
                     for i, it in enumerate(its[:n])]) for c, its in _grid_items(ckpts, 8, 0, ["blackmail"])]

    # The same prefill work both ways: 1 adapter x n/8 conditions, or 4 adapters x n/32 conditions
    # (an adapter's prompts are cached apart from another's).
    one, four = first(adapters[:1], items), first(adapters, items // 4)
    r1 = run_generation_pool(None, None, 1, grade=False, warm=True, sources=one)
    r4 = run_generation_pool(None, None, 1, grade=False, warm=True, sources=four)
    rate1, rate4 = r1["items"] / r1["wall_s"], r4["items"] / r4["wall_s"]
    return [f"  P7 detail: {r1['items']} items, max_tokens {cycle}; 1 adapter {rate1:.1f} items/s "
            f"({r1['wall_s']:.2f} s, {r1['tokens']:,} out tokens), 4 adapters {rate4:.1f} items/s "
            f"({r4['wall_s']:.2f} s, {r4['tokens']:,} out tokens), max_loras 4, 1 engine",
            f"P7 4 adapter checkpoints / 1 adapter checkpoint, items per second: {rate4 / rate1:.2f}x (goal >= 0.9x)"]


def bench_p8(cache_dir: str, target: float = 0.05, min_seeds: int = 8, max_seeds: int = 128) -> list[str]:
    """A real adaptive sweep of the demo (planted rates 0.8/0.5/0.2/0.0 in one family, 0 elsewhere),
    against the fixed seed count that gives every cell the same half-width: the seeds of the cell
    that needed most (seeds are drawn in order, so a fixed grid of that many holds every cell's
    adaptive samples)."""
    from runner.commands.sweep import run_sweep
    from runner.config import load_config
    from runner.plan import plan_sweep

    out = Path(tempfile.mkdtemp(prefix="p8-"))
    cfg = load_config(None, [f"output.dir={out}", f"cache_dir={cache_dir}", "wandb.mode=disabled",
                             "report.auto=false", "sampling.adaptive.enabled=true",
                             f"sampling.adaptive.min_seeds={min_seeds}", f"sampling.adaptive.max_seeds={max_seeds}",
                             f"sampling.adaptive.target_halfwidth={target}"])
    t0 = time.perf_counter()
    s = run_sweep(cfg)
    wall = time.perf_counter() - t0
    cells = {(ck, k.split("/")[0]): v for ck, m in s.metrics.items() for k, v in m.items()
             if k.endswith("/adaptive_seeds")}
    stops = [m[k] for m in s.metrics.values() for k in m if k.endswith("/adaptive_stop")]
    conditions = {p.name: sum(1 for _ in p.conditions(cfg.scenarios.where)) for p in plan_sweep(cfg).packs}
    drawn = sum(seeds * conditions[fam] for (_, fam), seeds in cells.items())
    fixed_seeds = max(cells.values())
    fixed = fixed_seeds * sum(conditions.values()) * len(s.metrics)
    leaking = {ck: v for (ck, fam), v in cells.items() if fam == "leaking"}
    return [f"  P8 detail: {len(cells)} cells (checkpoint x family), min_seeds {min_seeds}, max_seeds {max_seeds}; "
            f"adaptive drew {drawn:,} samples ({s.rows_written:,} rows written, {sum(conditions.values())} conditions) in {wall:.0f} s; stops: "
            f"{stops.count('halfwidth')} half-width, {stops.count('max_seeds')} cap; leaking seeds per checkpoint "
            f"{dict(sorted(leaking.items()))}; fixed grid needs {fixed_seeds} seeds = {fixed:,} samples",
            f"P8 adaptive / fixed seeds to half-width {target:g}, samples drawn on the demo: {drawn / fixed:.2f}x "
            f"(goal <= 0.5x)"]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", default=",".join(NAMES), help="comma-separated subset of " + ", ".join(NAMES))
    ap.add_argument("--items", type=int, default=512, help="P1/P1b prompts")
    ap.add_argument("--p7-items", type=int, default=256, help="P7 items per run")
    ap.add_argument("--p8-min-seeds", type=int, default=8)
    ap.add_argument("--p8-max-seeds", type=int, default=128)
    ap.add_argument("--cache-dir", default="~/.cache/misalign-runner")
    args = ap.parse_args(argv)
    only = {n.strip() for n in args.only.split(",")}
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")

    from runner.config import RayConfig
    from runner.pipeline.ray_setup import init_ray

    init_ray(RayConfig())  # Ray up for every figure, as for any sweep
    print(f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f}; vLLM CPU build, tiny demo model")
    lines: list[str] = []
    runs = [("P1", lambda: bench_p1(args.items, args.cache_dir)), ("P6", lambda: bench_p6(args.cache_dir)),
            ("P7", lambda: bench_p7(args.cache_dir, args.p7_items)),
            ("P8", lambda: bench_p8(args.cache_dir, min_seeds=args.p8_min_seeds, max_seeds=args.p8_max_seeds))]
    for name, run in runs:
        if name in only or (name == "P1" and "P1b" in only):
            try:
                got = run()
            except Exception as e:  # noqa: BLE001 -- a benchmark reports; one failing does not hide the rest
                got = [f"{name} failed: {type(e).__name__}: {e}"]
            for line in got:
                print(line, flush=True)
            lines += [g for g in got if not g.startswith("  ")]
    print("summary:")
    for line in lines:
        print(line)


if __name__ == "__main__":
    main()
