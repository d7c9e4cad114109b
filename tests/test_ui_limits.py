"""The web UI's bounds and its same-origin rule, as pure functions (no Locust, no server).

The same rules run inside Locust in tests/test_ui_http.py (real Locust, real HTTP) and in
the browser in tests/test_browser.py.
"""

from __future__ import annotations

import json

import pytest

from serverlab.ui.guard import cross_origin_problem
from serverlab.ui.limits import (MAX_USERS, MIN_COMPARE_SECONDS, Targets, UIRefused, bounded_number,
                                 check_compare_body, check_swarm_form, run_time_seconds, whole_number)

TARGETS = Targets({"gunicorn-sync": "http://gunicorn-sync:8000", "uwsgi-http11": "http://uwsgi-http11:8000"},
                  extra=("http://myapp:5000",))
CURRENT = "gunicorn-sync"
SERVERS = ["gunicorn-sync", "uwsgi-http11"]


def form(**fields):
    return {key: [str(value)] for key, value in {"user_count": 8, "spawn_rate": 8, "host": CURRENT, **fields}.items()}


@pytest.mark.parametrize("value", [0, -1, MAX_USERS + 1, 100_000, 1_000_000, 8.9, 1e400, True, None, "8.9", "1e400",
                                   "", " ", "0x10", "nan", "9" * 5000])
def test_whole_number_refuses_with_the_range(value):
    with pytest.raises(UIRefused, match=f"users must be a whole number from 1 to {MAX_USERS}; got") as err:
        whole_number(value, "users", 1, MAX_USERS)
    assert err.value.status == 400


@pytest.mark.parametrize("value, expected", [(1, 1), ("8", 8), (" 32 ", 32), (MAX_USERS, MAX_USERS)])
def test_whole_number_accepts(value, expected):
    assert whole_number(value, "users", 1, MAX_USERS) == expected


@pytest.mark.parametrize("value", [-1, 0, "-0.5", "1e400", 1e400, float("nan"), "inf", True, 10**400, "", "x"])
def test_rate_refuses_non_positive_and_non_finite(value):
    with pytest.raises(UIRefused, match="must be a number above 0 to 1000"):
        bounded_number(value, "spawn rate", 0, 1000, low_open=True)


def test_rate_accepts_a_fraction():
    assert bounded_number("0.5", "spawn rate", 0, 1000, low_open=True) == 0.5


@pytest.mark.parametrize("text, seconds", [("", None), ("20", 20), ("20s", 20), ("3m", 180), ("1h20m", 4800)])
def test_run_time(text, seconds):
    assert run_time_seconds(text) == seconds


@pytest.mark.parametrize("text", ["forever", "-5", "25h", "0"])
def test_run_time_refused(text):
    with pytest.raises(UIRefused, match="run_time"):
        run_time_seconds(text)


@pytest.mark.parametrize("host", ["uwsgi-http11", "http://uwsgi-http11:8000", "http://uwsgi-http11:8000/"])
def test_swarm_form_names_the_server(host):  # a name is what the phone header has room for
    checked = check_swarm_form(form(host=host, workload="cpu", cpu_n="500"), TARGETS, CURRENT)
    assert (checked.server, checked.url, checked.users, checked.workload) == (
        "uwsgi-http11", "http://uwsgi-http11:8000", 8, "cpu")
    assert checked.fields["host"] == ["uwsgi-http11"]


def test_swarm_form_without_host_keeps_the_current_server():  # Locust's Edit dialog has no Host field
    fields = form()
    del fields["host"]
    assert check_swarm_form(fields, TARGETS, CURRENT).fields["host"] == [CURRENT]
    assert check_swarm_form(form(host=""), TARGETS, CURRENT).fields["host"] == [CURRENT]


def test_swarm_form_opted_in_host():
    checked = check_swarm_form(form(host="http://myapp:5000/"), TARGETS, CURRENT)
    assert checked.server == checked.url == checked.fields["host"][0] == "http://myapp:5000"


@pytest.mark.parametrize("fields, status, message", [
    ({"user_count": 0}, 400, "users (user_count) must be a whole number from 1 to 1000; got '0'"),
    ({"user_count": 100000}, 400, "from 1 to 1000; got '100000'"),
    ({"user_count": "8.9"}, 400, "got '8.9'"),
    ({"user_count": "1e400"}, 400, "got '1e400'"),
    ({"spawn_rate": -1}, 400, "spawn_rate, users per s) must be a number above 0 to 1000; got '-1'"),
    ({"spawn_rate": "1e400"}, 400, "got '1e400'"),
    ({"host": "http://127.0.0.1:9"}, 403, "is not one of the lab's servers"),
    ({"host": "http://evil.example"}, 403, "SERVERLAB_ALLOW_HOSTS=http://evil.example"),
    ({"workload": "mine"}, 400, "workload must be one of hello"),
    ({"cpu_n": "0"}, 400, "cpu_n (/cpu?n=) must be a whole number from 1 to 20000"),
    ({"run_time": "forever"}, 400, "run_time must be a timespan"),
    ({"web_host": "0.0.0.0"}, 400, "unknown: 'web_host'"),
    ({"[1, 2]": ""}, 400, "unknown: '[1, 2]'"),
    ({"user_classes": "CpuUser"}, 400, "pick the workload in Custom parameters"),
])
def test_swarm_form_refusals_name_the_limit(fields, status, message):
    with pytest.raises(UIRefused) as err:
        check_swarm_form(form(**fields), TARGETS, CURRENT)
    assert err.value.status == status and message in str(err.value), str(err.value)


