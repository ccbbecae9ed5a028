"""The reaper without Ray: a driver that marked its environment is SIGKILLed; the processes it left
(re-parented, renamed, in their own sessions) are stopped; an unmarked one is left alone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil

DRIVER = """
import subprocess, sys, time
from runner.pipeline.reaper import start_reaper
start_reaper()
# Like Ray's agents: own session, renamed, ignoring SIGTERM, outliving the driver.
child = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"],
                         start_new_session=True)
print(child.pid, flush=True)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_sigkilled_driver_leaves_nothing_marked_alive():
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    driver = subprocess.Popen([sys.executable, "-c", DRIVER], stdout=subprocess.PIPE, text=True)
    try:
        orphan = int(driver.stdout.readline())
        reaper = [p.pid for p in psutil.Process(driver.pid).children() if "runner.pipeline.reaper" in " ".join(p.cmdline())]
        assert len(reaper) == 1 and _alive(orphan)
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
        killed = time.monotonic()
        while (_alive(orphan) or _alive(reaper[0])) and time.monotonic() - killed < 10:
            time.sleep(0.05)
        assert not _alive(orphan) and not _alive(reaper[0])
        assert bystander.poll() is None  # not marked: someone else's process
    finally:
        for p in (driver, bystander):
            p.kill()
        with __import__("contextlib").suppress(Exception):
            os.kill(orphan, signal.SIGKILL)
