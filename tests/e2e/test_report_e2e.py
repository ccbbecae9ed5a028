"""`runner report` on a real demo sweep, opened in a real headless Chromium.

The sweep (real Ray, real vLLM CPU, `report.auto=true`) writes the report itself; the page is
loaded over the DevTools protocol: no console errors, every plot rendered, the persistence
table shows the planted (leaking) rate falling, and the transcript filters narrow the list to exactly
the matching transcripts. A screenshot is kept next to the report.
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

    plots = page.eval("[...document.querySelectorAll('img[data-plot]')]"
                      ".map(i => [i.dataset.plot, i.complete, i.naturalWidth, i.naturalHeight])")
    names = [p[0] for p in plots]
    assert names == ["persistence", *[f"heatmap-{f}" for f in FAMILIES], "paired", "awareness"]
    assert all(complete and w > 200 and h > 100 for _, complete, w, h in plots), plots

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
