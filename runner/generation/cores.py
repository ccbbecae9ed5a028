"""CPU cores for an engine, chosen on the node that runs it.

Two CPU engines on one node must not bind their OpenMP threads to the same cores, and the driver
cannot know which node Ray places an actor on, nor how many cores that node has. So each engine
actor claims its cores itself, at start, on its own node: it takes the first `threads` cores
nobody on the node holds, each held by an `flock` on a file under the node's temp dir for as
long as the actor's process lives (the kernel drops the lock when it dies, so a restarted actor
claims again). With more engines than cores on a node, cores are shared, the least held first.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from pathlib import Path

_held: list = []  # open lock files: the claim lasts as long as the process


def _lock_dir(namespace: str) -> Path:
    d = Path(tempfile.gettempdir()) / f"runner-cores-{os.getuid()}" / namespace
    d.mkdir(parents=True, exist_ok=True)
    return d


def claim_cores(threads: int, namespace: str = "default", ncpu: int | None = None) -> list[int]:
    """Claim `threads` cores of this node for this process; returns their numbers."""
    ncpu = ncpu or os.cpu_count() or 1
    directory = _lock_dir(namespace)
    cores: list[int] = []
    for core in range(ncpu):
        if len(cores) == threads:
            break
        fh = open(directory / f"core-{core}.lock", "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            continue
        _held.append(fh)
        cores.append(core)
    k = 0
    while len(cores) < threads:  # oversubscribed node: share, rather than fail to start
        cores.append(k % ncpu)
        k += 1
    return sorted(cores)


def bind_cpu_engine(threads: int, namespace: str = "default") -> str:
    """Set this process's vLLM CPU binding (before vLLM is imported) to cores claimed here."""
    cores = claim_cores(threads, namespace)
    os.environ["VLLM_CPU_OMP_THREADS_BIND"] = ",".join(map(str, cores))
    return os.environ["VLLM_CPU_OMP_THREADS_BIND"]


def cpu_env(threads: int, kv_gib: int) -> dict[str, str]:
    """Environment of a CPU engine actor. Which cores it binds to is decided on its own node, by
    the actor (runner.generation.cores), not here: the driver knows neither the node nor its cores."""
    return {
        "VLLM_ENABLE_V1_MULTIPROCESSING": "0",   # engine in the actor's own process: far faster start on CPU
        "VLLM_CPU_KVCACHE_SPACE": str(kv_gib),
        "OMP_NUM_THREADS": str(threads),
    }


def passthrough_env() -> dict[str, str]:
    return {"VLLM_LOGGING_LEVEL": os.environ.get("VLLM_LOGGING_LEVEL", "WARNING"),
            "TOKENIZERS_PARALLELISM": "false"}


__all__ = ["bind_cpu_engine", "claim_cores", "cpu_env", "passthrough_env"]
