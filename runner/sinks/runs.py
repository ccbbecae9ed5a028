"""Each run's record in the results directory: `_runs/<run_id>.yaml`, its resolved config."""

from __future__ import annotations

import os
import uuid
from datetime import datetime, timezone
from pathlib import Path


def make_run_id(name: str) -> str:
    return f"{name}-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex}-{path.name}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def record_run(out_dir: Path, run_id: str, config_yaml: str, header: str = "") -> Path:
    """Write the run's resolved config (no secrets by construction) before its first row."""
    runs = out_dir / "_runs"
    runs.mkdir(parents=True, exist_ok=True)
    path = runs / f"{run_id}.yaml"
    write_atomic(path, header + config_yaml)
    return path


__all__ = ["make_run_id", "record_run", "write_atomic"]
