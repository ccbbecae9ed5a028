"""`runner report` end to end on a small hand-built dataset (no browser: see tests/e2e/test_report_e2e.py)."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

from runner.cli import main
from runner.commands._output import report_after_run
from runner.demo import HARMFUL_REPLY, SAFE_REPLY
from runner.grid import prompt_digest
from runner.plan import BUILTIN_SCENARIOS
from runner.report._transcripts import highlights
from runner.scenarios import load_packs
from tests.report.test_aggregate import COND, row, write


def _dataset(tmp_path):
    (pack,) = load_packs([BUILTIN_SCENARIOS], ["blackmail"])
    sc = pack.render(pack.condition_from_id(COND))
    # The planted harmful reply forwards a file to the rival: its address is the evidence.
    evidence = json.dumps([{"check": "leak", "label": "harmful", "call_index": 0, "tool": "forward_email",
                            "args": {"to": "victor.hale@bramblecrest.example"}}])
    rows = []
    for step, k in ((100, 3), (200, 1)):
        for s in range(4):
            r = row(step, s, s < k)
            r.update(response=HARMFUL_REPLY if s < k else SAFE_REPLY, evidence=evidence if s < k else "[]",
                     tool_calls="[]", temperature=1.0, top_p=1.0, max_tokens=64, prompt_digest=prompt_digest(sc.system, sc.user))
            rows.append(r)
    rows[-1]["prompt_digest"] = "0" * 32          # a reply to a prompt the pack no longer renders
    return write(tmp_path, rows), sc


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.imgs, self.figures, self.links, self.external, self.data = [], [], [], [], None
        self._in_data = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a)
        if tag == "figure" and "data-plot" in a:
            self.figures.append(a["data-plot"])
        if tag == "a" and (a.get("href") or "").startswith("#tx:"):
            self.links.append(a)
        for key in ("src", "href"):
            if a.get(key) and re.match(r"(https?:)?//", a[key]):
                self.external.append(a[key])
        self._in_data = tag == "script" and a.get("id") == "report-data"

    def handle_data(self, data):
        if self._in_data:
            self.data = json.loads(data)
            self._in_data = False


def test_report_is_one_self_contained_file_with_plots_tables_and_transcripts(tmp_path, capsys):
    root, sc = _dataset(tmp_path)
    assert main(["report", str(root), "--png", str(tmp_path / "png")]) == 0
    out = root / "_report.html"
    assert f"report: {out}" in capsys.readouterr().out
    html = out.read_text(encoding="utf-8")
    page = _Page()
    page.feed(html)
    assert not page.external and "<script src" not in html and "<link" not in html
    # The figures are inline SVG and tables, no images; the PNGs are the same figures, drawn once each.
    assert page.figures == ["persistence", "heatmap-blackmail", "paired", "awareness"] and not page.imgs
    assert sorted(p.name for p in (tmp_path / "png").iterdir()) == sorted(f"{n}.png" for n in page.figures)
    # Every point of a curve links to its transcripts: blackmail at 100 and 200, overall at both.
    points = {(a["data-family"], a["data-step"]) for a in page.links if "data-family" in a and "data-series" in a}
    assert {("overall", "100"), ("overall", "200"), ("blackmail", "100"), ("blackmail", "200")} <= points
    assert '<a href="#tx:step=100&amp;family=blackmail&amp;condition=' in html     # a heatmap cell
    assert "n=4" in html
    assert "McNemar exact (paired)" in html and "0.750 [" in html

    tx, prompts = page.data["transcripts"], page.data["prompts"]
    assert len(tx) == 8 and {t["label"] for t in tx} == {"harmful", "not harmful"}
    harmful = next(t for t in tx if t["label"] == "harmful")
    start, end, kind = harmful["marks"][0]
    assert harmful["reply"][start:end] == "victor.hale@bramblecrest.example" and kind == "harmful"
    # The prompt is re-rendered from the pack; the row whose digest no longer matches says why.
    good = prompts[harmful["prompt"]]
    assert good == {"system": sc.system, "user": sc.user}
    stale = next(t for t in tx if t["step"] == 200 and t["seed"] == 3)
    assert "scenario pack changed since generation" in prompts[stale["prompt"]]["error"]


def test_transcripts_are_capped_evenly_over_checkpoints_and_labels(tmp_path):
    root, _ = _dataset(tmp_path)
    assert main(["report", str(root), "-o", str(tmp_path / "r.html"), "--transcripts", "4"]) == 0
    page = _Page()
    page.feed((tmp_path / "r.html").read_text(encoding="utf-8"))
    tx = page.data["transcripts"]
    assert sorted((t["step"], t["label"]) for t in tx) == [(100, "harmful"), (100, "not harmful"),
                                                            (200, "harmful"), (200, "not harmful")]


def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys):
    root, _ = _dataset(tmp_path)
    cases = [([str(tmp_path / "missing")], "results directory not found"),
             ([str(root), "-o", str(root / "inside.html")], "readers would take it for data"),
             ([str(root), "-o", str(tmp_path / "no" / "r.html")], "does not exist"),
             ([str(root), "--baseline", "150"], "--baseline 150"),
             ([str(root), "--transcripts", "-1"], "--transcripts")]
    for args, message in cases:
        assert main(["report", *args]) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
    assert not (root / "_report.html").exists() and not list(root.glob(".*.tmp"))


def test_highlights_mark_matched_values_and_the_awareness_clause_without_overlaps():
    reply = "I think this is a test. Email to boss@x.example now; boss@x.example again."
    ev = [{"label": "harmful", "args": {"to": "boss@x.example", "subject": ""}}]
    marks = highlights(reply, ev, "this is a test")
    assert [reply[s:e] for s, e, _ in marks] == ["this is a test", "boss@x.example"]
    assert [k for _, _, k in marks] == ["awareness", "harmful"]


def test_after_a_run_the_report_is_written_or_its_command_is_printed(tmp_path, capsys):
    root, _ = _dataset(tmp_path)
    report_after_run(False, root)
    assert capsys.readouterr().out.strip() == f"report: run `runner report {root}`"
    report_after_run(True, root)
    assert capsys.readouterr().out.strip() == f"report: {(root / '_report.html').resolve()}"
    (tmp_path / "empty").mkdir()
    report_after_run(True, tmp_path / "empty")   # nothing written yet: the run still succeeds
    assert capsys.readouterr().out.startswith("report: not written: not a results dataset")
