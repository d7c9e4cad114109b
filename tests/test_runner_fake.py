"""The real Runner driven through the fake backend (tests/fakebackend.py): no server
processes, Docker or Locust, milliseconds per test.

What is real here: the Runner (planning, the CPU lock, signals, retries, resume,
the failure rules), verification and the hang check over HTTP against the lab's
Flask app served in-process, :func:`serverlab.loadgen.read_outcome` reading the
files a Locust run leaves, the interference figures, and the results file. The
slow tests (test_runs.py, test_faults.py) do the same with real servers and Locust.
"""

from __future__ import annotations

import json
import itertools
import signal
from pathlib import Path

import pytest

from fakebackend import LATENCY_US, RPS, SERVER_MEMORY, FakeBackend, FakeCpuWatch, Fault
from serverlab import LabError
from serverlab.experiment import load_experiment
from serverlab.findings import InterferenceFlagged, Unanswered
from serverlab.planning import plan_cells
from serverlab.results import read_results
from serverlab.runner import Runner, RunStopped

TWO_SERVERS = 'servers = ["gunicorn-sync", "uwsgi-processes"]\nworkloads = ["hello"]\nusers = [4]\nduration = 6\nwarmup = 1\nseed = 7\n'


@pytest.fixture(autouse=True)
def _distinct_run_ids(monkeypatch):
    """Run ids have a resolution of one second; runs here start milliseconds apart."""
    counter = itertools.count(1)
    monkeypatch.setattr("serverlab.runner.new_run_id", lambda experiment: f"20261121-0000{next(counter):02d}-{experiment.name}")


def _experiment(tmp_path: Path, text: str = TWO_SERVERS, name: str = "fake"):
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return load_experiment(str(path))


def _run(tmp_path, experiment, backend, resume=None, watch=None, retry_busy=0, lines=None):
    runner = Runner(experiment, backend, tmp_path / "reports", write=(lines.append if lines is not None else lambda _: None),
                    retry_busy=retry_busy, cpu_watch=watch or FakeCpuWatch(), retry_pause_s=0.0)
    run_dir = runner.run(resume=resume)
    header, cells = read_results(run_dir / "results.jsonl")
    return run_dir, header, {cell.variant: cell for cell in cells}


def _attempts(run_dir: Path, variant: str) -> list[str]:
    return sorted(p.name for p in (run_dir / "cells" / f"{variant}_hello_4_r1").glob("attempt-*"))


def test_measure_ok_records_the_fake_figures(tmp_path):
    backend = FakeBackend()
    lines: list[str] = []
    run_dir, header, cells = _run(tmp_path, _experiment(tmp_path), backend, lines=lines)
    assert set(cells) == {"gunicorn-sync", "uwsgi-processes"}
    cell = cells["gunicorn-sync"]
    assert cell.status == "ok" and cell.error is None
    assert cell.rps == pytest.approx(RPS * header.budget.loadgen_processes, rel=0.01)
    assert cell.latency_us["p99"] == pytest.approx(LATENCY_US, rel=0.01)
    assert cell.duration_s == pytest.approx(6.0, abs=0.01)
    assert cell.server_cpu_s == pytest.approx(0.4 * 6.0, rel=0.01)  # the server's sampler, over the window
    assert cell.server_peak_memory_bytes == SERVER_MEMORY
    assert cell.interference.flagged is False and cell.bottleneck is not None
    assert header.metadata["backend"] == "fake"
    # the variant's declaration, the budget and the workload parameters are stored once, in the header
    assert header.variant("gunicorn-sync").workers == 3 and header.budget.server_cpus > 0
    assert header.workload_params("hello") == {} and "config" not in json.loads((run_dir / "results.jsonl").read_text().splitlines()[1])
    # the backend was prepared once, for this run and its variants; each variant started once
    assert backend.prepared == [(["gunicorn-sync", "uwsgi-processes"], run_dir.name)]
    assert sorted(backend.starts) == ["gunicorn-sync", "uwsgi-processes"] and backend.closed == 1
    assert _attempts(run_dir, "gunicorn-sync") == ["attempt-1"]
    assert any("2 cells" in line for line in lines) and any("RPS, p99" in line for line in lines)


