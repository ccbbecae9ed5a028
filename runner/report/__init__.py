"""`runner report`: one self-contained HTML report of one or more results datasets.

    summary = write_report(["results/demo"], "report.html", png_dir=None)

Reads each dataset (each item's newest `ok` grading, as the sweep's metrics do) and writes ONE
HTML file that needs no network: persistence curves with Wilson bands, condition x checkpoint
heatmaps, paired comparisons against a baseline checkpoint, eval-awareness and judge-vs-rules
tables, what was left out of every rate and why, and a transcript browser (filtered and paged
in the page itself). The page's plots are inline SVG whose points and heatmap cells link into
the browser; `png_dir` also draws every plot once as a PNG (matplotlib) for papers.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from runner.errors import UserError

DEFAULT_TRANSCRIPTS = 2000


@dataclass
class ReportSummary:
    path: str
    bytes: int
    rows: int
    transcripts: int
    plots: list[str]       # the figures drawn (as PNG too when asked)
    seconds: float


def default_output(dirs: list[str]) -> Path:
    """RESULTS_DIR/_report.html for one dataset (dataset readers skip names starting with '_'),
    ./report.html for several."""
    return Path(dirs[0]).expanduser() / "_report.html" if len(dirs) == 1 else Path("report.html")


def _check_output(out: Path, dirs: list[str]) -> None:
    """A file inside a dataset whose path has no '.' or '_' part would be read as data by pyarrow."""
    for d in dirs:
        root = Path(d).expanduser().resolve()
        try:
            rel = out.resolve().relative_to(root)
        except ValueError:
            continue
        if not any(part.startswith((".", "_")) for part in rel.parts):
            raise UserError(f"-o {out}: inside the results dataset {d}, where readers would take it for data; "
                            f"name it with a leading underscore (e.g. {root / '_report.html'}) or write it elsewhere")


def write_report(dirs: list[str], out: str | Path, png_dir: str | Path | None = None, *,
                 baseline_step: int | None = None, max_transcripts: int = DEFAULT_TRANSCRIPTS) -> ReportSummary:
    """Build the report of `dirs` into `out` (written atomically); UserError on bad input."""
    from runner.report._aggregate import build_report_data, check_datasets
    from runner.report._html import render_html
    from runner.report._transcripts import build_transcripts, flipped_rows, load_packs_for, select_transcripts

    t0 = time.monotonic()
    check_datasets(dirs)
    if max_transcripts < 0:
        raise UserError(f"--transcripts must be >= 0, got {max_transcripts}")
    out = Path(out).expanduser()
    if out.is_dir():
        raise UserError(f"-o {out}: is a directory; give a file name such as {out / 'report.html'}")
    if not out.parent.is_dir():
        raise UserError(f"-o {out}: directory {out.parent} does not exist")
    _check_output(out, dirs)
    png = Path(png_dir).expanduser() if png_dir is not None else None
    if png is not None and png.exists() and not png.is_dir():
        raise UserError(f"--png {png}: is a file, not a directory")

    data = build_report_data(dirs, baseline_step)
    indices = select_transcripts(data.table, data.series_of_row, max_transcripts,
                                 first=flipped_rows(data.table, data.series_of_row, data.flips))
    packs, problem = load_packs_for(data.datasets)
    transcripts, prompts = build_transcripts(data.table, data.series_of_row, indices, packs, problem)
    note = (f"{len(transcripts)} of {data.rows} transcripts embedded"
            + (f" (at most {max_transcripts}, taken evenly over series x checkpoint x family x label; "
               f"re-run with --transcripts N for more)" if len(transcripts) < data.rows else "")
            + ". Prompts are re-rendered from the scenario packs; marked in each reply: the tool-call values "
              "a check matched (red: harmful) and the clause that decided eval awareness (yellow).")
    html, plots = render_html(data, transcripts, prompts, note)
    if png is not None:
        from runner.report._plots import render_plots

        png.mkdir(parents=True, exist_ok=True)
        plots = [p.name for p in render_plots(data, png)]
    tmp = out.parent / f".{out.name}.{uuid.uuid4().hex}.tmp"
    try:
        tmp.write_text(html, encoding="utf-8")
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    return ReportSummary(str(out.resolve()), len(html.encode("utf-8")), data.rows, len(transcripts),
                         plots, time.monotonic() - t0)




def write_report_file(results_dir: Path, out: Path) -> Path | None:
    """The report of `results_dir` as it is now, into `out`; None when it holds no dataset yet."""
    try:
        write_report([str(results_dir)], out)
    except UserError:
        return None
    return Path(out)


__all__ = ["DEFAULT_TRANSCRIPTS", "ReportSummary", "default_output", "write_report", "write_report_file"]
