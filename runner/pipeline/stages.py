"""The pipeline's stages on Ray: generation, rule grading, judging. Each is a pool of Ray actors,
thin wrappers over plain classes (`Generator`, `RuleGrader`, `JudgeGrader`), with a bound on
batches in flight per actor and its own failure policy (see `Stage` in loop.py).

Saturation: a generation or judge actor is a threaded Ray actor that runs several batches at
once; their requests share one continuously stepped engine (generation/engine_loop.py), so
requests of the next batches enter the engine while earlier ones decode. The number of batches
in flight per actor is `ceil(max_inflight / batch_size)`.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any, Callable

from runner.generation.engine import GenerationResult
from runner.graders.reasons import failed
from runner.pipeline.loop import AGAIN
from runner.pipeline.ray_setup import ACTOR_RESTARTS, kill_all, reason
from runner.pipeline.sources import Batch

log = logging.getLogger(__name__)

# Seconds to wait for Ray to restart a dead actor before going on without it.
RESTART_TIMEOUT_S = 600.0


class RayCalls:
    """How a stage fetches a result and tells a failed call from a dead actor: Ray's by default;
    unit tests pass their own (plain exceptions, no Ray), as the loop takes its `wait`."""

    def get(self, handle):
        import ray

        return ray.get(handle)

    def call_failed(self, e: BaseException) -> bool:
        from ray.exceptions import RayError

        return isinstance(e, RayError)

    def actor_died(self, e: BaseException) -> bool:
        from ray.exceptions import RayActorError

        return isinstance(e, RayActorError)

    def unavailable(self, e: BaseException) -> bool:
        """The actor cannot be reached for now (its node is being lost, Ray restarts it): ask again."""
        from ray.exceptions import ActorUnavailableError

        return isinstance(e, ActorUnavailableError)


class MismatchError(RuntimeError):
    """A stage returned outputs that are not its inputs' (by item_id, in order)."""


def _check_ids(batch: Batch, outputs) -> None:
    got = [o.item_id for o in outputs]
    want = [it.item_id for it in batch.items]
    if got != want:
        raise MismatchError(f"outputs for {len(got)} items do not match the batch's {len(want)} items")


def batches_in_flight(max_inflight: int, batch_size: int) -> int:
    """Batches per actor that keep `max_inflight` requests in its engine (at least 2, so the
    next batch is already queued when one finishes)."""
    return max(2, math.ceil(max_inflight / max(1, batch_size)))


