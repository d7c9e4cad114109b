"""The web UI and the HTML report in a real browser: Debian's Chromium driven by Playwright.

A ``docker compose up`` lab with two Locust workers; the browser opens the Locust web UI
and checks: the start form's Host field is the server (visible, kept across *New* and a
reload), the header names it at 1280 px and in the 390-px drawer, one workload per test
(hello by default), RPS 0 after Stop; every bad input of the start form and of the
Compare page refused with its limit named and nothing started; a Compare of three
servers (the page's table, chart, footnote and downloads, Locust's own Compare tab, the
header never STOPPED while it runs); the Reports tab and page, following a report link,
and that the report fits a 1280-px viewport. Screenshots go to ``test-output/browser/``
(gitignored; override with ``SERVERLAB_TEST_OUTPUT``) — look at them after a run.

Chromium is never downloaded: the tests use ``/usr/bin/chromium`` (``.ci/run``
apt-installs it; the ``browser`` fixture is tests/conftest.py's). They skip without it or
without Docker, and fail instead in CI (``CI=true``).
"""

from __future__ import annotations

import json
import os
import re
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
VIEWPORT = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
OUTPUT = Path(os.environ.get("SERVERLAB_TEST_OUTPUT", ROOT / "test-output")) / "browser"
RUN_ID = "20260101-000000-browser"
pytestmark = [pytest.mark.docker, pytest.mark.slow]

sys.path.insert(0, str(Path(__file__).resolve().parent))


