"""Small inline SVG charts for the page: every point is a link into the transcript browser.

Hand-made rather than matplotlib: the page needs a link and a hover value per point, which
matplotlib's SVG does not give, and writing a few hundred elements as text takes milliseconds
where drawing the same figures took seconds. matplotlib still draws the `--png` copies.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from html import escape

# Distinct hues in a fixed order (the first run blue, the second red, ...), told apart in print too.
SERIES_COLORS = ("#1f5fbf", "#d1492e", "#2e9e4f", "#8a4fbf", "#c7921b", "#17a2b8", "#7a5230", "#d45fa6")
PANEL_W, PANEL_H = 360, 220
MARGIN = {"left": 46, "right": 12, "top": 26, "bottom": 36}


def series_color(i: int) -> str:
    return SERIES_COLORS[i % len(SERIES_COLORS)]


def nice_ceiling(value: float) -> float:
    """The smallest of 0.05, 0.1, 0.2, 0.25, 0.5, 1 x 10^k at or above `value` (rates: at most 1)."""
    if value <= 0:
        return 0.05
    exp = 10 ** math.floor(math.log10(value))
    for m in (1, 2, 2.5, 5, 10):
        if m * exp >= value - 1e-12:
            return min(1.0, max(0.05, m * exp))
    return 1.0


def ticks(lo: float, hi: float, count: int = 4) -> list[float]:
    span = hi - lo
    raw = span / count
    exp = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    # Prefer a step that lands on both ends, so the top of the axis is labelled.
    candidates = [m * exp for m in (1, 2, 2.5, 5, 10)]
    step = next((c for c in candidates if c >= 0.75 * raw and abs(span / c - round(span / c)) < 1e-9
                 and abs(lo / c - round(lo / c)) < 1e-9),
                next(c for c in candidates if c >= raw))
    first = math.ceil(lo / step - 1e-9) * step
    out, v = [], first
    while v <= hi + 1e-9:
        out.append(round(v, 10))
        v += step
    return out


@dataclass
class Panel:
    """One chart panel: x = checkpoint step (linear), y from `y_lo` to `y_hi`."""

    title: str
    x_values: list[int]
    y_lo: float
    y_hi: float
    y_label: str = "harmful rate"
    parts: list[str] = field(default_factory=list)

    def __post_init__(self):
        xs = self.x_values or [0]
        self.x_min, self.x_max = min(xs), max(xs)
        self.w = PANEL_W - MARGIN["left"] - MARGIN["right"]
        self.h = PANEL_H - MARGIN["top"] - MARGIN["bottom"]

    def x(self, value: float) -> float:
        if self.x_max == self.x_min:
            return MARGIN["left"] + self.w / 2
        pad = 0.06 * self.w
        return MARGIN["left"] + pad + (value - self.x_min) / (self.x_max - self.x_min) * (self.w - 2 * pad)

    def y(self, value: float) -> float:
        v = min(max(value, self.y_lo), self.y_hi)
        return MARGIN["top"] + self.h - (v - self.y_lo) / (self.y_hi - self.y_lo) * self.h

    def band(self, pts: list[tuple[float, float, float]], color: str) -> None:
        """Filled interval (x, lo, hi), drawn under the lines."""
        if len(pts) < 2:
            return
        upper = " ".join(f"{self.x(x):.1f},{self.y(hi):.1f}" for x, _, hi in pts)
        lower = " ".join(f"{self.x(x):.1f},{self.y(lo):.1f}" for x, lo, _ in reversed(pts))
        self.parts.insert(0, f'<polygon points="{upper} {lower}" fill="{color}" fill-opacity="0.12" '
                             f'stroke="{color}" stroke-opacity="0.35" stroke-width="0.8" stroke-dasharray="3 2"/>')

    def line(self, pts: list[tuple[float, float]], color: str, dash: str = "", width: float = 1.8,
             cls: str = "") -> None:
        if len(pts) < 2:
            return
        d = " ".join(f"{self.x(x):.1f},{self.y(y):.1f}" for x, y in pts)
        extra = f' stroke-dasharray="{dash}"' if dash else ""
        klass = f' class="{cls}"' if cls else ""
        self.parts.append(f'<polyline{klass} points="{d}" fill="none" stroke="{color}" stroke-width="{width}"{extra}/>')

    def point(self, x: float, y: float, color: str, href: str, tip: str, *, lo: float | None = None,
              hi: float | None = None, hollow: bool = False, attrs: dict | None = None) -> None:
        """A linked dot (with an error bar when lo/hi are given); `tip` shows on hover."""
        px, py = self.x(x), self.y(y)
        bar = ""
        if lo is not None and hi is not None:
            y1, y2 = self.y(lo), self.y(hi)
            bar = (f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{y1:.1f}" y2="{y2:.1f}" stroke="{color}" stroke-width="1.2"/>'
                   f'<line x1="{px - 3:.1f}" x2="{px + 3:.1f}" y1="{y1:.1f}" y2="{y1:.1f}" stroke="{color}"/>'
                   f'<line x1="{px - 3:.1f}" x2="{px + 3:.1f}" y1="{y2:.1f}" y2="{y2:.1f}" stroke="{color}"/>')
        data = "".join(f' data-{k}="{escape(str(v))}"' for k, v in (attrs or {}).items())
        fill = "white" if hollow else color
        self.parts.append(f'<a class="pt" href="{escape(href)}"{data}><title>{escape(tip)}</title>{bar}'
                          f'<circle cx="{px:.1f}" cy="{py:.1f}" r="4" fill="{fill}" stroke="{color}" stroke-width="1.5"/></a>')

    def hline(self, y: float, color: str = "#333", width: float = 0.8) -> None:
        self.parts.append(f'<line x1="{MARGIN["left"]}" x2="{MARGIN["left"] + self.w}" y1="{self.y(y):.1f}" '
                          f'y2="{self.y(y):.1f}" stroke="{color}" stroke-width="{width}"/>')

    def svg(self) -> str:
        left, top, w, h = MARGIN["left"], MARGIN["top"], self.w, self.h
        out = [f'<svg class="panel" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {PANEL_W} {PANEL_H}" '
               f'width="{PANEL_W}" height="{PANEL_H}" role="img" aria-label="{escape(self.title)}">',
               f'<text x="{left + w / 2:.0f}" y="16" text-anchor="middle" class="ttl">{escape(self.title)}</text>']
        for t in ticks(self.y_lo, self.y_hi):
            y = self.y(t)
            out.append(f'<line x1="{left}" x2="{left + w}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
                       f'<text x="{left - 5}" y="{y + 3.5:.1f}" text-anchor="end" class="tick">{_fmt_tick(t)}</text>')
        steps = sorted(set(self.x_values))
        shown = steps if len(steps) <= 10 else [int(t) for t in ticks(self.x_min, self.x_max, 6)]
        for s in shown:
            x = self.x(s)
            out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top + h}" y2="{top + h + 4}" class="axis"/>'
                       f'<text x="{x:.1f}" y="{top + h + 15}" text-anchor="middle" class="tick">{s}</text>')
        out.append(f'<line x1="{left}" x2="{left}" y1="{top}" y2="{top + h}" class="axis"/>'
                   f'<line x1="{left}" x2="{left + w}" y1="{top + h}" y2="{top + h}" class="axis"/>'
                   f'<text x="{left + w / 2:.0f}" y="{PANEL_H - 4}" text-anchor="middle" class="lbl">checkpoint step</text>'
                   f'<text transform="translate(11 {top + h / 2:.0f}) rotate(-90)" text-anchor="middle" class="lbl">'
                   f'{escape(self.y_label)}</text>')
        out += self.parts
        out.append("</svg>")
        return "".join(out)


def _fmt_tick(v: float) -> str:
    text = f"{v:.3f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


__all__ = ["PANEL_H", "PANEL_W", "Panel", "SERIES_COLORS", "nice_ceiling", "series_color", "ticks"]
