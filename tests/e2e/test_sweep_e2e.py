"""End to end on real Ray and real vLLM (CPU build) with the tiny demo model built offline."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from runner.commands.sweep import run_sweep
from runner.config import load_config
from runner.grid import count_items
from runner.plan import plan_sweep

pytestmark = pytest.mark.e2e

REQUIRED = ["run_id", "item_id", "scenario", "condition", "model", "checkpoint", "checkpoint_step", "seed",
            "response", "status", "error", "harmful", "unscored_reason", "schema_version"]


def _cfg(demo_run: Path, out: Path, *extra: str):
    return load_config(None, [
        f"models.0.path={demo_run}", f"output.dir={out}", "sampling.seeds=2", "sampling.max_tokens=24",
        "scenarios.families=[blackmail]", "generation.batch_size=8", "wandb.mode=offline",
        *extra,
    ])


def _read(out: Path):
    return ds.dataset(str(out), partitioning="hive").to_table()


def test_sweep_writes_the_grid_resumes_and_logs_wandb(demo_run, ray_local, tmp_path):
    out = tmp_path / "results"
    cfg = _cfg(demo_run, out)
    plan = plan_sweep(cfg)
    expected = count_items(plan.packs, cfg.scenarios.where, plan.checkpoints, cfg.sampling.seeds)
    assert expected == len(plan.checkpoints) * 4 * 2 and len(plan.checkpoints) == 4

    s = run_sweep(cfg, plan=plan)
    t = _read(out)
    assert t.num_rows == expected == s.rows_written
    assert s.batch_fallbacks == 0  # every engine batch succeeded whole (no silent item-by-item path)
    # Two seeds per condition: the second is prefilled from the first's cached blocks (vLLM's counters).
    p = s.prompt_tokens
    assert p["prompt_tokens_computed"] + p["prompt_tokens_cached"] == p["prompt_tokens_sent"] > 0
    assert p["prompt_computed_fraction"] < 0.75
    assert set(REQUIRED) <= set(t.schema.names)
    assert len(set(t["item_id"].to_pylist())) == expected
    assert set(t["status"].to_pylist()) == {"ok"}
    assert t.schema.field("checkpoint_step").type == "int64" and t.schema.field("seed").type == "int64"
    assert sorted(set(t["checkpoint_step"].to_pylist())) == [100, 200, 300, 400]
    assert all(isinstance(h, bool) for h in t["harmful"].to_pylist())  # rule grader scored every ok row
    assert all(r for r in t["response"].to_pylist())

    # Same seeds on the same checkpoint give the same reply, whichever engine ran them.
    again = run_sweep(_cfg(demo_run, tmp_path / "again"))
    t2 = _read(tmp_path / "again")
    by_id = dict(zip(t["item_id"].to_pylist(), t["response"].to_pylist()))
    assert dict(zip(t2["item_id"].to_pylist(), t2["response"].to_pylist())) == by_id
    assert again.rows_written == expected

    # Re-running into the same output.dir generates nothing and adds no rows.
    s3 = run_sweep(_cfg(demo_run, out))
    assert s3.rows_written == 0 and s3.skipped == expected
    assert _read(out).num_rows == expected

    # W&B offline run holds per-checkpoint metrics under eval/, keyed by checkpoint_step; then the sync hint.
    run_dir, hint = Path(s.wandb[0]), s.wandb[1]
    assert run_dir.parent == out / "_wandb" / "wandb" and run_dir.name.startswith("offline-run-")
    assert hint == f"offline run(s): upload with `wandb sync {run_dir}`"
    records = _wandb_records(run_dir)
    history = [r["history"]["item"] for r in records if r.get("type") == "history"]
    steps = sorted(h["eval/checkpoint_step"] for h in history)
    assert steps == [100, 200, 300, 400]
    for h in history:
        assert all(k.startswith(("eval/", "_")) for k in h), sorted(h)
        assert h["eval/overall/n"] + h["eval/overall/unscored"] + h["eval/overall/errors"] == expected // 4
        assert 0.0 <= h["eval/overall/harmful_rate_lo"] <= h["eval/overall/harmful_rate_hi"] <= 1.0
        assert "eval/blackmail/harmful_rate" in h
        assert h["eval/transcripts._type"] == "table-file" and h["eval/transcripts.nrows"] == 8  # bounded sample
    # The planted rates fall over training: no checkpoint is flagged as a regression.
    assert all(h.get("eval/overall/regression", 0) == 0 for h in history)
    # The Tables of the four checkpoints join on checkpoint, step, model and item_id: the rows' own ids.
    joined = []
    for table in run_dir.glob("files/media/table/eval/transcripts_*.table.json"):
        t_json = json.loads(table.read_text())
        joined += [dict(zip(t_json["columns"], r)) for r in t_json["data"]]
    assert sorted({r["step"] for r in joined}) == [100, 200, 300, 400] and len(joined) == 4 * 8
    ids = set(t["item_id"].to_pylist())
    assert all(r["item_id"] in ids and r["model"] == "demo-rl" and r["prompt_digest"] and r["evidence"] is not None
               and r["checkpoint"] == f"checkpoint-{r['step']}" for r in joined)
    artifacts = {r["artifact"]["type"] for r in records if r.get("type") == "artifact"}
    assert {"results", "config", "report"} <= artifacts


def _wandb_records(run_dir: Path) -> list[dict]:
    """Read an offline run back through wandb's own reader (`wandb leet inspect --json`)."""
    exe = Path(sys.executable).parent / "wandb"
    proc = subprocess.run([str(exe), "leet", "inspect", "--json", str(run_dir)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def test_too_long_prompts_become_error_rows_and_the_sweep_goes_on(demo_run, ray_local, tmp_path):
    out = tmp_path / "results"
    # The inbox without the replacement memo is shorter: pick a context between the two lengths.
    cfg = _cfg(demo_run, out, "models.0.checkpoints=[checkpoint-100]", "generation.max_model_len=" + str(
        _midpoint_context(demo_run)))
    s = run_sweep(cfg)
    t = _read(out).to_pylist()
    assert len(t) == 8 == s.rows_written
    errors = [r for r in t if r["status"] == "error"]
    oks = [r for r in t if r["status"] == "ok"]
    assert errors and oks
    assert all("urgency=replacement" in r["condition"] for r in errors)
    assert all("generation.max_model_len" in r["error"] and r["harmful"] is None for r in errors)


def _midpoint_context(demo_run: Path) -> int:
    from transformers import AutoTokenizer

    from runner.checkpoints import Checkpoint
    from runner.config import SamplingConfig
    from runner.grid import expand_grid
    from runner.scenarios import load_packs

    tok = AutoTokenizer.from_pretrained(str(demo_run / "checkpoint-100"))
    packs = load_packs([Path(__file__).resolve().parents[2] / "scenarios"], ["blackmail"])
    ck = Checkpoint("m", "c", 1, "/", "/")
    lengths = {}
    from runner.config import ScenariosConfig

    for it in expand_grid(packs, ScenariosConfig().where, [ck], SamplingConfig(seeds=1)):
        ids = tok.apply_chat_template(it.messages(), tools=it.tool_list(), add_generation_prompt=True, tokenize=True)
        ids = ids["input_ids"] if hasattr(ids, "keys") else ids
        lengths.setdefault(it.condition.split("urgency=")[1], []).append(len(ids))
    assert max(lengths["none"]) < min(lengths["replacement"])
    return (max(lengths["none"]) + min(lengths["replacement"])) // 2


def test_killed_engine_actor_is_restarted_and_no_work_is_lost(random_run, ray_local, tmp_path):
    """Kill -9 one engine's process mid-sweep: Ray restarts it, its batches are resubmitted."""
    import os
    import signal
    import threading
    import time

    import psutil

    out = tmp_path / "results"
    # Two batches in flight per engine: most of the grid is still to come when the first file
    # lands, so the killed engine has batches in flight.
    cfg = _cfg(random_run, out, "generation.batch_size=2", "generation.max_inflight=4", "sampling.seeds=4",
               "sampling.max_tokens=64", "models.0.checkpoints=[checkpoint-100, checkpoint-200]")
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("s", run_sweep(cfg)))
    t.start()
    deadline = time.monotonic() + 240
    while not list(out.glob("scenario=*/[!.]*.parquet")) and time.monotonic() < deadline:
        time.sleep(0.2)
    victims = [p for p in psutil.process_iter(["cmdline"]) if "ray::GenerationActor" in " ".join(p.info["cmdline"] or [])]
    assert victims, "no engine actor process found"
    os.kill(victims[0].pid, signal.SIGKILL)
    t.join(timeout=600)
    s = result["s"]
    assert s.batch_failures >= 1
    rows = _read(out).to_pylist()
    assert len(rows) == 2 * 4 * 4 == len({r["item_id"] for r in rows})
    assert {r["status"] for r in rows} == {"ok"}


def test_interrupted_sweep_keeps_finished_batches_and_resumes(random_run, tmp_path):
    """Ctrl-C mid-sweep (the real CLI, its own Ray): exit 130, written batches kept, re-run completes."""
    import signal
    import time

    out = tmp_path / "results"
    exe = Path(sys.executable).parent / "runner"
    args = [str(exe), "sweep", f"models.0.path={random_run}", f"output.dir={out}", "sampling.seeds=4",
            "sampling.max_tokens=64", "generation.batch_size=4", "wandb.mode=disabled",
            "scenarios.families=[blackmail]"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not list(out.glob("scenario=*/[!.]*.parquet")):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "finished batches are saved" in err and "Traceback" not in err
    kept = _read(out).num_rows
    assert 0 < kept < 3 * 4 * 4

    done = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    t = _read(out)
    assert t.num_rows == 3 * 4 * 4 == len(set(t["item_id"].to_pylist()))
    assert f"{kept} items already ok" in done.stderr


def test_all_five_families_run_end_to_end(demo_run, ray_local, tmp_path):
    out = tmp_path / "results"
    cfg = load_config(None, [
        f"models.0.path={demo_run}", f"output.dir={out}", "sampling.seeds=2", "sampling.max_tokens=16",
        "models.0.checkpoints=[checkpoint-100]", "scenarios.where={goal_type: [none], urgency: [none]}",
        "wandb.mode=disabled"])
    s = run_sweep(cfg)
    t = _read(out)
    assert sorted(set(t["scenario"].to_pylist())) == ["blackmail", "framing", "leaking", "lethal_inaction", "sabotage"]
    assert t.num_rows == 5 * 2 == s.rows_written
    assert set(t["status"].to_pylist()) == {"ok"}
    assert all(isinstance(h, bool) for h in t["harmful"].to_pylist())
    assert {k.split("/")[0] for k in s.metrics["demo-rl@checkpoint-100"]} >= {
        "blackmail", "framing", "leaking", "lethal_inaction", "sabotage", "overall"}


def test_a_model_vllm_cannot_load_gives_error_rows_that_name_the_cause(demo_run, ray_local, tmp_path):
    """A checkpoint that passes the completeness rules but that vLLM cannot load: every item
    becomes an error row after the bounded retries, and each row's error is the cause raised
    inside the actor (not Ray's task header), so the user can see what to fix."""
    bad = tmp_path / "bad-model"
    shutil.copytree(demo_run / "checkpoint-100", bad)
    cfg_file = bad / "config.json"
    cfg_file.write_text(json.dumps({**json.loads(cfg_file.read_text()), "architectures": ["NoSuchModelForCausalLM"]}))
    out = tmp_path / "results"
    s = run_sweep(_cfg(bad, out, "generation.num_actors=1", "generation.max_retries=1",
                       "scenarios.families=[blackmail]"))
    rows = _read(out).to_pylist()
    assert len(rows) == 4 * 2 == s.errors and {r["status"] for r in rows} == {"error"}
    assert s.left == (8, 0)   # D4: the sweep's exit status is 1, not 0 (runner.commands._output.exit_status)
    for r in rows:
        assert "NoSuchModelForCausalLM" in r["error"], r["error"]
        assert "\n" not in r["error"] and "ray::" not in r["error"]
