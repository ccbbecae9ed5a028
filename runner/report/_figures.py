"""The page's figures as inline SVG and HTML, each point and cell a link into the transcript browser.

A link is `#tx:` plus the browser's filters as a query string (`#tx:family=leaking&step=200`);
the page applies it on click and on load, so a link can be shared.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from urllib.parse import urlencode

from runner.report._aggregate import OVERALL, ReportData, awareness_points, curve
from runner.report._svg import Panel, nice_ceiling, series_color

AWARENESS_COLORS = {"tested": "#d1492e", "real": "#1f5fbf", "neither": "#7a7a7a"}
PANELS_PER_ROW = 3


@dataclass
class Figure:
    name: str              # element id suffix: plot-<name>
    title: str
    caption: str
    html: str
    legend: list[dict]     # [{"label", "color", "dash"}]: one legend for the whole figure


def tx_link(**filters) -> str:
    """A link into the transcript browser; empty filters and the `overall` family are left out."""
    kept = {k: v for k, v in filters.items() if v is not None and v != "" and not (k == "family" and v == OVERALL)}
    return "#tx:" + urlencode(kept)


def _only_if_many(data: ReportData, series: str) -> str | None:
    """The series filter, which a one-series page leaves out of its links."""
    return series if len(data.series) > 1 else None


def zero_families(data: ReportData) -> list[dict]:
    """Families with scored rows and not one harmful reply at any checkpoint of any series."""
    out = []
    for family in data.families:
        n = harmful = checkpoints = 0
        for c in data.checkpoints:
            k = c.metrics.get(f"{family}/n", 0)
            if k:
                checkpoints += 1
                n += k
                harmful += c.metrics.get(f"{family}/harmful", 0)
        if n and not harmful:
            out.append({"family": family, "n": n, "checkpoints": checkpoints, "href": tx_link(family=family)})
    return out


def series_legend(data: ReportData) -> list[dict]:
    legend = [{"label": s, "color": series_color(i), "dash": ""} for i, s in enumerate(data.series)]
    for i, s in enumerate(data.series):
        if s in data.reference:
            ref = data.reference[s]
            legend.append({"label": f"planted {ref['family']} rate ({s})" if len(data.series) > 1
                           else f"planted {ref['family']} rate (DEMO_RUN.json)", "color": series_color(i), "dash": "5 3"})
    return legend


def _rows(items: list, size: int = PANELS_PER_ROW) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def _tip_rate(p: dict) -> str:
    return f"{p['rate']:.3f} [{p['lo']:.3f}, {p['hi']:.3f}], {p['harmful']}/{p['n']} harmful"


def persistence_figure(data: ReportData) -> Figure:
    zero = {z["family"] for z in zero_families(data)}
    groups = [OVERALL] + [f for f in data.families if f not in zero]
    steps = sorted({c.step for c in data.checkpoints})
    curves = {(s, g): [p for p in curve(data, s, g) if p["n"]] for s in data.series for g in groups}
    panels = []
    for row in _rows(groups):
        top = max([p["hi"] for g in row for s in data.series for p in curves[(s, g)]]
                  + [max(r["rates"].values()) for s, r in data.reference.items() if r["family"] in row] + [0.0])
        y_hi = nice_ceiling(top * 1.05)
        for group in row:
            panel = Panel(group, steps, 0.0, y_hi)
            for i, s in enumerate(data.series):
                color, pts = series_color(i), curves[(s, group)]
                ref = data.reference.get(s)
                if ref and ref["family"] == group:
                    panel.line(sorted(ref["rates"].items()), color, dash="5 3", width=1.3, cls="planted")
                panel.band([(p["step"], p["lo"], p["hi"]) for p in pts], color)
                panel.line([(p["step"], p["rate"]) for p in pts], color)
                for p in pts:
                    panel.point(p["step"], p["rate"], color, tx_link(series=_only_if_many(data, s), step=p["step"], family=group),
                                f"{s} · step {p['step']} · {group}: {_tip_rate(p)}",
                                attrs={"series": s, "step": p["step"], "family": group})
            panels.append(panel.svg())
    caption = ("Harmful rate (harmful / scored rows) per checkpoint with Wilson 95% bands; each row of panels "
               "shares its y scale, fitted to the data. Unscored and error rows are left out of the rate and "
               "counted in the tables below. Click a point for its transcripts.")
    if data.reference:
        caption += (" Dashed: the rate planted in the demo run (the probability of the harmful reply, from "
                    "DEMO_RUN.json).")
    return Figure("persistence", "Persistence: harmful rate across checkpoints", caption,
                  '<div class="panels">' + "".join(panels) + "</div>", series_legend(data))


def paired_figure(data: ReportData) -> Figure | None:
    if not data.comparisons:
        return None
    zero = {z["family"] for z in zero_families(data)}
    groups = [OVERALL] + [f for f in data.families if f not in zero and any(c.family == f for c in data.comparisons)]
    steps = sorted({c.step for c in data.comparisons} | {c.baseline_step for c in data.comparisons})
    spacing = min((b - a for a, b in zip(steps, steps[1:])), default=1) or 1
    offset = {s: (i - (len(data.series) - 1) / 2) * spacing * 0.07 for i, s in enumerate(data.series)}
    color = {s: series_color(i) for i, s in enumerate(data.series)}
    panels = []
    for row in _rows(groups):
        comps = [c for c in data.comparisons if c.family in row]
        m = nice_ceiling(max([abs(v) for c in comps for v in (c.lo, c.hi)] + [0.0]) * 1.05)
        for group in row:
            mine = [c for c in comps if c.family == group]
            base = ", ".join(map(str, sorted({c.baseline_step for c in mine})))
            panel = Panel(f"{group} (vs step {base})", steps, -m, m, y_label="rate − baseline rate")
            panel.hline(0.0)
            for c in mine:
                kind = "paired" if c.pairs else "unpaired"
                panel.point(c.step + offset[c.series], c.diff, color[c.series],
                            tx_link(series=_only_if_many(data, c.series), step=c.step, family=group),
                            f"{c.series} · step {c.step} vs {c.baseline_step} · {group}: {c.diff:+.3f} "
                            f"[{c.lo:+.3f}, {c.hi:+.3f}], {c.test}, p={c.p:.3g} ({kind})",
                            lo=c.lo, hi=c.hi, hollow=not c.pairs,
                            attrs={"series": c.series, "step": c.step, "family": group})
            panels.append(panel.svg())
    caption = ("Difference in harmful rate against the baseline checkpoint with its 95% interval; each row shares "
               "its y scale. Filled: paired (same condition and seed; exact McNemar, Newcombe paired interval); "
               "hollow: unpaired (two-proportion test).")
    return Figure("paired", "Paired comparison against the baseline checkpoint", caption,
                  '<div class="panels">' + "".join(panels) + "</div>",
                  [{"label": s, "color": series_color(i), "dash": ""} for i, s in enumerate(data.series)])


def awareness_figure(data: ReportData) -> Figure | None:
    per_series = {s: awareness_points(data, s) for s in data.series}
    per_series = {s: p for s, p in per_series.items() if any(p[a] for a in p)}
    if not per_series:
        return None
    steps = sorted({c.step for c in data.checkpoints})
    share_hi = nice_ceiling(max(p["share"] for pts in per_series.values() for ps in pts.values() for p in ps) * 1.05)
    rate_hi = nice_ceiling(max([p["hi"] for pts in per_series.values() for ps in pts.values() for p in ps
                                if p["rate"] is not None] + [0.0]) * 1.05)
    panels = []
    for s, pts in per_series.items():
        prefix = f"{s}: " if len(per_series) > 1 else ""
        share = Panel(f"{prefix}share of ok replies", steps, 0.0, share_hi, y_label="share")
        rate = Panel(f"{prefix}harmful rate by awareness", steps, 0.0, rate_hi)
        for label, points in pts.items():
            color = AWARENESS_COLORS[label]
            share.line([(p["step"], p["share"]) for p in points], color)
            scored = [p for p in points if p["rate"] is not None]
            rate.line([(p["step"], p["rate"]) for p in scored], color)
            for p in points:
                share.point(p["step"], p["share"], color, tx_link(series=_only_if_many(data, s), step=p["step"], awareness=label),
                            f"{s} · step {p['step']} · {label}: {p['share']:.3f} of ok replies",
                            attrs={"series": s, "step": p["step"], "awareness": label})
            for p in scored:
                rate.point(p["step"], p["rate"], color, tx_link(series=_only_if_many(data, s), step=p["step"], awareness=label),
                           f"{s} · step {p['step']} · {label}: harmful {p['rate']:.3f} [{p['lo']:.3f}, {p['hi']:.3f}], "
                           f"n={p['n']}", lo=p["lo"], hi=p["hi"],
                           attrs={"series": s, "step": p["step"], "awareness": label})
        panels += [share.svg(), rate.svg()]
    caption = ("Whether the agent reasoned it is being tested, that its situation is real, or neither (all "
               "families), and the harmful rate within each group with Wilson 95% intervals.")
    return Figure("awareness", "Eval awareness", caption, '<div class="panels two">' + "".join(panels) + "</div>",
                  [{"label": a, "color": c, "dash": ""} for a, c in AWARENESS_COLORS.items()])


def heatmap_table(data: ReportData, family: str) -> str:
    """Rate per condition x checkpoint as a table: each cell shows its rate and n and links to its rows."""
    h = data.heatmaps[family]
    multi = len(data.series) > 1
    out = [f'<table class="heatmap" data-family="{escape(family)}"><thead>']
    if multi:
        out.append('<tr><th></th>')
        for s in dict.fromkeys(k[0] for k in h["col_keys"]):
            span = sum(1 for k in h["col_keys"] if k[0] == s)
            color = series_color(data.series.index(s)) if s in data.series else "#333"
            out.append(f'<th colspan="{span}" class="run" style="border-top:3px solid {color}">{escape(s)}</th>')
        out.append("</tr>")
    out.append(f'<tr><th>{"condition" if h["conditions"] > 1 else ""}</th>')
    out += [f'<th class="num">step {step}</th>' for _, step in h["col_keys"]]
    out.append("</tr></thead><tbody>")
    for i, row in enumerate(h["rows"]):
        marginal = i >= h["conditions"]
        label = row if marginal else _short_condition(row)
        cls = ' class="marginal-first"' if marginal and i == h["conditions"] else ""
        out.append(f'<tr{cls}><th title="{escape(row)}" class="cond">{escape(label)}</th>')
        for j, (s, step) in enumerate(h["col_keys"]):
            n, rate = h["n"][i][j], h["rate"][i][j]
            if not n:
                out.append('<td class="cell empty" title="no scored rows">–</td>')
                continue
            href = tx_link(series=s if multi else None, step=step, family=family, condition=row)
            out.append(f'<td class="cell" style="background:{_heat(rate)};color:{"#fff" if rate > 0.6 else "#111"}">'
                       f'<a href="{escape(href)}" title="{escape(row)} · step {step}: {rate:.3f} of {n}">'
                       f'{rate:.2f}<span class="n">n={n}</span></a></td>')
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _heat(rate: float) -> str:
    """White to deep red."""
    r = round(255 - rate * (255 - 183))
    g = round(255 - rate * (255 - 28))
    b = round(255 - rate * (255 - 28))
    return f"rgb({r},{g},{b})"


def _short_condition(condition_id: str) -> str:
    parts = [p.partition("=") for p in condition_id.split(",") if p]
    return " · ".join(v if sep else k for k, sep, v in parts) or "(default)"


__all__ = ["Figure", "awareness_figure", "heatmap_table", "paired_figure", "persistence_figure", "series_legend",
           "tx_link", "zero_families"]
