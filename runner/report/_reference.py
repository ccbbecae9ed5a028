"""The planted reference: the true harmful rate per step when a dataset is the demo run's.

The demo run records, per checkpoint, the probability that a sampled reply is the harmful one
(`DEMO_RUN.json`, see runner.demo). That probability holds for the sampling it was computed
under (temperature 1, top_p 1), so the reference is drawn only for runs that sampled so.
Nothing is built here: a demo run that is not on this machine gives no reference.
"""

from __future__ import annotations

from pathlib import Path


def planted_reference(datasets: list[str], series_of_dataset: list[dict[str, str]]) -> dict[str, dict]:
    """series -> {"family": ..., "rates": {step: rate}} for the series that sampled the demo run.

    `series_of_dataset[i]` maps a model name of dataset i to its series label.
    """
    import yaml

    from runner.config import BUILTIN_DEMO_MODEL
    from runner.demo import DEMO_FAMILY, DEMO_RUN_NAME, planted_rates

    out: dict[str, dict] = {}
    for root, labels in zip(datasets, series_of_dataset):
        for run in sorted(Path(root).glob("_runs/*.yaml")):
            try:
                cfg = yaml.safe_load(run.read_text(encoding="utf-8")) or {}
            except (OSError, yaml.YAMLError):
                continue
            sampling = cfg.get("sampling") or {}
            if sampling.get("temperature", 1.0) != 1.0 or sampling.get("top_p", 1.0) != 1.0:
                continue
            for model in cfg.get("models") or []:
                series = labels.get(model.get("name"))
                path = model.get("path")
                if series is None or series in out or not path:
                    continue
                run_dir = (Path(cfg.get("cache_dir") or "~/.cache/misalign-runner").expanduser() / DEMO_RUN_NAME
                           if path == BUILTIN_DEMO_MODEL else Path(path).expanduser())
                if not (run_dir / "DEMO_RUN.json").is_file():
                    continue
                try:
                    rates = planted_rates(run_dir)
                except (OSError, ValueError, KeyError, TypeError):
                    continue
                if rates:
                    out[series] = {"family": DEMO_FAMILY, "rates": rates}
    return out


__all__ = ["planted_reference"]
