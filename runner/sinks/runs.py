"""Each run's record in the results directory: `_runs/<run_id>.yaml`, its resolved config."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from pathlib import Path

from runner.sinks.storage import storage_error, write_text_atomic


def make_run_id(name: str) -> str:
    return f"{name}-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"


def record_run(out_dir: Path, run_id: str, config_yaml: str, header: str = "") -> Path:
    """Write the run's resolved config (no secrets by construction) before its first row. An OS
    error (a full disk) is a StorageError: one line, exit 1."""
    runs = out_dir / "_runs"
    try:
        runs.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise storage_error("the run record directory", runs, e, out_dir, None) from None
    path = runs / f"{run_id}.yaml"
    write_text_atomic(path, header + config_yaml, root=out_dir)
    return path


__all__ = ["make_run_id", "record_run"]
