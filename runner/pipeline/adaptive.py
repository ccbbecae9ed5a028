"""Adaptive seeds: per (checkpoint, family) cell, draw seeds in rounds until the harmful rate is
known well enough (`sampling.adaptive`).

A cell starts with `min_seeds` seeds per condition; when every item of its round is labelled,
the rate's 95% Wilson interval is computed over the cell's scored items (every condition, every
seed so far). Half-width at most `target_halfwidth`: the cell stops. Otherwise `min_seeds` more
seeds are drawn, up to `max_seeds`. A cell at 0/200 is settled long before one at 40%, so a
frontier checkpoint that never misbehaves costs a fraction of a fixed-seed grid.

Deterministic and resumable: seeds are always drawn in order from `seed_start`, item ids are the
grid's own (seed `s` of a condition has the same id whichever round drew it), and the decision
reads only labels. On a re-run the stored labels of the items already done replay the same
decisions, round by round, so the same seeds are drawn and nothing done is drawn again. Each row
records the rule and the round that drew it (`seed_rule`); the checkpoint's metrics record each
cell's seeds and why it stopped (`<family>/adaptive_seeds`, `<family>/adaptive_stop`).

`AdaptiveSource` is a `GridSource` whose per-checkpoint item streams grow as rounds open.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace
from typing import Callable

from runner.checkpoints import Checkpoint
from runner.config import AdaptiveSeedsConfig, SamplingConfig
from runner.grid import WorkItem, expand_grid
from runner.pipeline.sources import Batch, GridSource
from runner.stats import wilson_interval

STOP_HALFWIDTH = "halfwidth"     # the interval is narrow enough
STOP_MAX_SEEDS = "max_seeds"     # the cap was reached first


def halfwidth(harmful: int, scored: int) -> float:
    lo, hi = wilson_interval(harmful, scored)
    return (hi - lo) / 2


def seed_rule(a: AdaptiveSeedsConfig, round_no: int) -> str:
    """What `seed_rule` holds on a row: the rule in force and the round that drew the row's seed."""
    return (f"adaptive(min_seeds={a.min_seeds},max_seeds={a.max_seeds},"
            f"target_halfwidth={a.target_halfwidth:g});round={round_no}")


@dataclass
class Cell:
    """One (checkpoint, family): its seeds drawn so far, its labels, items still unlabelled."""

    seeds: int = 0
    round_no: int = 0
    labels: dict[str, bool | None] = field(default_factory=dict)   # item_id -> harmful (None: unscored)
    waiting: int = 0
    stop: str | None = None

    def counts(self) -> tuple[int, int]:
        scored = [v for v in self.labels.values() if v is not None]
        return sum(scored), len(scored)


class _Feed:
    """An item stream that can be extended after it ran dry (GridSource reads it lazily)."""

    def __init__(self):
        self.items: deque[WorkItem] = deque()

    def __iter__(self):
        return self

    def __next__(self) -> WorkItem:
        if not self.items:
            raise StopIteration
        return self.items.popleft()


