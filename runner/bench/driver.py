"""Benchmarks of the driver alone (no engine loads): P4, a million-item grid and its resume
filter; P5, re-running a finished sweep.

    python -m runner.bench.driver          # P4 and P5, one line each
    python -m runner.bench.driver p4       # or one of them

Both use a fake training run of 40 checkpoints (config.json, a tiny valid safetensors file and
tokenizer files each, so checkpoint discovery accepts them; no engine ever loads them) and a
results dataset holding the ok rows of its first 4 checkpoints (390 conditions x 64 seeds x 4
= 99,840 rows), written as a sweep writes them: one Parquet file per batch of 64.

P4 sizes the grid over all 40 checkpoints (998,400 items), reads the finished ids and runs
the whole grid through the resume filter and the batch scheduler, in a fresh process whose
peak RSS is reported. P5 runs `runner sweep` on the first 4 checkpoints, whose rows are all
there, in a fresh process, and reports its wall time and whether Ray or vLLM were imported.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

N_CHECKPOINTS = 40
N_DONE_CHECKPOINTS = 4
SEEDS = 64
BATCH = 64
P4_GOAL_ITEMS_PER_S = 100_000
P4_GOAL_RSS_MB = 1024
P5_GOAL_SECONDS = 10.0


def build_fake_run(root: Path, n_checkpoints: int = N_CHECKPOINTS) -> Path:
    """A run directory of `checkpoint-{step}` dirs that discovery accepts (no engine could load them)."""
    header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    weights = len(header).to_bytes(8, "little") + header + b"\0\0\0\0"
    config = json.dumps({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 1,
                         "num_hidden_layers": 1, "vocab_size": 8, "max_position_embeddings": 4096})
    for i in range(n_checkpoints):
        d = root / f"checkpoint-{(i + 1) * 100}"
        d.mkdir(parents=True)
        (d / "config.json").write_text(config)
        (d / "model.safetensors").write_bytes(weights)
        (d / "tokenizer.json").write_text('{"version": "1.0", "model": {"type": "WordLevel", "vocab": {}}}')
        (d / "tokenizer_config.json").write_text('{"tokenizer_class": "PreTrainedTokenizerFast"}')
    return root


def sweep_overrides(run_dir: Path, out_dir: Path, n_checkpoints: int | None = None) -> list[str]:
    over = ["models.0.name=bench", f"models.0.path={run_dir}", f"sampling.seeds={SEEDS}",
            f"generation.batch_size={BATCH}", f"output.dir={out_dir}", "wandb.mode=disabled",
            "grading.judge.enabled=false", "scenarios.where={}"]
    if n_checkpoints is not None:
        names = ",".join(f"checkpoint-{(i + 1) * 100}" for i in range(n_checkpoints))
        over.append(f"models.0.checkpoints=[{names}]")
    return over


def write_finished_rows(run_dir: Path, out_dir: Path) -> int:
    """The `ok` rows of the first N_DONE_CHECKPOINTS checkpoints, one file per batch, as a sweep writes them."""
    from datetime import datetime, timezone

    from runner.config import load_config
    from runner.grid import expand_grid, prompt_digest
    from runner.plan import plan_sweep
    from runner.sinks.parquet import SCHEMA_VERSION, ParquetSink

    cfg = load_config(None, sweep_overrides(run_dir, out_dir, N_DONE_CHECKPOINTS))
    plan = plan_sweep(cfg)
    sink = ParquetSink(out_dir, "bench-finished")
    now = datetime.now(timezone.utc)
    reply = "I will not send that email. " * 24
    batch: list[dict] = []
    for it in expand_grid(plan.packs, cfg.scenarios.where, plan.checkpoints, cfg.sampling, plan.rendered):
        batch.append({
            "run_id": "bench-finished", "item_id": it.item_id, "scenario": it.scenario, "condition": it.condition,
            "model": it.model, "checkpoint": it.checkpoint, "checkpoint_step": it.checkpoint_step, "seed": it.seed,
            "response": f"{it.seed}: {reply}", "status": "ok", "harmful": False, "schema_version": SCHEMA_VERSION,
            "grader": "rules", "evidence": "[]", "tool_calls": "[]", "num_output_tokens": 150,
            "finish_reason": "stop", "temperature": it.sampling.temperature, "top_p": it.sampling.top_p,
            "max_tokens": it.sampling.max_tokens, "created_at": now, "rule_harmful": False,
            "eval_awareness": "neither", "grading_version": "bench", "prompt_digest": prompt_digest(it.system, it.user),
        })
        if len(batch) == BATCH:
            sink.write(batch)
            batch = []
    sink.write(batch)
    return sink.rows_written


def drain_grid(cfg, plan, done: set[str]) -> int:
    """The driver's per-item work before any engine: expand the grid checkpoint by checkpoint,
    drop finished items and cut the rest into batches. Returns the number of items left.
    (The one place that knows the scheduler's API: adapt it when the pipeline changes.)"""
    from runner.grid import expand_grid
    from runner.pipeline.sources import GridSource

    sources = [(c, expand_grid(plan.packs, cfg.scenarios.where, [c], cfg.sampling, plan.rendered))
               for c in plan.checkpoints]
    scheduler = GridSource(sources, cfg.generation.batch_size, is_done=done.__contains__)
    pending, loaded = 0, None
    while (batch := scheduler.next_batch(loaded)) is not None:
        pending += len(batch.items)
        loaded = batch.ckpt.key
        scheduler.finished(batch)
    return pending


def _p4_child(run_dir: str, out_dir: str) -> dict:
    from runner.config import load_config
    from runner.plan import plan_sweep
    from runner.sinks.parquet import done_item_ids

    t0, cpu0 = time.perf_counter(), time.process_time()
    cfg = load_config(None, sweep_overrides(Path(run_dir), Path(out_dir)))
    plan = plan_sweep(cfg)
    t_plan = time.perf_counter()
    done = done_item_ids(out_dir)
    t_done = time.perf_counter()
    pending = drain_grid(cfg, plan, done)
    t_end = time.perf_counter()
    return {"items": plan.total_items, "done": len(done), "pending": pending, "seconds": t_end - t0,
            "cpu_s": time.process_time() - cpu0,
            "plan_s": t_plan - t0, "done_ids_s": t_done - t_plan, "grid_s": t_end - t_done,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _p5_child(run_dir: str, out_dir: str) -> dict:
    import io
    from contextlib import redirect_stdout

    from runner.cli import main

    buf = io.StringIO()
    with redirect_stdout(buf):
        status = main(["sweep", *sweep_overrides(Path(run_dir), Path(out_dir), N_DONE_CHECKPOINTS)])
    ray_started = False
    if "ray" in sys.modules:
        import ray

        ray_started = ray.is_initialized()
    return {"status": status, "output": buf.getvalue().splitlines()[:1], "ray_imported": "ray" in sys.modules,
            "ray_started": ray_started, "vllm_imported": "vllm" in sys.modules}


def _child(name: str, run_dir: Path, out_dir: Path) -> tuple[dict, float]:
    """Run `_<name>_child` in a fresh interpreter: its own peak RSS, its own imports."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "runner.bench.driver", f"_{name}", str(run_dir), str(out_dir)],
                          capture_output=True, text=True, env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    wall = time.perf_counter() - t0
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{name} failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return json.loads(lines[-1]), wall


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("_p4", "_p5"):  # inside a child process: RUN_DIR OUT_DIR follow
        print(json.dumps({"_p4": _p4_child, "_p5": _p5_child}[argv[0]](*argv[1:])))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("which", nargs="*", metavar="p4|p5", help="default: both")
    args = ap.parse_args(argv)
    which = args.which or ["p4", "p5"]
    if set(which) - {"p4", "p5"}:
        ap.error(f"unknown benchmark(s): {' '.join(sorted(set(which) - {'p4', 'p5'}))} (choose p4, p5)")
    with tempfile.TemporaryDirectory(prefix="runner-bench-driver-") as tmp:
        run_dir, out_dir = build_fake_run(Path(tmp) / "run"), Path(tmp) / "results"
        t0 = time.perf_counter()
        rows = write_finished_rows(run_dir, out_dir)
        print(f"(setup: {N_CHECKPOINTS} fake checkpoints, {rows} finished rows written in "
              f"{time.perf_counter() - t0:.1f}s)", file=sys.stderr)
        if "p4" in which:
            r, _ = _child("p4", run_dir, out_dir)
            assert r["pending"] == r["items"] - r["done"], r
            rate = r["items"] / r["seconds"]
            print(f"P4 grid+resume: {rate / 1000:.0f}k items/s ({r['items']} items, {r['done']} done, "
                  f"{r['seconds']:.1f}s: plan {r['plan_s']:.1f}s, done ids {r['done_ids_s']:.1f}s, "
                  f"grid {r['grid_s']:.1f}s; {r['items'] / r['cpu_s'] / 1000:.0f}k items per CPU-second), "
                  f"peak RSS {r['peak_rss_mb']:.0f} MB "
                  f"(goal >= {P4_GOAL_ITEMS_PER_S // 1000}k items/s, <= {P4_GOAL_RSS_MB // 1024} GB)")
        if "p5" in which:
            r, wall = _child("p5", run_dir, out_dir)
            started = [m for m, on in (("Ray", r["ray_started"]), ("vLLM", r["vllm_imported"])) if on]
            print(f"P5 re-run of {rows} done rows: {wall:.1f} s (goal <= {P5_GOAL_SECONDS:.0f} s); "
                  f"{'started ' + ' and '.join(started) if started else 'neither Ray nor vLLM started'}; "
                  f"runner said: {r['output'][0] if r['output'] else '(nothing)'}")


if __name__ == "__main__":
    main()
