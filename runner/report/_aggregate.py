"""What the report shows, computed from the results datasets.

Each dataset is read with the project's own readers (`read_results`, then `latest_rows`: each
item's newest `ok` grading, else its newest row), so every rate here equals the one the sweep
printed and logged. Rates per checkpoint come from `checkpoint_metrics`, the sweep's own
function; condition heatmaps are grouped in pyarrow. A series is one (dataset, model): one
curve per series.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from runner.errors import UserError
from runner.report._compare import OVERALL, Comparison, compare
from runner.sinks.metrics import AWARENESS_LABELS, agreement_counts, awareness_metrics, checkpoint_metrics
from runner.stats import wilson_interval

# Read for every row; the heavy text columns are read too, but only the transcripts shown are
# turned into Python objects.
LIGHT_COLUMNS = ["item_id", "scenario", "condition", "model", "checkpoint", "checkpoint_step", "seed", "status",
                 "error", "harmful", "unscored_reason", "rule_harmful", "judge_verdict", "judge_model",
                 "eval_awareness", "grading_version", "created_at"]
TEXT_COLUMNS = ["response", "evidence", "tool_calls", "eval_awareness_evidence", "judge_reasoning", "temperature",
                "top_p", "max_tokens", "prompt_digest", "finish_reason"]


@dataclass
class Checkpoint:
    series: str
    name: str
    step: int
    metrics: dict          # checkpoint_metrics() of its rows: the sweep's keys


@dataclass
class ReportData:
    datasets: list[str]
    series: list[str]
    families: list[str]
    checkpoints: list[Checkpoint]
    heatmaps: dict[str, dict]            # family -> {"rows": [...], "cols": [...], "rate": [[...]], "n": [[...]]}
    comparisons: list[Comparison]
    awareness: dict[str, dict]           # series -> awareness_metrics over all its checkpoints
    agreement: dict[str, dict]           # series -> agreement_counts over all its checkpoints
    left_out: list[dict]                 # {series, family, kind, reason, count, steps}
    rows: int = 0
    table: object = None                 # the latest rows (pyarrow), for the transcript browser
    series_of_row: list[str] = field(default_factory=list)
    reference: dict[str, dict] = field(default_factory=dict)   # series -> planted demo rates (see _reference)
    flips: list = field(default_factory=list)                  # _changes.Flips per neighbouring checkpoints
    run_comparisons: list = field(default_factory=list)        # _changes.RunComparison, series vs the first
    run_notes: list[str] = field(default_factory=list)         # steps one series has and the other lacks


def check_datasets(dirs: list[str]) -> list[Path]:
    """The datasets' resolved roots; UserError for a directory that is not one, or that holds a
    file which is not a results file (the same check as every writing command's)."""
    from runner.sinks.parquet import PARTITION_COLUMN, check_results_dataset

    roots = []
    for d in dirs:
        root = Path(d).expanduser()
        if not root.is_dir():
            raise UserError(f"results directory not found: {d}")
        if not any(root.glob(f"{PARTITION_COLUMN}=*/*.parquet")):
            raise UserError(f"not a results dataset: {d} holds no {PARTITION_COLUMN}=*/*.parquet files "
                            f"(give the output.dir of a sweep)")
        check_results_dataset(root)
        roots.append(root.resolve())
    return roots


def load_datasets(dirs: list[str]):
    """Each dataset's latest rows with a `series` label per row."""
    import pyarrow as pa

    from runner.sinks.parquet import latest_rows, read_results

    roots = check_datasets(dirs)
    labels = _dataset_labels(roots)
    tables, series, by_model = [], [], []
    for root, label in zip(roots, labels):
        try:
            t = latest_rows(read_results(root, columns=LIGHT_COLUMNS + TEXT_COLUMNS))
        except (OSError, pa.ArrowException) as e:
            raise UserError(f"cannot read the results dataset {root}: {e}") from None
        models = t["model"].to_pylist()
        names = {m: (m if len(roots) == 1 else f"{label}: {m}") for m in dict.fromkeys(models)}
        series += [names[m] for m in models]
        by_model.append(names)
        tables.append(t)
    table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    return table, series, [str(r) for r in roots], by_model


def _dataset_labels(roots: list[Path]) -> list[str]:
    names = [r.name for r in roots]
    if len(set(names)) == len(names):
        return names
    return [str(r) for r in roots]


def build_report_data(dirs: list[str], baseline_step: int | None = None) -> ReportData:
    from runner.report._changes import compare_runs, neighbour_flips, scored_labels, steps_without_partner
    from runner.report._reference import planted_reference

    table, series_of_row, datasets, series_by_model = load_datasets(dirs)
    rows = table.select(LIGHT_COLUMNS).to_pylist()
    for r, s in zip(rows, series_of_row):
        r["series"] = s
    series = sorted(set(series_of_row), key=series_of_row.index)
    families = sorted({r["scenario"] for r in rows})

    by_ckpt: dict[tuple[str, str], list[dict]] = defaultdict(list)
    by_series: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_ckpt[(r["series"], r["checkpoint"])].append(r)
        by_series[r["series"]].append(r)
    checkpoints = [Checkpoint(s, name, _step(part), checkpoint_metrics(part)) for (s, name), part in by_ckpt.items()]
    checkpoints.sort(key=lambda c: (series.index(c.series), c.step, c.name))
    labels = scored_labels(rows)

    return ReportData(
        datasets=datasets, series=series, families=families, checkpoints=checkpoints,
        heatmaps=condition_heatmaps(table, series_of_row, series),
        comparisons=paired_comparisons(by_series, baseline_step),
        awareness={s: awareness_metrics(part) for s, part in by_series.items()},
        agreement={s: agreement_counts(part) for s, part in by_series.items()},
        left_out=left_out_reasons(rows), rows=len(rows), table=table, series_of_row=series_of_row,
        reference=planted_reference(datasets, series_by_model), flips=neighbour_flips(labels, series),
        run_comparisons=compare_runs(labels, series), run_notes=steps_without_partner(labels, series))


def _step(rows: list[dict]) -> int:
    step = rows[0]["checkpoint_step"]
    return int(step) if step is not None else -1


def condition_heatmaps(table, series_of_row: list[str], series: list[str]) -> dict[str, dict]:
    """Per family: harmful rate per condition (rows) x (series, checkpoint step) (columns), grouped in pyarrow.

    Rows are the full condition ids, then one row per variable=value (its rate over every
    condition holding it), which shows which variable drives a change when there are many.
    Columns run series by series, steps ascending; `cols` are their labels.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    ok = pc.equal(table["status"], "ok")
    scored = pc.and_(ok, pc.is_valid(table["harmful"]))
    harmful = pc.and_(scored, pc.fill_null(table["harmful"], False))
    t = pa.table({"scenario": table["scenario"], "condition": table["condition"], "series": pa.array(series_of_row),
                  "step": pc.fill_null(table["checkpoint_step"], -1), "scored": pc.cast(scored, pa.int64()),
                  "harmful": pc.cast(harmful, pa.int64())})
    g = t.group_by(["scenario", "condition", "series", "step"]).aggregate(
        [("scored", "sum"), ("harmful", "sum")]).to_pylist()

    out: dict[str, dict] = {}
    for family in sorted({r["scenario"] for r in g}):
        part = [r for r in g if r["scenario"] == family]
        col_keys = sorted({(r["series"], r["step"]) for r in part}, key=lambda k: (series.index(k[0]), k[1]))
        cells: dict[tuple[str, tuple], list[int]] = defaultdict(lambda: [0, 0])
        conditions = sorted({r["condition"] for r in part})
        marginal_rows: set[str] = set()
        for r in part:
            keys = [r["condition"]]
            parsed = dict(p.partition("=")[::2] for p in r["condition"].split(",") if "=" in p)
            keys += [f"{k}={v}" for k, v in parsed.items()]
            marginal_rows.update(keys[1:])
            for key in keys:
                c = cells[(key, (r["series"], r["step"]))]
                c[0] += r["scored_sum"]
                c[1] += r["harmful_sum"]
        row_names = conditions + (sorted(marginal_rows) if len(conditions) > 1 else [])
        out[family] = {
            "conditions": len(conditions), "rows": row_names, "col_keys": col_keys,
            "cols": [f"{s} @ {step}" if len(series) > 1 else str(step) for s, step in col_keys],
            "n": [[cells[(rn, ck)][0] for ck in col_keys] for rn in row_names],
            "rate": [[cells[(rn, ck)][1] / cells[(rn, ck)][0] if cells[(rn, ck)][0] else None for ck in col_keys]
                     for rn in row_names]}
    return out


def paired_comparisons(by_series: dict[str, list[dict]], baseline_step: int | None) -> list[Comparison]:
    """Each checkpoint against the baseline (the first step unless given), per family and overall.

    The sweep gives a (condition, seed) the same engine seed at every checkpoint, so the rows of
    two checkpoints pair up on (family, condition, seed): exact McNemar on the discordant pairs,
    Newcombe's paired interval for the difference. Without common pairs (other seeds or grid)
    the unpaired two-proportion test is used and the note says so.
    """
    out = []
    for series, rows in by_series.items():
        labels: dict[int, dict[tuple, bool]] = defaultdict(dict)
        for r in rows:
            if r["status"] == "ok" and r["harmful"] is not None and r["checkpoint_step"] is not None:
                labels[r["checkpoint_step"]][(r["scenario"], r["condition"], r["seed"])] = bool(r["harmful"])
        steps = sorted(labels)
        if not steps:
            continue
        base = baseline_step if baseline_step is not None else steps[0]
        if base not in labels:
            raise UserError(f"--baseline {baseline_step}: series '{series}' has no scored rows at that step "
                            f"(steps: {', '.join(map(str, steps))})")
        families = [OVERALL] + sorted({k[0] for k in labels[base]})
        for step in steps:
            if step == base:
                continue
            for family in families:
                b = {k: v for k, v in labels[base].items() if family == OVERALL or k[0] == family}
                x = {k: v for k, v in labels[step].items() if family == OVERALL or k[0] == family}
                if b and x:
                    out.append(compare(series, family, base, b, step, x))
    return out


def left_out_reasons(rows: list[dict]) -> list[dict]:
    """Errors and unscored rows by reason, per series and family, with the steps they occur at."""
    steps: dict[tuple, set] = defaultdict(set)
    counts: Counter = Counter()
    for r in rows:
        if r["status"] != "ok":
            key = (r["series"], r["scenario"], "error", _first_line(r["error"]) or "(no message)")
        elif r["harmful"] is None:
            key = (r["series"], r["scenario"], "unscored", _first_line(r["unscored_reason"]) or "(no reason)")
        else:
            continue
        counts[key] += 1
        steps[key].add(r["checkpoint_step"])
    return [{"series": s, "family": f, "kind": kind, "reason": reason, "count": c,
             "steps": ", ".join(str(x) for x in sorted(steps[(s, f, kind, reason)], key=lambda v: (v is None, v)))}
            for (s, f, kind, reason), c in sorted(counts.items(), key=lambda kv: (kv[0][0], kv[0][1], -kv[1]))]


def _first_line(text: str | None, limit: int = 200) -> str:
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def curve(data: ReportData, series: str, group: str) -> list[dict]:
    """Points of one curve: step, rate, Wilson bounds and counts, for checkpoints with scored rows."""
    pts = []
    for c in data.checkpoints:
        m = c.metrics
        if c.series != series or f"{group}/n" not in m:
            continue
        pts.append({"step": c.step, "checkpoint": c.name, "rate": m[f"{group}/harmful_rate"],
                    "lo": m[f"{group}/harmful_rate_lo"], "hi": m[f"{group}/harmful_rate_hi"],
                    "n": m[f"{group}/n"], "harmful": m[f"{group}/harmful"], "unscored": m[f"{group}/unscored"],
                    "errors": m[f"{group}/errors"]})
    return pts


def awareness_points(data: ReportData, series: str, group: str = OVERALL) -> dict[str, list[dict]]:
    """Per awareness label: per checkpoint the share of classified replies and the harmful rate."""
    out: dict[str, list[dict]] = {label: [] for label in AWARENESS_LABELS}
    for c in data.checkpoints:
        m = c.metrics
        if c.series != series or f"{group}/aware_tested/n" not in m:
            continue
        totals = {a: m[f"{group}/aware_{a}/n"] + m[f"{group}/aware_{a}/unscored"] for a in AWARENESS_LABELS}
        everyone = sum(totals.values())
        for a in AWARENESS_LABELS:
            k, n = m[f"{group}/aware_{a}/harmful"], m[f"{group}/aware_{a}/n"]
            lo, hi = wilson_interval(k, n)
            out[a].append({"step": c.step, "share": totals[a] / everyone if everyone else 0.0,
                           "rate": k / n if n else None, "lo": lo, "hi": hi, "n": n})
    return out


__all__ = ["OVERALL", "Checkpoint", "Comparison", "ReportData", "awareness_points", "build_report_data", "check_datasets", "compare",
           "condition_heatmaps", "curve", "left_out_reasons", "load_datasets", "paired_comparisons"]