def test_swarm_form_needs_users_and_rate():
    with pytest.raises(UIRefused, match="needs user_count and spawn_rate"):
        check_swarm_form({}, TARGETS, CURRENT)


def test_swarm_form_field_sent_twice():
    with pytest.raises(UIRefused, match="sent 2 times"):
        check_swarm_form({**form(), "user_count": ["1", "900"]}, TARGETS, CURRENT)


def test_a_running_test_keeps_its_workload():
    with pytest.raises(UIRefused, match=r"keeps its workload \(hello\)"):
        check_swarm_form(form(workload="io"), TARGETS, CURRENT, current_workload="hello", running=True)


def compare(**fields):
    return {"servers": SERVERS, "workload": "hello", "users": 8, "seconds": 5, "warmup_s": 1, **fields}


def test_compare_body_accepts_and_dedups():
    req = check_compare_body(compare(servers=["uwsgi-http11", "uwsgi-http11"], seed=3), SERVERS, ["hello", "cpu"])
    assert (req.servers, req.users, req.seconds, req.warmup_s, req.seed) == (("uwsgi-http11",), 8, 5.0, 1.0, 3)


@pytest.mark.parametrize("body, message", [
    ([1, 2], "must be a JSON object with servers, workload, users, seconds, warmup_s, seed; got a JSON array"),
    (None, "got not JSON"),
    ("x", "got a JSON string"),
    (compare(servers=[]), "tick at least one server"),
    ({k: v for k, v in compare().items() if k != "servers"}, "tick at least one server"),
    (compare(servers=["apache"]), "unknown servers 'apache'; valid: gunicorn-sync, uwsgi-http11"),
    (compare(users=0), "users must be a whole number from 1 to 1000; got 0"),
    (compare(users=100_000), "got 100000"),
    (compare(users=8.9), "got 8.9"),
    (json.loads('{"servers": ["gunicorn-sync"], "users": 1e400, "seconds": 5}'), "got inf"),
    (compare(users="1e400"), "got '1e400'"),
    (compare(seconds=1), f"seconds per server must be a number from {MIN_COMPARE_SECONDS:g} to 300 s"),
    (compare(seconds=1e400), "got inf"),
    (compare(warmup_s=-1), "warm-up (warmup_s) must be a number from 0 to 60 s"),
    (compare(workload="nope"), "workload must be one of cpu, hello"),
    (compare(extra=1), "unknown fields 'extra'"),
])
def test_compare_refusals_name_the_limit(body, message):
    with pytest.raises(UIRefused) as err:
        check_compare_body(body, SERVERS, ["cpu", "hello"])
    assert err.value.status == 400 and message in str(err.value), str(err.value)


@pytest.mark.parametrize("method, host, origin, referer, refused", [
    ("GET", "127.0.0.1:8089", "http://evil.example", None, False),           # reading changes nothing
    ("POST", "127.0.0.1:8089", None, None, False),                           # curl, scripts
    ("POST", "127.0.0.1:8089", "http://127.0.0.1:8089", None, False),        # the UI's own page
    ("POST", "localhost:8089", "http://localhost:8089", None, False),
    ("POST", "[::1]:8089", "http://[::1]:8089", None, False),
    ("POST", "127.0.0.1:8089", "http://evil.example", None, True),
    ("POST", "127.0.0.1:8089", "null", None, True),                          # sandboxed frames, file://
    ("POST", "127.0.0.1:8089", "http://127.0.0.1:8090", None, True),         # another local port is another origin
    ("POST", "127.0.0.1:8089", None, "http://evil.example/page", True),
    ("POST", "127.0.0.1:8089", None, "http://127.0.0.1:8089/?tab=stats", False),
    ("POST", "evil.example:8089", "http://evil.example:8089", None, True),   # DNS rebinding: same origin, foreign name
    ("DELETE", "127.0.0.1:8089", "http://evil.example", None, True),
])
def test_cross_origin_problem(method, host, origin, referer, refused):
    problem = cross_origin_problem(method, host, origin, referer)
    assert bool(problem) == refused, problem
    if refused:
        assert problem.startswith("refused:")