def test_a_server_that_dies_fails_its_cell_and_the_other_is_kept(tmp_path):
    backend = FakeBackend()
    backend.script("gunicorn-sync", [Fault.DIE])
    _, _, cells = _run(tmp_path, _experiment(tmp_path), backend)
    assert cells["gunicorn-sync"].status == "failed"
    assert cells["gunicorn-sync"].error == "server process exited with status -9: (scripted) during the load"
    assert cells["uwsgi-processes"].status == "ok"


def test_a_server_that_does_not_start_fails_its_cell(tmp_path):
    backend = FakeBackend()
    backend.script("uwsgi-processes", [Fault.NO_START])
    _, _, cells = _run(tmp_path, _experiment(tmp_path), backend)
    assert cells["uwsgi-processes"].status == "failed"
    assert cells["uwsgi-processes"].error.startswith("server did not start: uwsgi-processes: the server exited")
    assert [name for name, _ in backend.locust_runs] == ["gunicorn-sync"]


def test_a_wrong_answer_is_unverified_and_never_loaded(tmp_path):
    backend = FakeBackend()
    backend.script("gunicorn-sync", [Fault.WRONG_ANSWER])
    _, _, cells = _run(tmp_path, _experiment(tmp_path), backend)
    cell = cells["gunicorn-sync"]
    assert cell.status == "unverified"
    assert cell.error == "failed verification before load: GET /: expected body 'Hello, World!', got b'Goodbye'"
    assert [name for name, _ in backend.locust_runs] == ["uwsgi-processes"]


def test_a_hung_server_fails_naming_the_hang_and_the_short_window(tmp_path):
    backend = FakeBackend()
    backend.script("gunicorn-sync", [Fault.HANG])
    _, _, cells = _run(tmp_path, _experiment(tmp_path), backend)
    error = cells["gunicorn-sync"].error
    assert cells["gunicorn-sync"].status == "failed"
    assert error.startswith("server hung: it did not answer /healthz within 10 s after the load"), error
    assert "measured window 3.00 s of 6 s planned (shorter by more than 0.6 s): " \
           "the server stopped answering 3.0 s before Locust stopped" in error


def test_a_short_window_with_a_healthy_server_blames_locust(tmp_path):
    backend = FakeBackend()
    backend.script("gunicorn-sync", [Fault.SHORT_WINDOW])
    _, _, cells = _run(tmp_path, _experiment(tmp_path), backend)
    assert cells["gunicorn-sync"].status == "failed"
    assert cells["gunicorn-sync"].error == ("measured window 3.00 s of 6 s planned (shorter by more than 0.6 s): "
                                            "Locust's run ended early (its timers were late or it was starved of CPU)")


def test_unanswered_requests_fail_a_closed_cell_but_only_warn_in_open_mode(tmp_path):
    backend = FakeBackend()
    backend.script("gunicorn-sync", [Fault.UNANSWERED])
    _, header, cells = _run(tmp_path, _experiment(tmp_path), backend)
    cell = cells["gunicorn-sync"]
    sent_unanswered = 3 * header.budget.loadgen_processes
    assert cell.status == "failed"
    assert cell.error == f"{sent_unanswered} request(s) sent but never answered when Locust stopped"

    open_mode = _experiment(tmp_path, 'servers = ["gunicorn-sync"]\nworkloads = ["hello"]\nmode = "open"\n'
                            'rates = [200]\nusers = 8\nduration = 4\nwarmup = 1\n', name="open")
    backend = FakeBackend()
    backend.script("gunicorn-sync", [Fault.UNANSWERED])
    _, _, cells = _run(tmp_path, open_mode, backend)
    cell = cells["gunicorn-sync"]
    assert cell.status == "ok"
    assert Unanswered(count=sent_unanswered) in cell.findings
    assert cell.open_load.target_rps == 200


def test_a_failed_locust_run_fails_the_cell_with_its_status(tmp_path):
    backend = FakeBackend()
    backend.script("gunicorn-sync", [Fault.NO_RESULTS])
    _, _, cells = _run(tmp_path, _experiment(tmp_path), backend)
    assert cells["gunicorn-sync"].status == "failed"
    assert cells["gunicorn-sync"].error == ("Locust exited with status 2: Locust recorded no requests: "
                                            "locust: error: scripted failure")


