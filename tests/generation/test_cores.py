"""CPU cores are claimed on the engine's own node, not computed on the driver (issue 15 B6)."""

from __future__ import annotations

import subprocess
import sys
import time

from runner.generation.cores import claim_cores

HOLD = ("import sys, time; from runner.generation.cores import claim_cores; "
        "print(','.join(map(str, claim_cores(int(sys.argv[1]), sys.argv[2], ncpu=4))), flush=True); time.sleep(60)")


def _holder(threads: int, ns: str) -> tuple[subprocess.Popen, list[int]]:
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(threads), ns], stdout=subprocess.PIPE, text=True)
    return p, [int(c) for c in p.stdout.readline().strip().split(",")]


def test_engines_on_one_node_get_distinct_cores_and_a_dead_ones_come_back(tmp_path):
    ns = f"test-{time.time_ns()}"
    a, cores_a = _holder(2, ns)
    b, cores_b = _holder(1, ns)
    try:
        assert cores_a == [0, 1] and cores_b == [2]
        assert claim_cores(1, ns, ncpu=4) == [3]       # this process takes the last free core
        a.kill()
        a.wait()
        c, cores_c = _holder(2, ns)                    # the killed engine's cores are free again
        c.kill()
        assert cores_c == [0, 1]
    finally:
        for p in (a, b):
            p.kill()


def test_an_oversubscribed_node_shares_cores_rather_than_failing():
    ns = f"test-{time.time_ns()}"
    assert claim_cores(2, ns, ncpu=2) == [0, 1]
    assert claim_cores(2, ns, ncpu=2) == [0, 1]       # both held by this process: shared
