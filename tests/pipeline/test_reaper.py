"""The reaper without Ray: a driver that marked its environment is SIGKILLed; the processes it left
(re-parented, renamed, in their own sessions) are stopped; an unmarked one is left alone.

The orphan is made the way Ray makes its DashboardAgent: a grandchild of the driver (its parent,
like the raylet, dies with the driver), renamed with setproctitle, which overwrites the memory
`/proc/PID/environ` reads, so the marker cannot be seen there."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil

from runner.pipeline.reaper import MARKER

DRIVER = """
import subprocess, sys, time
from runner.pipeline.reaper import start_reaper
start_reaper()
# Like Ray's agents: a child of a process that dies with the driver, own session, renamed by
# setproctitle, ignoring SIGTERM, outliving the driver.
AGENT = ("import signal, sys, time, setproctitle; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
         "setproctitle.setproctitle('ray::DashboardAgent'); print('renamed', flush=True); time.sleep(600)")
RAYLET = ("import subprocess, sys, time; a = subprocess.Popen([sys.executable, '-c', sys.argv[1]], "
          "start_new_session=True, stdout=subprocess.PIPE, text=True); a.stdout.readline(); print(a.pid, flush=True); "
          "time.sleep(600)")
raylet = subprocess.Popen([sys.executable, "-c", RAYLET, AGENT], stdout=subprocess.PIPE, text=True)
agent = raylet.stdout.readline().strip()
time.sleep(3)  # the reaper notes the driver's descendants every 2 s
print(raylet.pid, agent, flush=True)
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
    raylet = orphan = None
    try:
        raylet, orphan = map(int, driver.stdout.readline().split())
        reaper = [p.pid for p in psutil.Process(driver.pid).children() if "runner.pipeline.reaper" in " ".join(p.cmdline())]
        assert len(reaper) == 1 and _alive(orphan)
        with open(f"/proc/{orphan}/environ", "rb") as fh:
            assert MARKER.encode() not in fh.read()  # what setproctitle does: the marker is not readable
        os.kill(driver.pid, signal.SIGKILL)
        os.kill(raylet, signal.SIGKILL)  # as PR_SET_PDEATHSIG does to the raylet: the orphan is re-parented
        driver.wait()
        killed = time.monotonic()
        while (_alive(orphan) or _alive(reaper[0])) and time.monotonic() - killed < 10:
            time.sleep(0.05)
        assert not _alive(orphan) and not _alive(reaper[0])
        assert bystander.poll() is None  # not marked: someone else's process
    finally:
        for p in (driver, bystander):
            p.kill()
        for pid in (raylet, orphan):
            if pid is not None and _alive(pid):
                os.kill(pid, signal.SIGKILL)
