"""The one-writer lock: a live holder refuses the second writer; a killed holder never blocks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from runner.errors import UserError
from runner.sinks.lock import LOCK_NAME, ResultsDirLock
from runner.sinks.parquet import TMP_SUFFIX, remove_stale_temporaries

HOLD = """
import sys, time
from runner.sinks.lock import ResultsDirLock
lock = ResultsDirLock(sys.argv[1], "holder"); lock.acquire()
print("held", flush=True)
time.sleep(600)
"""


def _holder(root) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(root)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    return p


def test_second_writer_refused_while_the_first_lives_then_admitted_after_sigkill(tmp_path):
    root = tmp_path / "out"
    p = _holder(root)
    try:
        with pytest.raises(UserError, match=rf"being written by another run \(pid {p.pid} on .*holder"):
            ResultsDirLock(root).acquire()
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    assert (root / LOCK_NAME).exists()  # the killed run's file stays; its flock went with the process
    with ResultsDirLock(root, "next") as lock:
        assert f"pid {os.getpid()}" in (root / LOCK_NAME).read_text()
        assert lock.root == root


def test_lock_in_a_new_directory_leaves_nothing_when_nothing_was_written(tmp_path):
    root = tmp_path / "a" / "out"
    with ResultsDirLock(root):
        assert (root / LOCK_NAME).exists()
    assert not root.exists()
    with ResultsDirLock(root):
        (root / "_runs").mkdir()
    assert sorted(p.name for p in root.iterdir()) == ["_runs"]  # the lock file goes with the run


def test_uncreatable_directory_is_a_user_error(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(UserError, match="cannot be created"):
        ResultsDirLock(tmp_path / "f" / "out").acquire()


def test_stale_temporaries_are_removed(tmp_path):
    part = tmp_path / "scenario=blackmail"
    part.mkdir()
    (part / f".tmp-abc{TMP_SUFFIX}").write_bytes(b"PAR1 half")
    (part / "part-x.parquet").write_bytes(b"kept")
    assert remove_stale_temporaries(tmp_path) == 1
    assert [p.name for p in part.iterdir()] == ["part-x.parquet"]


def test_many_contenders_one_winner(tmp_path):
    """Ten processes race for one fresh directory: exactly one holds it."""
    code = """
import sys, time
from runner.errors import UserError
from runner.sinks.lock import ResultsDirLock
try:
    ResultsDirLock(sys.argv[1]).acquire()
except UserError:
    print("refused"); sys.exit(0)
print("won", flush=True); time.sleep(15)
"""
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "out")], stdout=subprocess.PIPE, text=True)
             for _ in range(10)]
    outs = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert sorted(outs) == ["refused"] * 9 + ["won"], outs
