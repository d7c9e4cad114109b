"""Locust command lines, Locust/wrk output parsing, merging the locustfile's HDR dumps, and one real Locust run.

The ``hdr-*.json`` files are written by the locustfile's own ``Recorder`` class. Importing
the locustfile imports Locust, which monkey-patches the interpreter with gevent, so the
recorders run in a child interpreter, never in the pytest process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from hdrh.histogram import HdrHistogram

from serverlab.hdrdump import DumpError, ProcessDump, read_dumps
from serverlab.load import Load
from serverlab.records import LocustFigures
from serverlab.loadgen import (
    LOCUST_CPU_WARNING,
    LoadError,
    LoadPlan,
    parse_locust_csv,
    parse_wrk,
    read_outcome,
    wrk_args,
)
from serverlab.histograms import latency_summary
from serverlab.terms import PERCENTILES, WORKLOADS, Mode, percentile_key

REPO_ROOT = Path(__file__).resolve().parents[1]
LOCUSTFILE = REPO_ROOT / "locustfiles" / "locustfile.py"
VENV_BIN = Path(sys.executable).parent
#: HdrHistogram with 3 significant digits: any value is reported within 0.1%.
HDR_RELATIVE_PRECISION = 1e-3
LOCUST_CSV = """\
Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%
GET,/cpu,5872,3,2,2.6279,1.0124,48.7713,58.0,978.5953,0.4999,2,3,3,3,4,5,6,8,31,48,49
,Aggregated,5872,3,2,2.6279,1.0124,48.7713,58.0,978.5953,0.4999,2,3,3,3,4,5,6,8,31,48,49
"""
WRK_OUTPUT = """\
Running 5s test @ http://127.0.0.1:18001/
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    10.68ms    1.23ms  25.01ms   89.12%
    Req/Sec     3.01k   123.45     3.20k    70.00%
  14970 requests in 5.00s, 2.33MB read