def test_requests_mode_needs_every_request_answered(tmp_path):
    experiment = _experiment(tmp_path, 'servers = ["gunicorn-sync"]\nworkloads = ["hello"]\nmode = "requests"\n'
                             'requests = [300]\nusers = 4\nwarmup = 0\nduration = 10\n', name="requests")
    _, _, cells = _run(tmp_path, experiment, FakeBackend())
    assert cells["gunicorn-sync"].status == "ok" and cells["gunicorn-sync"].requests == 300
    assert cells["gunicorn-sync"].total_time_s is not None


def test_retry_busy_remeasures_a_cell_flagged_for_interference(tmp_path):
    experiment = _experiment(tmp_path, TWO_SERVERS.replace('"gunicorn-sync", ', ""))
    lines: list[str] = []
    # the first two loads run beside another program, the third on a quiet machine
    run_dir, _, cells = _run(tmp_path, experiment, FakeBackend(), watch=FakeCpuWatch([True, True]), retry_busy=2,
                             lines=lines)
    cell = cells["uwsgi-processes"]
    assert cell.interference.flagged is False and cell.bottleneck.kind != "interference"
    assert _attempts(run_dir, "uwsgi-processes") == ["attempt-1", "attempt-2", "attempt-3"]
    assert sum("re-measuring (retry" in line for line in lines) == 2

    # without retries the flagged cell is kept, flagged and classified as interference
    run_dir, _, cells = _run(tmp_path, experiment, FakeBackend(), watch=FakeCpuWatch([True]))
    cell = cells["uwsgi-processes"]
    assert cell.status == "ok" and cell.interference.flagged is True
    assert cell.bottleneck.kind == "interference"
    assert [f for f in cell.findings if isinstance(f, InterferenceFlagged)] == [InterferenceFlagged(share=cell.interference.share,
                                                                                      threshold=0.05)]
    assert _attempts(run_dir, "uwsgi-processes") == ["attempt-1"]


def test_resume_remeasures_only_failed_cells_into_new_attempts(tmp_path):
    experiment = _experiment(tmp_path)
    backend = FakeBackend()
    backend.script("gunicorn-sync", [Fault.DIE, Fault.DIE])  # fails twice, then succeeds
    run_dir, _, first = _run(tmp_path, experiment, backend)
    assert first["gunicorn-sync"].status == "failed" and first["uwsgi-processes"].status == "ok"

    run_again, _, second = _run(tmp_path, experiment, backend, resume=run_dir.name)
    assert run_again == run_dir and second["gunicorn-sync"].status == "failed"
    _, _, third = _run(tmp_path, experiment, backend, resume=run_dir.name)
    assert third["gunicorn-sync"].status == "ok"
    assert third["uwsgi-processes"].started_at == first["uwsgi-processes"].started_at  # measured once, kept
    assert backend.starts.count("uwsgi-processes") == 1 and backend.starts.count("gunicorn-sync") == 3
    assert _attempts(run_dir, "gunicorn-sync") == ["attempt-1", "attempt-2", "attempt-3"]
    assert _attempts(run_dir, "uwsgi-processes") == ["attempt-1"]
    # a complete run resumes to nothing
    lines: list[str] = []
    _run(tmp_path, experiment, backend, resume=run_dir.name, lines=lines)
    assert any("is complete: every planned cell is ok" in line for line in lines)
    assert backend.starts.count("gunicorn-sync") == 3


