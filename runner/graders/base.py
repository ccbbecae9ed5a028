"""The Grader protocol and what a grader registers: a plain class that grades batches, plus how
its stage of Ray actors is started.

    class MyGrader:                                   # runs inside the stage's actors
        name = "mine"
        def grade(self, pairs): return [MyOutput(item.item_id, ...) for item, result in pairs]

    ENTRY = GraderEntry(name="mine", make=MyGrader, stage=my_stage_spec, columns=my_columns)

and one line in `runner/graders/registry.py`. The pipeline's one grading stage runs any entry:
outputs land in `Batch.grades[name]`, matched to the batch's items by item_id; a failed call
fills the batch with the stage spec's `failed(item, reason)` outputs (a transient reason, see
`runner.graders.reasons`: a re-run grades those items again).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

from runner.generation.engine import GenerationResult
from runner.grid import WorkItem


class Grader(Protocol):
    name: str

    def grade(self, pairs: Sequence[tuple[WorkItem, GenerationResult]]) -> list[Any]:
        """One output per pair, in order, each with the pair's `item_id`."""


@dataclass(frozen=True)
class GraderStageSpec:
    """Everything the driver needs to start one grader's actors; all plain values."""

    make_kwargs: dict[str, Any]                 # passed to the entry's `make` inside each actor
    num_actors: int
    actor_options: list[dict]                   # per actor: num_cpus, num_gpus, runtime_env
    depth: int = 2                              # batches in flight per actor
    max_task_retries: int = 2                   # Ray's retries of a call whose actor died
    threaded: bool = False                      # the actor runs its `depth` batches at once (an engine's)
    reserves: int = 0                           # CPUs/GPUs its local engines take (generation leaves them free)
    describe: str = ""                          # for the start line, e.g. "1 judge engine"
    # The output for an item whose grading failed (driver side only; never sent to an actor).
    failed: Callable[[WorkItem, str], Any] | None = None


@dataclass
class StageContext:
    """What a grader's stage builder may read on the driver (the plan's resolved values)."""

    cfg: Any                                    # SweepConfig
    device: str
    packs: list
    pack_dirs: list[str]
    families: list[str]
    where: dict[str, list[str]]
    judge_model: Any = None                     # Checkpoint, or None: no judge
    first_core: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class GraderEntry:
    name: str
    make: Callable[..., Grader]                                 # in the actor: plain kwargs -> grader
    stage: Callable[[StageContext], GraderStageSpec | None]    # on the driver; None: not enabled
    columns: Callable[[Any], dict] = lambda output: {}          # row columns of one output (None: all null)


__all__ = ["Grader", "GraderEntry", "GraderStageSpec", "StageContext"]
