"""`runner report`: one self-contained HTML report of one or more results datasets."""

from __future__ import annotations

from pathlib import Path


def report_command(results_dirs: list[str], output: str | None, png: str | None, baseline: int | None,
                   transcripts: int) -> int:
    from runner.report import default_output, write_report

    out = output or default_output(results_dirs)
    r = write_report(results_dirs, out, png, baseline_step=baseline, max_transcripts=transcripts)
    print(f"report: {r.path} ({r.bytes / 1e6:.1f} MB, {r.rows} items, {r.transcripts} transcripts embedded, "
          f"{len(r.plots)} plots, {r.seconds:.1f}s)")
    if png:
        print(f"png: {', '.join(r.plots)} in {Path(png).expanduser().resolve()}")
    return 0


__all__ = ["report_command"]
