"""Writes into output.dir that can fail for reasons of the machine, not of the run.

A full disk, a quota, a read-only remount or a vanished network mount surface as OSError deep
inside pyarrow or a file write. Left alone that is a 30-line traceback that hides the one fact
the user needs: finished batches are safe on disk and a re-run resumes after them. Each write
site turns the OSError into a StorageError (a RunFailed: exit status 1, one line), after
removing whatever it had half-written, so readers never see a partial file.
"""

from __future__ import annotations

import errno
import os
import uuid
from pathlib import Path

from runner.errors import RunFailed


class StorageError(RunFailed):
    """Writing results failed on an OS error; finished batches are kept."""

    def __init__(self, message: str):
        super().__init__(message)
        import logging

        # Every log file under output.dir (W&B's debug logs) now fails the same way, and logging
        # would print a traceback per record while the run closes, burying this one line.
        logging.raiseExceptions = False


def describe_os_error(e: OSError) -> str:
    """`No space left on device (ENOSPC)` for any OSError, pyarrow's included (whose strerror is
    often empty and whose text repeats the errno in a sentence of its own)."""
    code = e.errno
    if code is None:  # pyarrow's IOError carries the errno only in its text: "[errno 28] ..."
        import re

        m = re.search(r"\[errno (\d+)\]", str(e), re.IGNORECASE)
        code = int(m.group(1)) if m else None
    if code is not None and code in errno.errorcode:
        return f"{os.strerror(code)} ({errno.errorcode[code]})"
    lines = str(e).splitlines()
    return (lines[0] if lines else type(e).__name__)[:300]


def storage_error(what: str, path: str | Path, e: OSError, root: str | Path, rows_kept: int | None) -> StorageError:
    written = f" ({rows_kept} rows written by this run)" if rows_kept is not None else ""
    return StorageError(f"cannot write {what} {path}: {describe_os_error(e)}; finished batches are kept in "
                        f"{root}{written}, nothing partial is left, and a re-run resumes after them once that is fixed")


def write_text_atomic(path: Path, text: str, root: str | Path, what: str = "the run's config") -> None:
    """Write `text` to `path` through a hidden temporary file renamed into place."""
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex}-{path.name}")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as e:
        raise storage_error(what, path, e, root, None) from None
    finally:
        if tmp.exists():
            tmp.unlink()
