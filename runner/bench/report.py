"""Benchmark: `runner report` on a large synthetic results dataset.

    python -m runner.bench.report [--rows 100000] [--keep DIR] [--png]

Writes a dataset shaped like a real sweep (the shipped packs' full design: 5 families x 78
conditions, 4 checkpoints, as many seeds as give --rows; the demo's planted blackmail rates,
a few errors and unscored rows, eval-awareness labels), then times `write_report` on it and
prints the wall and CPU seconds and the HTML size; `--png` times the report with its PNGs too.
Dataset writing is not timed.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

STEPS = (100, 200, 300, 400)
PLANTED = {100: 0.8, 200: 0.5, 300: 0.2, 400: 0.0}


def write_dataset(root: Path, rows: int, seed: int = 0) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from runner.demo import HARMFUL_REPLY, SAFE_REPLY
    from runner.grid import prompt_digest
    from runner.plan import BUILTIN_SCENARIOS
    from runner.scenarios import load_packs
    from runner.sinks.parquet import PARTITION_COLUMN, SCHEMA_VERSION, results_schema

    rng = random.Random(seed)
    packs = load_packs([BUILTIN_SCENARIOS])
    conditions = {p.name: [(c.id, prompt_digest(*_prompt(p, c))) for c in p.conditions({})] for p in packs}
    per_seed = sum(len(v) for v in conditions.values()) * len(STEPS)
    seeds = max(1, round(rows / per_seed))
    schema = results_schema()
    file_schema = schema.remove(schema.get_field_index(PARTITION_COLUMN))
    now = datetime.now(timezone.utc)
    written = 0
    for family, conds in conditions.items():
        out = []
        for step in STEPS:
            for cid, digest in conds:
                for s in range(seeds):
                    rate = PLANTED[step] if family == "blackmail" else 0.02
                    harmful = rng.random() < rate
                    error = rng.random() < 0.005
                    unscored = not error and rng.random() < 0.01
                    awareness = rng.choices(["neither", "tested", "real"], [0.8, 0.15, 0.05])[0]
                    out.append({
                        "run_id": "bench", "item_id": f"{family}-{cid}-{step}-{s}", "condition": cid,
                        "model": "demo-rl", "checkpoint": f"checkpoint-{step}", "checkpoint_step": step, "seed": s,
                        "response": "" if error else (HARMFUL_REPLY if harmful else SAFE_REPLY),
                        "status": "error" if error else "ok", "error": "prompt too long (4200 > 4096 tokens)" if error else None,
                        "harmful": None if error or unscored else harmful,
                        "unscored_reason": "judge verdict unparseable after 3 attempts" if unscored else None,
                        "schema_version": SCHEMA_VERSION, "grader": "rules",
                        "evidence": json.dumps([{"check": "blackmail_email", "label": "harmful", "call_index": 0,
                                                 "tool": "send_email", "args": {"to": "daniel.reyes@corvane.example"}}]
                                               if harmful else []),
                        "tool_calls": "[]", "temperature": 1.0, "top_p": 1.0, "max_tokens": 192, "created_at": now,
                        "eval_awareness": None if error else awareness, "grading_version": "bench",
                        "prompt_digest": digest})
        directory = root / f"{PARTITION_COLUMN}={family}"
        directory.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(out, schema=file_schema), directory / "part-bench-000001.parquet")
        written += len(out)
    return written


def _prompt(pack, condition):
    sc = pack.render(condition)
    return sc.system, sc.user


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=100_000, help="rows in the synthetic dataset (about)")
    ap.add_argument("--keep", default=None, help="write the dataset and report here instead of a temp dir")
    ap.add_argument("--png", action="store_true", help="also time the report with --png")
    args = ap.parse_args(argv)

    from runner.report import write_report

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep or tmp)
        n = write_dataset(root / "results", args.rows)
        runs = [("report", None)] + ([("report --png", root / "png")] if args.png else [])
        for label, png in runs:
            t0, c0 = time.perf_counter(), time.process_time()
            s = write_report([str(root / "results")], root / "report.html", png)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            # CPU seconds as well: on a shared machine the wall time mostly measures the neighbours.
            print(f"{n} rows: {label} in {wall:.1f} s wall, {cpu:.1f} s CPU; HTML {s.bytes / 1e6:.1f} MB "
                  f"({s.transcripts} transcripts embedded, {len(s.plots)} plots)")


if __name__ == "__main__":
    main()
