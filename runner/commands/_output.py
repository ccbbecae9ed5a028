"""What sweep, watch and grade print when they end, and the exit status they share.

Exit status: 0 when every item is ok and scored, or unscored for a reason of the design
(`needs_judge`, an unparseable verdict, ...); 1 when error rows or failed gradings are left (a
re-run resumes exactly those); 2 for bad input (raised before anything starts).
"""

from __future__ import annotations

import re
from pathlib import Path

from runner.errors import UserError


def _step_order(key: str) -> tuple[str, int]:
    """`model@checkpoint-200` -> ("model", 200), so checkpoints print in training order."""
    model, _, name = key.partition("@")
    m = re.search(r"(\d+)$", name)
    return model, int(m.group(1)) if m else -1


def _rate(m: dict, group: str) -> str:
    rate = m.get(f"{group}/harmful_rate")
    if rate is None or rate != rate:
        return "n/a"
    return f"{rate:.3f} [{m[f'{group}/harmful_rate_lo']:.3f}, {m[f'{group}/harmful_rate_hi']:.3f}]"


def print_checkpoint_metrics(metrics: dict[str, dict], families: list[str] | None = None) -> None:
    """Per checkpoint, in step order: the overall rate with its interval and counts, the rate per
    family (a planted or real effect in one family is diluted in the overall rate), awareness."""
    from runner.sinks.metrics import CONTROL_GROUP, awareness_summary, engagement_summary

    for key in sorted(metrics, key=_step_order):
        m = metrics[key]
        failed = f" failed_grading={m['overall/failed_grading']}" if m.get("overall/failed_grading") else ""
        print(f"  {key}: harmful rate {_rate(m, 'overall')}  n={m.get('overall/n', 0)} "
              f"unscored={m.get('overall/unscored', 0)}{failed} errors={m.get('overall/errors', 0)}")
        if m.get("overall/ambiguous"):
            print(f"    ambiguous (left to a judge by the rules, not in n): {m['overall/ambiguous']}")
        fams = families or sorted({k.split("/", 1)[0] for k in m if k.endswith("/harmful_rate")}
                                  - {"overall", CONTROL_GROUP})
        per_family = [f"{f} {m[f'{f}/harmful']}/{m[f'{f}/n']}" + (f" (+{m[f'{f}/ambiguous']} ambiguous)"
                                                               if m.get(f"{f}/ambiguous") else "")
                      for f in fams if f"{f}/n" in m]
        if len(per_family) > 1:
            print(f"    by family (harmful/n): {', '.join(per_family)}")
        if engagement_summary(m):
            print(f"    {engagement_summary(m)}")
        if awareness_summary(m):
            print(f"    {awareness_summary(m)}")
        stops = [f"{k.split('/')[0]} {m[k.replace('_stop', '_seeds')]} ({v})" for k, v in m.items()
                 if k.endswith("/adaptive_stop")]
        if stops:  # sampling.adaptive: seeds per condition each family drew, and why it stopped
            print(f"    adaptive seeds (why stopped): {', '.join(stops)}")


def exit_status(left: tuple[int, int], what: str) -> int:
    """1 with one closing line when error rows or failed gradings are left; else 0."""
    errors, failed = left
    if not errors and not failed:
        return 0
    parts = [f"{errors} item(s) with errors"] if errors else []
    parts += [f"{failed} item(s) whose grading failed"] if failed else []
    print(f"runner: {what} finished with {' and '.join(parts)}; a re-run resumes exactly those "
          f"(failed gradings are graded again from the stored reply)")
    return 1


def report_after_run(auto: bool, results_dir: Path) -> None:
    """After a sweep or watch: write the report (report.auto) or say how to."""
    if not auto:
        print(f"report: run `runner report {results_dir}`")
        return
    from runner.report import default_output, write_report

    try:
        r = write_report([str(results_dir)], default_output([str(results_dir)]))
    except UserError as e:  # the run itself succeeded; a report that cannot be written does not undo it
        print(f"report: not written: {e}")
        return
    print(f"report: {r.path}")


__all__ = ["exit_status", "print_checkpoint_metrics", "report_after_run"]
