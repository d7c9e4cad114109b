"""Faults injected by hand, as a careful operator would: real runs, real processes, real signals.

Each test runs ``serverlab run ... --backend local`` (a subprocess, its own session)
on a tiny experiment (1-3 s cells) and then interrupts it, kills or stops its server,
or signals the runner, and checks what the run kept, reported and left behind.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from serverlab.results import read_results

ROOT = Path(__file__).resolve().parents[1]
#: Resumed and clean runs of the same cell agree within this share of RPS (the issue's bar).
RPS_AGREEMENT = 0.15


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


def _start(args: list[str], log: Path) -> subprocess.Popen:
    """``serverlab ARGS`` in a session of its own (as from a terminal), output to ``log``."""
    handle = log.open("w")
    return subprocess.Popen([sys.executable, "-m", "serverlab.cli", *args], cwd=ROOT, stdout=handle,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)


def _run(args: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "serverlab.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _cmdline(proc: psutil.Process) -> str:
    try:
        return " ".join(proc.cmdline())
    except psutil.Error:
        return ""


def _server_pids(runner_pid: int) -> list[int]:
    """Process-group leaders under the runner that are servers (not Locust)."""
    found = []
    for proc in _descendants(runner_pid):
        try:
            if os.getpgid(proc.pid) == proc.pid and "locust" not in _cmdline(proc):
                found.append(proc.pid)
        except (ProcessLookupError, psutil.Error):
            continue
    return found


def _wait_until_loading(runner: subprocess.Popen, seconds_into_load: float, timeout: float = 300,
                        local: bool = True) -> int | None:
    """Wait until Locust has run ``seconds_into_load`` s against a server; return the server's pid (local)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert runner.poll() is None, "the run ended before its load started"
        # the Locust command itself ("... locust -f LOCUSTFILE --headless ..."), not e.g. the
        # image build, which goes through the locust-master service ("compose build locust-master")
        if any("--headless" in (cmd := _cmdline(p)) and "locust" in cmd for p in _descendants(runner.pid)):
            time.sleep(seconds_into_load)
            if not local:
                return None
            servers = _server_pids(runner.pid)
            assert servers, "no server process under the runner"
            return servers[0]
        time.sleep(0.1)
    raise AssertionError("Locust never started")


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _agrees_with_clean(rps: float, clean: list[float], clean_run) -> bool:
    """Whether ``rps`` is within :data:`RPS_AGREEMENT` of a clean run's RPS.

    The machine is shared, so a clean figure can be off by a burst of someone else's
    load: up to two more clean runs are measured before disagreeing.
    """
    while True:
        if any(abs(rps / ref - 1) <= RPS_AGREEMENT for ref in clean):
            return True
        if len(clean) >= 3:
            return False
        clean.append(clean_run())


def _run_id(log: Path) -> str:
    """The run id a ``serverlab run`` printed (``run <id>: N cells ...``)."""
    match = re.search(r"^run (\S+): \d+ cells", log.read_text(), re.MULTILINE)
    assert match, log.read_text()[-2000:]
    return match.group(1)


def _only_cell(run_dir: Path):
    _, cells = read_results(run_dir / "results.jsonl")
    assert len(cells) == 1
    return cells[0]


#: One short cell whose RPS is set by the server's sleeps (4 users / 100 ms = 40 RPS), not by
#: CPU that other work on a shared machine competes for: a resumed cell can match it within 15%.
TINY = ('servers = ["gunicorn-gthread"]\nworkloads = ["io"]\nusers = [4]\nduration = 4\nwarmup = 1\nseed = 1\n'
        "[params.io]\nms = 100\n")
CELL_DIR = "gunicorn-gthread_io_4_r1"


