"""The single self-contained HTML page: a Jinja2 template, plots as inline SVG, transcripts as JSON."""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone

from runner.report._aggregate import ReportData
from runner.sinks.metrics import AWARENESS_LABELS


def render_html(data: ReportData, transcripts: list[dict], prompts: dict, transcript_note: str) -> tuple[str, list[str]]:
    """The page, and the names of the figures it shows."""
    import jinja2

    from runner.report._changes import FLIPS_LISTED
    from runner.report._figures import (
        _short_condition,
        awareness_figure,
        heatmap_table,
        paired_figure,
        persistence_figure,
        tx_link,
        zero_families,
    )

    env = jinja2.Environment(loader=jinja2.PackageLoader("runner.report", "templates"),
                             autoescape=jinja2.select_autoescape(["html", "j2"]), undefined=jinja2.StrictUndefined)
    template = env.get_template("report.html.j2")
    figures = {"persistence": persistence_figure(data), "paired": paired_figure(data), "awareness": awareness_figure(data)}
    zero = zero_families(data)
    names = ["persistence", *(f"heatmap-{f}" for f in data.heatmaps), *(n for n in ("paired", "awareness") if figures[n])]
    return template.render(
        title="Alignment persistence across checkpoints", generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        datasets=data.datasets, rows=data.rows, series=data.series, families=data.families,
        checkpoints=data.checkpoints, checkpoint_count=len(data.checkpoints),
        steps=sorted({c.step for c in data.checkpoints}),
        figures=figures,
        zero=zero, zero_names=[z["family"] for z in zero], heatmap_families=list(data.heatmaps), heatmap=lambda f: heatmap_table(data, f),
        run_comparisons=data.run_comparisons, run_notes=data.run_notes, flips=data.flips, flips_listed=FLIPS_LISTED,
        tx_link=tx_link, short=_short_condition,
        comparisons=data.comparisons, awareness=data.awareness, awareness_labels=AWARENESS_LABELS,
        agreement=data.agreement, left_out=data.left_out, transcript_note=transcript_note,
        rate=_rate, pval=_pval, data_json=embed_json({"transcripts": transcripts, "prompts": prompts})), names


def embed_json(value) -> str:
    """JSON safe inside <script>: no '</' (which would end the element) and no HTML comment openers."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    return text.replace("</", "<\\/").replace("<!--", "<\\!--")


def _rate(m: dict, group: str) -> str:
    rate = m.get(f"{group}/harmful_rate")
    if rate is None or (isinstance(rate, float) and math.isnan(rate)):
        return "n/a"
    return f"{rate:.3f} [{m[f'{group}/harmful_rate_lo']:.3f}, {m[f'{group}/harmful_rate_hi']:.3f}]"


def _pval(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"
