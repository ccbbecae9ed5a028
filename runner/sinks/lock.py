"""One writer per results directory (DESIGN.md).

A run holds an exclusive `flock` on `<output.dir>/_lock` for as long as its process lives. The
kernel drops the lock when the process dies, however it dies (SIGKILL, OOM, node reboot), so a
lock left by a killed run never blocks the next one: there is no stale-lock heuristic to get
wrong. The file's text (pid, host, start time) only explains who holds it; the flock decides.
Readers ignore the file (names starting with '_' are not data for pyarrow, DuckDB's
`*.parquet` globs or pandas).

flock works on local filesystems and on NFSv4 / Lustre / GPFS clients that forward it (Linux
emulates it with POSIX locks on NFS); keep one `output.dir` per sweep on such shared storage.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from runner.errors import UserError
from runner.sinks.parquet import check_results_dataset, remove_stale_temporaries

log = logging.getLogger("runner")

LOCK_NAME = "_lock"


class ResultsDirLock:
    """The exclusive writer lock on one results directory; a context manager.

    Creating the directory (and the lock file in it) is also the check that `output.dir` can be
    written at all, done before Ray or any engine starts. Release deletes the lock file, and the
    directory too if the lock created it and the run left it empty, so a run that failed before
    writing leaves no trace. Only a killed run leaves `_lock` behind, and it blocks nothing.
    """

    def __init__(self, root: str | Path, command: str = "runner"):
        self.root = Path(root).expanduser()
        self.command = command
        self._fd: int | None = None
        self._created_root = False

    def __enter__(self) -> "ResultsDirLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> None:
        import fcntl

        self._created_root = not self.root.exists()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"output.dir '{self.root}' cannot be created: {e.strerror or e}") from None
        if not self.root.is_dir():
            raise UserError(f"output.dir '{self.root}' exists and is not a directory")
        path = self.root / LOCK_NAME
        while True:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as e:
                self._remove_created_root()
                raise UserError(f"output.dir '{self.root}' is not writable: {e.strerror or e}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                holder = _read_holder(fd)
                os.close(fd)
                if e.errno in (errno.EAGAIN, errno.EACCES):
                    raise UserError(f"output.dir '{self.root}' is being written by another run ({holder}); "
                                    f"wait for it to finish or choose another output.dir") from None
                raise UserError(f"output.dir '{self.root}' cannot be locked: {e.strerror or e}") from None
            # A releasing run may have unlinked the file between our open and flock: then we hold
            # a lock on a file nobody else can see. Retry on the file that is there now.
            try:
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        self._fd = fd
        text = (f"pid {os.getpid()} on {socket.gethostname()}, {self.command}, since "
                f"{datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M:%S UTC')}\n")
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, text.encode(), 0)
        except OSError as e:
            self.release()
            raise UserError(f"output.dir '{self.root}' is not writable: {e.strerror or e}") from None

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            # Removed while still under our flock, so a finished or refused run leaves no file
            # behind; a contender that opened the old file notices (inode check) and retries.
            (self.root / LOCK_NAME).unlink()
            if self._created_root and not any(self.root.iterdir()):
                self._remove_created_root()
        except OSError:
            pass
        finally:
            os.close(fd)  # drops the flock

    def _remove_created_root(self) -> None:
        if self._created_root:
            try:
                self.root.rmdir()
            except OSError:
                pass


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    return text.splitlines()[0] if text else "holder unknown"


@contextmanager
def results_writer(out_dir: str, command: str):
    """Hold the one-writer lock on `out_dir` for the run (before Ray starts: a second run, an
    uncreatable directory or a foreign/corrupt Parquet file there fails at once, exit 2), after
    removing temporary files a killed run left."""

    with ResultsDirLock(out_dir, command) as lock:
        stale = remove_stale_temporaries(lock.root)
        if stale:
            log.warning("removed %d temporary file(s) left by a killed run in %s", stale, lock.root)
        check_results_dataset(lock.root)
        yield lock
