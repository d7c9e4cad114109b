"""The report's first screen in a real browser (issue 18): Debian's Chromium driven by Playwright.

Recorded runs (:func:`report_factories.calibration_run`: 13 variants on hello, and the
``default``-like run with io as well) are rendered with :func:`serverlab.report.write_report`
and opened from disk. At 1280×800 the answer sentence of every workload and the top of
the first ranking chart are on the first screen; at 1280 and 390 px nothing is wider
than the viewport (tables scroll inside their wrapper; every ``<details>`` is opened
first so folded content counts too); no paragraph of the verdict section is over 400
characters. Screenshots go to ``test-output/browser/`` (override with
``SERVERLAB_TEST_OUTPUT``): ``report-first-screen-<run>-<width>.png`` and a full page each.

No Docker needed; marked ``slow`` like the other browser tests (Chromium starts in
seconds), so ``make test-fast`` leaves it out and ``make test`` / ``make test-browser`` run it.
Chromium is never downloaded: ``/usr/bin/chromium`` (``.ci/run`` installs it); the tests
skip without it or without Playwright, and fail instead in CI (``CI=true``); the ``browser``
fixture is tests/conftest.py's.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from report_factories import calibration_run, write_results
from serverlab.report import write_report

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = Path(os.environ.get("SERVERLAB_TEST_OUTPUT", ROOT / "test-output")) / "browser"
FIRST_SCREEN = {"width": 1280, "height": 800}
WIDTHS = (1280, 390)
MAX_PARAGRAPH = 400
pytestmark = [pytest.mark.slow]

#: Elements wider than the viewport, or reaching past its right edge, that are not inside
#: a horizontally scrolling (or clipping) ancestor, after opening every <details>.
OVERFLOW_JS = """() => {
    document.querySelectorAll('details').forEach(d => { d.open = true; });
    const width = document.documentElement.clientWidth, out = [];
    const contained = el => {
        for (let a = el.parentElement; a && a !== document.body; a = a.parentElement) {
            const x = getComputedStyle(a).overflowX;
            if (x === 'auto' || x === 'scroll' || x === 'hidden') return true;
        }
        return false;
    };
    for (const el of document.querySelectorAll('body *')) {
        const r = el.getBoundingClientRect();
        if ((r.width > width + 0.5 || r.right > width + 0.5) && !contained(el))
            out.push(el.tagName.toLowerCase() + (el.className ? '.' + el.className : '') + ' ' + Math.round(r.right));
    }
    return {scrollWidth: document.documentElement.scrollWidth, width: width, out: out.slice(0, 10)};
}"""


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> dict[str, Path]:
    """``index.html`` of the two recorded runs, by name."""
    OUTPUT.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, io in (("calibration", False), ("default", True)):
        header, cells = calibration_run(f"20261121-070039-{name}", io=io)
        run = tmp_path_factory.mktemp(name)
        write_results(run / "results.jsonl", header, cells)
        out[name] = write_report([run / "results.jsonl"], run)["html"]
    return out


def _open(browser, path: Path, width: int, height: int = 800):
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    page.goto(path.as_uri())
    return context, page


@pytest.mark.parametrize("run", ["calibration", "default"])
def test_the_first_screen_shows_every_answer_and_the_top_of_the_first_ranking_chart(browser, reports, run):
    context, page = _open(browser, reports[run], **FIRST_SCREEN)
    try:
        page.screenshot(path=str(OUTPUT / f"report-first-screen-{run}-1280.png"))
        height = FIRST_SCREEN["height"]
        workloads = ["hello"] if run == "calibration" else ["hello", "io"]
        # one line per workload: the list of answers when there are several, else the sentence itself
        lines = page.locator("#verdict ul.answers li") if len(workloads) > 1 else page.locator("#verdict p.sentence")
        assert lines.count() == len(workloads)
        for i, workload in enumerate(workloads):
            line = lines.nth(i)
            box = line.bounding_box()
            assert box is not None and box["y"] >= 0 and box["y"] + box["height"] <= height, (workload, box)
            text = line.inner_text()
            assert workload in text and ("wins" in text or "Cannot tell" in text), text
        chart = page.locator("#verdict figure.ranking").first
        box = chart.bounding_box()
        assert box is not None and box["y"] < height - 40, box  # its top (title and legend) is on screen
        assert "places on the evidence" in chart.inner_html()
        assert not page.locator("details#run").evaluate("d => d.open")  # the run's metadata is folded
    finally:
        context.close()


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("run", ["calibration", "default"])
def test_no_element_is_wider_than_the_viewport(browser, reports, run, width):
    context, page = _open(browser, reports[run], width)
    try:
        if width != FIRST_SCREEN["width"]:
            page.screenshot(path=str(OUTPUT / f"report-first-screen-{run}-{width}.png"))
        overflow = page.evaluate(OVERFLOW_JS)
        page.screenshot(path=str(OUTPUT / f"report-full-{run}-{width}.png"), full_page=True)
        assert overflow["scrollWidth"] <= overflow["width"] and not overflow["out"], overflow
    finally:
        context.close()


@pytest.mark.parametrize("run", ["calibration", "default"])
def test_no_paragraph_in_the_verdict_section_is_over_400_characters(browser, reports, run):
    context, page = _open(browser, reports[run], 1280)
    try:
        texts = page.locator("#verdict").evaluate(  # a cell holding a list is checked item by item
            "s => [...s.querySelectorAll('p, li, td:not(:has(ul)), figcaption')].map(e => e.innerText.trim())")
        assert len(texts) > 20  # the sentence, the tables' cells, the reasoning
        long = [t for t in texts if len(t) > MAX_PARAGRAPH]
        assert not long, [f"{len(t)}: {t[:120]}…" for t in long]
    finally:
        context.close()
