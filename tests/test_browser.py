"""The web UI and the HTML report in a real browser: Debian's Chromium driven by Playwright.

A ``docker compose up`` lab with two Locust workers; the browser opens the Locust
web UI and checks the lab's defaults (only HelloUser ticked, the target server in
the header, no host warning), runs a Compare of three servers and reads the table,
opens the Reports tab and follows a report link, and checks that the report fits a
1280-px viewport. Screenshots go to ``test-output/browser/`` (gitignored; override
with ``SERVERLAB_TEST_OUTPUT``) — look at them after a run.

Chromium is never downloaded: the tests use ``/usr/bin/chromium`` (``.ci/run``
apt-installs it). They skip without it or without Docker, and fail instead in CI
(``CI=true``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "serverlab-ui"
CHROMIUM = os.environ.get("SERVERLAB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]
VIEWPORT = {"width": 1280, "height": 900}
OUTPUT = Path(os.environ.get("SERVERLAB_TEST_OUTPUT", ROOT / "test-output")) / "browser"
RUN_ID = "20260101-000000-browser"
pytestmark = [pytest.mark.docker, pytest.mark.slow]

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _unavailable(reason: str) -> None:
    if _in_ci():
        pytest.fail(f"CI=true but {reason}; .ci/run must provision it (apt-get install chromium; pip install -e '.[test]')")
    pytest.skip(reason)


def compose(*args: str, env: dict[str, str] | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run ``docker compose`` for this module's project from the repo root; raise on failure."""
    proc = subprocess.run(["docker", "compose", "-p", PROJECT, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})
    assert proc.returncode == 0, f"docker compose {' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    return proc


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium (headless), started by Playwright; never a downloaded browser."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("Playwright for Python is not installed")
    if not Path(CHROMIUM).exists():
        _unavailable(f"{CHROMIUM} is missing (Debian's chromium package)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def output() -> Path:
    """The folder screenshots go to (emptied first)."""
    shutil.rmtree(OUTPUT, ignore_errors=True)
    OUTPUT.mkdir(parents=True)
    return OUTPUT


@pytest.fixture(scope="module")
def reports_dir():
    """A reports folder with one rendered run (per-second timelines, long commands), readable by the
    container's unprivileged user; mounted read-only into the Locust master."""
    from report_factories import make_cell, make_header, make_timeline, write_results

    from serverlab.report import write_report

    base = Path(tempfile.mkdtemp(prefix="serverlab-ui-reports-"))
    base.chmod(0o755)
    run = base / RUN_ID
    run.mkdir()
    rps_of = {"werkzeug-single": 700, "werkzeug-threaded": 1200, "gunicorn-sync": 900, "gunicorn-gthread": 2300,
              "gunicorn-gevent": 1800, "uwsgi-threads": 1800}
    command = ["/opt/venv/bin/python", "-m", "gunicorn", "--bind", "0.0.0.0:8000", "--workers", "3",
               "--worker-class", "sync", "--worker-tmp-dir", "/dev/shm", "--keep-alive", "5", "labapp.wsgi:app"]
    cells = []
    for level in (8, 64):
        for variant, rps in rps_of.items():
            for repetition in (1, 2, 3):
                value = rps * (1 + 0.03 * repetition)
                cell = make_cell(variant, "hello", "closed", level, repetition, rps=value,
                                 median_us=1e6 * level / value, run_id=RUN_ID,
                                 timeline=make_timeline(value, 1e6 * level / value, seed=repetition + level))
                cell.config["command"] = command
                cells.append(cell)
    header = make_header("browser", run_id=RUN_ID, workloads=["hello"], servers=list(rps_of))
    write_results(run / "results.jsonl", header, cells)
    write_report([run / "results.jsonl"], run)
    for path in [run, *run.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def lab(docker_ready, reports_dir):
    """``docker compose up --scale locust-worker=2`` with the reports folder mounted; the UI's URL."""
    env = {"SERVERLAB_REPORTS": str(reports_dir)}
    try:
        compose("up", "-d", "--build", "--wait", "--wait-timeout", "300", "--scale", "locust-worker=2",
                env=env, timeout=1800)
        address = compose("port", "locust-master", "8089", env=env).stdout.strip()
        assert address.startswith("127.0.0.1:"), address
        url = f"http://{address}"
        for _ in range(120):  # both workers connected
            try:
                with urllib.request.urlopen(url + "/serverlab/state", timeout=5) as response:
                    if json.loads(response.read())["workers"] >= 2:
                        break
            except OSError:
                pass
            time.sleep(1)
        else:
            pytest.fail("two Locust workers never connected to the master")
        yield url
    finally:
        subprocess.run(["docker", "compose", "-p", PROJECT, "down", "--remove-orphans", "-t", "5"], cwd=ROOT,
                       capture_output=True, timeout=300, env={**os.environ, **env})


@pytest.fixture
def page(browser):
    """A fresh 1280×900 page."""
    context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
    try:
        yield context.new_page()
    finally:
        context.close()


def _class_rows(page) -> dict[str, bool]:
    rows = page.locator("tbody tr").filter(has=page.locator('input[type="checkbox"]'))
    out = {}
    for i in range(rows.count()):
        name = rows.nth(i).locator("td").nth(1).inner_text().strip()
        if name.endswith("User"):
            out[name] = rows.nth(i).locator('input[type="checkbox"]').is_checked()
    return out


def _wait_for(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.25)


def test_start_form_defaults_and_the_server_in_the_header(lab, page, output):
    page.goto(lab + "/")
    page.get_by_text("HelloUser").first.wait_for()
    # only the hello workload is ticked: a first Start does not send a mix of every workload
    selection = _wait_for(lambda: (s := _class_rows(page)) and sum(s.values()) == 1 and s, 10, "the default selection")
    assert selection == {"CpuUser": False, "HelloUser": True, "IoUser": False, "JsonUser": False, "MixedUser": False}
    assert "no host attribute" not in page.content()
    header = page.locator("#serverlab-server")
    assert "gunicorn-sync" in header.inner_text()
    page.screenshot(path=str(output / "start-form.png"), full_page=True)

    page.get_by_role("button", name="Start").click()
    _wait_for(lambda: "RUNNING" in page.locator("header").inner_text().upper(), 20, "the test to run")
    text = _wait_for(lambda: (t := header.inner_text()) and "next test" not in t and t, 10, "the running server")
    assert "gunicorn-sync" in text
    page.screenshot(path=str(output / "running-header.png"))
    page.get_by_role("button", name="Stop").click()
    _wait_for(lambda: "STOPPED" in page.locator("header").inner_text().upper(), 20, "the test to stop")


def test_compare_three_servers(lab, page, output):
    page.goto(lab + "/?tab=lab-compare")
    tab = page.get_by_role("tab", name="Compare servers")
    if not tab.count():  # the tabs show once a first test ran; the start form links the page
        page.goto(lab + "/")
        page.get_by_role("button", name="Start").click()
        page.get_by_role("button", name="Stop").click()
    page.get_by_role("tab", name="Compare servers").click()
    frame = page.frame_locator("#serverlab-frame")
    boxes = frame.locator("#servers input")
    boxes.first.wait_for()
    servers = [boxes.nth(i).get_attribute("value") for i in range(boxes.count())]
    assert len(servers) >= 3 and all(boxes.nth(i).is_checked() for i in range(boxes.count()))  # default: all
    assert frame.locator("#workload").input_value() == "hello"
    chosen = ["gunicorn-sync", "gunicorn-gthread", "uwsgi-processes"]
    for i, name in enumerate(servers):
        if name not in chosen:
            boxes.nth(i).uncheck()
    frame.locator("#users").fill("4")
    frame.locator("#seconds").fill("3")
    frame.locator("#warmup").fill("1")
    frame.locator("#start").click()
    frame.locator("#downloads:not([hidden])").wait_for(timeout=120_000)
    rows = frame.locator("#results tbody tr")
    assert rows.count() == 3
    seen = {}
    for i in range(3):
        row = rows.nth(i)
        server = row.get_attribute("data-server")
        figures = {key: row.locator(f"td.{key}").inner_text().replace(",", "") for key in ("rps", "p50", "p99", "p999")}
        assert all(v.replace(".", "").isdigit() for v in figures.values()), (server, figures)
        values = {k: float(v) for k, v in figures.items()}
        assert values["rps"] > 0, (server, values)
        assert 0 < values["p50"] <= values["p99"] <= values["p999"], (server, values)  # µs
        bottleneck = row.locator("td.bottleneck").inner_text()
        assert bottleneck.startswith(("generator-bound (Locust at", "unknown: Locust at")), bottleneck
        seen[server] = values
    assert set(seen) == set(chosen)
    frame.locator("#chart svg").wait_for()
    page.screenshot(path=str(output / "compare-tab.png"), full_page=True)

    # merged across both workers; downloads in make report's formats
    status = json.loads(page.request.get(lab + "/serverlab/compare/status").text())
    processes = json.loads(page.request.get(lab + "/serverlab/state").text())["workers"]  # Locust worker processes
    assert processes >= 2 and all(row["processes"] == processes for row in status["rows"]), status["rows"]
    lines = page.request.get(lab + "/serverlab/compare/results.jsonl").text().splitlines()
    header, cells = json.loads(lines[0]), [json.loads(line) for line in lines[1:]]
    assert header["kind"] == "run" and {c["variant"] for c in cells} == set(chosen)
    assert all(c["hdr"] and c["latency_us"]["p99"] > 0 for c in cells)
    summary = page.request.get(lab + "/serverlab/compare/summary.md").text()
    assert "## Workload hello: closed mode" in summary and all(name in summary for name in chosen)


def test_reports_tab_follows_a_report_that_fits_1280_px(lab, page, output):
    page.goto(lab + "/")
    if not page.get_by_role("tab", name="Reports").count():
        page.get_by_role("button", name="Start").click()
        page.get_by_role("button", name="Stop").click()
    page.get_by_role("tab", name="Reports").click()
    frame = page.frame_locator("#serverlab-frame")
    link = frame.locator("a.report-link", has_text=RUN_ID)
    link.wait_for()
    assert not page.get_by_text("Download requests CSV").is_visible()  # not Locust's own Download Data tab
    page.screenshot(path=str(output / "reports-tab.png"))
    with page.context.expect_page() as opened:
        link.click()
    report = opened.value
    report.wait_for_load_state()
    assert report.url.endswith(f"/serverlab/reports/{RUN_ID}/index.html")
    assert "serverlab report" in report.title()

    # nothing wider than the viewport, and no table or figure past the page's text column
    overflow = report.evaluate("""() => {
        const body = document.body.getBoundingClientRect(), out = [];
        for (const el of document.querySelectorAll('body *')) {
            const r = el.getBoundingClientRect();
            if (r.width > window.innerWidth + 0.5 || r.right > window.innerWidth + 0.5) out.push(el.tagName + ' ' + Math.round(r.right));
            else if (['TABLE', 'FIGURE', 'DL'].includes(el.tagName) && r.right > body.right + 0.5) out.push(el.tagName + ' ' + Math.round(r.right));
        }
        return {scrollWidth: document.documentElement.scrollWidth, out: out.slice(0, 10)};
    }""")
    assert overflow["scrollWidth"] <= VIEWPORT["width"] and not overflow["out"], overflow
    ranking = report.locator("figure", has_text="servers ranked by RPS")
    timeline = report.locator("figure", has_text="throughput and p99 per second")
    assert ranking.count() == 2 and timeline.count() == 2  # one per level (8 and 64 users)
    ranking.first.screenshot(path=str(output / "report-ranking.png"))
    timeline.first.screenshot(path=str(output / "report-over-time.png"))
    report.locator("#configuration").screenshot(path=str(output / "report-configuration.png"))

    # compare two runs from the Reports tab (here a run with itself: every cell unchanged)
    frame.locator("form button[type=submit]").click()
    frame.locator("pre").wait_for()
    assert "gunicorn-sync" in frame.locator("pre").inner_text()
