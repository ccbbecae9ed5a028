from __future__ import annotations

import math
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.dataset as ds

from runner.sinks.metrics import checkpoint_metrics
from runner.sinks.parquet import ParquetSink, done_item_ids, latest_rows, read_results, results_schema
from runner.stats import wilson_interval

REQUIRED = ["run_id", "item_id", "scenario", "condition", "model", "checkpoint", "checkpoint_step", "seed",
            "response", "status", "error", "harmful", "unscored_reason", "schema_version"]


def row(i, status="ok", harmful=False, scenario="blackmail"):
    return {"run_id": "r", "item_id": f"id{i}", "scenario": scenario, "condition": "c", "model": "m",
            "checkpoint": "ck", "checkpoint_step": 100, "seed": i, "response": "x", "status": status,
            "error": None if status == "ok" else "boom", "harmful": harmful if status == "ok" else None,
            "unscored_reason": None, "schema_version": 1, "created_at": datetime.now(timezone.utc)}


def test_schema_has_the_design_columns():
    assert results_schema().names[: len(REQUIRED)] == REQUIRED


def test_written_rows_read_back_with_hive_partitioning(tmp_path):
    sink = ParquetSink(tmp_path, "r")
    sink.write([row(0), row(1, scenario="leaking")])
    sink.write([row(2, status="error")])
    (tmp_path / "_runs").mkdir()
    (tmp_path / "_runs" / "r.yaml").write_text("x: 1")
    t = ds.dataset(tmp_path, partitioning="hive").to_table()
    assert t.num_rows == 3 and set(REQUIRED) <= set(t.schema.names)
    assert sorted(t["scenario"].to_pylist()) == ["blackmail", "blackmail", "leaking"]
    assert str(read_results(tmp_path).schema.field("checkpoint_step").type) == "int64"
    assert done_item_ids(tmp_path) == {"id0", "id1"}
    assert not list(tmp_path.rglob(".tmp-*"))


def test_empty_dir_reads_as_empty_table(tmp_path):
    assert read_results(tmp_path / "none").num_rows == 0
    assert done_item_ids(tmp_path) == set()


def test_later_ok_row_supersedes_error_row(tmp_path):
    sink = ParquetSink(tmp_path, "r")
    sink.write([row(0, status="error")])
    sink.write([row(0, harmful=True)])
    latest = latest_rows(read_results(tmp_path)).to_pylist()
    assert len(latest) == 1 and latest[0]["status"] == "ok"


def test_metrics_count_unscored_and_errors_apart():
    rows = [row(0, harmful=True), row(1), row(2, status="error"), {**row(3), "harmful": None}]
    m = checkpoint_metrics(rows)
    assert m["blackmail/n"] == 2 and m["blackmail/harmful"] == 1
    assert m["blackmail/unscored"] == 1 and m["blackmail/errors"] == 1
    assert m["overall/harmful_rate"] == 0.5
    lo, hi = wilson_interval(1, 2)
    assert (m["overall/harmful_rate_lo"], m["overall/harmful_rate_hi"]) == (lo, hi)


def test_wilson_interval_known_values():
    lo, hi = wilson_interval(0, 24)
    assert lo == 0.0 and math.isclose(hi, 0.1380, abs_tol=1e-3)
    lo, hi = wilson_interval(50, 100)
    assert math.isclose(lo, 0.4038, abs_tol=1e-3) and math.isclose(hi, 0.5962, abs_tol=1e-3)


def test_done_ids_are_the_items_with_an_ok_row_in_any_file_or_family(tmp_path):
    sink = ParquetSink(tmp_path, "r")
    sink.write([row(0, status="error"), row(1, status="error", scenario="leaking"), row(2, scenario="leaking")])
    sink.write([row(0)])  # a retry that succeeded
    sink.write([row(3, status="error")])
    assert done_item_ids(tmp_path) == {"id0", "id2"}


def test_only_the_runners_schema_is_part_of_the_dataset(tmp_path):
    """A file from before the grading columns existed is a results file (they read back null); a
    schema_version without footer statistics is still read and checked."""
    import pyarrow.parquet as pq

    from runner.sinks.parquet import check_results_dataset, results_file_problem

    sink = ParquetSink(tmp_path, "r")
    sink.write([row(0) | {"grading_version": "g"}, row(1) | {"grading_version": "g"}])
    written = next(tmp_path.glob("scenario=blackmail/*.parquet"))
    assert results_file_problem(written) is None

    old = pq.read_table(written).drop_columns(["rule_harmful", "judge_verdict", "grading_version", "prompt_digest"])
    pq.write_table(old, tmp_path / "scenario=blackmail" / "part-old.parquet")
    check_results_dataset(tmp_path)
    t = read_results(tmp_path, columns=["item_id", "grading_version"])
    assert t.num_rows == 4 and t["grading_version"].null_count == 2

    newer = pq.read_table(written)
    newer = newer.set_column(newer.schema.get_field_index("schema_version"), "schema_version",
                             pa.array([1, 2], type=pa.int64()))
    bare = tmp_path / "bare.parquet"
    pq.write_table(newer, bare, write_statistics=False)
    assert pq.read_metadata(bare).row_group(0).column(0).statistics is None
    assert results_file_problem(bare) == "schema_version 2; this runner reads 1"
