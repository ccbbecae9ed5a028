"""Weights & Biases: one run per model, `checkpoint_step` as the step metric.

Mode `auto` is `online` when WANDB_API_KEY is set and `offline` otherwise; the key is read
from the environment by wandb itself and never passed, logged or written by this code.

Every key sits under `wandb.key_prefix` (`eval/` unless set), so a workspace opens with one
section of eval panels beside a training run's own. Each rate gets `min` and `last` summaries
(the best checkpoint and where training ended); a rate with no scored row (NaN) is left out of
that checkpoint's row rather than drawn as a NaN panel. At `finish()` each run logs artifacts:
the results (the Parquet files when small, else a reference to the directory), the resolved
config, and the HTML report.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from pathlib import Path

from runner.config import WandbConfig, WandbMode
from runner.errors import MissingDependencyError
from runner.sinks.storage import describe_os_error

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "eval/"
# Below this many bytes of Parquet the results artifact holds the files; above, a file:// reference.
RESULTS_COPY_LIMIT = 50 * 1024 * 1024
TABLE_COLUMNS = ("checkpoint", "step", "model", "item_id", "scenario", "condition", "seed", "status", "harmful",
                 "eval_awareness", "evidence", "prompt_digest", "response")


def resolve_mode(cfg: WandbConfig) -> str:
    if cfg.mode == WandbMode.auto:
        return "online" if os.environ.get("WANDB_API_KEY") else "offline"
    return cfg.mode.value


def _summary_of(key: str) -> str:
    """`min,last` for rates and p-values (lower is better or more telling), `last` for counts."""
    return "min,last" if key.endswith(("_rate", "_p")) else "last"


class WandbSink:
    def __init__(self, cfg: WandbConfig, run_dir: Path, run_id: str, config: dict, job_type: str = "eval",
                 report_writer=None):
        """`run_dir`: the results directory; `job_type`: `eval` for sweeps, `regrade` for `runner grade`;
        `report_writer(results_dir, out) -> Path | None`: writes the HTML report logged as an artifact
        (passed in by the command: sinks sit below the report)."""
        self.report_writer = report_writer
        self.cfg = cfg
        self.job_type = job_type
        self.mode = resolve_mode(cfg)
        self.results_dir = Path(run_dir)
        self.dir = Path(cfg.dir).expanduser() if cfg.dir else self.results_dir / "_wandb"
        self.run_id = run_id
        self.config = config
        self.runs: dict[str, object] = {}
        self.defined: dict[str, set[str]] = {}
        self.prefix = cfg.key_prefix if cfg.key_prefix is not None else DEFAULT_PREFIX

    @property
    def enabled(self) -> bool:
        return self.mode != "disabled"

    def _run(self, model: str):
        if model in self.runs:
            return self.runs[model]
        try:
            import wandb
        except ImportError:
            raise MissingDependencyError("wandb is not installed: `pip install wandb==0.31.0`, "
                                         "or run with wandb.mode=disabled") from None
        self.dir.mkdir(parents=True, exist_ok=True)
        common = dict(project=self.cfg.project, entity=self.cfg.entity, dir=str(self.dir), mode=self.mode,
                      reinit="create_new", settings=wandb.Settings(console="off", silent=True))
        if self.cfg.attach_run_id:
            # The training run keeps its own step; our keys get their own x-axis under the prefix.
            run = wandb.init(id=self.cfg.attach_run_id, resume="allow", **common)
            run.config.update({"eval": {**self.config, "model": model, "run_id": self.run_id}}, allow_val_change=True)
        else:
            run = wandb.init(group=self.cfg.group or self.run_id, name=f"{self.run_id}-{model}", job_type=self.job_type,
                             config={**self.config, "model": model, "run_id": self.run_id}, **common)
        run.define_metric(self._step_key)
        self.runs[model] = run
        self.defined[model] = set()
        return run

    @property
    def _step_key(self) -> str:
        return f"{self.prefix}checkpoint_step"

    def _define(self, model: str, run, keys) -> None:
        """One define_metric per new key: wandb takes summaries for exact names only, not for globs."""
        for key in keys:
            if key not in self.defined[model] and key != self._step_key:
                bare = key[len(self.prefix):]
                run.define_metric(key, step_metric=self._step_key, summary=_summary_of(bare))
                self.defined[model].add(key)

    def log_checkpoint(self, model: str, step: int, metrics: dict, transcripts: list[dict] | None = None) -> None:
        """Log one checkpoint's metrics (the regression fields included, see sinks/regression.py)."""
        if not self.enabled:
            return
        payload = {f"{self.prefix}{k}": v for k, v in {"checkpoint_step": step, **metrics}.items()
                   if not (isinstance(v, float) and math.isnan(v))}
        run = self._run(model)
        self._define(model, run, payload)
        if transcripts:
            import wandb

            payload[f"{self.prefix}transcripts"] = wandb.Table(
                columns=list(TABLE_COLUMNS), data=[table_row(t, model, step) for t in transcripts])
        run.log(payload)

    # The Sink protocol (runner.sinks): rows go to Parquet only; W&B gets per-checkpoint metrics.
    def write(self, rows: list[dict]) -> None:
        return None

    def checkpoint_done(self, ckpt, metrics: dict, transcripts: list[dict]) -> None:
        self.log_checkpoint(ckpt.model, ckpt.step, metrics, transcripts)

    def run_summary(self, figures: dict) -> None:
        """Run-level figures into each W&B run's summary (not a curve: they are not per checkpoint)."""
        if not self.enabled or not figures:
            return
        for run in self.runs.values():
            run.summary.update({f"{self.prefix}{k}": v for k, v in figures.items()})

    def close(self) -> list[str]:
        return self.finish()

    def finish(self) -> list[str]:
        """Log the artifacts and finish every run. Returns lines to print: where each run is (URL
        online, directory offline), then for offline runs the `wandb sync` command that uploads them."""
        where, offline = [], []
        for run in self.runs.values():
            if self.cfg.log_artifacts:
                try:
                    self._log_artifacts(run)
                except Exception as e:  # noqa: BLE001 - extras: the metrics are logged, the run must still finish
                    log.warning("W&B artifacts not logged: %s: %s", type(e).__name__, e)
            url = getattr(run, "url", None) if self.mode == "online" else None
            run_dir = Path(run.dir).parent if getattr(run, "dir", None) else None
            try:
                run.finish()
            except OSError as e:  # its files live in output.dir: a full disk there is reported by the run's own error
                where.append(f"{run_dir} (not finished: {describe_os_error(e)})")
                continue
            where.append(url or str(run_dir))
            if self.mode == "offline" and run_dir is not None:
                offline.append(str(run_dir))
        if offline:
            where.append(sync_hint(offline))
        self.runs = {}
        return where

    def _log_artifacts(self, run) -> None:
        import wandb
        import yaml

        name = _artifact_name(self.run_id)
        results = wandb.Artifact(f"results-{name}", type="results",
                                 description=f"Parquet results dataset {self.results_dir} (hive-partitioned)")
        files = sorted(p for p in self.results_dir.glob("*=*/*.parquet") if p.is_file())
        if files and sum(p.stat().st_size for p in files) <= RESULTS_COPY_LIMIT:
            for p in files:
                results.add_file(str(p), name=str(p.relative_to(self.results_dir)))
        elif files:
            results.add_reference(self.results_dir.resolve().as_uri(), name="results")
        if files:
            run.log_artifact(results)

        config = wandb.Artifact(f"config-{name}", type="config", description="the resolved sweep config")
        with config.new_file("config.yaml", encoding="utf-8") as f:
            yaml.safe_dump(self.config, f, sort_keys=False)
        run.log_artifact(config)

        if files and self.report_writer is not None:
            with tempfile.TemporaryDirectory(prefix="runner-report-") as tmp:
                report = self.report_writer(self.results_dir, Path(tmp) / "report.html")
                if report is not None:   # add_file copies into wandb's staging area: the temp dir may go
                    art = wandb.Artifact(f"report-{name}", type="report", description="runner report: the HTML report")
                    art.add_file(str(report), name="report.html")
                    run.log_artifact(art)


def table_row(t: dict, model: str, step: int) -> list:
    """One `transcripts` Table row; checkpoint, step and model make the tables of all checkpoints joinable."""
    values = {**t, "model": model, "step": step}
    return [values.get(c) for c in TABLE_COLUMNS]


def sync_hint(run_dirs: list[str]) -> str:
    return "offline run(s): upload with `wandb sync " + " ".join(run_dirs) + "`"


def _artifact_name(run_id: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in run_id)
