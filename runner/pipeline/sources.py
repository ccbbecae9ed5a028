"""Sources of work for the pipeline: what batch goes to which engine next. Plain Python, tested
without Ray.

`GridSource` (sweep, watch): items arrive grouped by checkpoint. An engine keeps the checkpoint
it has loaded until that checkpoint's batches run out, then takes a checkpoint no engine has
started, then helps with the one that has the most work left. So each engine switches weights
as rarely as possible. Within a checkpoint the grid gives the seeds of one condition one after
another; a batch ends where a condition's seeds would not all fit, so they reach the engine
together and seeds 2..N are prefilled from seed 1's prefix-cache blocks (a condition with more
seeds than a batch holds is split, in grid order).

`StoredSource` (`runner grade`): stored replies, already generated, in batches.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from runner.checkpoints import Checkpoint
from runner.generation.adapters import engine_group
from runner.grid import WorkItem


@dataclass
class Batch:
    """Items of one checkpoint, and what each stage has added to them so far (all in item order)."""

    ckpt: Checkpoint | None
    items: list[WorkItem]
    attempt: int = 0
    results: list | None = None        # GenerationResult per item (generation, or stored)
    # Per grader (runner.graders.registry): its outputs, one per item, e.g. grades["rules"].
    grades: dict[str, list] = field(default_factory=dict)
    stage_attempts: dict[str, int] = field(default_factory=dict)   # grading stage -> calls lost with an actor
    context: list[Any] | None = None   # per item, what the source knows besides (regrade: stored row)


@dataclass
class _Source:
    ckpt: Checkpoint
    items: Iterator[WorkItem]
    exhausted: bool = False
    started: bool = False
    in_flight: int = 0
    item_ids: set[str] = field(default_factory=set)
    pending: list[WorkItem] = field(default_factory=list)   # the next condition's items, not yet batched
    lookahead: WorkItem | None = None                         # read from `items`, of the condition after


def _condition(it: WorkItem) -> tuple[str, str]:
    return it.scenario, it.condition


class GridSource:
    def __init__(self, sources: list[tuple[Checkpoint, Iterator[WorkItem]]], batch_size: int,
                 is_done: Callable[[str], bool],
                 prepare: Callable[[Checkpoint, list[WorkItem]], list[WorkItem]] | None = None):
        """`prepare(ckpt, items)`: applied to each new batch's items before it is handed out
        (generation/pretokenize.py renders the prompts to token ids there)."""
        self.sources = {c.key: _Source(c, it) for c, it in sources}
        self.order = [c.key for c, _ in sources]
        # Checkpoints one loaded engine serves side by side (LoRA adapters of one base model).
        self.group = {c.key: engine_group(c) for c, _ in sources}
        self.batch_size = batch_size
        self.is_done = is_done
        self.retries: deque[Batch] = deque()
        self.skipped = 0
        self.prepare = prepare

    def _next_group(self, src: _Source) -> list[WorkItem]:
        """The items still to do of the next condition in grid order ([] once none is left)."""
        while True:
            first = src.lookahead if src.lookahead is not None else next(src.items, None)
            src.lookahead = None
            if first is None:
                return []
            group = [first]
            for it in src.items:
                if _condition(it) != _condition(first):
                    src.lookahead = it
                    break
                group.append(it)
            src.item_ids.update(it.item_id for it in group)
            todo = [it for it in group if not self.is_done(it.item_id)]
            self.skipped += len(group) - len(todo)
            if todo:
                return todo

    def _take(self, src: _Source) -> Batch | None:
        batch: list[WorkItem] = []
        while len(batch) < self.batch_size:
            group, src.pending = src.pending or self._next_group(src), []
            if not group:
                src.exhausted = True
                break
            room = self.batch_size - len(batch)
            if batch and len(group) > room:
                src.pending = group  # whole, into the next batch
                break
            batch += group[:room]
            src.pending = group[room:]  # a condition larger than a batch: the rest comes next
        if not batch:
            return None
        if self.prepare is not None:
            batch = self.prepare(src.ckpt, batch)
        src.started = True
        src.in_flight += 1
        return Batch(src.ckpt, batch)

    def next_batch(self, loaded: str | None, strict: bool = False) -> Batch | None:
        """The next batch for an engine that has checkpoint `loaded` (a Checkpoint.key) loaded;
        `strict`: only a batch that engine serves without draining (the engine is busy): of that
        checkpoint, or of another adapter of its base model (one not yet started first)."""
        for b in self.retries:
            if not strict or self._same_engine(b.ckpt.key, loaded):
                self.retries.remove(b)
                self.sources[b.ckpt.key].in_flight += 1
                return b
        if strict:
            if loaded not in self.sources:
                return None
            siblings = [k for k in self.order if k != loaded and self._same_engine(k, loaded)]
            siblings.sort(key=lambda k: self.sources[k].started)
            for key in (loaded, *siblings):
                src = self.sources[key]
                b = None if src.exhausted else self._take(src)
                if b is not None:
                    return b
            return None
        candidates = []
        if loaded in self.sources:
            candidates.append(self.sources[loaded])
        candidates += [self.sources[k] for k in self.order if not self.sources[k].started]
        candidates += sorted((self.sources[k] for k in self.order), key=lambda s: s.in_flight)
        for src in candidates:
            if src.exhausted:
                continue
            b = self._take(src)
            if b is not None:
                return b
        return None

    def _same_engine(self, key: str, loaded: str | None) -> bool:
        return key == loaded or (loaded in self.group and self.group[key] == self.group[loaded])

    def retry(self, batch: Batch) -> None:
        self.sources[batch.ckpt.key].in_flight -= 1
        batch.attempt += 1
        self.retries.append(batch)

    def finished(self, batch: Batch) -> None:
        self.sources[batch.ckpt.key].in_flight -= 1

    def complete_checkpoints(self) -> list[Checkpoint]:
        """Checkpoints whose items are all handed out and none is in flight or awaiting retry."""
        waiting = {b.ckpt.key for b in self.retries}
        return [s.ckpt for s in self.sources.values()
                if s.exhausted and s.in_flight == 0 and s.ckpt.key not in waiting]

    def item_ids(self, key: str) -> set[str]:
        return self.sources[key].item_ids

    def cell_metrics(self, key: str) -> dict:
        """Per-checkpoint figures of how seeds were drawn: none for a fixed grid (see adaptive.py)."""
        return {}

    def all_done(self) -> bool:
        return not self.retries and all(s.exhausted and s.in_flight == 0 for s in self.sources.values())



class StoredSource:
    """Replies generated earlier (`runner grade`): (item, GenerationResult, stored row) triples,
    handed out in batches with `results` already filled; nothing to retry or resume."""

    def __init__(self, todo: list[tuple[WorkItem, Any, Any]], batch_size: int):
        self._todo = todo
        self._next = 0
        self.batch_size = batch_size
        self.in_flight = 0
        self.skipped = 0

    def next_batch(self, loaded: str | None, strict: bool = False) -> Batch | None:
        chunk = self._todo[self._next:self._next + self.batch_size]
        if not chunk:
            return None
        self._next += len(chunk)
        self.in_flight += 1
        return Batch(None, [c[0] for c in chunk], results=[c[1] for c in chunk], context=[c[2] for c in chunk])

    def retry(self, batch: Batch) -> None:  # pragma: no cover -- no generation stage to fail
        raise RuntimeError("stored replies are never regenerated")

    def finished(self, batch: Batch) -> None:
        self.in_flight -= 1

    def all_done(self) -> bool:
        return self._next >= len(self._todo) and self.in_flight == 0