@pytest.mark.slow
def test_resume_after_ctrl_c_and_after_killed_server_matches_a_clean_run(tmp_path):
    """Scenarios 1 and 4: only the final attempt's data is read; ``--resume latest`` is the newest run."""
    experiment = _write(tmp_path, "tiny", TINY)
    reports = tmp_path / "reports"
    common = [str(experiment), "--backend", "local", "--reports-dir", str(reports)]

    def clean_run() -> float:
        clean = _run(["run", *common])
        assert clean.returncode == 0, clean.stdout[-2000:] + clean.stderr[-2000:]
        cell = _only_cell((reports / "latest").resolve())
        assert cell.status == "ok" and cell.failures == 0
        return cell.rps

    clean_rps = [clean_run()]

    # Ctrl-C from a terminal: SIGINT to the runner's whole process group, mid-cell
    runner = _start(["run", *common], tmp_path / "interrupted.log")
    _wait_until_loading(runner, 2.5)
    os.killpg(runner.pid, signal.SIGINT)
    assert runner.wait(timeout=60) == 130
    interrupted = reports / _run_id(tmp_path / "interrupted.log")
    assert interrupted != (reports / "latest").resolve()
    assert (interrupted / "cells" / CELL_DIR / "attempt-1").is_dir()

    # --resume latest continues the interrupted run, not the complete one `latest` points at
    resumed = _run(["run", *common, "--resume", "latest"])
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert f"run {interrupted.name}: 1 cells" in resumed.stdout
    cell = _only_cell(interrupted)
    assert cell.status == "ok" and cell.failures == 0
    assert 3.4 <= cell.duration_s <= 4.6  # this attempt's window only (a merged one spans both attempts)
    assert _agrees_with_clean(cell.rps, clean_rps, clean_run), (cell.rps, clean_rps)
    assert (interrupted / "cells" / CELL_DIR / "attempt-2" / "locust_stats.csv").is_file()

    # kill -9 of the server mid-cell: the cell fails; the resumed cell carries nothing over
    runner = _start(["run", *common], tmp_path / "killed.log")
    server = _wait_until_loading(runner, 2.0)
    os.killpg(server, signal.SIGKILL)
    assert runner.wait(timeout=120) == 1
    killed_run = reports / _run_id(tmp_path / "killed.log")
    failed = _only_cell(killed_run)
    assert failed.status == "failed" and "during the load" in failed.error
    resumed = _run(["run", *common, "--resume", killed_run.name])
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    cell = _only_cell(killed_run)
    assert cell.status == "ok" and cell.failures == 0, cell
    assert 3.4 <= cell.duration_s <= 4.6  # this attempt's window only (a merged one spans both attempts)
    assert _agrees_with_clean(cell.rps, clean_rps, clean_run), (cell.rps, clean_rps)


@pytest.mark.slow
def test_a_stopped_server_fails_its_cell_naming_the_hang(tmp_path):
    """Scenario 2: SIGSTOP of the server's process group mid-cell is detected within a bounded time."""
    experiment = _write(tmp_path, "hang", TINY)
    reports = tmp_path / "reports"
    runner = _start(["run", str(experiment), "--backend", "local", "--reports-dir", str(reports)], tmp_path / "run.log")
    server = _wait_until_loading(runner, 2.0)
    stopped_at = time.monotonic()
    os.killpg(server, signal.SIGSTOP)
    try:
        code = runner.wait(timeout=120)
    finally:
        try:
            os.killpg(server, signal.SIGKILL)
        except ProcessLookupError:
            pass
    # Locust's remaining 2 s + its 5 s stop timeout + the 10 s health probe + stopping the server
    assert time.monotonic() - stopped_at < 40
    assert code == 1, (tmp_path / "run.log").read_text()[-2000:]
    run_dir = reports / _run_id(tmp_path / "run.log")
    cell = _only_cell(run_dir)
    assert cell.status == "failed"
    assert "server hung" in cell.error and "/healthz" in cell.error
    assert "never answered" in cell.error
    # stopped after some measured responses: the window was cut short; stopped before the warm-up
    # ended (a slow host starts Locust later): the window is empty. Either way the hang comes first.
    assert "measured window" in cell.error or "no responses in the measured period" in cell.error
    assert cell.error.startswith("server hung")
    assert "FAILED: server hung" in (tmp_path / "run.log").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_stop_signal_stops_server_and_generator_first(signum, tmp_path):
    """Scenario 5 (local): SIGTERM/SIGHUP/SIGINT to the runner alone leave no server or Locust process."""
    experiment = _write(tmp_path, "tiny", TINY)
    log = tmp_path / "run.log"
    runner = _start(["run", str(experiment), "--backend", "local", "--reports-dir", str(tmp_path / "reports")], log)
    server = _wait_until_loading(runner, 1.0)
    children = [p.pid for p in _descendants(runner.pid)]
    assert server in children and len(children) >= 2  # the server and Locust
    os.kill(runner.pid, signum)
    assert runner.wait(timeout=60) == 128 + signum, log.read_text()[-2000:]
    deadline = time.monotonic() + 5
    while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in children if _alive(pid)], [_cmdline(psutil.Process(p)) for p in children if _alive(p)]
    text = log.read_text()
    assert f"stopped by {signal.Signals(signum).name}" in text
    assert "--resume " + _run_id(log) in text


