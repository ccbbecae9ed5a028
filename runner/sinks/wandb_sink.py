"""Weights & Biases: one run per model, `checkpoint_step` as the step metric.

Mode `auto` is `online` when WANDB_API_KEY is set and `offline` otherwise; the key is read
from the environment by wandb itself and never passed, logged or written by this code.
"""

from __future__ import annotations

import os
from pathlib import Path

from runner.config import WandbConfig, WandbMode
from runner.errors import MissingDependencyError


def resolve_mode(cfg: WandbConfig) -> str:
    if cfg.mode == WandbMode.auto:
        return "online" if os.environ.get("WANDB_API_KEY") else "offline"
    return cfg.mode.value


class WandbSink:
    def __init__(self, cfg: WandbConfig, run_dir: Path, run_id: str, config: dict, job_type: str = "eval"):
        """`job_type`: `eval` for sweeps, `regrade` for `runner grade` (W&B filters runs by it)."""
        self.cfg = cfg
        self.job_type = job_type
        self.mode = resolve_mode(cfg)
        self.dir = Path(cfg.dir).expanduser() if cfg.dir else run_dir / "_wandb"
        self.run_id = run_id
        self.config = config
        self.runs: dict[str, object] = {}
        self.prefix = cfg.key_prefix if cfg.key_prefix is not None else ("eval/" if cfg.attach_run_id else "")

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
        step_key = f"{self.prefix}checkpoint_step"
        run.define_metric(step_key)
        run.define_metric(f"{self.prefix}*", step_metric=step_key)
        self.runs[model] = run
        return run

    def log_checkpoint(self, model: str, step: int, metrics: dict, transcripts: list[dict] | None = None) -> None:
        """Log one checkpoint's metrics (the regression fields included, see sinks/regression.py)."""
        if not self.enabled:
            return
        payload = {f"{self.prefix}{k}": v for k, v in {"checkpoint_step": step, **metrics}.items()}
        if transcripts:
            import wandb

            cols = list(transcripts[0])
            payload[f"{self.prefix}transcripts"] = wandb.Table(columns=cols, data=[[t[c] for c in cols] for t in transcripts])
        self._run(model).log(payload)

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
        """Finish every run; return where each can be found (URL online, directory offline)."""
        where = []
        for run in self.runs.values():
            url = getattr(run, "url", None) if self.mode == "online" else None
            run_dir = Path(run.dir).parent if getattr(run, "dir", None) else None
            run.finish()
            where.append(url or str(run_dir))
        self.runs = {}
        return where
