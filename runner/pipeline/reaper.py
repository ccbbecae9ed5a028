"""Stop a local Ray whose driver died without stopping it (SIGKILL, the OOM killer).

A local Ray started by `ray.init()` shuts down at the driver's normal exit, and the kernel kills
its GCS and raylet with the driver (Ray sets PR_SET_PDEATHSIG on them). The raylet's children
are not covered: its DashboardAgent and RuntimeEnvAgent notice their parent is gone, then try to
report that through the GCS, which is dead too, and linger for about a minute (measured: 66 s
after a SIGKILL of the driver), holding ports and memory that the next run on a small machine
wants.

So the driver starts this process first: it waits for the end of a pipe only the driver holds
(EOF comes the moment the driver is gone, however it died), then stops its Ray's processes. Two
ways find them, because neither finds all of them alone:
- the marker: set in the driver's environment before Ray starts, so Ray's processes and their
  children inherit it, whoever they are re-parented to; no other Ray on the machine carries it.
  But `/proc/PID/environ` is the memory where the process's environment started, and
  setproctitle (which Ray's DashboardAgent and RuntimeEnvAgent call to rename themselves)
  overwrites that memory: the agents' marker reads back as zeros (seen on Ray 2.60).
- the driver's descendants, noted every `SNAPSHOT_EVERY_S` while the driver lives, each by pid
  and start time (so a reused pid is never taken for one of them). The agents are children of
  the raylet, started with Ray, so the notes hold them before the driver dies; after it dies
  they are re-parented and no longer found from the driver.

    python -m runner.pipeline.reaper MARKER_VALUE     (stdin: the driver's pipe)
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
import uuid

MARKER = "RUNNER_LOCAL_RAY_OWNER"
SNAPSHOT_EVERY_S = 2.0
# The reapers of this process: holding them holds their pipes open (a collected Popen would close it).
_started: list[subprocess.Popen] = []


def start_reaper() -> subprocess.Popen:
    """Spawn the reaper for this driver and mark the environment Ray will inherit from here on."""
    value = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
    env = {k: v for k, v in os.environ.items() if k != MARKER}
    reaper = subprocess.Popen([sys.executable, "-m", "runner.pipeline.reaper", value], stdin=subprocess.PIPE,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                              start_new_session=True)  # a Ctrl-C to the driver's group must not stop it first
    os.environ[MARKER] = value
    _started.append(reaper)  # its stdin (the pipe's write end) stays open as long as this process lives
    return reaper


def _pids() -> list[str]:
    """The names under /proc; none where there is no /proc (macOS: the reaper then does nothing)."""
    try:
        return os.listdir("/proc")
    except OSError:
        return []


def marked_pids(value: str) -> list[int]:
    """Pids whose environment holds MARKER=value (this user's processes; others are unreadable)."""
    needle = f"{MARKER}={value}".encode()
    found = []
    for name in _pids():
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as fh:
                if needle in fh.read().split(b"\0"):
                    found.append(int(name))
        except OSError:  # gone meanwhile, or not ours
            pass
    return found


def stop_marked(value: str, grace_s: float = 1.0) -> int:
    """SIGTERM each marked process, SIGKILL what is left after `grace_s`; returns how many."""
    pids = marked_pids(value)
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    end = time.monotonic() + grace_s
    while time.monotonic() < end and any(_alive(p) for p in pids):
        time.sleep(0.1)
    for pid in marked_pids(value):  # again: a worker may have started during the grace period
        _signal(pid, signal.SIGKILL)
    return len(pids)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except OSError:
        pass


def _alive(pid: int) -> bool:
    st = _stat(pid)
    return st is not None and st[0] != b"Z"


def _stat(pid: int) -> tuple[bytes, int, int] | None:
    """(state, parent pid, start time in clock ticks) from /proc/PID/stat, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b") ", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[1]), int(fields[19])


def descendants(root: int) -> dict[int, int]:
    """Every living descendant of `root`: pid -> start time."""
    children: dict[int, list[tuple[int, int]]] = {}
    for name in _pids():
        if name.isdigit() and (st := _stat(int(name))) is not None:
            children.setdefault(st[1], []).append((int(name), st[2]))
    found, todo = {}, [root]
    while todo:
        for pid, start in children.get(todo.pop(), ()):
            if pid not in found:
                found[pid] = start
                todo.append(pid)
    return found


def stop_noted(noted: dict[int, int]) -> int:
    """SIGKILL each noted process that is still the same process (same start time)."""
    n = 0
    for pid, start in noted.items():
        st = _stat(pid)
        if pid != os.getpid() and st is not None and st[2] == start:
            _signal(pid, signal.SIGKILL)
            n += 1
    return n


def main(argv: list[str]) -> int:
    (value,) = argv
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    driver = os.getppid()
    noted: dict[int, int] = {}
    # Returns at EOF: the driver has exited, normally or not. Until then, note its descendants.
    while not select.select([sys.stdin], [], [], SNAPSHOT_EVERY_S)[0]:
        noted.update(descendants(driver))
    sys.stdin.buffer.read()  # the driver never writes: this is the EOF
    stop_marked(value)
    stop_noted(noted)  # what the marker cannot show (renamed by setproctitle), SIGTERMed or not
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