@pytest.mark.slow
def test_a_second_run_on_the_same_cpus_is_refused_naming_the_holder(tmp_path):
    """Scenario 6: two runs at once on one CPU set: the second is refused, naming the first (pid, run id)."""
    experiment = _write(tmp_path, "tiny", TINY)
    reports = tmp_path / "reports"
    first = _start(["run", str(experiment), "--backend", "local", "--reports-dir", str(reports)], tmp_path / "first.log")
    try:
        _wait_until_loading(first, 0.5)
        second = _run(["run", str(experiment), "--backend", "local", "--reports-dir", str(tmp_path / "other")], timeout=60)
        assert second.returncode == 2, second.stdout + second.stderr
        assert "is in use by another serverlab run" in second.stderr
        assert f"pid {first.pid}" in second.stderr and _run_id(tmp_path / "first.log") in second.stderr
        assert not (tmp_path / "other").exists() or not list((tmp_path / "other").glob("*/results.jsonl"))
    finally:
        os.kill(first.pid, signal.SIGTERM)
        assert first.wait(timeout=60) == 143


@pytest.mark.slow
@pytest.mark.docker
def test_sigterm_to_a_docker_run_leaves_no_container_of_its_project(tmp_path, docker_ready):
    """Scenarios 5-6 (Docker): a run's own compose project; SIGTERM removes every container
    of it, and its network (issue 22)."""
    experiment = _write(tmp_path, "tiny", TINY)
    log = tmp_path / "run.log"
    runner = _start(["run", str(experiment), "--backend", "docker", "--reports-dir", str(tmp_path / "reports")], log)
    try:
        _wait_until_loading(runner, 1.0, timeout=900, local=False)
        project = "serverlab-" + _run_id(log).lower()
        listed = subprocess.run(["docker", "ps", "-q", "--filter", f"label=com.docker.compose.project={project}"],
                                capture_output=True, text=True, timeout=60)
        assert len(listed.stdout.split()) >= 2, listed  # the server and the one-off Locust container
    finally:
        os.kill(runner.pid, signal.SIGTERM)
        code = runner.wait(timeout=180)
    assert code == 143, log.read_text()[-2000:]
    left = subprocess.run(["docker", "ps", "-a", "-q", "--filter", f"label=com.docker.compose.project={project}"],
                          capture_output=True, text=True, timeout=60)
    assert left.stdout.split() == [], left.stdout
    # Issue 22: the compose network stayed behind (a killed `compose run` container still held it)
    networks = subprocess.run(["docker", "network", "ls", "-q", "--filter", f"label=com.docker.compose.project={project}"],
                              capture_output=True, text=True, timeout=60)
    assert networks.stdout.split() == [], networks.stdout
    assert "stopped by SIGTERM" in log.read_text()


# -- fast: pure logic and errors that need no server ---------------------------------------


def _cli_main(args: list[str], capsys) -> tuple[int, str, str]:
    from serverlab.cli import main

    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_the_experiment_digest_changes_with_any_effective_setting(tmp_path):
    from serverlab.experiment import load_experiment
    from serverlab.planning import experiment_digest

    first = load_experiment(str(_write(tmp_path, "tiny", TINY)))
    again = load_experiment(str(_write(tmp_path / "..", "tiny", TINY)))  # another path, same settings
    assert experiment_digest(first) == experiment_digest(again) and len(experiment_digest(first)) == 16
    for change in ("duration = 4", "duration = 5", "[overrides.gunicorn-gthread]\nthreads = 4\n"):
        other = load_experiment(str(_write(tmp_path, "tiny", TINY.replace("duration = 4", change)
                                           if change.startswith("duration") else TINY + change)))
        assert (experiment_digest(other) == experiment_digest(first)) == (change == "duration = 4")


def test_resume_refuses_an_experiment_changed_since_the_run_began(tmp_path, capsys):
    from serverlab.experiment import load_experiment
    from serverlab.results import ResultsWriter, RunHeader
    from serverlab.planning import experiment_digest

    path = _write(tmp_path, "tiny", TINY)
    experiment = load_experiment(str(path))
    run_dir = tmp_path / "reports" / "20260101-000000-tiny"
    ResultsWriter(run_dir / "results.jsonl", RunHeader("20260101-000000-tiny", experiment.record(),
                                                       {"seed": 1, "experiment_digest": experiment_digest(experiment)}))
    path.write_text(TINY.replace("duration = 4", "duration = 6"))
    code, _, err = _cli_main(["run", str(path), "--backend", "local", "--reports-dir", str(tmp_path / "reports"),
                              "--resume", "latest"], capsys)
    assert code == 2
    assert "changed since run 20260101-000000-tiny began" in err and "duration: 4.0 then, 6.0 now" in err
    assert "without --resume to start a new run" in err