def test_a_stop_signal_keeps_finished_cells_and_resume_completes_the_run(tmp_path):
    experiment = _experiment(tmp_path)
    first, second = (cell.variant for cell in plan_cells(experiment, 7))
    backend = FakeBackend()
    backend.script(second, [Fault.INTERRUPT])  # SIGTERM arrives during the second cell's load
    lines: list[str] = []
    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(RunStopped) as stopped:
        _run(tmp_path, experiment, backend, lines=lines)
    assert stopped.value.exit_code == 143 and signal.getsignal(signal.SIGTERM) is previous
    run_dir = next((tmp_path / "reports").iterdir())
    _, cells = read_results(run_dir / "results.jsonl")
    assert [cell.variant for cell in cells] == [first]
    assert backend.closed == 1
    # the cell's own clean-up stopped its server before the run's: nothing was left to stop
    assert lines[-1].startswith("\nstopped by SIGTERM: no server or load generator of this run is left running. "
                                "1 cells kept in ")
    # the experiment file and --reports-dir are named: neither is the default (before, the
    # command said `serverlab run fake`, which finds no such shipped experiment)
    assert lines[-1].endswith(f"continue with: serverlab run {experiment.path} --resume {run_dir.name} "
                              f"--reports-dir {(tmp_path / 'reports').resolve()}")

    _, _, resumed = _run(tmp_path, experiment, backend, resume="latest")
    assert {name: cell.status for name, cell in resumed.items()} == {"gunicorn-sync": "ok", "uwsgi-processes": "ok"}
    assert _attempts(run_dir, second) == ["attempt-1", "attempt-2"]  # the interrupted attempt is not reused
    assert backend.starts.count(first) == 1


def test_resume_latest_picks_the_newest_run_of_the_same_experiment(tmp_path):
    one = 'servers = ["gunicorn-sync"]\nworkloads = ["hello"]\nusers = [4]\nduration = 2\nwarmup = 1\n'
    experiment = _experiment(tmp_path, one, name="mine")
    other = _experiment(tmp_path, one, name="other")
    backend = FakeBackend()
    older, _, _ = _run(tmp_path, experiment, backend)
    backend.script("gunicorn-sync", [Fault.DIE])
    newer, _, _ = _run(tmp_path, experiment, backend)
    _run(tmp_path, other, backend)  # the newest run of all is another experiment's
    resumed, _, cells = _run(tmp_path, experiment, backend, resume="latest")
    assert resumed == newer != older and cells["gunicorn-sync"].status == "ok"

    with pytest.raises(LabError, match=r"no run of experiment 'nothing' under .*; runs there: .*-mine \(mine\)"):
        _run(tmp_path, _experiment(tmp_path, one, name="nothing"), backend, resume="latest")
    with pytest.raises(LabError, match=r"no run 'missing' under"):
        _run(tmp_path, experiment, backend, resume="missing")
    with pytest.raises(LabError, match=r"is of experiment 'other', not 'mine'"):
        _run(tmp_path, experiment, backend, resume=sorted((tmp_path / "reports").glob("*-other"))[0].name)


def test_resume_refuses_a_changed_experiment(tmp_path):
    backend = FakeBackend()
    backend.script("gunicorn-sync", [Fault.DIE])
    run_dir, _, _ = _run(tmp_path, _experiment(tmp_path), backend)
    changed = _experiment(tmp_path, TWO_SERVERS.replace("duration = 6", "duration = 7"))
    with pytest.raises(LabError, match=r"experiment 'fake' changed since run .* began \(duration: 6.0 then, 7.0 now\)"):
        _run(tmp_path, changed, backend, resume=run_dir.name)
    assert backend.starts.count("gunicorn-sync") == 1  # nothing was started


def test_calibration_runs_once_per_variant_and_repetition_and_is_kept_on_resume(tmp_path):
    """No hello cell at 32 users here: the variant's first cell of each repetition runs wrk and
    Locust on hello first; a resumed run reuses a repetition's calibration, even from a failed cell."""
    experiment = _experiment(tmp_path, TWO_SERVERS.replace('"gunicorn-sync", ', "").replace("seed = 7", "seed = 7\n"
                             "calibrate = true\nrepetitions = 2"))
    backend = FakeBackend()
    backend.script("uwsgi-processes", [Fault.OK, Fault.DIE])
    run_dir, _, _ = _run(tmp_path, experiment, backend)
    _, cells = read_results(run_dir / "results.jsonl")
    calibrations = [cell.calibration for cell in cells]
    assert [c.repetition for c in calibrations] == [1, 2]
    for calibration in calibrations:
        assert calibration.wrk_rps == RPS * 2 and calibration.connections == 32 and calibration.note is None
        assert calibration.ratio == pytest.approx(calibration.locust_rps / calibration.wrk_rps)
    # the fake server scripted to die does so in the first load it gets: repetition 2's calibration Locust run
    assert [cell.status for cell in cells] == ["ok", "unverified"] and len(backend.wrk_runs) == 2
    _run(tmp_path, experiment, backend, resume=run_dir.name)
    _, cells = read_results(run_dir / "results.jsonl")
    assert cells[-1].status == "ok" and cells[-1].calibration == calibrations[1]  # not measured again
    assert len(backend.wrk_runs) == 2
    assert sum(1 for args in backend.locust_runs if "HelloUser" in args[1] and "32" in args[1]) == 2


