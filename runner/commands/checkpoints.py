"""`runner checkpoints RUN_DIR`: what `sweep` and `watch` would evaluate for a run, and why the
rest would not be, from the same discovery (`runner.checkpoints.list_checkpoints`)."""

from __future__ import annotations

import dataclasses
import json

from runner.checkpoints import group_reasons, list_checkpoints
from runner.config import load_config
from runner.errors import CheckpointError
from runner.plan import check_layouts, resolve_model, resolve_paths


def checkpoints_command(run_dir: str, config: str | None, overrides: list[str], as_json: bool, stream) -> int:
    """List RUN_DIR's checkpoints with models[0]'s settings (layout, pattern, base model,
    tokenizer, completeness rules). 0 when the listing worked, even if nothing is ready;
    CheckpointError (exit 2) when RUN_DIR is not a model or run directory at all."""
    cfg = load_config(config, overrides)
    if not cfg.models:
        raise CheckpointError("checkpoints: the config lists no model")
    check_layouts(cfg)
    model = dataclasses.replace(cfg.models[0], path=run_dir)
    report = list_checkpoints(resolve_model(model, resolve_paths(cfg)))
    if as_json:
        stream.write(json.dumps([s.as_json() for s in report.statuses], indent=1) + "\n")
        return 0
    ready = [s for s in report.statuses if s.ready]
    stream.write(f"{run_dir}: layout {report.layout}; {len(ready)} of {len(report.statuses)} checkpoint(s) ready\n")
    for s in report.statuses:
        state = "ready" if s.ready else f"not ready: {s.reason}"
        base = f"  base {s.base_model}" if s.base_model else ""
        stream.write(f"  {s.name}  step {s.step}  {s.kind}  {state}\n    {s.model_dir}{base}\n")
    for w in report.warnings:
        stream.write(f"  note: {w}\n")
    shared = [(names, reason) for names, reason in group_reasons([s for s in report.statuses if not s.ready])
              if "," in names]
    for names, reason in shared:   # a run saved without HF weights: the fix once, not per line
        stream.write(f"  {len(names.split(','))} checkpoints not ready for one reason: {reason}\n")
    return 0


__all__ = ["checkpoints_command"]
