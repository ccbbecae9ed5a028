"""Sinks: where a run's rows and per-checkpoint metrics go. Parquet (the results dataset), W&B,
the console: each implements `Sink`, and `build_sinks` fans out to the enabled ones.

    sinks = build_sinks(cfg, out_dir, run_id, stream=None)
    sinks.write(rows)                                   # a graded batch, on disk before the next
    sinks.checkpoint_done(ckpt, metrics, transcripts)   # every item of a checkpoint is written
    where = sinks.close()                               # W&B runs' URLs or directories

Checkpoints are handed on in step order per model (`StepOrder`), whatever order engines finish
them in: W&B curves, regression baselines and console lines follow training order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from runner.checkpoints import Checkpoint
from runner.sinks.parquet import ParquetSink
from runner.sinks.regression import RegressionTracker
from runner.sinks.wandb_sink import WandbSink


class Sink(Protocol):
    def write(self, rows: list[dict]) -> None:
        """Rows of one graded batch."""

    def checkpoint_done(self, ckpt: Checkpoint, metrics: dict, transcripts: list[dict]) -> None:
        """All of a checkpoint's items are written; `metrics` as `checkpoint_metrics` gives them."""

    def close(self) -> list[str]:
        """Flush and finish; where the results can be found (may be empty)."""


class StepOrder:
    """Holds back a finished checkpoint until every lower step of its model in this run is done."""
    def __init__(self):
        self.expected: dict[str, set[int]] = {}     # model -> steps of this run not handed on yet
        self.held: dict[str, dict[int, tuple]] = {}

    def expect(self, checkpoints: list[Checkpoint]) -> None:
        for c in checkpoints:
            self.expected.setdefault(c.model, set()).add(c.step)

    def ready(self, ckpt: Checkpoint, payload: tuple) -> list[tuple[Checkpoint, tuple]]:
        """Checkpoints (with their payloads) that may now be handed on, lowest step first."""
        held = self.held.setdefault(ckpt.model, {})
        held[ckpt.step] = (ckpt, payload)
        waiting = self.expected.get(ckpt.model, set())
        out = []
        for step in sorted(held):
            if any(s < step for s in waiting if s not in held):
                break
            out.append(held.pop(step))
            waiting.discard(step)
        return out


class Sinks:
    """Every enabled sink, as one. Checkpoints reach them in step order, with the regression
    fields against the model's baseline (its lowest step) added to their metrics."""

    def __init__(self, sinks: list, regression_alpha: float = 0.05):
        self.sinks = sinks
        self.order = StepOrder()
        self.regression = RegressionTracker(regression_alpha)

    def expect(self, checkpoints: list[Checkpoint]) -> None:
        self.order.expect(checkpoints)

    def write(self, rows: list[dict]) -> None:
        for s in self.sinks:
            s.write(rows)

    def checkpoint_done(self, ckpt: Checkpoint, metrics: dict, transcripts: list[dict],
                        labels: dict | None = None) -> list[Checkpoint]:
        """Hand on `ckpt` (and any it was holding back); returns those handed on, in order.
        `labels`: its scored labels by (family, condition, seed), for the paired regression test."""
        done = []
        for c, (m, t, lab) in self.order.ready(ckpt, (metrics, transcripts, labels or {})):
            m.update(self.regression.check(c.model, c.step, lab))
            for s in self.sinks:
                s.checkpoint_done(c, m, t)
            done.append(c)
        return done

    def run_summary(self, figures: dict) -> None:
        """Figures of the whole run (prompt tokens computed vs sent) to the sinks that keep them (W&B)."""
        for s in self.sinks:
            keep = getattr(s, "run_summary", None)  # optional: most sinks have no run-level record
            if keep is not None:
                keep(figures)

    def close(self) -> list[str]:
        where: list[str] = []
        errors = []
        for s in self.sinks:
            try:
                where += s.close()
            except Exception as e:  # noqa: BLE001 -- close every sink; the first failure is raised after
                errors.append(e)
        if errors:
            raise errors[0]
        return where


def build_sinks(cfg, out_dir: Path, run_id: str, config: dict, *, progress=None, job_type: str = "eval",
                wandb_cfg=None, report_writer=None) -> Sinks:
    """The run's sinks: Parquet into `out_dir`, W&B (unless disabled), and `progress` (a
    ConsoleProgress) when given. `cfg`: the SweepConfig; `wandb_cfg` overrides `cfg.wandb`."""

    sinks: list = [ParquetSink(out_dir, run_id), WandbSink(wandb_cfg or cfg.wandb, out_dir, run_id, config,
                                                          job_type=job_type, report_writer=report_writer)]
    if progress is not None:
        sinks.append(progress)
    return Sinks(sinks, cfg.wandb.regression_alpha)


__all__ = ["Sink", "Sinks", "StepOrder", "build_sinks"]