def test_wrk_runs_after_the_cells_locust_window_in_odd_repetitions_and_before_it_in_even_ones(tmp_path):
    """Neither generator always meets the freshly started server (issue 16: with Locust always first
    its ratio to wrk read higher); each calibration records which went first."""
    experiment = _experiment(tmp_path, 'servers = ["gunicorn-sync"]\nworkloads = ["hello"]\nusers = [32]\n'
                             'duration = 6\nwarmup = 1\nseed = 7\ncalibrate = true\nrepetitions = 3\n')
    backend = FakeBackend()
    order: list[str] = []
    for name, tool in (("run_wrk", "wrk"), ("run_locust", "Locust")):
        def recorded(*args, _real=getattr(backend, name), _tool=tool, **kwargs):
            order.append(_tool)
            return _real(*args, **kwargs)
        setattr(backend, name, recorded)
    run_dir, _, _ = _run(tmp_path, experiment, backend)
    _, cells = read_results(run_dir / "results.jsonl")
    by_repetition = {cell.repetition: cell.calibration for cell in cells}
    assert [by_repetition[r].wrk_first for r in (1, 2, 3)] == [False, True, False]
    assert order == ["Locust", "wrk", "wrk", "Locust", "Locust", "wrk"]
    for cell in cells:
        assert cell.calibration.locust_rps == cell.rps and cell.calibration.ratio == pytest.approx(cell.rps / (RPS * 2))


def test_both_real_backends_satisfy_the_backend_interface():
    import inspect

    from serverlab.backends import BACKENDS, Backend, DockerBackend, LocalBackend, make_backend
    from serverlab.budget import Budget

    for name in BACKENDS:
        backend = make_backend(name, Budget())
        assert isinstance(backend, Backend) and backend.name == name
    assert inspect.signature(LocalBackend.prepare) == inspect.signature(DockerBackend.prepare)
    for method in ("start", "exit_status", "locust_paths", "run_locust", "run_wrk", "stop", "kill", "close"):
        local, docker = inspect.signature(getattr(LocalBackend, method)), inspect.signature(getattr(DockerBackend, method))
        assert list(local.parameters)[:3] == list(docker.parameters)[:3], method
    with pytest.raises(LabError, match=r"unknown backend 'podman'; valid: docker, local"):
        make_backend("podman", Budget())


def test_a_backend_that_cannot_prepare_stops_the_run_and_releases_its_cpus(tmp_path):
    experiment = _experiment(tmp_path)
    broken = FakeBackend(prepare_error="docker is not installed; see README (make offline) or use --backend local")
    with pytest.raises(LabError, match=r"^docker is not installed"):
        _run(tmp_path, experiment, broken)
    assert broken.closed == 1 and broken.starts == []  # cleaned up; nothing started
    _, _, cells = _run(tmp_path, experiment, FakeBackend())  # the CPU lock was released
    assert {cell.status for cell in cells.values()} == {"ok"}


def test_a_failed_calibration_is_a_note_and_the_cell_is_still_measured(tmp_path):
    experiment = _experiment(tmp_path, TWO_SERVERS.replace('"gunicorn-sync", ', "").replace("seed = 7", "calibrate = true"))
    _, _, cells = _run(tmp_path, experiment, FakeBackend(wrk_installed=False))
    cell = cells["uwsgi-processes"]
    assert cell.status == "ok" and cell.calibration.ratio is None
    assert cell.calibration.note.startswith("wrk failed: wrk printed no Requests/sec: 'wrk is not installed")
