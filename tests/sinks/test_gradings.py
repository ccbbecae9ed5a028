"""Several gradings of one dataset: new nullable columns, the newest `ok` row per item, per-version reads."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pyarrow.parquet as pq

from runner.sinks.parquet import ParquetSink, done_item_ids, latest_rows, read_results, results_schema

T0 = datetime(2025, 1, 1, tzinfo=timezone.utc)


def row(i, *, status="ok", harmful=False, version=None, minutes=0, awareness=None, scenario="blackmail"):
    return {"run_id": f"r{minutes}", "item_id": f"id{i}", "scenario": scenario, "condition": "c", "model": "m",
            "checkpoint": "ck", "checkpoint_step": 100, "seed": i, "response": "x", "status": status,
            "error": None if status == "ok" else "boom", "harmful": harmful if status == "ok" else None,
            "unscored_reason": None, "schema_version": 1, "created_at": T0 + timedelta(minutes=minutes),
            "grading_version": version, "eval_awareness": awareness}


def test_new_columns_are_nullable_and_rows_written_before_them_read_back_as_null(tmp_path):
    legacy_schema = pa.schema([f for f in results_schema() if f.name not in
                               ("eval_awareness", "eval_awareness_evidence", "grading_version", "scenario")])
    part = tmp_path / "scenario=blackmail"
    part.mkdir()
    legacy = {k: v for k, v in row(0).items() if k in legacy_schema.names}
    pq.write_table(pa.Table.from_pylist([legacy], schema=legacy_schema), part / "part-old.parquet")
    ParquetSink(tmp_path, "new").write([row(1, version="g-1", awareness="tested")])
    t = read_results(tmp_path)
    by_id = {r["item_id"]: r for r in t.to_pylist()}
    assert by_id["id0"]["grading_version"] is None and by_id["id0"]["eval_awareness"] is None
    assert by_id["id0"]["eval_awareness_evidence"] is None
    assert by_id["id1"]["grading_version"] == "g-1" and by_id["id1"]["eval_awareness"] == "tested"
    for name in ("eval_awareness", "eval_awareness_evidence", "grading_version"):
        assert results_schema().field(name).nullable and results_schema().field(name).type == pa.string()


def test_latest_rows_picks_the_newest_ok_row_per_item(tmp_path):
    sink = ParquetSink(tmp_path, "r")
    sink.write([row(0, status="error", minutes=0), row(1, version=None, minutes=0)])
    sink.write([row(0, harmful=True, version="g-a", minutes=5), row(1, harmful=True, version="g-a", minutes=5)])
    sink.write([row(1, harmful=False, version="g-b", minutes=10)])
    # Written later but older: a file order that is not time order does not fool it.
    sink.write([row(0, harmful=False, version="g-old", minutes=1)])
    t = read_results(tmp_path)
    latest = {r["item_id"]: r for r in latest_rows(t).to_pylist()}
    assert latest["id0"]["grading_version"] == "g-a" and latest["id0"]["harmful"] is True
    assert latest["id1"]["grading_version"] == "g-b" and latest["id1"]["harmful"] is False
    only_a = {r["item_id"]: r for r in latest_rows(t, "g-a").to_pylist()}
    assert set(only_a) == {"id0", "id1"} and all(r["grading_version"] == "g-a" for r in only_a.values())
    assert latest_rows(t, "g-none").num_rows == 0
    assert done_item_ids(tmp_path) == {"id0", "id1"}  # generation resume: any ok row


def test_latest_rows_keeps_the_newest_error_when_nothing_is_ok(tmp_path):
    sink = ParquetSink(tmp_path, "r")
    sink.write([row(0, status="error", minutes=3)])
    sink.write([{**row(0, status="error", minutes=1), "error": "older"}])
    (r,) = latest_rows(read_results(tmp_path)).to_pylist()
    assert r["status"] == "error" and r["error"] == "boom"


def test_latest_rows_without_created_at_falls_back_to_read_order():
    t = pa.Table.from_pylist([{"item_id": "a", "status": "ok", "harmful": True},
                              {"item_id": "a", "status": "ok", "harmful": False},
                              {"item_id": "b", "status": "error", "harmful": None}])
    out = {r["item_id"]: r for r in latest_rows(t).to_pylist()}
    assert out["a"]["harmful"] is False and out["b"]["status"] == "error"


def test_latest_rows_prefers_the_given_grading_over_a_newer_one(tmp_path):
    """A sweep reports its own labels even after `runner grade` added a newer grading."""
    ParquetSink(tmp_path, "s").write([row(0, version="sweep", harmful=False, minutes=0),
                                      row(1, version="sweep", harmful=False, minutes=0),
                                      row(0, version="regrade", harmful=True, minutes=5)])
    t = read_results(tmp_path)
    newest = {r["item_id"]: r["grading_version"] for r in latest_rows(t).to_pylist()}
    assert newest == {"id0": "regrade", "id1": "sweep"}
    own = {r["item_id"]: r["grading_version"] for r in latest_rows(t, prefer="sweep").to_pylist()}
    assert own == {"id0": "sweep", "id1": "sweep"}
    # An error row of the preferred grading never beats an `ok` row of another.
    ParquetSink(tmp_path, "e").write([row(2, version="other", minutes=1), row(2, status="error", version="sweep", minutes=9)])
    picked = {r["item_id"]: r["status"] for r in latest_rows(read_results(tmp_path), prefer="sweep").to_pylist()}
    assert picked["id2"] == "ok"
