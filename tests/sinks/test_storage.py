"""OS errors while writing results (D9): one line, finished batches kept, nothing partial visible.

The OS error is injected at the write call here (fast, any machine); tests/e2e/test_faults_e2e.py
fills a real tmpfs under a running sweep.
"""

from __future__ import annotations

import errno
from datetime import datetime, timezone

import pyarrow.parquet as pq
import pytest

from runner.errors import RunFailed
from runner.sinks.parquet import ParquetSink, read_results
from runner.sinks.storage import StorageError, describe_os_error, write_text_atomic


def _row(i: int) -> dict:
    return {"run_id": "r", "item_id": f"id{i}", "scenario": "blackmail", "condition": "c", "model": "m",
            "checkpoint": "ck", "checkpoint_step": 100, "seed": i, "response": "x", "status": "ok",
            "harmful": False, "schema_version": 1, "created_at": datetime.now(timezone.utc)}


def test_disk_full_mid_write_keeps_finished_files_and_leaves_no_partial(tmp_path, monkeypatch):
    sink = ParquetSink(tmp_path, "r")
    sink.write([_row(0), _row(1)])
    real_write = pq.write_table

    def write_then_fill(table, where, **kw):  # half a file lands, then the disk is full
        real_write(table, where, **kw)
        with open(where, "r+b") as fh:
            fh.truncate(100)
        raise OSError(errno.ENOSPC, "Error writing bytes to file. Detail: [errno 28] No space left on device")

    monkeypatch.setattr(pq, "write_table", write_then_fill)
    with pytest.raises(StorageError) as caught:
        sink.write([_row(2)])
    message = str(caught.value)
    assert isinstance(caught.value, RunFailed)  # the CLI's exit status 1
    assert "\n" not in message
    assert message.startswith(f"cannot write results file {tmp_path}/scenario=blackmail/part-r-000002.parquet: "
                              "No space left on device (ENOSPC); finished batches are kept in")
    assert "(2 rows written by this run)" in message and "a re-run resumes after them" in message
    assert sorted(p.name for p in (tmp_path / "scenario=blackmail").iterdir()) == ["part-r-000001.parquet"]
    assert read_results(tmp_path).num_rows == 2


def test_pyarrow_errors_without_errno_are_named_from_their_text():
    assert describe_os_error(OSError("Error writing bytes. Detail: [errno 122] Disk quota exceeded")) == \
        "Disk quota exceeded (EDQUOT)"
    assert describe_os_error(OSError(errno.EROFS, "x")) == "Read-only file system (EROFS)"


def test_config_dump_on_a_full_disk(tmp_path, monkeypatch):
    import os

    def full(*a, **kw):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    (tmp_path / "_runs").mkdir()
    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(StorageError, match=r"cannot write the run's config .*/_runs/r.yaml: No space left on device"):
        write_text_atomic(tmp_path / "_runs" / "r.yaml", "a: 1\n", root=tmp_path)
    assert list((tmp_path / "_runs").iterdir()) == []