def test_resume_latest_with_no_runs_lists_no_results_file(tmp_path, capsys):
    experiment = _write(tmp_path, "tiny", TINY)
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "latest").symlink_to("nowhere")
    code, _, err = _cli_main(["run", str(experiment), "--backend", "local", "--reports-dir", str(reports),
                              "--resume", "latest"], capsys)
    assert code == 2 and "no run of experiment 'tiny'" in err and "runs there: none" in err
    assert "results.jsonl" not in err.split("runs there:")[1]


def test_a_bad_last_results_line_is_skipped_with_its_line_number_and_resume_drops_it(tmp_path):
    from serverlab.results import ResultsWriter, read_results
    from report_factories import make_cell, make_header

    path = tmp_path / "results.jsonl"
    header = make_header()
    writer = ResultsWriter(path, header)
    writer.append(make_cell("gunicorn-sync"))
    good = path.read_text()
    for bad in ("garbage that is not JSON\n", '{"kind": "cell", "version": 1, "cell_id": "x"}\n',
                make_cell("werkzeug-single").to_json()[:80]):
        path.write_text(good + bad)
        warnings: list[str] = []
        _, cells = read_results(path, warn=warnings.append)
        assert [c.variant for c in cells] == ["gunicorn-sync"]
        assert len(warnings) == 1 and "skipped line 3" in warnings[0]
        resumed = ResultsWriter(path, header, resume=True)
        resumed.append(make_cell("werkzeug-single"))
        warnings.clear()
        _, cells = read_results(path, warn=warnings.append)
        assert [c.variant for c in cells] == ["gunicorn-sync", "werkzeug-single"] and warnings == []
        assert bad.strip() in (tmp_path / "results.jsonl.dropped").read_text()


def test_a_full_disk_while_appending_results_is_a_clear_error(tmp_path):
    from serverlab.results import ResultsError, ResultsWriter
    from report_factories import make_cell, make_header

    path = tmp_path / "results.jsonl"
    writer = ResultsWriter(path, make_header())
    path.unlink()
    path.symlink_to("/dev/full")  # every write to /dev/full fails with ENOSPC, as on a full disk
    with pytest.raises(ResultsError) as info:
        writer.append(make_cell("gunicorn-sync"))
    assert "No space left on device" in str(info.value) and "disk is full" in str(info.value)


def test_a_missing_cell_is_counted_in_the_report(tmp_path):
    from serverlab.report import write_report
    from serverlab.results import ResultsWriter
    from report_factories import make_cell, make_header

    header = make_header(servers=["gunicorn-sync", "werkzeug-single"], workloads=["hello"], levels=[8], repetitions=2)
    writer = ResultsWriter(tmp_path / "results.jsonl", header)
    writer.append(make_cell("gunicorn-sync"))
    summary = write_report([tmp_path / "results.jsonl"], tmp_path)["markdown"].read_text()
    assert "3 of 4 planned cells are missing" in summary and f"--resume {header.run_id}" in summary


def test_local_backend_reports_say_limits_are_not_enforced(tmp_path):
    from serverlab.report import write_report
    from serverlab.results import ResultsWriter
    from report_factories import make_cell, make_header

    header = make_header()
    header.metadata.update(limits_enforced=False)
    writer = ResultsWriter(tmp_path / "results.jsonl", header)
    writer.append(make_cell("gunicorn-sync"))
    summary = write_report([tmp_path / "results.jsonl"], tmp_path)["markdown"].read_text()
    assert "server_memory=512m (not enforced by the local backend)" in summary
    config = summary.split("## Configuration")[1].split("##")[0]
    assert "not enforced" in config and "512m" not in config


@pytest.mark.parametrize(("text", "key", "expected"), [
    ('server_memory = "0"', "budget.server_memory", "from 32m"),
    ("server_memory = 512", "budget.server_memory", "a string size"),
    ("server_cpuset = 0", "budget.server_cpuset", "a string cpuset"),
])
def test_budget_values_are_checked_naming_value_and_range(tmp_path, text, key, expected):
    from serverlab.experiment import ExperimentError, load_experiment

    with pytest.raises(ExperimentError) as info:
        load_experiment(str(_write(tmp_path, "bad", TINY + f"[budget]\n{text}\n")))
    value = text.split(" = ")[1].replace('"', "'")
    assert key in str(info.value) and f"= {value} is invalid" in str(info.value) and expected in str(info.value)


