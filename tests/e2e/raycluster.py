"""A real two-node Ray cluster on this machine, started with `ray start` as an operator would.

Each node is its own `ray start --block` process in its own session, with its own ports; the
head has its own temp dir and the dashboard (Job API) on 127.0.0.1. Stopping signals those
processes (they stop their raylet, GCS and workers), then kills whatever is left in their
process groups or names this cluster's temp dir: never anyone else's Ray (no `ray stop`).

Nodes start one at a time. Every node of one machine shares the head's session directory, and
`ray start` picks its raylet and object-store socket names there by taking the first unused
index: two nodes started together pick the same names, and the later raylet dies with "bind:
Address already in use" (then `ray start` gives up after its fixed 30 s: "timed out during
startup"). A node whose `ray start` still fails (a port taken by another process between
choosing it and binding it) is started again on its own, with fresh ports.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

BIN = Path(sys.executable).parent


def free_ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _node_ports() -> list[str]:
    nm, om, agent, agent_grpc, metrics, renv = free_ports(6)  # ephemeral range: >= 32768 on Linux
    # Worker ports below the ephemeral range and above Ray's default 10002-19999, so they never
    # collide with the ports above nor with another Ray on this machine.
    lo = random.randrange(20000, 32000 - 200, 200)
    return [f"--node-manager-port={nm}", f"--object-manager-port={om}", f"--dashboard-agent-listen-port={agent}",
            f"--dashboard-agent-grpc-port={agent_grpc}", f"--metrics-export-port={metrics}",
            f"--runtime-env-agent-port={renv}", f"--min-worker-port={lo}", f"--max-worker-port={lo + 200}"]


class LocalRayCluster:
    def __init__(self, temp_dir: Path, cpus_per_node: int = 1, env: dict | None = None):
        self.temp_dir = Path(temp_dir)
        self.cpus = cpus_per_node
        self.env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", **(env or {}),
                    # `python` in the job's entrypoint is this interpreter, as on a head node whose env is active.
                    "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
        self.env.pop("RAY_ADDRESS", None)
        # Token auth as a real head should run it (Ray 2.60 turns it on when ~/.ray/auth_token
        # exists); the token lives in this cluster's env only, and `runner` clients get it from there.
        self.env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=os.urandom(16).hex())
        self.env.pop("RAY_AUTH_TOKEN_PATH", None)
        self.procs: list[subprocess.Popen] = []
        self.node_manager_ports: list[int] = []
        self.restarts = 0  # nodes whose `ray start` failed and were started again
        self._pick_head_ports()

    def _pick_head_ports(self) -> list[str]:
        gcs, dash, client = free_ports(3)
        self.gcs_address = f"127.0.0.1:{gcs}"
        self.dashboard = f"http://127.0.0.1:{dash}"
        return [f"--port={gcs}", f"--dashboard-port={dash}", f"--ray-client-server-port={client}"]

    def _start(self, args: list[str], log: str) -> subprocess.Popen:
        out = open(self.temp_dir / log, "a")
        ports = _node_ports()
        self.node_manager_ports.append(int(ports[0].split("=")[1]))
        p = subprocess.Popen([str(BIN / "ray"), "start", "--block", "--disable-usage-stats",
                              "--node-ip-address=127.0.0.1", f"--num-cpus={self.cpus}", "--num-gpus=0",
                              *args, *ports],
                             stdout=out, stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
        self.procs.append(p)
        return p

    def _drop(self, p: subprocess.Popen) -> None:
        """Forget a node whose `ray start` failed, after killing what it left in its group."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        i = self.procs.index(p)
        del self.procs[i], self.node_manager_ports[i]

    def _start_node(self, args, log: str, up, timeout: float, what: str, attempts: int = 3) -> None:
        """Start one node (`args()` gives its arguments) and wait until `up()`."""
        for attempt in range(attempts):
            p = self._start(args(), log)
            if self._wait(up, timeout, what, watch=p, final=attempt == attempts - 1):
                return
            self._drop(p)
            self.restarts += 1

    def start(self, workers: int = 1, timeout: float = 180) -> "LocalRayCluster":
        self.temp_dir.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        self._start_node(lambda: ["--head", f"--temp-dir={self.temp_dir}", "--include-dashboard=true",
                                  "--dashboard-host=127.0.0.1", *self._pick_head_ports()], "head.log",
                         self._job_api_up, timeout, "the head's Job API")
        for i in range(workers):
            # The log monitor only forwards worker prints to drivers; a worker node does without it.
            self._start_node(lambda: [f"--address={self.gcs_address}", "--include-log-monitor=false"],
                             f"worker{i}.log", lambda n=2 + i: self.alive_nodes() >= n, timeout,
                             f"node {2 + i} of {1 + workers}")
        print(f"Ray cluster: {1 + workers} node(s) up in {time.monotonic() - t0:.1f}s "
              f"({self.restarts} node start(s) retried)")
        return self

    def _get(self, path: str, timeout: float):
        req = urllib.request.Request(f"{self.dashboard}{path}",
                                     headers={"Authorization": f"Bearer {self.env['RAY_AUTH_TOKEN']}"})
        return urllib.request.urlopen(req, timeout=timeout)

    def _job_api_up(self) -> bool:
        try:
            with self._get("/api/version", 2) as r:
                return r.status == 200
        except OSError:
            return False

    def alive_nodes(self) -> int:
        import json

        try:
            with self._get("/nodes?view=summary", 5) as r:
                nodes = json.load(r)["data"]["summary"]
        except (OSError, KeyError, ValueError):
            return 0
        return sum(1 for n in nodes if n.get("raylet", {}).get("state") == "ALIVE")

    def actors(self, class_name: str) -> list[dict]:
        """Actors of this class (alive or dead) with the node each ran on, from Ray's state API."""
        import json

        q = f"/api/v0/actors?filter_keys=class_name&filter_predicates=%3D&filter_values={class_name}&detail=1&limit=1000"
        with self._get(q, 10) as r:
            return json.load(r)["data"]["result"]["result"]

    def node_ids(self) -> dict[str, str]:
        """node_id -> 'head' or 'worker'."""
        import json

        with self._get("/nodes?view=summary", 5) as r:
            nodes = json.load(r)["data"]["summary"]
        return {n["raylet"]["nodeId"]: "head" if n["raylet"].get("isHeadNode") else "worker" for n in nodes}

    def kill_node(self, node_id: str) -> None:
        """Lose a worker node at once: SIGKILL its `ray start` process group (raylet, agents); its
        workers die with their raylet."""
        import json

        with self._get("/nodes?view=summary", 5) as r:
            nodes = json.load(r)["data"]["summary"]
        (port,) = [n["raylet"]["nodeManagerPort"] for n in nodes if n["raylet"]["nodeId"] == node_id]
        index = self.node_manager_ports.index(port)
        assert index > 0, "not killing the head"
        os.killpg(self.procs[index].pid, signal.SIGKILL)
        self.procs[index].wait()

    def _wait(self, ok, timeout: float, what: str, watch: subprocess.Popen, final: bool) -> bool:
        """True once `ok()`; False when `watch` (the node being started) exits first and this is
        not the final attempt; else the cluster is stopped and the logs raised."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if ok():
                return True
            if watch.poll() is not None:
                if not final:
                    return False
                break
            if any(p.poll() is not None for p in self.procs if p is not watch):
                break
            time.sleep(1)
        logs = "\n".join((self.temp_dir / f).read_text()[-2000:] for f in os.listdir(self.temp_dir) if f.endswith(".log"))
        self.stop()
        raise RuntimeError(f"Ray cluster: {what} not up within {timeout}s\n{logs}")

    def stop(self) -> None:
        import psutil

        for p in reversed(self.procs):  # workers first, then the head
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        ours = {p.pid for p in self.procs}
        marker = str(self.temp_dir)
        for proc in psutil.process_iter(["pid", "cmdline"]):
            try:
                if proc.pid == os.getpid():
                    continue
                in_group = os.getpgid(proc.pid) in ours
                if in_group or marker in " ".join(proc.info["cmdline"] or []):
                    proc.kill()
            except (psutil.Error, ProcessLookupError, PermissionError):
                pass
        self.procs.clear()

    def __enter__(self) -> "LocalRayCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@contextlib.contextmanager
def running_cluster(prefix: str, cpus_per_node: int, workers: int):
    """A LocalRayCluster in a fresh short temp dir (Ray's AF_UNIX socket paths under it must stay
    within 107 bytes), stopped and removed afterwards."""
    temp = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    c = LocalRayCluster(temp, cpus_per_node=cpus_per_node)
    c.start(workers=workers)
    try:
        yield c
    finally:
        c.stop()
        shutil.rmtree(temp, ignore_errors=True)