def compose(*args: str, env: dict[str, str] | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run ``docker compose`` for this module's project from the repo root; raise on failure."""
    proc = subprocess.run(["docker", "compose", "-p", PROJECT, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})
    assert proc.returncode == 0, f"docker compose {' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    return proc


@pytest.fixture(scope="module")
def output() -> Path:
    """The folder screenshots go to (emptied first)."""
    shutil.rmtree(OUTPUT, ignore_errors=True)
    OUTPUT.mkdir(parents=True)
    return OUTPUT


@pytest.fixture(scope="module")
def reports_dir():
    """A reports folder with one rendered run (per-second timelines, long commands), readable by the
    container's unprivileged user; mounted into the Locust master, which writes its comparisons there."""
    from report_factories import CONFIGS, make_cell, make_header, make_timeline, write_results

    from serverlab.report import write_report

    base = Path(tempfile.mkdtemp(prefix="serverlab-ui-reports-"))
    base.chmod(0o777)  # the Compare writes its runs here, as the master's unprivileged user
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
                cells.append(cell)
    header = make_header("browser", run_id=RUN_ID, workloads=["hello"], servers=list(rps_of),
                         configs={v: {**CONFIGS[v], "command": command} for v in rps_of})
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


def _wait_for(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.25)


def _stats(page, lab: str) -> dict:
    return json.loads(page.request.get(lab + "/stats/requests").text())


def _header(page) -> str:
    return page.locator("header").inner_text()


def _header_status(page) -> str:
    words = _header(page).upper().split()
    return words[words.index("STATUS") + 1] if "STATUS" in words[:-1] else ""


def _start_form(page):
    """Locust's start form: on the page before a first test, else in the *New* dialog."""
    if not page.locator('input[name="userCount"]').count():
        page.get_by_role("button", name="New").click()
    form = page.locator("form").filter(has=page.locator('input[name="userCount"]')).last
    form.wait_for()
    return form


def test_start_form_server_and_workload_and_the_header(lab, page, output):
    page.goto(lab + "/")
    form = _start_form(page)
    # the Host field is the Server field: first free field, visible without opening any accordion
    host = form.locator('input[name="host"]')
    assert host.is_visible() and host.input_value() == "gunicorn-sync"
    # one workload per test (no class picker ticking every class): hello by default
    assert form.locator('select[name="workload"]').input_value() == "hello"
    assert not page.locator('input[type="checkbox"]').count()
    assert "no host attribute" not in page.content()
    assert "gunicorn-sync" in _header(page)
    page.screenshot(path=str(output / "start-form.png"), full_page=True)

    host.fill("gunicorn-gthread")  # a server's name (or its URL)
    host.press("Tab")  # Locust's form warns "use a valid url format" on blur (the layout shifts); a name is fine
    form.get_by_role("button", name="Start").click()
    _wait_for(lambda: "RUNNING" in _header(page).upper(), 20, "the test to run")
    assert "gunicorn-gthread" in _header(page)
    running = _wait_for(lambda: (s := _stats(page, lab)) and s["total_rps"] > 0 and s, 20, "responses")
    assert [row["name"] for row in running["stats"]] == ["/", "Aggregated"]  # hello only: a first Start sends one workload
    page.screenshot(path=str(output / "running-header.png"))
    # live, as the report would class it: the server's own CPU (GET /lab/cpu) every 5 s, the report's rules
    live = _wait_for(lambda: (s := json.loads(page.request.get(lab + "/serverlab/state").text())["live"])
                     and s.get("cpu_ms_per_request") and s, 20, "the live server CPU")
    assert live["server"] == "gunicorn-gthread" and live["cpu_ms_per_request"] > 0 and live["server_utilization"] > 0
    assert live["bottleneck"] in ("server-bound", "generator-bound", "below-saturation", "interference"), live
    page.get_by_role("tab", name="Server CPU").click()
    page.locator("table").filter(has_text="CPU ms/req").locator("tr").filter(has_text="gunicorn-gthread").wait_for()
    page.screenshot(path=str(output / "live-server-cpu.png"))
    page.get_by_role("button", name="Stop").click()
    _wait_for(lambda: "STOPPED" in _header(page).upper(), 20, "the test to stop")
    # RPS reads 0 once stopped (it used to keep the last running figure)
    _wait_for(lambda: re.search(r"RPS\s+0(\.0+)?\s", _header(page) + "\n"), 10, "RPS 0 in the header")
    assert "gunicorn-gthread" in _header(page)

    # the server survives New and a reload: the form and the header both name it
    assert _start_form(page).locator('input[name="host"]').input_value() == "gunicorn-gthread"
    page.keyboard.press("Escape")
    page.reload()
    page.locator("header").get_by_text("gunicorn-gthread").wait_for()
    assert _start_form(page).locator('input[name="host"]').input_value() == "gunicorn-gthread"
    page.keyboard.press("Escape")
    state = json.loads(page.request.get(lab + "/serverlab/state").text())
    assert state["server"] == "gunicorn-gthread" and state["workload"] == "hello"


def test_the_phone_header_names_the_server(lab, browser, output):
    context = browser.new_context(viewport=PHONE)
    try:
        page = context.new_page()
        page.goto(lab + "/")
        server = json.loads(page.request.get(lab + "/serverlab/state").text())["server"]
        page.get_by_role("button", name="menu").click()  # at 390 px Locust's header lives in its drawer
        drawer = page.locator(".MuiDrawer-paper")
        name = drawer.get_by_text(server, exact=True)
        name.wait_for()
        assert "Host" in drawer.inner_text()
        # readable, not cut: inside the screen once the drawer has slid in, and not ellipsized (180 px there)
        inside = lambda: (box := name.bounding_box()) and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
        _wait_for(inside, 5, f"the server name inside the 390-px screen (at {name.bounding_box()})")
        assert name.evaluate("el => el.scrollWidth <= el.clientWidth"), "the server name is cut off"
        page.screenshot(path=str(output / "phone-drawer.png"))
    finally:
        context.close()


START_FORM_REFUSALS = [
    ({"userCount": "0"}, "users (user_count) must be a whole number from 1 to 1000; got '0'"),
    ({"userCount": "100000"}, "from 1 to 1000; got '100000'"),
    ({"userCount": "8.9"}, "got '8.9'"),
    ({"spawnRate": "0"}, "must be a number above 0 to 1000"),
    ({"host": "http://127.0.0.1:9"}, "is not one of the lab's servers"),
]


@pytest.mark.parametrize("fields, message", START_FORM_REFUSALS, ids=[m for _, m in START_FORM_REFUSALS])
def test_start_form_refuses_bad_input_naming_the_limit(lab, page, fields, message):
    page.goto(lab + "/")
    before = _stats(page, lab)["state"]
    form = _start_form(page)
    for name, value in fields.items():
        form.locator(f'input[name="{name}"]').fill(value)
    form.get_by_role("button", name="Start").click()
    alert = form.get_by_role("alert").filter(has_text=message)
    alert.wait_for(timeout=10_000)
    stats = _stats(page, lab)
    assert stats["state"] == before and stats["state"] in ("ready", "stopped") and stats["user_count"] == 0, stats


def test_start_form_cannot_send_a_negative_spawn_rate(lab, page):
    page.goto(lab + "/")
    field = _start_form(page).locator('input[name="spawnRate"]')
    field.fill("-5")  # Locust's numeric field drops the sign; /swarm refuses a negative rate (test_ui_http.py)
    assert field.input_value() == "5"


def _compare_page(page, lab: str):
    page.goto(lab + "/serverlab/compare")
    boxes = page.locator("#servers input")
    boxes.first.wait_for()
    return boxes


COMPARE_REFUSALS = [
    ({"users": "0"}, "users must be a whole number from 1 to 1000; got '0'"),
    ({"users": "100000"}, "got '100000'"),
    ({"users": "8.9"}, "got '8.9'"),
    ({"seconds": "1"}, "seconds per server must be a number from 5 to 300 s"),
    ({"warmup": "-1"}, "warm-up (warmup_s) must be a number from 0 to 60 s"),
    ({"servers": "none"}, "tick at least one server"),
]


@pytest.mark.parametrize("fields, message", COMPARE_REFUSALS, ids=[m for _, m in COMPARE_REFUSALS])
def test_compare_refuses_bad_input_naming_the_limit(lab, page, fields, message):
    boxes = _compare_page(page, lab)
    before = json.loads(page.request.get(lab + "/serverlab/compare/status").text())["state"]
    for field, value in fields.items():
        if field == "servers":
            for i in range(boxes.count()):
                boxes.nth(i).uncheck()
        else:
            page.locator(f"#{field}").fill(value)
    page.locator("#start").click()
    page.locator("#status.error").filter(has_text=message).wait_for(timeout=10_000)
    after = json.loads(page.request.get(lab + "/serverlab/compare/status").text())
    assert after["state"] == before != "running" and _stats(page, lab)["user_count"] == 0


def test_compare_three_servers(lab, page, output, browser, reports_dir):
    boxes = _compare_page(page, lab)
    servers = [boxes.nth(i).get_attribute("value") for i in range(boxes.count())]
    assert len(servers) >= 3 and all(boxes.nth(i).is_checked() for i in range(boxes.count()))  # default: all
    assert page.locator("#workload").input_value() == "hello"
    chosen = ["gunicorn-sync", "gunicorn-gthread", "uwsgi-processes"]
    for i, name in enumerate(servers):
        if name not in chosen:
            boxes.nth(i).uncheck()
    page.locator("#users").fill("4")
    page.locator("#seconds").fill("5")
    page.locator("#warmup").fill("1")
    page.locator("#start").click()
    page.locator("#stop:not([disabled])").wait_for()

    # Locust's own page while the comparison runs: never STOPPED (servers are stopped between rows)
    locust = browser.new_context(viewport=VIEWPORT).new_page()
    locust.goto(lab + "/")
    seen = []
    while True:
        word = _header_status(locust)
        if json.loads(page.request.get(lab + "/serverlab/compare/status").text())["state"] != "running":
            break  # read before the check: a word read while the comparison still ran
        seen.append(word)
        time.sleep(0.5)
    assert "RUNNING" in seen and "STOPPED" not in seen, seen

    page.locator("#downloads:not([hidden])").wait_for(timeout=120_000)
    rows = page.locator("#results tbody tr")
    assert rows.count() == 3
    measured = {}
    for i in range(3):
        row = rows.nth(i)
        server = row.get_attribute("data-server")
        figures = {key: row.locator(f"td.{key}").inner_text().replace(",", "") for key in ("rps", "p50", "p99", "p999")}
        assert all(v.replace(".", "").isdigit() for v in figures.values()), (server, figures)
        values = {k: float(v) for k, v in figures.items()}
        assert values["rps"] > 0, (server, values)
        assert 0 < values["p50"] <= values["p99"] <= values["p999"], (server, values)  # µs
        # the report's own figures: the server's CPU per request and share of its budget, the
        # bottleneck class by the report's rules, other programs' share of the server's CPUs
        cpu, busy, other = (row.locator(f"td.{key}").inner_text() for key in ("cpu", "busy", "other"))
        assert float(cpu) > 0 and busy.endswith("%") and 0 < int(busy[:-1]) <= 150, (server, cpu, busy)
        assert other.split("%")[0].isdigit(), (server, other)
        bottleneck = row.locator("td.bottleneck")
        assert bottleneck.inner_text() in ("server-bound", "generator-bound", "below-saturation", "interference")
        assert bottleneck.get_attribute("title"), server  # the reason, as the report words it
        measured[server] = values
    assert set(measured) == set(chosen)
    page.locator("#chart svg").wait_for()
    page.screenshot(path=str(output / "compare-page.png"), full_page=True)

    # merged across both workers, and the footnote says how many processes
    status = json.loads(page.request.get(lab + "/serverlab/compare/status").text())
    processes = json.loads(page.request.get(lab + "/serverlab/state").text())["workers"]  # Locust worker processes
    assert processes >= 2 and all(row["processes"] == processes for row in status["rows"]), status["rows"]
    assert "every Locust process merged" in page.locator("#note").inner_text()
    lines = page.request.get(lab + "/serverlab/compare/results.jsonl").text().splitlines()
    header, cells = json.loads(lines[0]), [json.loads(line) for line in lines[1:]]
    assert header["kind"] == "run" and {c["variant"] for c in cells} == set(chosen)
    assert header["experiment"]["levels"] == [4] and header["metadata"]["backend"] == "lab"  # make report's header
    assert all(c["hdr"] and c["latency_us"]["p99"] > 0 and c["cpu_ms_per_request"] > 0 for c in cells)
    # a run folder under reports/, with its report, that the Reports page lists
    assert (reports_dir / status["compare_id"] / "index.html").is_file()
    assert status["compare_id"] in page.request.get(lab + "/serverlab/reports/").text()
    summary = page.request.get(lab + "/serverlab/compare/summary.md").text()
    assert "## Workload hello: closed mode" in summary and all(name in summary for name in chosen)

    # Locust's Compare servers tab (an extended tab) shows the same rows
    locust.goto(lab + "/?tab=lab-compare")
    table = locust.locator("table").filter(has_text="p99.9 µs")
    for name, values in measured.items():
        row = table.locator("tr").filter(has_text=name)
        row.wait_for()
        cells = [row.locator("td").nth(i).inner_text() for i in range(4)]  # #, server, status, RPS
        assert cells[1] == name and cells[2] == "ok" and abs(float(cells[3].replace(",", "")) - values["rps"]) <= 1, cells
    locust.screenshot(path=str(output / "compare-tab.png"), full_page=True)
    locust.context.close()


def test_reports_tab_follows_a_report_that_fits_1280_px(lab, page, output):
    page.goto(lab + "/")
    if not page.get_by_role("tab", name="Reports").count():  # the tabs show once a first test ran
        form = _start_form(page)
        form.get_by_role("button", name="Start").click()
        page.get_by_role("button", name="Stop").click()
    page.get_by_role("tab", name="Reports").click()
    # Locust's extended tab lists the runs (its table, from the lab's extended_stats)
    page.locator("table tr").filter(has_text=RUN_ID).wait_for()
    assert not page.get_by_text("Download requests CSV").is_visible()  # not Locust's own Download Data tab
    page.screenshot(path=str(output / "reports-tab.png"))
    # Download Data links the lab's Reports page, where each run's report opens
    page.get_by_role("tab", name="Download Data").click()
    page.get_by_role("link", name=re.compile("^Reports: every run")).click()
    link = page.locator("a.report-link", has_text=RUN_ID)
    link.wait_for()
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

    # compare two runs from the Reports page (here a run with itself: every cell unchanged)
    page.locator("form button[type=submit]").click()
    page.locator("pre").wait_for()
    assert "gunicorn-sync" in page.locator("pre").inner_text()