def test_cpusets_and_memory_are_checked_against_this_machine(tmp_path):
    from serverlab.budget import usable_cpus
    from serverlab.experiment import ExperimentError, check_machine, load_experiment

    ok = load_experiment(str(_write(tmp_path, "ok", TINY)))
    check_machine(ok, cpus=[0, 1], memory=2**30)
    far = max(usable_cpus()) + 5
    beyond = load_experiment(str(_write(tmp_path, "far", TINY + f'[budget]\nloadgen_cpuset = "{far}"\n')))
    with pytest.raises(ExperimentError) as info:
        check_machine(beyond)
    assert "budget.loadgen_cpuset" in str(info.value) and f"CPU(s) {far} do not exist" in str(info.value)
    with pytest.raises(ExperimentError, match="budget.server_memory.*this machine's memory, 256m"):
        check_machine(ok, memory=256 * 2**20)


def test_wrong_types_and_non_utf8_files_are_clear_errors(tmp_path):
    from serverlab.experiment import ExperimentError, load_experiment

    with pytest.raises(ExperimentError, match=r"'params.io' = 5 is invalid; expected a table"):
        load_experiment(str(_write(tmp_path, "typed", TINY.replace("[params.io]\nms = 100\n", "[params]\nio = 5\n"))))
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes('description = "caf\u00e9"\n'.encode("latin-1") + TINY.encode())
    with pytest.raises(ExperimentError, match="not UTF-8 text.*0xe9"):
        load_experiment(str(latin1))


def test_tool_output_and_error_messages_carry_no_ansi_codes(tmp_path, capsys):
    from serverlab.backends import run_command

    coloured = run_command(["sh", "-c", r"printf '\033[31merror\033[0m: \033[1;33mno such service\033[0m'"], 10)
    assert coloured.output == "error: no such service"
    code, _, err = _cli_main(["report", str(tmp_path / "\x1b[31mred\x1b[0m.jsonl")], capsys)
    assert code == 2 and "\x1b" not in err and "red.jsonl" in err


def test_a_long_run_asks_first_on_a_terminal(tmp_path):
    import pty

    big = _write(tmp_path, "big", 'servers = "all"\nworkloads = ["hello", "cpu", "io"]\nusers = [1, 8, 64]\n'
                 "duration = 60\nwarmup = 5\n")
    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen([sys.executable, "-m", "serverlab.cli", "run", str(big), "--backend", "local",
                                 "--reports-dir", str(tmp_path / "reports")], cwd=ROOT, stdin=follower,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        os.write(leader, b"n\n")
        out, err = proc.communicate(timeout=60)
    finally:
        os.close(leader)
        os.close(follower)
    assert proc.returncode == 2, out + err
    from serverlab.experiment import load_experiment

    planned = load_experiment(str(big))
    minutes = planned.estimated_seconds() / 60
    assert f"big: {planned.cell_count} cells planned, estimated {minutes:.1f} min" in out and "start it? [y/N]" in out
    assert "not started; pass --yes" in err
    assert not (tmp_path / "reports").exists()


@pytest.mark.slow
def test_a_truncated_or_garbage_last_line_is_reported_and_resumed(tmp_path):
    """Scenario 7: a cut-short last line is a warning naming it plus a missing cell; resume re-measures it."""
    experiment = _write(tmp_path, "tiny", TINY.replace('["gunicorn-gthread"]', '["gunicorn-gthread", "gunicorn-sync"]'))
    reports = tmp_path / "reports"
    common = [str(experiment), "--backend", "local", "--reports-dir", str(reports)]
    first = _run(["run", *common])
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    run_dir = (reports / "latest").resolve()
    results = run_dir / "results.jsonl"
    header, kept, cell = results.read_text().splitlines()
    results.write_text(f"{header}\n{kept}\n{cell[: len(cell) // 2]}")  # killed mid-write
    report = _run(["report", str(results)])
    assert report.returncode == 0 and "Traceback" not in report.stderr
    assert f"skipped line 3 of {results}" in report.stderr
    assert "1 of 2 planned cells are missing" in (run_dir / "summary.md").read_text()
    resumed = _run(["run", *common, "--resume", "latest"])
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert f"run {run_dir.name}: 1 cells" in resumed.stdout and "skipped line 3" in resumed.stderr
    _, cells = read_results(results)
    assert [c.status for c in cells] == ["ok", "ok"]
    with results.open("a") as handle:
        handle.write("\x00garbage\n")
    again = _run(["run", *common, "--resume", run_dir.name])
    assert again.returncode == 0 and "skipped line 4" in again.stderr and "Traceback" not in again.stderr
    assert "nothing to resume" in again.stdout
    assert _run(["report", str(results)]).stderr == ""  # the garbage was dropped (kept in results.jsonl.dropped)
