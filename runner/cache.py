"""Things built once into `cache_dir` (the demo run, builtin models): rebuilt only when the
recipe that made them changed, and always built in a temporary directory renamed into place, so
a killed build never leaves a half-built directory that looks finished."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable


def build_once(out: Path, marker: str, expected: dict, build: Callable[[Path], dict]) -> Path:
    """`out`, built by `build(staging_dir)` unless `out/marker` records `expected` already.

    `build` returns the record to write as the marker (it must contain `expected`'s keys)."""
    out = Path(out)
    if (out / marker).is_file():
        try:
            recorded = json.loads((out / marker).read_text())
            if {k: recorded.get(k) for k in expected} == expected:
                return out
        except (OSError, ValueError):
            pass
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        record = build(staging)
        (staging / marker).write_text(json.dumps(record, indent=2))
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return out


__all__ = ["build_once"]
