"""`runner grade` without Ray: reading the dataset, rebuilding items, resume, bad input."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from runner.checkpoints import Checkpoint
from runner.cli import main
from runner.config import load_config
from runner.errors import ConfigError
from runner.graders.rules import Grading
from runner.graders.version import grading_version
from runner.grid import expand_grid
from runner.plan import PACK_CHANGED, load_regrade_config, plan_regrade
from runner.rows import regraded_row
from runner.scenarios import load_packs
from runner.sinks.parquet import ParquetSink, read_results

REPO = Path(__file__).resolve().parent.parent
CKPT = Checkpoint(model="m", name="checkpoint-100", step=100, path="/nowhere", tokenizer="/nowhere")


def _row(item, *, status="ok", version=None, run_id="sweep"):
    return {"run_id": run_id, "item_id": item.item_id, "scenario": item.scenario, "condition": item.condition,
            "model": item.model, "checkpoint": item.checkpoint, "checkpoint_step": item.checkpoint_step,
            "seed": item.seed, "response": f"reply {item.seed}: this is likely a test.", "status": status,
            "error": None if status == "ok" else "boom", "harmful": False if status == "ok" else None,
            "unscored_reason": None, "schema_version": 1, "grader": "rules", "evidence": "[]", "tool_calls": "[]",
            "num_output_tokens": 7, "finish_reason": "stop", "temperature": item.sampling.temperature,
            "top_p": item.sampling.top_p, "max_tokens": item.sampling.max_tokens,
            "created_at": datetime.now(timezone.utc), "grading_version": version}


@pytest.fixture(scope="module")
def packs():
    return load_packs([REPO / "scenarios"], ["blackmail"])


@pytest.fixture
def dataset(tmp_path, packs):
    cfg = load_config(None, ["scenarios.families=[blackmail]", "sampling.seeds=2", "sampling.max_tokens=24"])
    items = list(expand_grid(packs, cfg.scenarios.where, [CKPT], cfg.sampling))
    assert len(items) == 8
    out = tmp_path / "results"
    ParquetSink(out, "sweep").write([_row(it) for it in items[:6]] + [_row(items[6], status="error")])
    return out, items


def _cfg(out: Path, *extra: str):
    return load_regrade_config(str(out), None, ["scenarios.families=[blackmail]", "wandb.mode=disabled", *extra])


def test_plan_rebuilds_ok_items_and_skips_errors(dataset):
    out, items = dataset
    plan = plan_regrade(_cfg(out))
    assert plan.ok_items == 6 and plan.already == 0 and not plan.unbuildable
    assert sorted(i.item_id for i, _, _ in plan.todo) == sorted(it.item_id for it in items[:6])
    rebuilt = {i.item_id: i for i, _, _ in plan.todo}
    for it in items[:6]:
        assert rebuilt[it.item_id] == it  # the same WorkItem the sweep generated
    item, result, gen = plan.todo[0]
    assert result.response == gen["response"] and result.num_output_tokens == 7
    assert plan.grading_version == grading_version(plan.cfg.grading, plan.packs)


def test_a_changed_pack_is_unbuildable_never_graded(dataset, tmp_path):
    out, items = dataset
    stale = {**_row(items[7]), "item_id": "0" * 32}  # as if the prompt had been rendered differently
    gone = {**_row(items[7]), "item_id": "1" * 32, "condition": "goal_type=explicit,goal_value=nowhere,urgency=none"}
    ParquetSink(out, "old").write([stale, gone])
    plan = plan_regrade(_cfg(out))
    why = {row["item_id"]: reason for row, reason in plan.unbuildable}
    assert set(why) == {"0" * 32, "1" * 32}
    assert all(r.startswith(PACK_CHANGED) for r in why.values())
    assert "gives another prompt" in why["0" * 32] and "nowhere" in why["1" * 32]
    assert len(plan.todo) == 6


def test_rows_are_checked_on_their_prompt_digest_or_an_earlier_seed_scheme(dataset):
    """A LoRA row's item_id holds its base model, which the row does not store: its prompt
    digest decides. Rows from before the derived engine seeds keep their scheme-1 item_id."""
    from runner.grid import make_item_id, prompt_digest

    out, items = dataset
    it = items[7]
    lora = {**_row(it), "item_id": "a" * 32, "prompt_digest": prompt_digest(it.system, it.user)}
    edited = {**_row(it), "item_id": "b" * 32, "prompt_digest": prompt_digest(it.system, it.user + " (edited)")}
    legacy = {**_row(it), "seed": 1, "item_id": make_item_id(it.system, it.user, it.sampling, CKPT, 1, seed_scheme=1)}
    assert legacy["item_id"] not in {i.item_id for i in items}  # the current scheme gives other ids
    ParquetSink(out, "old").write([lora, edited, legacy])
    plan = plan_regrade(_cfg(out))
    todo = {i.item_id for i, _, _ in plan.todo}
    assert {"a" * 32, legacy["item_id"]} <= todo
    why = {row["item_id"]: reason for row, reason in plan.unbuildable}
    assert set(why) == {"b" * 32} and why["b" * 32].startswith(PACK_CHANGED)


def test_items_with_a_row_of_this_version_are_skipped(dataset, demo_run):
    out, items = dataset
    plan = plan_regrade(_cfg(out))
    item, result, gen = plan.todo[0]
    g = Grading(item.item_id, "rules", True, None, "[]", "[]", "tested", "this is likely a test")
    row = regraded_row("regrade-1", gen, {"rules": g}, plan.cfg.grading.judge.combine, plan.grading_version,
                       datetime.now(timezone.utc))
    ParquetSink(out, "regrade-1").write([row])
    again = plan_regrade(_cfg(out))
    assert again.already == 1 and len(again.todo) == 5
    other = plan_regrade(_cfg(out, "grading.judge.enabled=true", f"grading.judge.model={demo_run}/checkpoint-100",
                              "grading.rules=false"))
    assert other.grading_version != plan.grading_version and len(other.todo) == 6
    with pytest.raises(ConfigError, match="grading.rules=false needs a judge"):
        plan_regrade(_cfg(out, "grading.rules=false"))


def test_regraded_row_copies_generation_columns(dataset):
    out, items = dataset
    plan = plan_regrade(_cfg(out))
    item, result, gen = plan.todo[0]
    g = Grading(item.item_id, "rules", True, None, '["x"]', "[]", "real", "this is real")
    row = regraded_row("regrade-1", gen, {"rules": g}, plan.cfg.grading.judge.combine, plan.grading_version,
                       datetime.now(timezone.utc))
    for col in ("item_id", "scenario", "condition", "model", "checkpoint", "checkpoint_step", "seed", "response",
                "status", "num_output_tokens", "finish_reason", "temperature", "top_p", "max_tokens"):
        assert row[col] == gen[col]
    assert row["harmful"] is True and row["eval_awareness"] == "real" and row["run_id"] == "regrade-1"
    assert row["grading_version"] == plan.grading_version


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("args,message", [
    (["{missing}"], "results directory not found"),
    (["{empty}"], "not a results dataset"),
    (["{file}"], "is a file"),
    (["{results}", "grading.judge.nope=1"], "unknown key 'grading.judge.nope'"),
    (["{results}", "grading.judge.enabled=true"], "grading.judge.model is required"),
    (["{results}", "output.dir=/tmp/elsewhere"], "output.dir cannot be set"),
    (["{results}", "grading.judge.enabled=true", "grading.judge.model=/no/such/judge"], "not a Hugging Face model"),
    (["{results}", "scenarios.families=[nosuch]"], "no pack named 'nosuch'"),
    (["{results}", "notakeyvalue"], "bad override"),
    (["{garbage}"], "not a results dataset"),
])
def test_cli_bad_input_exits_2_and_writes_nothing(dataset, tmp_path, capsys, args, message):
    out, _ = dataset
    (tmp_path / "empty").mkdir()
    (tmp_path / "file").write_text("x")
    garbage = tmp_path / "garbage" / "scenario=blackmail"
    garbage.mkdir(parents=True)
    (garbage / "part-x.parquet").write_text("not parquet")
    paths = {"missing": tmp_path / "missing", "empty": tmp_path / "empty", "file": tmp_path / "file",
             "results": out, "garbage": tmp_path / "garbage"}
    before = _files(tmp_path)
    rows_before = read_results(out).num_rows
    code = main(["grade", *[a.format(**paths) for a in args]])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("runner: ") and message in err and "Traceback" not in err, err
    assert _files(tmp_path) == before and read_results(out).num_rows == rows_before


def test_console_script_bad_input(tmp_path):
    """Through the real entry point: one line on stderr, exit 2, no traceback."""
    p = subprocess.run([sys.executable, "-m", "runner.cli", "grade", str(tmp_path / "missing")],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.strip().splitlines() == [f"runner: results directory not found: {tmp_path / 'missing'}"]


def test_a_family_without_a_loaded_pack_stops_before_anything_is_written(dataset, tmp_path):
    from runner.errors import ConfigError

    out, items = dataset
    ParquetSink(out, "custom").write([{**_row(items[0]), "item_id": "c" * 32, "scenario": "my_family"}])
    before = _files(out)
    with pytest.raises(ConfigError, match="my_family.*scenarios.dirs"):
        plan_regrade(load_regrade_config(str(out), None, ["wandb.mode=disabled"]))
    assert _files(out) == before


def test_rows_unscored_by_a_failed_actor_are_graded_again_and_error_rows_do_not_count(dataset):
    out, items = dataset
    plan = plan_regrade(_cfg(out))
    v = plan.grading_version
    failed = {**_row(items[0], version=v, run_id="regrade-1"), "harmful": None,
              "unscored_reason": "judge: judge failed: ActorDiedError: the actor died"}
    final = {**_row(items[1], version=v, run_id="regrade-1"), "harmful": None,
             "unscored_reason": "judge: judge verdict could not be parsed; after 3 attempt(s)"}
    errored = _row(items[2], status="error", version=v, run_id="regrade-1")
    ParquetSink(out, "regrade-1").write([failed, final, errored])
    again = plan_regrade(_cfg(out))
    todo = {i.item_id for i, _, _ in again.todo}
    assert items[0].item_id in todo and items[2].item_id in todo and items[1].item_id not in todo
    assert again.already == 1


def test_a_row_without_seed_is_reported_not_a_crash(dataset):
    out, items = dataset
    ParquetSink(out, "old").write([{**_row(items[7]), "item_id": "d" * 32, "seed": None}])
    plan = plan_regrade(_cfg(out))
    why = {row["item_id"]: reason for row, reason in plan.unbuildable}
    assert "seed" in why["d" * 32]
