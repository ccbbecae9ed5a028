"""Console progress: items done/total, rate and ETA. On a terminal, one live bar redrawn in
place; otherwise (logs, CI, Ray job logs) a plain line at most every few seconds."""

from __future__ import annotations

import sys
import time

from runner.sinks.metrics import awareness_summary, engagement_summary


class ConsoleProgress:
    def __init__(self, total: int, skipped: int, stream=None, every_s: float = 2.0):
        self.total = total
        self.done = skipped
        self.start_done = skipped
        self.errors = 0
        self.harmful = 0
        self.stream = stream or sys.stderr
        self.every_s = every_s
        self.t0 = time.monotonic()
        self._last = 0.0
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._bar_shown = False

    def reset(self, total: int) -> None:
        """A new run through the same console (watch: one per checkpoint)."""
        self.total, self.done, self.start_done = total, 0, 0
        self.errors = self.harmful = 0
        self.t0 = time.monotonic()

    def update(self, n: int, errors: int = 0, harmful: int = 0, force: bool = False) -> None:
        self.done += n
        self.errors += errors
        self.harmful += harmful
        now = time.monotonic()
        if self.tty:
            if force or now - self._last >= 0.2 or self.done >= self.total:
                self._last = now
                self.stream.write("\r\033[K" + self.bar())
                self._bar_shown = True
                if self.done >= self.total:
                    self.stream.write("\n")
                    self._bar_shown = False
                self.stream.flush()
            return
        if force or now - self._last >= self.every_s or self.done >= self.total:
            self._last = now
            self.stream.write(self.line() + "\n")
            self.stream.flush()

    def bar(self, width: int = 30) -> str:
        frac = min(1.0, self.done / self.total) if self.total else 1.0
        filled = int(round(frac * width))
        return f"[runner] [{'#' * filled}{'.' * (width - filled)}] " + self.line()[len("[runner] "):]

    def line(self) -> str:
        elapsed = time.monotonic() - self.t0
        new = self.done - self.start_done
        rate = new / elapsed if elapsed > 0 else 0.0
        left = self.total - self.done
        eta = f"{left / rate:.0f}s" if rate > 0 else "?"
        pct = 100.0 * self.done / self.total if self.total else 100.0
        return (f"[runner] {self.done}/{self.total} items ({pct:.0f}%)  {rate:.1f} items/s  ETA {eta}"
                f"  harmful {self.harmful}  errors {self.errors}")

    def message(self, text: str) -> None:
        if self._bar_shown:  # the message goes above the bar, which is drawn again after it
            self.stream.write("\r\033[K")
        self.stream.write(f"[runner] {text}\n")
        if self._bar_shown:
            self.stream.write(self.bar())
        self.stream.flush()

    # The Sink protocol (runner.sinks).
    def write(self, rows: list[dict]) -> None:
        self.update(len(rows), errors=sum(r["status"] != "ok" for r in rows),
                    harmful=sum(bool(r["harmful"]) for r in rows))

    def checkpoint_done(self, ckpt, metrics: dict, transcripts: list[dict]) -> None:
        for line in checkpoint_lines(ckpt, metrics):
            self.message(line)

    def close(self) -> list[str]:
        return []


def checkpoint_lines(ckpt, m: dict) -> list[str]:
    """A finished checkpoint's console lines: counts, regression, judge agreement, awareness."""
    lines = []
    if m.get("overall/regression"):
        lines.append(f"REGRESSION: {ckpt.key} harmful rate is significantly above baseline step "
                     f"{m['overall/baseline_step']} (one-sided p={m['overall/regression_p']:.3g}, "
                     f"{m.get('overall/regression_test', '')})")
    failed = f", failed grading {m['overall/failed_grading']}" if m.get("overall/failed_grading") else ""
    lines.append(f"{ckpt.key} (step {ckpt.step}): harmful {m.get('overall/harmful', 0)}/{m.get('overall/n', 0)}, "
                 f"unscored {m.get('overall/unscored', 0)}{failed}, errors {m.get('overall/errors', 0)}"
                 f"{_agreement(m)}")
    if engagement_summary(m):
        lines.append(f"{ckpt.key}: {engagement_summary(m)}")
    if awareness_summary(m):
        lines.append(f"{ckpt.key}: {awareness_summary(m)}")
    return lines


def _agreement(m: dict) -> str:
    if "overall/agree_both" not in m:
        return ""
    return ("; judge vs rules: both {agree_both}, judge only {judge_only}, rules only {rules_only}, "
            "neither {agree_neither}, judge unscored {judge_unscored}").format(
        **{k.split("/", 1)[1]: v for k, v in m.items() if k.startswith("overall/")})
