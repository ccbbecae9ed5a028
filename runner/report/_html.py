"""The single self-contained HTML page: a Jinja2 template, plots as data URIs, transcripts as JSON."""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone

from runner.report._aggregate import ReportData
from runner.sinks.metrics import AWARENESS_LABELS


def render_html(data: ReportData, plots: list, transcripts: list[dict], prompts: dict, transcript_note: str) -> str:
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("runner.report", "templates"),
                             autoescape=jinja2.select_autoescape(["html", "j2"]), undefined=jinja2.StrictUndefined)
    by_name = {p.name: p for p in plots}
    template = env.get_template("report.html.j2")
    return template.render(
        title="Alignment persistence across checkpoints", generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        datasets=data.datasets, rows=data.rows, series=data.series, families=data.families,
        checkpoints=data.checkpoints, checkpoint_count=len(data.checkpoints),
        plots={"persistence": by_name["persistence"], "paired": by_name.get("paired"),
               "awareness": by_name.get("awareness")},
        heatmap_plots=[p for p in plots if p.name.startswith("heatmap-")],
        comparisons=data.comparisons, awareness=data.awareness, awareness_labels=AWARENESS_LABELS,
        agreement=data.agreement, left_out=data.left_out, transcript_note=transcript_note,
        rate=_rate, pval=_pval, data_json=embed_json({"transcripts": transcripts, "prompts": prompts}))


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
