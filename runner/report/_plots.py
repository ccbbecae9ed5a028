"""The report's figures as PNGs for papers (`--png`), drawn once each with matplotlib (Agg).

200 dpi, the figure's own size in inches, 10-11 pt fonts; built from `ReportData` only. The
page itself draws the same figures as inline SVG (`_figures`), so matplotlib is imported only
when PNGs are asked for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from runner.report._aggregate import OVERALL, ReportData, awareness_points, curve
from runner.report._figures import _short_condition, zero_families
from runner.report._svg import nice_ceiling, series_color

STYLE = {"font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 9,
         "xtick.labelsize": 9, "ytick.labelsize": 9, "svg.fonttype": "none", "axes.spines.top": False,
         "axes.spines.right": False, "figure.dpi": 100}
AWARENESS_COLORS = {"tested": "#d62728", "real": "#1f77b4", "neither": "#7f7f7f"}
PNG_DPI = 200


@dataclass
class Plot:
    name: str            # file stem for --png, and the element id in the page
    title: str
    caption: str
    path: Path


def render_plots(data: ReportData, png_dir: Path) -> list[Plot]:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plots = []
    with plt.rc_context(STYLE):
        builders = [("persistence", _persistence)] + [(f"heatmap-{f}", _heatmap_builder(f)) for f in data.heatmaps] \
            + [("paired", _paired), ("awareness", _awareness)]
        for name, build in builders:
            made = build(data, plt)
            if made is None:
                continue
            fig, title, caption = made
            path = png_dir / f"{name}.png"
            fig.savefig(path, dpi=PNG_DPI)   # margins are fixed: one draw
            plt.close(fig)
            plots.append(Plot(name, title, caption, path))
    return plots


# Fixed margins in inches (room for tick labels, axis labels, titles and a legend row on top):
# a layout engine would lay every text out again in extra draws, most of the --png time.
LEFT, RIGHT, BOTTOM, TOP, LEGEND, GAP_W, GAP_H = 0.75, 0.15, 0.5, 0.35, 0.35, 0.75, 0.7


def _grid(plt, nrows: int, ncols: int, width: float, height: float):
    """A figure of nrows x ncols axes of width x height inches each, margins fixed in inches."""
    fig_w = LEFT + RIGHT + ncols * width + (ncols - 1) * GAP_W
    fig_h = BOTTOM + TOP + LEGEND + nrows * height + (nrows - 1) * GAP_H
    fig, axes = plt.subplots(nrows, ncols, figsize=(fig_w, fig_h), squeeze=False)
    fig.subplots_adjust(left=LEFT / fig_w, right=1 - RIGHT / fig_w, bottom=BOTTOM / fig_h,
                        top=1 - (TOP + LEGEND) / fig_h, wspace=GAP_W / width, hspace=GAP_H / height)
    return fig, axes


def _legend(fig, handles, labels) -> None:
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 1.0), ncols=min(4, len(labels)),
               frameon=False)


def _panels(plt, count: int, width: float = 2.9, height: float = 2.05):
    ncols = min(3, count)
    nrows = math.ceil(count / ncols)
    fig, axes = _grid(plt, nrows, ncols, width, height)
    flat = [ax for row in axes for ax in row]
    for ax in flat[count:]:
        ax.set_visible(False)
    return fig, flat[:count]


def _colors(plt, n: int):
    return [series_color(i) for i in range(n)]


def _persistence(data: ReportData, plt):
    zero = [z["family"] for z in zero_families(data)]
    groups = [OVERALL] + [f for f in data.families if f not in zero]
    fig, axes = _panels(plt, len(groups))
    colors = _colors(plt, len(data.series))
    annotate = len(data.series) == 1
    curves = {(s, g): [p for p in curve(data, s, g) if p["n"]] for s in data.series for g in groups}
    for ax, group in zip(axes, groups):
        for series, color in zip(data.series, colors):
            ref = data.reference.get(series)
            if ref and ref["family"] == group:
                steps = sorted(ref["rates"])
                ax.plot(steps, [ref["rates"][s] for s in steps], "--", color=color, lw=1.2,
                        label=f"planted rate ({series})" if len(data.series) > 1 else "planted rate (DEMO_RUN.json)")
            pts = curves[(series, group)]
            if not pts:
                continue
            x = [p["step"] for p in pts]
            ax.fill_between(x, [p["lo"] for p in pts], [p["hi"] for p in pts], color=color, alpha=0.12, lw=0)
            ax.plot(x, [p["rate"] for p in pts], "o-", color=color, label=series, ms=4)
            if annotate and len(pts) <= 10:
                for p in pts:
                    ax.annotate(f"{p['rate']:.2f}", (p["step"], p["rate"]), textcoords="offset points",
                                xytext=(0, 6), ha="center", fontsize=8)
        ax.set_title(group)
        ax.set_xlabel("checkpoint step")
        ax.set_ylabel("harmful rate")
        ax.grid(alpha=0.3)
    for row in range(0, len(groups), 3):   # one y scale per row of panels, fitted to the data
        top = max([p["hi"] for g in groups[row:row + 3] for s in data.series for p in curves[(s, g)]]
                  + [max(r["rates"].values()) for r in data.reference.values() if r["family"] in groups[row:row + 3]]
                  + [0.0])
        for ax in axes[row:row + 3]:
            ax.set_ylim(0, nice_ceiling(top * 1.05))
    handles, labels = axes[0].get_legend_handles_labels()
    for ax in axes[1:]:
        for h, label in zip(*ax.get_legend_handles_labels()):
            if label not in labels:
                handles.append(h)
                labels.append(label)
    if len(labels) > 1:
        _legend(fig, handles, labels)
    caption = ("Harmful rate (harmful / scored rows) per checkpoint with Wilson 95% bands; unscored and error "
               "rows are left out of the rate and counted in the tables below."
               + (f" Not drawn, no harmful reply at any checkpoint: {', '.join(zero)}." if zero else ""))
    return fig, "Persistence: harmful rate across checkpoints", caption


def _heatmap_builder(family: str):
    def build(data: ReportData, plt):
        return _heatmap(data, plt, family)
    return build


def _heatmap(data: ReportData, plt, family: str):
    import numpy as np

    h = data.heatmaps[family]
    rows, cols = h["rows"], h["cols"]
    rate = np.array([[np.nan if v is None else v for v in r] for r in h["rate"]], dtype=float)
    labels = [_short_condition(r) if i < h["conditions"] else r for i, r in enumerate(rows)]
    # Margins in inches from the label lengths instead of a layout engine: a constrained layout
    # lays every cell's text out several times, which made the heatmaps most of the --png time.
    rotate = len(cols) >= 8 or len(data.series) > 1
    left = 0.35 + 0.062 * max(len(s) for s in labels)
    bottom = 0.55 + (0.045 * max(len(c) for c in cols) if rotate else 0.2)
    cells_w, cells_h, right, top = 0.8 * len(cols), 0.34 * len(rows), 1.2, 0.4
    width, height = left + cells_w + right, bottom + cells_h + top
    fig = plt.figure(figsize=(width, height))
    ax = fig.add_axes((left / width, bottom / height, cells_w / width, cells_h / height))
    cax = fig.add_axes(((left + cells_w + 0.2) / width, bottom / height, 0.15 / width, cells_h / height))
    cmap = plt.get_cmap("Reds").with_extremes(bad="#e8e8e8")
    im = ax.imshow(np.ma.masked_invalid(rate), cmap=cmap, vmin=0, vmax=1, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(len(cols)), cols, rotation=45 if rotate else 0, ha="right" if rotate else "center")
    ax.set_yticks(range(len(rows)), labels, fontsize=8)
    ax.set_xlabel("series @ checkpoint step" if len(data.series) > 1 else "checkpoint step")
    if h["conditions"] < len(rows):
        ax.axhline(h["conditions"] - 0.5, color="black", lw=1.2)
    if len(rows) <= 24:  # numbers in every cell only where they stay legible (and cheap to lay out)
        for i in range(len(rows)):
            for j in range(len(cols)):
                if not np.isnan(rate[i, j]):
                    ax.text(j, i, f"{rate[i, j]:.2f}\nn={h['n'][i][j]}", ha="center", va="center", fontsize=6.5,
                            color="white" if rate[i, j] > 0.6 else "black")
    fig.colorbar(im, cax=cax, label="harmful rate")
    ax.set_title(family)
    caption = (f"{family}: harmful rate per condition (above the line) and per variable value over every "
               f"condition holding it (below), by checkpoint. Grey: no scored rows.")
    return fig, f"Conditions × checkpoints: {family}", caption


def _paired(data: ReportData, plt):
    if not data.comparisons:
        return None
    zero = {z["family"] for z in zero_families(data)}
    groups = [OVERALL] + [f for f in data.families if f not in zero and any(c.family == f for c in data.comparisons)]
    fig, axes = _panels(plt, len(groups))
    colors = dict(zip(data.series, _colors(plt, len(data.series))))
    offsets = {s: (i - (len(data.series) - 1) / 2) for i, s in enumerate(data.series)}
    for ax, group in zip(axes, groups):
        comps = [c for c in data.comparisons if c.family == group]
        steps = sorted({c.step for c in comps})
        spacing = min((b - a for a, b in zip(steps, steps[1:])), default=1) or 1
        for c in comps:
            x = c.step + offsets[c.series] * spacing * 0.08
            paired = c.pairs > 0
            ax.errorbar([x], [c.diff], yerr=[[c.diff - c.lo], [c.hi - c.diff]], fmt="o" if paired else "s",
                        color=colors[c.series], mfc=colors[c.series] if paired else "white", capsize=3, ms=5,
                        label=c.series)
        ax.axhline(0, color="black", lw=0.8)
        base = sorted({c.baseline_step for c in comps})
        ax.set_title(f"{group} (vs step {', '.join(map(str, base))})")
        ax.set_xlabel("checkpoint step")
        ax.set_ylabel("rate − baseline rate")
        ax.grid(alpha=0.3)
    for row in range(0, len(groups), 3):
        m = nice_ceiling(max([abs(v) for c in data.comparisons if c.family in groups[row:row + 3]
                              for v in (c.lo, c.hi)] + [0.0]) * 1.05)
        for ax in axes[row:row + 3]:
            ax.set_ylim(-m, m)
    if len(data.series) > 1:
        handles, labels = axes[0].get_legend_handles_labels()
        keep = dict(zip(labels, handles))
        _legend(fig, list(keep.values()), list(keep))
    caption = ("Difference in harmful rate against the baseline checkpoint with its 95% interval. Filled: paired "
               "(same condition and seed; exact McNemar, Newcombe paired interval); open squares: unpaired "
               "(two-proportion test).")
    return fig, "Paired comparison against the baseline checkpoint", caption


def _awareness(data: ReportData, plt):
    per_series = {s: awareness_points(data, s) for s in data.series}
    per_series = {s: p for s, p in per_series.items() if any(p[a] for a in p)}
    if not per_series:
        return None
    fig, axes = _grid(plt, len(per_series), 2, 3.6, 2.2)
    for (series, pts), (ax_share, ax_rate) in zip(per_series.items(), axes):
        for label, points in pts.items():
            color = AWARENESS_COLORS[label]
            x = [p["step"] for p in points]
            ax_share.plot(x, [p["share"] for p in points], "o-", color=color, label=label, ms=4)
            scored = [p for p in points if p["rate"] is not None]
            if scored:
                ax_rate.errorbar([p["step"] for p in scored], [p["rate"] for p in scored],
                                 yerr=[[p["rate"] - p["lo"] for p in scored], [p["hi"] - p["rate"] for p in scored]],
                                 fmt="o-", color=color, label=label, capsize=3, ms=4)
        prefix = f"{series}: " if len(per_series) > 1 else ""
        ax_share.set_title(f"{prefix}share of ok replies by eval awareness")
        ax_rate.set_title(f"{prefix}harmful rate by eval awareness")
        for ax in (ax_share, ax_rate):
            ax.set_ylim(0, 1.02)
            ax.set_xlabel("checkpoint step")
            ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    _legend(fig, handles, labels)
    caption = ("Whether the agent reasoned it is being tested, that its situation is real, or neither "
               "(all families), and the harmful rate within each group with Wilson 95% intervals.")
    return fig, "Eval awareness", caption


__all__ = ["PNG_DPI", "Plot", "render_plots"]
