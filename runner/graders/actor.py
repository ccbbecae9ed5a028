"""The one Ray actor every grader runs in. Thin: it builds the registered grader from plain
values and passes batches to it; the grading logic lives in plain classes tested without Ray."""

from __future__ import annotations

import os
from typing import Any, Callable, Sequence

from runner.generation.engine import EngineDeadError, GenerationResult
from runner.grid import WorkItem


class GradingActor:
    """Decorated with `ray.remote` by the pool. `make`: the registered entry's builder (a class or
    function Ray ships by reference), called here with plain keyword values."""

    def __init__(self, make: Callable[..., Any], make_kwargs: dict[str, Any]):
        self.grader = make(**make_kwargs)

    def ping(self) -> dict:
        return {"pid": os.getpid(), "node": os.uname().nodename,
                "bind": os.environ.get("VLLM_CPU_OMP_THREADS_BIND")}

    def grade(self, pairs: Sequence[tuple[WorkItem, GenerationResult]]) -> list:
        try:
            return self.grader.grade(pairs)
        except EngineDeadError:
            os._exit(1)  # Ray restarts the actor with a fresh engine