class _ActorSlots:
    """Per-actor bookkeeping: batches in flight (bounded by `depth`), deaths, restarts."""

    def __init__(self, actors: list, depth: int, nodes: list[dict] | None = None):
        self.actors = actors
        self.depth = depth
        self.nodes = nodes or [{} for _ in actors]
        self.inflight = [0] * len(actors)
        self.deaths = [0] * len(actors)
        self.epoch = [0] * len(actors)          # bumped on each death seen
        self.submitted_in: dict[Any, int] = {}   # handle -> the actor's epoch when submitted
        self.recovering: dict[Any, int] = {}     # readiness-check handle -> actor
        self.probe_started: dict[int, float] = {}

    def usable(self, i: int) -> bool:
        return self.deaths[i] <= ACTOR_RESTARTS and i not in self.recovering.values()

    def alive(self) -> bool:
        return any(d <= ACTOR_RESTARTS for d in self.deaths)

    def free_list(self) -> list[int]:
        """Actors with room for another batch, least busy first."""
        free = [i for i in range(len(self.actors)) if self.usable(i) and self.inflight[i] < self.depth]
        return sorted(free, key=lambda i: self.inflight[i])

    def submitted(self, i: int, handle) -> None:
        self.inflight[i] += 1
        self.submitted_in[handle] = self.epoch[i]

    def returned(self, i: int, handle) -> int:
        self.inflight[i] -= 1
        return self.submitted_in.pop(handle)

    def died(self, i: int, submitted_epoch: int) -> bool:
        """An actor call failed with the actor gone. Every batch in flight on it fails together:
        count the death once (True the first time), and wait for Ray's restart (a readiness
        check) before using it again."""
        if submitted_epoch != self.epoch[i]:
            return False
        self.epoch[i] += 1
        self.deaths[i] += 1
        if self.deaths[i] <= ACTOR_RESTARTS:
            self.recovering[self.actors[i].ping.remote()] = i
            self.probe_started[i] = time.monotonic()
        return True

    def probe_done(self, handle, calls: "RayCalls") -> None:
        i = self.recovering.pop(handle)
        try:
            self.nodes[i] = calls.get(handle)
        except Exception as e:  # noqa: BLE001 -- any failure of the readiness check: the actor is gone
            if not calls.call_failed(e):
                raise
            if calls.unavailable(e):  # not gone, not back yet: check again (expire_probes bounds the wait)
                self.recovering[self.actors[i].ping.remote()] = i
                return
            log.warning("actor %d did not come back: %s", i, reason(e))
            self.deaths[i] = ACTOR_RESTARTS + 1

    def expire_probes(self, timeout_s: float = RESTART_TIMEOUT_S) -> None:
        """An actor Ray cannot restart (its node is gone and no other has room) never answers:
        after `timeout_s` it is written off, so the run ends instead of waiting forever."""
        now = time.monotonic()
        for handle, i in list(self.recovering.items()):
            if now - self.probe_started[i] > timeout_s:
                log.warning("actor %d was not restarted within %.0fs; going on without it", i, timeout_s)
                del self.recovering[handle]
                self.deaths[i] = ACTOR_RESTARTS + 1

    def shutdown(self) -> None:
        kill_all(self.actors)


class _PooledStage:
    """What every stage does with its `_ActorSlots`: liveness, restart checks, shutdown."""

    slots: _ActorSlots
    calls: RayCalls

    @property
    def size(self) -> int:
        return len(self.slots.actors)

    def alive(self) -> bool:
        return self.slots.alive()

    def probes(self):
        self.slots.expire_probes()
        return list(self.slots.recovering)

    def probe_done(self, handle) -> None:
        self.slots.probe_done(handle, self.calls)

    def shutdown(self) -> None:
        self.slots.shutdown()


