"""`runner watch RUN_DIR`: evaluate each new complete checkpoint of a training run, exactly once.

The watcher polls RUN_DIR for checkpoints (any layout `runner checkpoints` knows; only complete
ones count, see `runner.checkpoints`), and runs every checkpoint it has not evaluated yet
through one long-lived SweepSession, so engines stay up and move by weight swap. "Evaluated"
is read from the results dataset (every grid item of the checkpoint has an `ok` row), so a
restarted watcher carries on where the last one stopped and never writes a checkpoint twice.
It stops on SIGINT/SIGTERM (after the checkpoint in progress is written), or once the final
marker file appears in RUN_DIR and every checkpoint before it is done.

RUN_DIR may be a filesystem URI (`s3://bucket/run`, `gs://...`, `file:///...`, see
`runner.remote`): the watcher only lists it; engines copy each checkpoint to their node first.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import signal
import threading
from dataclasses import dataclass

from runner.checkpoints import Checkpoint, discover_checkpoints
from runner.config import SweepConfig
from runner.errors import RunFailed, CheckpointError, ConfigError
from runner.grid import grid_item_ids
from runner.remote import open_location
from runner.sinks.parquet import done_item_ids

log = logging.getLogger(__name__)


class WatchOrder(str, enum.Enum):
    step = "step"            # oldest first: the curve fills in left to right
    latest = "latest"        # newest first: see the current model soonest


@dataclass(frozen=True)
class WatchOptions:
    poll_seconds: float = 30.0
    order: WatchOrder = WatchOrder.step
    every_k: int = 1                       # evaluate every k-th checkpoint (by step rank)
    final_marker: str = "TRAINING_DONE"    # file in RUN_DIR written by the trainer at the end
    max_polls: int | None = None           # for tests and cron-like use; None: until stopped


def select_checkpoints(found: list[Checkpoint], opts: WatchOptions) -> list[Checkpoint]:
    ranked = sorted(found, key=lambda c: c.step)
    picked = [c for i, c in enumerate(ranked) if i % opts.every_k == 0]
    return list(reversed(picked)) if opts.order == WatchOrder.latest else picked


def is_evaluated(ckpt: Checkpoint, plan, cfg: SweepConfig, done: set[str]) -> bool:
    return all(i in done for i in grid_item_ids(plan.packs, cfg.scenarios.where, [ckpt], cfg.sampling, plan.rendered))


def watch(cfg: SweepConfig, run_dir: str, opts: WatchOptions, stream=None,
          stop: threading.Event | None = None) -> list[str]:
    """Run until stopped or finished. Returns the keys of the checkpoints this call evaluated."""
    from runner.sweep import SweepSession, plan_sweep

    if opts.every_k < 1:
        raise ConfigError(f"--every must be >= 1 (got {opts.every_k})")
    root = open_location(run_dir, "watch: RUN_DIR")
    try:
        kind = root.kind()
    except CheckpointError as e:
        raise CheckpointError(f"watch: {e}") from None
    if kind != "dir":
        raise CheckpointError(f"watch: run directory not found: {run_dir}")
    model = dataclasses.replace(cfg.models[0], path=root.uri)
    cfg = dataclasses.replace(cfg, models=[model])
    stop = stop or threading.Event()
    _install_signal_handlers(stop)

    # Validate config and packs now; the run may hold no checkpoint yet, so size the grid later.
    plan = plan_sweep(dataclasses.replace(cfg, models=[]), allow_no_checkpoints=True)
    session = None
    evaluated: list[str] = []
    known_done: set[str] = set()   # checkpoint keys whose every item has an ok row
    polls = 0
    try:
        while not stop.is_set():
            polls += 1
            finished = _exists(root, opts.final_marker)   # read before listing: no race
            candidates = [c for c in select_checkpoints(_discover(model), opts) if c.key not in known_done]
            done = done_item_ids(cfg.output.dir) if candidates else set()
            todo = []
            for c in candidates:
                if is_evaluated(c, plan, cfg, done):
                    known_done.add(c.key)
                else:
                    todo.append(c)
            for ckpt in todo:
                if stop.is_set():
                    break
                if session is None:
                    session = SweepSession(cfg, plan, stream=stream)
                session.run([ckpt])
                if not session.stages.generation.alive():
                    # Every engine is gone for good: stop rather than write error rows for hours.
                    raise RunFailed(f"no generation engine left (every actor died); {ckpt.key} was written "
                                       f"as error rows; fix the cause and restart the watcher to retry it")
                known_done.add(ckpt.key)
                evaluated.append(ckpt.key)
            if not todo and finished:
                break
            if opts.max_polls is not None and polls >= opts.max_polls:
                break
            if not todo:
                stop.wait(opts.poll_seconds)
    finally:
        if session is not None:
            for w in session.close():
                _say(stream, f"wandb: {w}")
    return evaluated


def _exists(root, name: str) -> bool:
    try:
        return root.exists(name)
    except CheckpointError:
        return False  # e.g. the object store is briefly unreachable: ask again next poll


def _discover(model) -> list[Checkpoint]:
    try:
        return discover_checkpoints(model)
    except CheckpointError as e:
        # Nothing complete yet, or the filesystem briefly unreachable: keep waiting.
        log.info("watch: no checkpoint to evaluate yet: %s", e)
        return []


def _install_signal_handlers(stop: threading.Event) -> None:
    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def _say(stream, text: str) -> None:
    import sys

    (stream or sys.stderr).write(f"[runner] {text}\n")


__all__ = ["WatchOptions", "WatchOrder", "watch", "select_checkpoints"]
