"""`runner watch RUN_DIR`: evaluate each new complete checkpoint of a training run, exactly once.

The watcher polls RUN_DIR for checkpoints (any layout `runner checkpoints` knows; only complete ones count, see
`runner.checkpoints`) and the paths of every other model in the config, and runs each checkpoint
it has not evaluated yet through one long-lived SweepSession, so engines stay up and move by
weight swap. "Evaluated" is read from the results dataset (every grid item of the checkpoint has
an `ok` row), so a restarted watcher carries on where the last one stopped and never writes a
checkpoint twice. It stops on SIGINT/SIGTERM (after the checkpoint in progress is written), or
once the final marker file appears in RUN_DIR and every checkpoint before it is done.

RUN_DIR may be a filesystem URI (`s3://bucket/run`, `gs://...`, `file:///...`, see
`runner.remote`): the watcher only lists it; engines copy each checkpoint to their node first.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import signal
import sys
import threading
from dataclasses import dataclass, field
from typing import Callable

from runner.checkpoints import Checkpoint
from runner.commands._output import exit_status, print_checkpoint_metrics, report_after_run
from runner.config import SweepConfig, load_config
from runner.errors import CheckpointError, ConfigError, RunFailed
from runner.generation.backends import BACKENDS
from runner.plan import Progress, SweepPlan, check_layouts, plan_sweep, resolve_model
from runner.remote import open_location
from runner.session import SweepSession
from runner.sinks.lock import results_writer
from runner.sinks.parquet import done_item_ids

log = logging.getLogger(__name__)


class WatchOrder(str, enum.Enum):
    step = "step"            # oldest first: the curve fills in left to right
    latest = "latest"        # newest first: see the current model soonest


@dataclass(frozen=True)
class WatchOptions:
    poll_seconds: float = 30.0
    order: WatchOrder = WatchOrder.step
    every_steps: int = 1                   # only checkpoints whose step is a multiple of this
    final_marker: str = "TRAINING_DONE"    # file in RUN_DIR written by the trainer at the end
    max_polls: int | None = None           # for tests and cron-like use; None: until stopped


def select_checkpoints(found: list[Checkpoint], opts: WatchOptions) -> list[Checkpoint]:
    """By step value, not rank: a trainer pruning old checkpoints never changes what is picked."""
    picked = sorted((c for c in found if c.step % opts.every_steps == 0), key=lambda c: (c.model, c.step))
    return sorted(picked, key=lambda c: -c.step) if opts.order == WatchOrder.latest else picked


def watch_config(cfg: SweepConfig, run_uri: str) -> SweepConfig:
    """models[0] watches RUN_DIR; the other models are evaluated from their own paths."""
    first = cfg.models[0]
    if not BACKENDS[first.backend].serves_locally:
        raise ConfigError(f"config error: runner watch RUN_DIR evaluates models[0]'s checkpoints; models[0] "
                          f"('{first.name}') is served over an API (backend={first.backend.value}): list the "
                          f"trained model first")
    return dataclasses.replace(cfg, models=[dataclasses.replace(first, path=run_uri), *cfg.models[1:]])


@dataclass
class WatchResult:
    evaluated: list[str] = field(default_factory=list)     # checkpoint keys this call evaluated
    metrics: dict[str, dict] = field(default_factory=dict)  # per evaluated checkpoint
    output_dir: str = ""

    @property
    def left(self) -> tuple[int, int]:
        """(error items, failed gradings) over the checkpoints this call evaluated."""
        return (sum(int(m.get("overall/errors", 0)) for m in self.metrics.values()),
                sum(int(m.get("overall/failed_grading", 0)) for m in self.metrics.values()))


def watch(cfg: SweepConfig, run_dir: str, opts: WatchOptions, stream=None, stop: threading.Event | None = None,
          session_factory: Callable | None = None) -> WatchResult:
    """Run until stopped or finished.
    `session_factory(plan, stream)`: a SweepSession (tests pass a fake)."""
    if opts.every_steps < 1:
        raise ConfigError(f"--every must be >= 1 (got {opts.every_steps})")
    root = open_location(run_dir, "watch: RUN_DIR")
    try:
        kind = root.kind()
    except CheckpointError as e:
        raise CheckpointError(f"watch: {e}") from None
    if kind != "dir":
        raise CheckpointError(f"watch: run directory not found: {run_dir}")
    cfg = watch_config(cfg, root.uri)
    check_layouts(cfg)
    stop = stop or threading.Event()
    _install_signal_handlers(stop)
    if session_factory is None:

        session_factory = lambda plan, stream: SweepSession(plan, stream=stream)  # noqa: E731

    # Validate config and packs now; the run may hold no checkpoint yet, so size the grid later.
    plan = plan_sweep(dataclasses.replace(cfg, models=[]), allow_no_checkpoints=True)
    plan.cfg = cfg
    session = None
    result = WatchResult(output_dir=str(plan.paths.output_dir))
    known_done: set[str] = set()   # checkpoint keys whose every item has an ok row
    polls = 0
    try:
        while not stop.is_set():
            polls += 1
            finished = _exists(root, opts.final_marker)   # read before listing: no race
            candidates = [c for c in select_checkpoints(_discover(cfg, plan), opts) if c.key not in known_done]
            done = done_item_ids(plan.paths.output_dir) if candidates else set()
            todo = []
            for c in candidates:
                if all(i in done for i in plan.grid_ids([c])):
                    known_done.add(c.key)
                else:
                    todo.append(c)
            for ckpt in todo:
                if stop.is_set():
                    break
                if session is None:
                    session = session_factory(plan, stream)
                summary = session.run([ckpt], Progress(done_item_ids(plan.paths.output_dir)))
                result.metrics.update(summary.metrics)
                if not session.stages.generation.alive():
                    # Every engine is gone for good: stop rather than write error rows for hours.
                    raise RunFailed(f"no generation engine left (every actor died); {ckpt.key} was written "
                                    f"as error rows; fix the cause and restart the watcher to retry it")
                known_done.add(ckpt.key)
                result.evaluated.append(ckpt.key)
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
    return result


def _exists(root, name: str) -> bool:
    try:
        return root.exists(name)
    except CheckpointError:
        return False  # e.g. the object store is briefly unreachable: ask again next poll


def _discover(cfg: SweepConfig, plan: SweepPlan) -> list[Checkpoint]:
    found: list[Checkpoint] = []
    for m in cfg.models:
        backend = BACKENDS[m.backend]
        try:
            found += backend.checkpoints(resolve_model(m, plan.paths))
        except CheckpointError as e:
            # Nothing complete yet, or the filesystem briefly unreachable: keep waiting.
            log.info("watch: no checkpoint of '%s' to evaluate yet: %s", m.name, e)
    return found


def _install_signal_handlers(stop: threading.Event) -> None:
    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def _say(stream, text: str) -> None:
    (stream or sys.stderr).write(f"[runner] {text}\n")


__all__ = ["WatchOptions", "WatchOrder", "WatchResult", "select_checkpoints", "watch"]


def watch_command(run_dir: str, config: str | None, overrides: list[str], opts: WatchOptions) -> int:
    cfg = load_config(config, overrides)
    with results_writer(cfg.output.dir, "runner watch"):
        result = watch(cfg, run_dir, opts)
    print(f"watch stopped: evaluated {len(result.evaluated)} checkpoint(s) this time: "
          f"{', '.join(result.evaluated) or 'none'}")
    print_checkpoint_metrics(result.metrics)
    print(f"results: {result.output_dir}")
    from pathlib import Path

    report_after_run(cfg.report.auto, Path(result.output_dir))
    return exit_status(result.left, "the watcher")