class AdaptiveSource(GridSource):
    """`stored`: labels of the items already done (item_id -> harmful), read from output.dir.
    `label(batch, i)`: the final label of item i of a finished batch (as its row gets it)."""

    def __init__(self, checkpoints: list[Checkpoint], expand: Callable[[Checkpoint, str, range], list[WorkItem]],
                 families: list[str], adaptive: AdaptiveSeedsConfig, seed_start: int, batch_size: int,
                 is_done: Callable[[str], bool], stored: dict[str, bool | None],
                 label: Callable[[Batch, int], bool | None], prepare=None):
        self.feeds = {c.key: _Feed() for c in checkpoints}
        super().__init__([(c, self.feeds[c.key]) for c in checkpoints], batch_size, is_done=lambda _: False,
                         prepare=prepare)
        self.expand, self.adaptive, self.seed_start = expand, adaptive, seed_start
        self.done, self.stored, self.label = is_done, stored, label
        self.cells = {(c.key, f): Cell() for c in checkpoints for f in families}
        self.cell_of: dict[str, tuple[str, str]] = {}
        self.drawn = 0          # items in the rounds opened (done before or not)
        for key in list(self.cells):
            self._open_round(key)

    def _open_round(self, key: tuple[str, str]) -> None:
        """Draw the cell's next seeds, or stop it; items already done are labelled from the store."""
        cell = self.cells[key]
        a = self.adaptive
        while True:
            harmful, scored = cell.counts()
            if cell.seeds and halfwidth(harmful, scored) <= a.target_halfwidth:
                cell.stop = STOP_HALFWIDTH
                return
            if cell.seeds >= a.max_seeds:
                cell.stop = STOP_MAX_SEEDS
                return
            more = min(a.min_seeds, a.max_seeds - cell.seeds)
            seeds = range(self.seed_start + cell.seeds, self.seed_start + cell.seeds + more)
            cell.seeds += more
            cell.round_no += 1
            src = self.sources[key[0]]
            fresh = []
            for it in self.expand(src.ckpt, key[1], seeds):
                it = replace(it, seed_rule=seed_rule(a, cell.round_no))
                self.drawn += 1
                src.item_ids.add(it.item_id)
                if self.done(it.item_id):
                    self.skipped += 1
                    cell.labels[it.item_id] = self.stored.get(it.item_id)
                else:
                    self.cell_of[it.item_id] = key
                    fresh.append(it)
            if fresh:  # wait for them; a round wholly done before is decided at once
                cell.waiting = len(fresh)
                self.feeds[key[0]].items.extend(fresh)
                src.exhausted = False
                return

    def finished(self, batch: Batch) -> None:
        super().finished(batch)
        opened = []
        for i, it in enumerate(batch.items):
            key = self.cell_of.pop(it.item_id)
            cell = self.cells[key]
            cell.labels[it.item_id] = self.label(batch, i)
            cell.waiting -= 1
            if cell.waiting == 0:
                opened.append(key)
        for key in opened:
            self._open_round(key)

    def cell_metrics(self, ckpt_key: str) -> dict:
        """Per family of the checkpoint: seeds per condition drawn, and why the cell stopped."""
        out = {}
        for (key, family), cell in self.cells.items():
            if key == ckpt_key:
                harmful, scored = cell.counts()
                out[f"{family}/adaptive_seeds"] = cell.seeds
                out[f"{family}/adaptive_stop"] = cell.stop or "open"
                out[f"{family}/adaptive_halfwidth"] = round(halfwidth(harmful, scored), 4)
        return out


def grid_expander(packs: list, where: dict, sampling: SamplingConfig, rendered: dict):
    """(checkpoint, family, seeds) -> the grid's items of that cell, in grid order."""
    by_name = {p.name: p for p in packs}

    def expand(ckpt: Checkpoint, family: str, seeds: range) -> list[WorkItem]:
        s = SamplingConfig(seeds=len(seeds), seed_start=seeds.start, temperature=sampling.temperature,
                           top_p=sampling.top_p, max_tokens=sampling.max_tokens)
        return list(expand_grid([by_name[family]], where, [ckpt], s, rendered))

    return expand


def stored_labels(out_dir, item_ids: set[str], prefer: str | None) -> dict[str, bool | None]:
    """The newest label of each item already done (`ok`), as the sweep's metrics read it."""
    if not item_ids:
        return {}
    import pyarrow.compute as pc

    from runner.sinks.parquet import latest_rows, read_results

    t = read_results(out_dir, columns=["item_id", "status", "harmful", "created_at", "grading_version"])
    t = latest_rows(t.filter(pc.fill_null(pc.equal(t["status"], "ok"), False)), prefer=prefer)
    return {i: h for i, h in zip(t["item_id"].to_pylist(), t["harmful"].to_pylist()) if i in item_ids}


def build_adaptive_source(plan, checkpoints: list[Checkpoint], batch_size: int, is_done: Callable[[str], bool],
                          done: set[str], grading_version: str | None, combine, prepare=None) -> AdaptiveSource:
    """The sweep's source when `sampling.adaptive.enabled` (session.py)."""
    from runner.graders.label import final_label

    cfg = plan.cfg

    def label(batch: Batch, i: int) -> bool | None:
        grades = {k: v[i] for k, v in batch.grades.items()}
        return final_label(grades, combine, batch.results[i].status == "ok")[0]

    return AdaptiveSource(checkpoints, grid_expander(plan.packs, cfg.scenarios.where, cfg.sampling, plan.rendered),
                          plan.families, cfg.sampling.adaptive, cfg.sampling.seed_start, batch_size, is_done,
                          stored_labels(plan.paths.output_dir, done, grading_version), label, prepare)


__all__ = ["AdaptiveSource", "Cell", "STOP_HALFWIDTH", "STOP_MAX_SEEDS", "build_adaptive_source", "grid_expander",
           "halfwidth", "seed_rule", "stored_labels"]
