"""The web UI's refusals over real HTTP: a real Locust (local runner, web UI on 127.0.0.1) running
the lab's locustfile, no Docker.

Every bad request to Locust's own ``/swarm`` and to the Compare endpoints gets a 4xx naming
the problem, and afterwards nothing runs (Locust's state is still ``ready``, no user was
started, no comparison exists). One good start against a real Werkzeug server of the app,
opted in by name, shows the other side: it runs, the page names that host, and after
Stop the RPS is 0.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request

import locustui
import pytest

from serverlab.ui.limits import MAX_USERS

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def app_server():
    """A real Werkzeug server of the lab's app on 127.0.0.1; its base URL."""
    with locustui.app_server() as url:
        yield url


@pytest.fixture(scope="module")
def ui(app_server, tmp_path_factory):
    """``locust -f locustfiles/locustfile.py`` with its web UI on a free 127.0.0.1 port; the UI's URL."""
    env = {"SERVERLAB_ALLOW_HOSTS": app_server, "SERVERLAB_REPORTS_DIR": str(tmp_path_factory.mktemp("reports"))}
    with locustui.locust_web_ui(env, tmp_path_factory.mktemp("locust") / "locust.log") as url:
        yield url


def post(url: str, body: bytes | dict | None = None, content_type: str = "application/x-www-form-urlencoded",
         headers: dict | None = None) -> tuple[int, dict]:
    """POST and return ``(status, JSON answer)`` (4xx answers included)."""
    if isinstance(body, dict):
        body = urllib.parse.urlencode(body).encode()
    request = urllib.request.Request(url, data=body or b"", method="POST",
                                     headers={"Content-Type": content_type, **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as err:
        text = err.read()
        try:
            return err.code, json.loads(text)
        except ValueError:
            return err.code, {"message": text.decode(errors="replace")}


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def template_args(url: str) -> dict:
    """``window.templateArgs`` of Locust's page (what its React app starts from)."""
    with urllib.request.urlopen(url + "/", timeout=10) as response:
        html = response.read().decode()
    return json.loads(re.search(r"window\.templateArgs = (\{.*\})\s*</script>", html, re.S).group(1))


def assert_nothing_runs(ui: str) -> None:
    stats = get_json(ui + "/stats/requests")
    assert stats["state"] == "ready" and stats["user_count"] == 0, stats
    assert get_json(ui + "/serverlab/compare/status")["state"] == "idle"


VALID = {"user_count": "2", "spawn_rate": "2", "host": "http://gunicorn-sync:8000"}
SWARM_REFUSALS = [
    ("absurd users", {**VALID, "user_count": "100000"}, 400, f"from 1 to {MAX_USERS}; got '100000'"),
    ("a million users", {**VALID, "user_count": "1000000"}, 400, f"from 1 to {MAX_USERS}"),
    ("0 users", {**VALID, "user_count": "0"}, 400, "got '0'"),
    ("8.9 users", {**VALID, "user_count": "8.9"}, 400, "got '8.9'"),
    ("1e400 users", {**VALID, "user_count": "1e400"}, 400, "got '1e400'"),
    ("negative spawn rate", {**VALID, "spawn_rate": "-1"}, 400, "must be a number above 0"),
    ("1e400 spawn rate", {**VALID, "spawn_rate": "1e400"}, 400, "got '1e400'"),
    ("foreign host", {**VALID, "host": "http://127.0.0.1:9"}, 403, "is not one of the lab's servers"),
    ("an option Locust would overwrite", {**VALID, "web_host": "0.0.0.0"}, 400, "unknown: 'web_host'"),
    ("a parameter out of bounds", {**VALID, "io_ms": "99999999"}, 400, "io_ms (/io?ms=) must be a whole number"),
]


@pytest.mark.parametrize("case, form, status, message", SWARM_REFUSALS, ids=[c[0] for c in SWARM_REFUSALS])
def test_swarm_refuses_with_a_4xx_and_starts_nothing(ui, case, form, status, message):
    code, answer = post(ui + "/swarm", form)
    assert code == status and answer["success"] is False and message in answer["message"], (code, answer)
    assert_nothing_runs(ui)


@pytest.mark.parametrize("body, content_type, status, message", [
    (b"[1, 2, 3]", "application/json", 415, "takes form fields"),
    (b'{"user_count": 1e400, "spawn_rate": 1}', "application/json", 415, "takes form fields"),
    (b"[1, 2, 3]", "application/x-www-form-urlencoded", 400, "unknown: '[1, 2, 3]'"),
    (b"", "application/x-www-form-urlencoded", 400, "needs user_count and spawn_rate"),
    (b"x" * 100_000, "application/x-www-form-urlencoded", 413, ""),
])
def test_swarm_malformed_bodies_get_a_4xx(ui, body, content_type, status, message):
    code, answer = post(ui + "/swarm", body, content_type)
    assert code == status and message in answer.get("message", ""), (code, answer)
    assert_nothing_runs(ui)


@pytest.mark.parametrize("path", ["/swarm", "/stop", "/stats/reset", "/serverlab/compare/start", "/serverlab/compare/stop"])
@pytest.mark.parametrize("headers", [{"Origin": "http://evil.example"}, {"Origin": "null"},
                                     {"Referer": "http://evil.example/attack.html"},
                                     {"Host": "evil.example", "Origin": "http://evil.example"}])
def test_cross_origin_state_changes_are_refused(ui, path, headers):
    body = VALID if path == "/swarm" else {}
    code, answer = post(ui + path, body, headers=headers)
    assert code == 403 and answer["message"].startswith("refused:"), (code, answer)
    assert_nothing_runs(ui)


def test_user_class_editing_is_refused(ui):
    code, answer = post(ui + "/user", b'{"user_class_name": "HelloUser", "host": "http://127.0.0.1:9"}',
                        "application/json")
    assert code == 403 and "editing user classes is off" in answer["message"]


def test_locusts_own_form_reads_the_refusal(ui):
    """Locust's start form shows a message only from a 2xx answer: its page's request (own Origin) gets 200 + success false."""
    code, answer = post(ui + "/swarm", {**VALID, "user_count": "0"}, headers={"Origin": ui})
    assert code == 200 and answer["success"] is False and "from 1 to" in answer["message"]
    assert_nothing_runs(ui)


COMPARE = {"servers": ["gunicorn-sync"], "workload": "hello", "users": 2, "seconds": 5, "warmup_s": 0}
COMPARE_REFUSALS = [
    ("JSON array", b"[1, 2]", "application/json", 400, "got a JSON array"),
    ("1e400 users", b'{"servers": ["gunicorn-sync"], "users": 1e400, "seconds": 5}', "application/json", 400, "got inf"),
    ("8.9 users", json.dumps({**COMPARE, "users": 8.9}).encode(), "application/json", 400, "got 8.9"),
    ("absurd users", json.dumps({**COMPARE, "users": 1000000}).encode(), "application/json", 400, "got 1000000"),
    ("no server ticked", json.dumps({**COMPARE, "servers": []}).encode(), "application/json", 400,
     "tick at least one server"),
    ("foreign server", json.dumps({**COMPARE, "servers": ["http://127.0.0.1:9"]}).encode(), "application/json", 400,
     "unknown servers"),
    ("too short a window", json.dumps({**COMPARE, "seconds": 1}).encode(), "application/json", 400,
     "seconds per server must be a number from 5"),
    ("not JSON", b"{", "application/json", 400, "got not JSON"),
    ("a form body", b"servers=gunicorn-sync&users=2", "application/x-www-form-urlencoded", 415, "must be JSON"),
]


@pytest.mark.parametrize("case, body, content_type, status, message", COMPARE_REFUSALS,
                         ids=[c[0] for c in COMPARE_REFUSALS])
def test_compare_start_refuses_with_a_4xx_and_starts_nothing(ui, case, body, content_type, status, message):
    code, answer = post(ui + "/serverlab/compare/start", body, content_type)
    assert code == status and answer["success"] is False and message in answer["message"], (code, answer)
    assert_nothing_runs(ui)


def test_a_good_start_runs_names_its_host_and_reads_0_rps_after_stop(ui, app_server):
    args = template_args(ui)
    assert args["host"] == "gunicorn-sync"  # --server's default: the Host field and the header
    assert [t["key"] for t in args["extended_tabs"]] == ["lab-compare", "lab-live", "lab-reports", "lab-workers"]
    assert "workload" in args["extra_options"] and "server" not in args["extra_options"]
    code, answer = post(ui + "/swarm", {"user_count": "2", "spawn_rate": "2", "host": app_server, "workload": "json"})
    assert code == 200 and answer["success"] is True, answer
    try:
        deadline = time.monotonic() + 20
        while (stats := get_json(ui + "/stats/requests"))["total_rps"] <= 0 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert stats["state"] == "running" and stats["user_count"] == 2, stats
        assert [s["name"] for s in stats["stats"]] == ["/json", "Aggregated"]  # the one workload chosen
        assert {e["key"] for e in stats["extended_stats"]} == {"lab-compare", "lab-live", "lab-reports", "lab-workers"}
        reloaded = template_args(ui)  # a reload keeps the server and the workload the test runs
        assert reloaded["host"] == app_server and reloaded["extra_options"]["workload"]["default_value"] == "json"
        assert get_json(ui + "/serverlab/state")["server"] == app_server
    finally:
        post(ui + "/stop")
    deadline = time.monotonic() + 20
    while (stats := get_json(ui + "/stats/requests"))["state"] != "stopped" and time.monotonic() < deadline:
        time.sleep(0.5)
    assert stats["state"] == "stopped" and stats["current_rps"] == 0 and stats["total_rps"] > 0, stats