Requests/sec:   2993.75
Transfer/sec:    476.80KB
"""


def plan(mode: str = "closed", workload: str = "hello", params: dict | None = None, level: int = 8, users: int = 8,
         duration_s: float = 5, warmup_s: float = 2, processes: int = 1) -> LoadPlan:
    return LoadPlan(WORKLOADS[workload], WORKLOADS[workload].params(params), Load.of(mode, level, users, processes),
                    duration_s, warmup_s)


def option(args: list[str], name: str) -> str:
    assert args.count(name) == 1, f"{name} not exactly once in {args}"
    return args[args.index(name) + 1]


# --- LoadPlan ----------------------------------------------------------------------------------------------


def test_closed_locust_args():
    args = plan("closed", level=8, users=99, duration_s=5, warmup_s=2).locust_args("/lf.py", "http://srv:8000", "/out")
    assert args[:5] == ["locust", "-f", "/lf.py", "--headless", "--only-summary"]
    assert option(args, "-u") == "8" and option(args, "-r") == "8"  # closed: the level is the user count
    assert option(args, "--run-time") == "7s"
    assert option(args, "--host") == "http://srv:8000"
    assert option(args, "--csv") == "/out/locust" and option(args, "--html") == "/out/locust.html"
    assert option(args, "--stop-timeout") == "5"
    assert float(option(args, "--warmup-seconds")) == 2.0
    for absent in ("--processes", "--max-requests", "--open-rate"):
        assert absent not in args
    assert args[-1] == "HelloUser"


def test_requests_locust_args():
    p = plan("requests", workload="cpu", params={"n": 30}, level=100, users=10, duration_s=300, warmup_s=0)
    args = p.locust_args("/lf.py", "http://srv:8000", "/out")
    assert option(args, "-u") == "10"
    assert option(args, "--max-requests") == "100"
    assert option(args, "--run-time") == "300s"
    assert "--warmup-seconds" not in args and "--open-rate" not in args and "--processes" not in args
    assert args[-3:] == ["--cpu-n", "30", "CpuUser"]


def test_open_locust_args_and_environment():
    p = plan("open", workload="mixed", params={"n": 10, "ms": 3}, level=500, users=100, duration_s=10, warmup_s=1,
             processes=2)
    args = p.locust_args("/lf.py", "http://srv:8000", "/out")
    assert option(args, "-u") == "2"  # open: one user per process, each runs its share of the schedule
    assert option(args, "--processes") == "2"
    assert float(option(args, "--open-rate")) == 500
    assert option(args, "--run-time") == "11s"
    assert "--max-requests" not in args
    assert args[-5:] == ["--mixed-n", "10", "--mixed-ms", "3", "MixedUser"]
    env = p.environment("/out")
    assert env.keys() == {"SERVERLAB_HDR_DIR", "SERVERLAB_LOAD"} and env["SERVERLAB_HDR_DIR"] == "/out"
    # every process reads the same Load: 100 in flight at most, 50 per process
    assert Load.from_json(env["SERVERLAB_LOAD"]) == p.load and p.load.max_in_flight_per_process == 50


@pytest.mark.parametrize("mode", ["closed", "requests"])
def test_environment_outside_open_mode(mode):
    env = plan(mode, level=20, users=4, warmup_s=0).environment("/x/y")
    assert env["SERVERLAB_HDR_DIR"] == "/x/y" and env.keys() == {"SERVERLAB_HDR_DIR", "SERVERLAB_LOAD"}
    # closed: the level is the users (the users setting is not used); requests: the users setting
    assert Load.from_json(env["SERVERLAB_LOAD"]).users == (20 if mode == "closed" else 4)


def test_open_in_flight_at_least_one():
    assert plan("open", users=1, processes=4).load.max_in_flight_per_process == 1


def test_load_derives_users_once_and_refuses_bad_values():
    assert Load.of("closed", 32, users=999) == Load(Mode.CLOSED, 32, 32, 1)
    assert Load.of("open", 500).users == 100 and Load.of("requests", 1000).users == 10  # DEFAULT_USERS
    open_load = Load.of(Mode.OPEN, 500, 64, 2)
    assert (open_load.locust_users, open_load.max_in_flight, open_load.open_rate, open_load.max_requests) == (2, 64, 500.0, 0)
    assert Load.of(Mode.REQUESTS, 100, 5).max_requests == 100 and Load.from_json(open_load.to_json()) == open_load
    with pytest.raises(ValueError, match="load users must be an integer of at least 1, got 0"):
        Load.of(Mode.OPEN, 10, 0)
    with pytest.raises(ValueError, match="SERVERLAB_LOAD is not JSON"):
        Load.from_json("{")


def test_processes_only_when_more_than_one():
    assert "--processes" not in plan(processes=1).locust_args("f", "h", "o")
    assert option(plan(processes=3).locust_args("f", "h", "o"), "--processes") == "3"


@pytest.mark.parametrize(("warmup", "duration", "expected"), [(2, 5, 7), (0, 10, 10), (1.7, 3, 5), (1, 0.6, 2)])
def test_run_time_is_warmup_plus_duration_rounded(warmup, duration, expected):
    p = plan(warmup_s=warmup, duration_s=duration)
    assert p.run_time_s == expected
    assert option(p.locust_args("f", "h", "o"), "--run-time") == f"{expected}s"


def test_run_time_never_cuts_the_measured_period():
    for warmup, duration in [(1.5, 1), (0.5, 2), (2.4, 5)]:
        assert plan(warmup_s=warmup, duration_s=duration).run_time_s >= warmup + duration


def test_locust_users():
    assert plan("closed", level=64, users=3).load.locust_users == 64
    assert plan("requests", level=1000, users=10, warmup_s=0).load.locust_users == 10
    assert plan("open", level=1000, users=10, processes=2).load.locust_users == 2


def test_the_locustfile_has_one_user_class_per_workload():
    """Locust itself lists the generated classes (run as ``serverlab run`` does: the venv's locust)."""
    result = subprocess.run([str(VENV_BIN / "locust"), "-f", str(LOCUSTFILE), "--list"], capture_output=True,
                            text=True, timeout=120, cwd="/")
    assert result.returncode == 0, result.stderr
    listed = [line.strip() for line in result.stdout.splitlines()[1:] if line.strip()]
    assert listed == [workload.user_class for workload in WORKLOADS.values()]


# --- Locust's CSV and wrk --------------------------------------------------------------------------------


def test_parse_locust_csv(tmp_path):
    path = tmp_path / "locust_stats.csv"
    path.write_text(LOCUST_CSV)
    assert parse_locust_csv(path) == LocustFigures(
        requests=5872.0, failures=3.0, rps=978.5953, avg_ms=2.6279, p50_ms=2.0, p95_ms=5.0, p99_ms=8.0, max_ms=48.7713)


def test_parse_locust_csv_missing_or_without_aggregate(tmp_path):
    assert parse_locust_csv(tmp_path / "nope.csv") is None
    path = tmp_path / "locust_stats.csv"
    path.write_text("\n".join(LOCUST_CSV.splitlines()[:2]) + "\n")
    assert parse_locust_csv(path) is None


def test_parse_locust_csv_with_na_values(tmp_path):
    path = tmp_path / "locust_stats.csv"
    lines = LOCUST_CSV.splitlines()
    path.write_text("\n".join([lines[0], ",Aggregated,0,0,0,0,0,0,0,0,0,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A"]) + "\n")
    result = parse_locust_csv(path)
    assert result is not None and result.requests == 0.0 and result.p99_ms == 0.0


def test_parse_wrk():
    assert parse_wrk(WRK_OUTPUT) == 2993.75


@pytest.mark.parametrize("output", ["", "unable to connect to 127.0.0.1:18001 Connection refused\n", "wrk: command not found"])
def test_parse_wrk_refuses_garbage(output):
    with pytest.raises(LoadError) as info:
        parse_wrk(output)
    assert "Requests/sec" in str(info.value)
    assert output.strip()[-30:] in str(info.value)


def test_wrk_args():
    assert wrk_args("http://h:1/", 32, 5.0) == ["wrk", "-t", "1", "-c", "32", "-d", "5s", "-H", "User-Agent: serverlab",
                                                "-H", "Accept-Encoding: identity", "http://h:1/"]
    assert wrk_args("http://h:1/", 1, 3, threads=2)[4] == "2"  # never fewer connections than threads


def test_locust_cpu_warning_pattern():
    assert LOCUST_CPU_WARNING.search("[2026-01-01] WARNING/root: CPU usage above 90%! This may constrain your throughput")
    assert not LOCUST_CPU_WARNING.search("CPU usage is fine")


# --- read_outcome over the locustfile's own recorder dumps --------------------------------------------------

#: Runs in a child interpreter: records with locustfile.Recorder and dumps under given names.
RECORDER_SCRIPT = textwrap.dedent("""
    import importlib.util, json, sys, time
    from pathlib import Path

    sys.path.insert(0, str(Path(sys.argv[1]).parent))  # as Locust does while importing a locustfile
    spec = importlib.util.spec_from_file_location("lab_locustfile", sys.argv[1])
    locustfile = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(locustfile)
    for job in json.load(sys.stdin):
        recorder = locustfile.Recorder()
        recorder.timeline_start = job.get("timeline_start", recorder.timeline_start)
        recorder.warmup_end = job.get("warmup_end")
        recorder.window_start = job["window_start"]
        latencies = job["latencies_ms"]
        for i, ms in enumerate(latencies):
            end = job["window_start"] + (job["last_response"] - job["window_start"]) * (i + 1) / len(latencies)
            recorder.record(ms / 1000.0, end, failed=i < job["failures"])
        for lag in job["lags_s"]:
            recorder.note_send(lag)
        if job["lags_s"]:
            recorder.first_send = job["first_send"]
        recorder.cpu_start = time.process_time() - job["cpu_s"]
        directory = Path(job["dir"])
        directory.mkdir(parents=True, exist_ok=True)
        recorder.dump(str(directory)).rename(directory / job["name"])
""")


def run_recorders(jobs: list[dict]) -> None:
    result = subprocess.run([sys.executable, "-c", RECORDER_SCRIPT, str(LOCUSTFILE)], input=json.dumps(jobs),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


ODD_MS = list(range(1, 1000, 2))   # process A: 1, 3, ..., 999 ms
EVEN_MS = list(range(2, 1001, 2))  # process B: 2, 4, ..., 1000 ms


@pytest.fixture(scope="module")
def dumps(tmp_path_factory) -> dict[str, Path]:
    """Folders of hdr-*.json files written by two recorders ("processes") each; T0 is 10 s ago."""
    root = tmp_path_factory.mktemp("dumps")
    t0 = time.time() - 10.0
    a = dict(latencies_ms=ODD_MS, failures=0, window_start=t0, last_response=t0 + 9.0, first_send=t0 + 0.2, cpu_s=9.0)
    b = dict(latencies_ms=EVEN_MS, failures=7, window_start=t0 + 0.5, last_response=t0 + 10.0, first_send=t0 + 0.1,
             cpu_s=2.0)
    behind_lags = ([0.0] * 570 + [0.02] * 30, [0.001] * 569 + [0.05] * 31)  # 61 of 1200 late (> 5 %)
    on_time_lags = ([0.0] * 570 + [0.02] * 30, [0.001] * 571 + [0.05] * 29)  # 59 of 1200 late (< 5 %)
    jobs = []
    for folder, lags in (("behind", behind_lags), ("on_time", on_time_lags)):
        jobs.append({**a, "lags_s": lags[0], "dir": str(root / folder), "name": "hdr-loadgen-101.json"})
        jobs.append({**b, "lags_s": lags[1], "dir": str(root / folder), "name": "hdr-loadgen-102.json"})
    # a server that never answered: sends, no responses
    jobs.append(dict(latencies_ms=[], failures=0, window_start=t0, last_response=t0, first_send=t0 + 0.1, cpu_s=0.5,
                     lags_s=[0.0] * 50, dir=str(root / "silent"), name="hdr-loadgen-103.json"))
    run_recorders(jobs)
    (root / "behind" / "locust_stats.csv").write_text(LOCUST_CSV)
    return {"t0": t0, **{name: root / name for name in ("behind", "on_time", "silent")}}  # type: ignore[dict-item]


def files_of(folder: Path) -> list[dict]:
    return [json.loads(path.read_text()) for path in sorted(folder.glob("hdr-*.json"))]


def test_recorder_dumps_have_the_documented_fields(dumps):
    files = files_of(dumps["behind"])
    assert len(files) == 2
    for data in files:
        assert data["unit"] == "microseconds"
        assert data["requests"] == 500 and data["sent"] == 600
        assert data["window_start_at"] < data["last_response_at"] <= data["window_end_at"] + 1
    assert [data["failures"] for data in files] == [0, 7]


def test_a_dump_is_one_typed_record_written_and_read_in_one_place(dumps, tmp_path):
    read = read_dumps(dumps["behind"])
    assert len(read) == 2 and all(d.process for d in read)  # "<host>-<pid>" of the recording process
    assert [(d.requests, d.sent, d.failures) for d in read] == [(500, 600, 0), (500, 600, 7)]
    first = read[0]
    assert ProcessDump.from_dict(json.loads(json.dumps(first.to_dict()))) == first
    assert first.timeline is not None and first.timeline.start_at > 0
    assert first.write(tmp_path) == tmp_path / f"hdr-{first.process}.json" and read_dumps(tmp_path) == [first]
    unnamed = dict(first.to_dict(), process="")  # a dump without its process's name takes its file's
    (tmp_path / f"hdr-{first.process}.json").write_text(json.dumps(unnamed))
    assert read_dumps(tmp_path)[0].process == first.process
    (tmp_path / "hdr-broken.json").write_text(json.dumps({"requests": 1}))
    with pytest.raises(DumpError, match="hdr-broken.json: a Locust process's dump is incomplete"):
        read_dumps(tmp_path)
    with pytest.raises(LoadError, match="unreadable dump"):
        read_outcome(tmp_path, plan("closed"))


def test_closed_outcome_merges_both_processes(dumps):
    outcome = read_outcome(dumps["behind"], plan("closed"))
    assert outcome.requests == 1000
    assert outcome.failures == 7
    t0 = dumps["t0"]
    assert outcome.window == pytest.approx((t0, t0 + 10.0))
    assert outcome.duration_s == pytest.approx(10.0)
    assert outcome.rps == pytest.approx(100.0)
    assert outcome.total_time_s is None and outcome.open_load is None
    assert outcome.cpu_warning is False
    assert outcome.locust.requests == 5872.0  # Locust's own CSV, kept beside
    files = files_of(dumps["behind"])
    assert outcome.loadgen_cpu_s == pytest.approx(sum(d["cpu_seconds"] for d in files))
    assert 11.0 <= outcome.loadgen_cpu_s < 13.0
    shares = [d["cpu_seconds"] / (d["window_end_at"] - d["window_start_at"]) for d in files]
    assert outcome.busiest_process_share == pytest.approx(max(shares))
    assert outcome.busiest_process_share == pytest.approx(shares[0])  # process A: ~9 CPU s in ~10 s
    assert 0.3 < outcome.busiest_process_share < 1.0


def test_merged_percentiles_are_exact(dumps):
    outcome = read_outcome(dumps["behind"], plan("closed"))
    assert set(outcome.latency_us) == {percentile_key(p) for p in PERCENTILES} | {"max", "mean"}
    # 1, 2, ..., 1000 ms across the two processes: p50 = 500 ms, p99.9 = 999 ms, max 1000 ms, mean 500.5 ms
    for p in PERCENTILES:
        expected_us = p / 100 * 1000 * 1000
        assert outcome.latency_us[percentile_key(p)] == pytest.approx(expected_us, rel=HDR_RELATIVE_PRECISION), p
    assert outcome.latency_us["max"] == pytest.approx(1_000_000, rel=HDR_RELATIVE_PRECISION)
    assert outcome.latency_us["mean"] == pytest.approx(500_500, rel=HDR_RELATIVE_PRECISION)
    # merging loses nothing: the same as one histogram holding every response
    single = HdrHistogram(1, 120_000_000, 3)
    for ms in range(1, 1001):
        single.record_value(ms * 1000)
    assert outcome.latency_us == latency_summary(single)
    merged = HdrHistogram.decode(outcome.histogram)
    assert merged.get_total_count() == 1000


def test_requests_mode_total_time(dumps):
    outcome = read_outcome(dumps["behind"], plan("requests", level=1000, users=10, warmup_s=0))
    assert outcome.total_time_s == pytest.approx(9.9)  # first send (process B, T0+0.1) to last response (T0+10)
    assert outcome.open_load is None


def test_open_mode_fell_behind(dumps):
    outcome = read_outcome(dumps["behind"], plan("open", level=120, users=100))
    assert outcome.open_load.to_dict() == pytest.approx({
        "target_rps": 120, "sent": 1200, "late_sends": 61, "max_lag_ms": 50.0,
        "achieved_send_rps": 120.0, "fell_behind": True,
    })
    assert outcome.open_load.fell_behind is True
    assert outcome.total_time_s is None


def test_open_mode_on_time(dumps):
    outcome = read_outcome(dumps["on_time"], plan("open", level=120, users=100))
    assert outcome.open_load.late_sends == 59
    assert outcome.open_load.fell_behind is False
    assert outcome.open_load.max_lag_ms == pytest.approx(50.0)
    assert outcome.locust is None  # no Locust CSV in this folder


def test_sends_without_responses(dumps):
    outcome = read_outcome(dumps["silent"], plan("open", level=10, users=10))
    assert outcome.requests == 0 and outcome.failures == 0
    assert outcome.histogram is None and outcome.latency_us == {}
    assert outcome.rps == 0.0
    assert outcome.open_load.sent == 50 and outcome.open_load.late_sends == 0


def test_cpu_warning_from_the_log(dumps):
    log = ("[2026-11-20 23:15:02,114] loadgen/INFO/locust.main: Starting Locust 2.47.0\n"
           "[2026-11-20 23:15:07,513] loadgen/WARNING/root: CPU usage above 90%! This may constrain your throughput "
           "and may even give inconsistent response time measurements!\n")
    assert read_outcome(dumps["behind"], plan(), log).cpu_warning is True
    assert read_outcome(dumps["behind"], plan(), "all good\n").cpu_warning is False


def test_no_hdr_files_is_a_load_error_with_the_log_tail(tmp_path):
    log = "\n".join(f"line {i}" for i in range(1, 11)) + "\nConnectionRefusedError: [Errno 111] Connection refused\n"
    with pytest.raises(LoadError) as info:
        read_outcome(tmp_path, plan(), log)
    message = str(info.value)
    assert "recorded no requests" in message
    assert "Connection refused" in message and "line 10" in message
    assert "line 1\n" not in message and "line 6" not in message  # only the tail
    with pytest.raises(LoadError, match="recorded no requests$"):
        read_outcome(tmp_path, plan(), "")


def test_latency_summary_of_an_empty_histogram():
    assert latency_summary(HdrHistogram(1, 120_000_000, 3)) == {}


# --- one real Locust run -------------------------------------------------------------------------------------


def run_locust(p: LoadPlan, host: str, out: Path) -> tuple[subprocess.CompletedProcess, str]:
    args = p.locust_args(str(LOCUSTFILE), host, str(out))
    args[0] = str(VENV_BIN / "locust")
    env = {**os.environ, **p.environment(str(out))}
    result = subprocess.run(args, cwd=out, env=env, capture_output=True, text=True, timeout=p.run_time_s + 60)
    return result, result.stdout + result.stderr


@pytest.mark.slow
def test_real_locust_run_against_gunicorn_gthread(tmp_path, start_local_server):
    host = start_local_server("gunicorn-gthread")
    # closed: 4 users, 20 ms each, 8 threads -> Little's law: 4 / 0.020 s = 200 RPS at most
    closed_dir = tmp_path / "closed"
    closed_dir.mkdir()
    closed = LoadPlan(WORKLOADS["io"], {"ms": 20}, Load.of("closed", 4), 3, 1)
    result, log = run_locust(closed, host, closed_dir)
    assert result.returncode == 0, log[-3000:]
    outcome = read_outcome(closed_dir, closed, log)
    assert outcome.requests > 0 and outcome.failures == 0
    # The warm-up second is not measured. The window is often a few tenths of a second short of 3 s:
    # Locust arms its --run-time timer on gevent's cached loop clock, so it fires early.
    assert 2.0 <= outcome.duration_s <= 3.5, outcome.duration_s
    figures = (outcome.rps, outcome.duration_s, outcome.requests, outcome.latency_us)
    assert HdrHistogram.decode(outcome.histogram).get_min_value() >= 20_000 * (1 - HDR_RELATIVE_PRECISION)  # slept 20 ms
    # Little's law for a closed model without think time: throughput = users / mean latency
    assert outcome.rps == pytest.approx(4 / (outcome.latency_us["mean"] / 1e6), rel=0.10), figures
    # and never above the ideal 4 users / 20 ms = 200 RPS; the floor leaves room for per-request
    # overhead on a busy 2-core machine (measured 24-27 ms per response under load, i.e. 150-170 RPS)
    assert 0.7 * 200 <= outcome.rps <= 1.05 * 200, figures
    # the timeline covers the warm-up (1 s, shaded in reports) and the measured period, per second
    timeline = outcome.timeline
    assert timeline is not None and timeline.interval_s == 1.0
    assert 0.8 <= timeline.warmup_s <= 1.5, timeline.warmup_s
    assert 3 <= len(timeline.rps) <= 6 and len(timeline.p99_us) == len(timeline.rps)
    assert sum(timeline.rps) >= outcome.requests  # warm-up responses included
    whole = [v for v in timeline.p99_us[1:-1] if v is not None]
    assert whole and all(19_000 <= v <= 200_000 for v in whole), timeline.p99_us  # each slept 20 ms
    # Locust's own CSV was written and parsed (its stats are reset at the warm-up's end too). Locust rewrites
    # the CSV once a second and not at exit, so its counts lag; its RPS is a rate and agrees with the lab's.
    assert 0 < outcome.locust.requests <= outcome.requests
    assert outcome.locust.rps == pytest.approx(outcome.rps, rel=0.15), (outcome.locust, figures)

    # requests mode: 50 requests by 5 users, then Locust quits
    requests_dir = tmp_path / "requests"
    requests_dir.mkdir()
    counted = LoadPlan(WORKLOADS["cpu"], {"n": 1000}, Load.of("requests", 50, 5), 30, 0)
    started = time.monotonic()
    result, log = run_locust(counted, host, requests_dir)
    assert result.returncode == 0, log[-3000:]
    assert time.monotonic() - started < 25  # it quit after 50 responses, not at --run-time 30s
    outcome = read_outcome(requests_dir, counted, log)
    assert 50 <= outcome.requests <= 55
    assert outcome.failures == 0
    assert outcome.total_time_s > 0
    assert outcome.total_time_s <= outcome.duration_s + 1e-6


def test_throughput_trend_flags_a_rising_period_and_ignores_the_partial_last_second():
    from serverlab.loadgen import throughput_trend

    assert throughput_trend([100] * 9 + [3]) == 0.0
    rising = [50, 50, 50, 75, 75, 75, 100, 100, 100, 7]
    assert throughput_trend(rising) == pytest.approx(1.0)  # (100 - 50) / 50
    assert throughput_trend([100, 100, 100, 100, 100, 1]) is None  # only 5 whole seconds
    assert throughput_trend([0, 0, 0, 5, 5, 5, 5]) is None  # no baseline to compare with


def test_locustfile_records_histograms_with_the_range_the_lab_merges_with(dumps):
    """Both sides read serverlab.terms.HDR; a recorded histogram has the geometry stats merges into."""
    from serverlab import histograms

    recorded = HdrHistogram.decode(files_of(dumps["behind"])[0]["histogram"])
    lab = histograms.new_histogram()
    assert (recorded.lowest_trackable_value, recorded.highest_trackable_value, recorded.significant_figures) == \
        (lab.lowest_trackable_value, lab.highest_trackable_value, lab.significant_figures) == (1, 120_000_000, 3)


def test_timelines_of_two_processes_merge_per_second(tmp_path):
    """Per-second counts add up across processes aligned on the earliest start; each second's p99 comes
    from the merged per-second histograms; the warm-up end is the earliest one recorded."""
    t0 = time.time() - 20.0
    # process A: 4 whole seconds from t0, 100 responses a second at 1..100 ms (p99 = 99 ms)
    # process B: starts 1 s later, 3 seconds of 100 responses at 101..200 ms, plus a last second of 50
    a = dict(latencies_ms=list(range(1, 101)) * 4, failures=0, window_start=t0, last_response=t0 + 4.0 - 1e-3,
             first_send=t0, cpu_s=1.0, lags_s=[], timeline_start=t0, warmup_end=t0 + 1.0)
    b = dict(latencies_ms=list(range(101, 201)) * 3 + list(range(101, 151)), failures=0, window_start=t0 + 1.0,
             last_response=t0 + 1.0 + 3.5 - 1e-3, first_send=t0 + 1.0, cpu_s=1.0, lags_s=[],
             timeline_start=t0 + 1.0, warmup_end=t0 + 2.0)
    jobs = [{**a, "dir": str(tmp_path), "name": "hdr-a-1.json"}, {**b, "dir": str(tmp_path), "name": "hdr-b-2.json"}]
    run_recorders(jobs)
    outcome = read_outcome(tmp_path, plan("closed"))
    timeline = outcome.timeline
    assert timeline.interval_s == 1.0
    assert timeline.warmup_s == pytest.approx(1.0, abs=0.01)
    assert sum(timeline.rps) == 400 + 350
    assert len(timeline.rps) == len(timeline.p99_us) == 5
    assert timeline.rps[0] == 100  # only A in the first second
    # the first second holds A's 1..100 ms only; later ones mix A and B (B's slower responses set the p99)
    assert timeline.p99_us[0] == pytest.approx(99_000, rel=0.01)
    assert all(p > 150_000 for p in timeline.p99_us[1:4]), timeline.p99_us
