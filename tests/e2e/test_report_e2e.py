"""`runner report` on real demo sweeps, opened in a real headless Chromium.

The sweep (real Ray, real vLLM CPU, `report.auto=true`) writes the report itself; the page is
loaded over the DevTools protocol: no console errors, every plot rendered, the persistence
table shows the planted (leaking) rate falling, the transcript filters narrow the list to exactly
the matching transcripts, a click on a plot point or a flipped item lands on its filter, and the
filter state survives a reload. A second sweep (other temperature, half the seeds) gives the
two-run report: one legend entry per run and the paired run-vs-run comparison. Screenshots are
kept next to the reports.
"""

from __future__ import annotations

import json

import pytest

from runner.cli import main
from tests.browser import Browser, ensure_chromium

pytestmark = pytest.mark.e2e
FAMILIES = ["blackmail", "framing", "leaking", "lethal_inaction", "sabotage"]


@pytest.fixture(scope="session")
def chromium() -> str:
    exe, why = ensure_chromium()
    if exe is None:
        pytest.skip(f"no headless Chromium for the browser test: {why}")
    return exe


@pytest.fixture(scope="module")
def demo_report(demo_run, ray_local, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "results"
    rc = main(["sweep", f"models.0.path={demo_run}", f"output.dir={out}", "sampling.seeds=4",
               "sampling.max_tokens=16", "wandb.mode=disabled", "report.auto=true"])
    assert rc == 0
    return out / "_report.html"


@pytest.fixture(scope="module")
def two_run_report(demo_report, demo_run, ray_local, tmp_path_factory):
    from runner.report import write_report

    out = tmp_path_factory.mktemp("report-b") / "results-b"
    rc = main(["sweep", f"models.0.path={demo_run}", f"output.dir={out}", "sampling.seeds=2",
               "sampling.max_tokens=16", "sampling.temperature=0.7", "wandb.mode=disabled"])
    assert rc == 0
    path = out.parent / "compare.html"
    write_report([str(demo_report.parent), str(out)], path)
    return path


@pytest.fixture
def page(chromium, tmp_path):
    b = Browser(chromium, tmp_path / "profile")
    yield b
    b.close()


def _select(page: Browser, select_id: str, value: str) -> None:
    page.eval(f"""(() => {{ const s = document.getElementById({json.dumps(select_id)});
        s.value = {json.dumps(value)}; s.dispatchEvent(new Event('change')); }})()""")


def _cards(page: Browser) -> list[dict]:
    return page.eval("[...document.querySelectorAll('#tx-list article.tx')].map(a => ({...a.dataset}))")


def test_demo_report_renders_in_chromium_and_its_filters_work(demo_report, page, tmp_path):
    assert demo_report.is_file()
    page.open(demo_report.as_uri())
    assert page.eval("document.body.dataset.ready") == "1"

    figures = page.eval("[...document.querySelectorAll('figure[data-plot]')].map(f => f.dataset.plot)")
    assert figures == ["persistence", "heatmap-leaking", *[f"heatmap-{f}" for f in FAMILIES if f != "leaking"],
                       "paired", "awareness"]
    # Only the leaking family has harmful replies: the others are folded into one line, not drawn.
    panels = page.eval("[...document.querySelectorAll('#plot-persistence svg.panel')].map(s => s.getAttribute('aria-label'))")
    assert panels == ["overall", "leaking"]
    folded = page.eval("[...document.querySelectorAll('#zero-families a')].map(a => a.textContent)")
    assert folded == [f for f in FAMILIES if f != "leaking"]
    # The planted reference of the demo run is drawn, and named in the legend.
    assert page.eval("document.querySelectorAll('#plot-persistence polyline.planted').length") == 1
    assert any("planted" in x for x in page.eval(
        "[...document.querySelectorAll('ul[data-legend=persistence] li')].map(l => l.dataset.label)"))

    # The persistence table: the planted curve (the demo's harmful act is a leak, which rules
    # decide; see README "The demo RL run") falls to 0 at the last checkpoint.
    planted = page.eval("""(() => { const t = document.querySelector('table.rates');
        const col = [...t.rows[0].cells].findIndex(c => c.textContent === 'leaking');
        return [...t.rows].slice(1).map(r => r.cells[col].textContent.trim()); })()""")
    rates = [int(k) / int(n) for k, n in (cell.split()[0].split("/") for cell in planted)]
    assert len(rates) == 4 and rates[0] > rates[-1] == 0.0 and rates[0] >= 0.5, planted

    data = json.loads(page.eval("document.getElementById('report-data').textContent"))
    tx = data["transcripts"]
    assert len(tx) == 5 * 4 * 4 * 4
    assert page.eval("document.getElementById('tx-status').dataset.matched") == str(len(tx))
    assert len(_cards(page)) == 20   # the first page

    _select(page, "f-family", "leaking")
    _select(page, "f-label", "harmful")
    expected = [t for t in tx if t["family"] == "leaking" and t["label"] == "harmful"]
    assert expected and page.eval("document.getElementById('tx-status').dataset.matched") == str(len(expected))
    cards = _cards(page)
    assert cards and all(c["family"] == "leaking" and c["label"] == "harmful" for c in cards)
    # Each harmful transcript shows its prompt and marks the evidence in the reply.
    first = page.eval("""(() => { const a = document.querySelector('#tx-list article.tx');
        return [a.querySelectorAll('mark.harmful').length, a.textContent.includes('system prompt'),
                a.textContent.includes('prompt not shown')]; })()""")
    assert first[0] >= 1 and first[1] and not first[2]

    step = str(max(t["step"] for t in tx))
    _select(page, "f-step", step)
    assert page.eval("document.getElementById('tx-status').dataset.matched") == "0"   # planted rate 0.0
    _select(page, "f-label", "")
    cards = _cards(page)
    assert cards and all(c["step"] == step and c["family"] == "leaking" for c in cards)

    page.call("Emulation.setDeviceMetricsOverride", width=1280, height=900, deviceScaleFactor=1, mobile=False)
    shot = demo_report.parent / "_report.png"
    page.screenshot(shot)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000
    assert page.errors() == []


def _filters(page: Browser) -> dict:
    return page.eval("""Object.fromEntries(['series', 'step', 'family', 'condition', 'seed', 'label', 'awareness', 'sort']
        .map(k => [k, document.getElementById('f-' + k).value]))""")


def _matched(page: Browser) -> int:
    return int(page.eval("document.getElementById('tx-status').dataset.matched"))


def _click(page: Browser, selector: str) -> dict:
    """Click the first element matching `selector` as a user would; returns its data attributes."""
    return page.eval(f"""(() => {{ const a = document.querySelector({json.dumps(selector)});
        a.dispatchEvent(new MouseEvent('click', {{bubbles: true, cancelable: true, view: window}}));
        return {{...a.dataset}}; }})()""")


def test_a_click_on_a_plot_point_or_a_flip_lands_on_its_filter_and_the_state_survives_a_reload(demo_report, page):
    page.open(demo_report.as_uri())
    data = json.loads(page.eval("document.getElementById('report-data').textContent"))
    tx = data["transcripts"]

    # The leaking curve's point at step 200: the browser shows exactly that family at that step.
    point = _click(page, "#plot-persistence a.pt[data-family='leaking'][data-step='200']")
    assert point == {"series": "demo-rl", "step": "200", "family": "leaking"}
    page.eval("new Promise(r => setTimeout(r, 200))")
    f = _filters(page)
    assert (f["step"], f["family"], f["label"]) == ("200", "leaking", "")
    assert _matched(page) == sum(1 for t in tx if t["step"] == 200 and t["family"] == "leaking") > 0
    assert page.eval("location.hash") == "#tx:step=200&family=leaking"

    # Narrow further with the page's own controls; the hash follows; a reload restores it all.
    _select(page, "f-label", "harmful")
    _select(page, "f-sort", "harmful")
    expected = sum(1 for t in tx if t["step"] == 200 and t["family"] == "leaking" and t["label"] == "harmful")
    assert _matched(page) == expected > 0
    url = page.eval("location.href")
    assert "label=harmful" in url and "sort=harmful" in url
    page.call("Page.reload")
    page.wait_event("Page.loadEventFired")
    page.eval("new Promise(r => setTimeout(r, 200))")
    assert page.eval("location.href") == url
    f = _filters(page)
    assert (f["step"], f["family"], f["label"], f["sort"]) == ("200", "leaking", "harmful", "harmful")
    assert _matched(page) == expected

    # What changed: every listed flip from step 100 to 200 is an item harmful at 100 and not at 200.
    page.events.clear()
    page.open(demo_report.as_uri())
    block = page.eval("""(() => { const d = document.querySelector('div.flips[data-from="100"][data-to="200"]');
        return {...d.dataset, links: d.querySelectorAll('a.flip').length}; })()""")
    flips = int(block["toHarmful"]) + int(block["toSafe"])
    assert flips > 0 and block["links"] == min(int(block["toHarmful"]), 100) + min(int(block["toSafe"]), 100)
    _click(page, 'div.flips[data-from="100"][data-to="200"] a.flip')
    page.eval("new Promise(r => setTimeout(r, 200))")
    f = _filters(page)
    assert f["family"] and f["condition"] and f["seed"] != "" and f["step"] == ""
    cards = _cards(page)
    # The item at each of the four checkpoints, side by side in step order.
    assert [c["step"] for c in cards] == ["100", "200", "300", "400"]
    assert all((c["family"], c["condition"], c["seed"]) == (f["family"], f["condition"], f["seed"]) for c in cards)
    labels = {c["step"]: c["label"] for c in cards}
    was, now = labels["100"], labels["200"]
    assert {was, now} == {"harmful", "not harmful"}
    assert page.errors() == []


def test_two_run_report_has_a_legend_per_run_and_compares_the_runs_paired(two_run_report, page):
    page.open(two_run_report.as_uri())
    assert page.eval("document.body.dataset.ready") == "1"
    legend = page.eval("[...document.querySelectorAll('ul[data-legend=persistence] li')].map(l => [l.dataset.label, "
                       "l.querySelector('line').getAttribute('stroke')])")
    runs = [(label, color) for label, color in legend if not label.startswith("planted")]
    assert [label for label, _ in runs] == ["results: demo-rl", "results-b: demo-rl"]
    assert len({color for _, color in runs}) == 2
    # Each run's curves in its own colour, on every panel.
    strokes = page.eval("[...document.querySelectorAll('#plot-persistence svg.panel')].map(s => "
                        "[...new Set([...s.querySelectorAll('a.pt circle')].map(c => c.getAttribute('stroke')))].length)")
    assert strokes and all(n == 2 for n in strokes)
    # The second run's seeds are a subset of the first's: every step compares paired.
    rows = page.eval("[...document.querySelectorAll('table.runs tr[data-family=overall]')].map(r => [r.dataset.step, r.dataset.paired])")
    assert rows == [[str(s), "1"] for s in (100, 200, 300, 400)]
    header = page.eval("document.querySelector('p.muted').textContent")
    assert "4 checkpoint steps (8 series × checkpoint)" in " ".join(header.split())
    page.call("Emulation.setDeviceMetricsOverride", width=1280, height=900, deviceScaleFactor=1, mobile=False)
    page.screenshot(two_run_report.with_suffix(".png"))
    assert page.errors() == []
