"""Re-running a finished sweep: nothing starts, nothing is written (without Ray: there is nothing to run)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from runner.bench.driver import build_fake_run
from runner.config import load_config
from runner.grid import expand_grid
from runner.plan import nothing_left, plan_sweep
from runner.sinks.parquet import ParquetSink

REPO = Path(__file__).resolve().parent.parent


def _overrides(run: Path, out: Path) -> list[str]:
    return ["models.0.name=fake", f"models.0.path={run}", "scenarios.families=[blackmail]", "sampling.seeds=2",
            f"output.dir={out}", "wandb.mode=disabled"]


def _write_rows(cfg, plan, out: Path, status=lambda item: "ok") -> int:
    items = list(expand_grid(plan.packs, cfg.scenarios.where, plan.checkpoints, cfg.sampling))
    ParquetSink(out, "earlier").write([
        {"run_id": "earlier", "item_id": it.item_id, "scenario": it.scenario, "condition": it.condition,
         "model": it.model, "checkpoint": it.checkpoint, "checkpoint_step": it.checkpoint_step, "seed": it.seed,
         "response": "done", "status": status(it), "schema_version": 1} for it in items])
    return len(items)


def test_rerun_of_a_finished_sweep_starts_neither_ray_nor_vllm_and_writes_nothing(tmp_path):
    run, out = build_fake_run(tmp_path / "run", 2), tmp_path / "results"
    cfg = load_config(None, _overrides(run, out))
    n = _write_rows(cfg, plan_sweep(cfg), out)
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    script = ("import json, sys; from runner.cli import main; rc = main(sys.argv[1:]); "
              "print(json.dumps([rc, 'ray' in sys.modules, 'vllm' in sys.modules]))")
    proc = subprocess.run([sys.executable, "-c", script, "sweep", *_overrides(run, out)],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert f"0 new rows, {n} items already done" in proc.stdout
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == [0, False, False]  # Ray never even imported
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before  # not even a _runs/ record


def test_an_item_without_an_ok_row_is_left_to_do(tmp_path):
    run, out = build_fake_run(tmp_path / "run", 2), tmp_path / "results"
    cfg = load_config(None, _overrides(run, out))
    plan = plan_sweep(cfg)
    assert not nothing_left(plan)  # empty dataset
    last = list(expand_grid(plan.packs, cfg.scenarios.where, plan.checkpoints, cfg.sampling))[-1]
    _write_rows(cfg, plan, out, status=lambda it: "error" if it.item_id == last.item_id else "ok")
    assert not nothing_left(plan)  # the last item of the last checkpoint only has an error row
    ParquetSink(out, "retry").write([{"run_id": "retry", "item_id": last.item_id, "scenario": last.scenario,
                                      "status": "ok", "schema_version": 1}])
    assert nothing_left(plan)