class GenerationStage(_PooledStage):
    """Generation actors. A batch whose actor died goes back to be retried on any actor (at most
    `max_retries` times, then its items become `error` rows)."""

    name = "generation"

    def __init__(self, actors: list, depth: int, max_retries: int, nodes: list[dict] | None = None,
                 calls: RayCalls | None = None):
        self.slots = _ActorSlots(actors, depth, nodes)
        self.calls = calls or RayCalls()
        self.loaded: list[str | None] = [None] * len(actors)
        self.max_retries = max_retries
        self.output_tokens = 0
        self.batch_failures = 0
        self.cumulative: dict[int, dict] = {}  # per actor: its latest cumulative stats
        self.retired: dict[str, float] = {}    # totals of actor incarnations that died

    def free_slots(self):
        """An actor with batches in flight takes only batches of its loaded checkpoint: a batch
        of another would make the engine drain and swap while its own work is half done. An idle
        actor takes any (its own checkpoint first, see GridSource)."""
        return [(i, self.loaded[i], self.slots.inflight[i] > 0) for i in self.slots.free_list()]

    def _total(self, key: str):
        return self.retired.get(key, 0) + sum(c.get(key, 0) for c in self.cumulative.values())

    @property
    def stats(self) -> dict:
        return {"output_tokens": self.output_tokens, "batch_failures": self.batch_failures,
                "load_seconds": self._total("load_seconds"), "fallbacks": self._total("fallbacks")}

    def submit(self, worker: int, batch: Batch):
        ref = self.slots.actors[worker].generate.remote(batch.ckpt, batch.items)
        self.loaded[worker] = batch.ckpt.key
        self.slots.submitted(worker, ref)
        return ref

    def collect(self, worker: int, handle, batch: Batch) -> bool:
        epoch = self.slots.returned(worker, handle)
        try:
            results, st = self.calls.get(handle)
            _check_ids(batch, results)
        except Exception as e:  # noqa: BLE001 -- classified below; anything else propagates
            if not (isinstance(e, MismatchError) or self.calls.call_failed(e)):
                raise
            if self.calls.actor_died(e) and self.slots.died(worker, epoch):
                # A restarted actor starts with no engine and its counters at zero: keep its totals.
                self.loaded[worker] = None
                for k, v in self.cumulative.pop(worker, {}).items():
                    self.retired[k] = self.retired.get(k, 0) + v
            # Anything else (a checkpoint that fails to load, say) is the batch's failure, not the actor's.
            self.batch_failures += 1
            why = reason(e)
            log.warning("generation batch failed on actor %d (attempt %d): %s", worker, batch.attempt + 1, why)
            if batch.attempt < self.max_retries:
                return False
            self.fail(batch, f"gave up after {batch.attempt + 1} attempts: {why}")
            return True
        batch.results = results
        self.output_tokens += st["output_tokens"]
        self.cumulative[worker] = {"load_seconds": st["load_seconds"], "fallbacks": st["fallbacks"], **st["engine"]}
        return True

    def fail(self, batch: Batch, why: str) -> None:
        batch.results = [GenerationResult(it.item_id, "error", error=why) for it in batch.items]


    def engine_loads(self) -> dict:
        return {k: self._total(k) for k in ("fresh", "swap", "swap_verified", "swap_rejected", "adapter")}

    def prompt_tokens(self) -> dict:
        """Prompt tokens sent, computed and served from the prefix cache, over every engine so far."""
        from runner.generation.prompt_stats import PROMPT_TOKEN_KEYS

        return {k: self._total(k) for k in PROMPT_TOKEN_KEYS}



class GradingStage(_PooledStage):
    """Any registered grader (rules, judge, ...): any actor takes any batch; its outputs go to
    `batch.grades[name]`. A failed call leaves the batch's items unscored with a transient
    reason (`<name> failed: ...`: a re-run grades them again); a generated reply is never dropped."""

    def __init__(self, name: str, actors: list, depth: int, failed: Callable[[Any, str], Any],
                 calls: RayCalls | None = None, max_retries: int = 2):
        self.name = name
        self.max_retries = max_retries
        self.slots = _ActorSlots(actors, depth)
        self._failed = failed
        self.calls = calls or RayCalls()

    def free_slots(self):
        return [(i, None, False) for i in self.slots.free_list()]

    def submit(self, worker: int, batch: Batch):
        ref = self.slots.actors[worker].grade.remote(list(zip(batch.items, batch.results)))
        self.slots.submitted(worker, ref)
        return ref

    def collect(self, worker: int, handle, batch: Batch) -> bool:
        epoch = self.slots.returned(worker, handle)
        try:
            out = self.calls.get(handle)
            _check_ids(batch, out)
            batch.grades[self.name] = out
        except Exception as e:  # noqa: BLE001 -- classified below; anything else propagates
            if not (isinstance(e, MismatchError) or self.calls.call_failed(e)):
                raise
            if self.calls.actor_died(e):
                self.slots.died(worker, epoch)
                tries = batch.stage_attempts.get(self.name, 0)
                if tries < self.max_retries:  # the reply is there: grade it again on a live actor
                    batch.stage_attempts[self.name] = tries + 1
                    log.warning("%s batch lost its actor (attempt %d): %s", self.name, tries + 1, reason(e))
                    return AGAIN
            self.fail(batch, reason(e))
        return True

    def fail(self, batch: Batch, why: str) -> None:
        text = why if why.startswith(f"{self.name} failed:") else failed(self.name, why)
        batch.grades[self.name] = [self._failed(it, text) for it in batch.items]


__all__ = ["GenerationStage", "GradingStage", "RayCalls", "batches_in_flight"]
