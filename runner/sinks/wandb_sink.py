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
        # (step, harmful, n) per model, for the regression test against the baseline checkpoint.
        self.history: dict[str, list[tuple[int, int, int]]] = {}

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

    def regression(self, model: str, step: int, metrics: dict) -> dict:
        """Compare this checkpoint's overall rate with the baseline (lowest earlier step logged)."""
        from runner.stats import two_proportion_pvalue

        k, n = int(metrics.get("overall/harmful", 0)), int(metrics.get("overall/n", 0))
        earlier = [h for h in self.history.get(model, []) if h[0] < step]
        self.history.setdefault(model, []).append((step, k, n))
        if not earlier:
            return {}
        base_step, bk, bn = min(earlier)
        p = two_proportion_pvalue(bk, bn, k, n)
        return {"overall/regression": int(p < self.cfg.regression_alpha), "overall/regression_p": p,
                "overall/baseline_step": base_step}

    def log_checkpoint(self, model: str, step: int, metrics: dict, transcripts: list[dict] | None = None) -> dict:
        """Log one checkpoint's metrics; returns the regression fields it added (may be empty)."""
        reg = self.regression(model, step, metrics)
        if not self.enabled:
            return reg
        payload = {f"{self.prefix}{k}": v for k, v in {"checkpoint_step": step, **metrics, **reg}.items()}
        if transcripts:
            import wandb

            cols = list(transcripts[0])
            payload[f"{self.prefix}transcripts"] = wandb.Table(columns=cols, data=[[t[c] for c in cols] for t in transcripts])
        self._run(model).log(payload)
        return reg

    def finish(self) -> list[str]:
        """Finish every run; return where each can be found (URL online, directory offline)."""
        where = []
        for run in self.runs.values():
            url = getattr(run, "url", None) if self.mode == "online" else None
            run_dir = Path(run.dir).parent if getattr(run, "dir", None) else None
            try:
                run.finish()
            except OSError as e:  # its files live in output.dir: a full disk there is reported by the run's own error
                from runner.sinks.storage import describe_os_error

                where.append(f"{run_dir} (not finished: {describe_os_error(e)})")
                continue
            where.append(url or str(run_dir))
        return where
