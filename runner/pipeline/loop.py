"""The one pipeline: a source of batches flowing through stages, then to a sink.

    run_pipeline(source, [generation, rules, judge], on_done)     # runner sweep / watch
    run_pipeline(stored_replies, [rules, judge], on_done)          # runner grade

A stage is a pool of workers (Ray actors in production, threads in unit tests) that each take
up to a bounded number of batches at once. The loop keeps every worker of every stage busy:
the first stage is fed from the source whenever it has a free slot, and a batch moves to the
next stage the moment its current stage returns it, so grading overlaps generation and no
stage waits for another to drain. `on_done(batch)` gets each batch after its last stage, in
completion order; outputs stay matched to inputs because a batch carries its items and every
stage fills per-item lists in item order.

Failures are the stages' business (`Stage.collect`): a generation batch whose actor died goes
back to the source to be retried elsewhere (collect returns False); a grader that failed leaves
its items unscored with the reason. Work is never dropped.

Plain Python: the only Ray call is the default `wait`, so the loop is tested with thread-pool
stages and `concurrent.futures.wait`.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable, Iterable, Protocol, Sequence

from runner.pipeline.sources import Batch

# What `Stage.collect` returns for a batch its own stage must run again (e.g. a grader's actor
# died mid-call): it goes back to the head of that stage's queue, not to the source.
AGAIN = "again"


class Source(Protocol):
    def next_batch(self, loaded: str | None, strict: bool = False) -> Batch | None:
        """The next batch for a worker with checkpoint `loaded`; `strict`: of that checkpoint only."""

    def retry(self, batch: Batch) -> None: ...

    def finished(self, batch: Batch) -> None: ...

    def all_done(self) -> bool: ...


class Stage(Protocol):
    name: str

    def free_slots(self) -> list[tuple[int, str | None, bool]]:
        """Workers with room for one more batch, in the order to fill them: (worker, the
        checkpoint key it has loaded, whether it may only take batches of that checkpoint)."""

    def submit(self, worker: int, batch: Batch) -> Any:
        """Start `batch` on `worker`; returns a handle the pipeline waits on."""

    def collect(self, worker: int, handle: Any, batch: Batch) -> bool | str:
        """Fill the batch with this stage's outputs (or failure outputs). False: the batch must
        be generated again (it goes back to the source); AGAIN: this stage runs it again."""

    def alive(self) -> bool:
        """False once no worker can take batches any more."""

    def fail(self, batch: Batch, why: str) -> None:
        """Fill the batch with failure outputs without running it (no worker left)."""

    def probes(self) -> Iterable[Any]:
        """Extra handles to wait on (e.g. a restarted worker's readiness check)."""

    def probe_done(self, handle: Any) -> None: ...


def ray_wait(handles: Sequence[Any], timeout: float) -> list[Any]:
    import ray

    ready, _ = ray.wait(list(handles), num_returns=1, timeout=timeout)
    return ready


def run_pipeline(source: Source, stages: Sequence[Stage], on_done: Callable[[Batch], None],
                 on_tick: Callable[[], None] = lambda: None,
                 wait: Callable[[Sequence[Any], float], list[Any]] = ray_wait, max_backlog: int = 64,
                 poll_seconds: float = 10.0) -> None:
    """Run every batch of `source` through `stages`, then `on_done`. Returns when all are done.

    `max_backlog`: batches waiting for a later stage beyond which the first stage is not fed
    (bounded memory when, say, the judge is slower than generation). `wait(handles, timeout)`
    returns the ready ones, possibly none after `poll_seconds` (so restarts that never come are
    noticed)."""
    running: dict[Any, tuple[int, int, Batch]] = {}   # handle -> (stage index, worker, batch)
    queues: list[deque[Batch]] = [deque() for _ in stages]

    def forward(k: int, batch: Batch) -> None:
        if k + 1 < len(stages):
            queues[k + 1].append(batch)
        else:
            on_done(batch)
            source.finished(batch)

    def next_for(k: int, loaded: str | None, strict: bool = False) -> Batch | None:
        if queues[k]:
            return queues[k].popleft()
        if k == 0 and sum(map(len, queues)) < max_backlog:
            return source.next_batch(loaded, strict)
        return None

    def pump(k: int) -> None:
        stage = stages[k]
        if not stage.alive():
            # No worker left in this stage: what would have gone to it fails, with the reason.
            while (b := next_for(k, None)) is not None:
                stage.fail(b, f"{stage.name} failed: no worker left (every actor died)")
                forward(k, b)
            return
        while True:
            for worker, loaded, strict in stage.free_slots():
                b = next_for(k, loaded, strict)
                if b is not None:
                    running[stage.submit(worker, b)] = (k, worker, b)
                    break  # slots changed: ask again
            else:
                return

    while True:
        for k in reversed(range(len(stages))):  # later stages first: finish work before taking more
            pump(k)
        on_tick()
        probes = {h: stage for stage in stages for h in stage.probes()}
        if not running and not any(queues):
            if source.all_done():
                return
            if not probes:
                raise RuntimeError("pipeline stalled: work is left but no stage can take it")
        for h in wait(list(running) + list(probes), poll_seconds):
            if h in probes:
                probes.pop(h).probe_done(h)
                continue
            k, worker, b = running.pop(h)
            outcome = stages[k].collect(worker, h, b)
            if outcome is AGAIN:      # this stage runs it again (its actor died); nothing upstream is redone
                queues[k].appendleft(b)
            elif outcome:
                forward(k, b)
            else:
                source.retry(b)


__all__ = ["AGAIN", "Source", "Stage", "ray_wait", "run_pipeline"]
