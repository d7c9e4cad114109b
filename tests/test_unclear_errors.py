"""The last unclear errors of issue 22, each with the message that replaced it.

Each error names the file, value or path, what was kept, and what to do next:
a full disk during a run, a wrong-typed field in a results file, more Locust processes
than load-generator CPUs, a UTF-8 byte-order mark in an experiment file, a matrix
estimated over 24 h started without ``--yes``, and ``--resume`` given a path. (The
compose network left by a stopped Docker run: tests/test_faults.py.)
"""

from __future__ import annotations

import errno
import io
import itertools
import json
from pathlib import Path

import pytest

from fakebackend import FakeBackend, FakeCpuWatch
from serverlab import LabError
from serverlab.experiment import ExperimentError, load_experiment
from serverlab.results import ResultsError, read_results
from serverlab.runfolders import DiskFullError
from serverlab.runner import Runner

TWO_SERVERS = 'servers = ["gunicorn-sync", "uwsgi-processes"]\nworkloads = ["hello"]\nusers = [4]\nduration = 2\nwarmup = 1\nseed = 7\n'


@pytest.fixture(autouse=True)
def _distinct_run_ids(monkeypatch):
    """Run ids have a resolution of one second; runs here start milliseconds apart."""
    counter = itertools.count(1)
    monkeypatch.setattr("serverlab.runner.new_run_id", lambda experiment: f"20261201-0000{next(counter):02d}-{experiment.name}")


def _experiment(tmp_path: Path, text: str = TWO_SERVERS, name: str = "fake"):
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return load_experiment(str(path))


def _runner(tmp_path: Path, experiment, backend, reports: Path | None = None) -> Runner:
    return Runner(experiment, backend, reports or tmp_path / "reports", write=lambda _line: None,
                  cpu_watch=FakeCpuWatch(), retry_pause_s=0.0)


# -- a full disk ---------------------------------------------------------------------------


def test_a_full_disk_names_the_file_the_cells_kept_and_the_resume_command(tmp_path, monkeypatch):
    """Before: "No space left on device" alone (a write fails after the open, so Python's
    error names no file). Now the file, the cells kept and the --resume command."""
    experiment = _experiment(tmp_path)
    backend = FakeBackend()
    real_write = Path.write_text
    writes = {"locust.log": 0}

    def full_on_the_second_cell(self, data, *args, **kwargs):
        if self.name == "locust.log":
            writes["locust.log"] += 1
            if writes["locust.log"] == 2:
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, data, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full_on_the_second_cell)
    reports = tmp_path / "elsewhere"
    with pytest.raises(DiskFullError) as info:
        _runner(tmp_path, experiment, backend, reports).run()
    message = str(info.value)
    run_dir = next(reports.iterdir())
    assert "no space left on device while writing " in message
    assert str(run_dir / "cells") in message and "locust.log" in message  # the file
    assert f"1 measured cell(s) are kept in {run_dir}/results.jsonl" in message
    assert message.endswith(f"continue with: serverlab run {experiment.path} --resume {run_dir.name} "
                            f"--reports-dir {reports.resolve()}")
    assert backend.closed == 1  # its servers and generators were stopped
    assert len(read_results(run_dir / "results.jsonl")[1]) == 1


def test_a_full_disk_on_the_results_file_is_the_same_clear_error(tmp_path, monkeypatch):
    experiment = _experiment(tmp_path)
    real_open = Path.open
    state = {"cells": 0}

    class FullFile(io.StringIO):
        def flush(self):
            raise OSError(errno.ENOSPC, "No space left on device")

        def __exit__(self, *exc):
            return False

    def open_full_after_one_cell(self, mode="r", *args, **kwargs):
        if self.name == "results.jsonl" and mode == "a":
            state["cells"] += 1
            if state["cells"] == 3:  # the header, one cell, then full
                return FullFile()
        return real_open(self, mode, *args, **kwargs)

    monkeypatch.setattr(Path, "open", open_full_after_one_cell)
    with pytest.raises(DiskFullError) as info:
        _runner(tmp_path, experiment, FakeBackend()).run()
    run_dir = next((tmp_path / "reports").iterdir())
    message = str(info.value)
    assert f"while writing {run_dir}/results.jsonl" in message
    assert "1 measured cell(s) are kept" in message and f"--resume {run_dir.name}" in message


def test_the_cli_prints_the_disk_full_error_and_exits_2(tmp_path, monkeypatch, capsys):
    from serverlab import cli

    def full(self, resume=None):
        raise DiskFullError("no space left on device while writing X; 3 measured cell(s) are kept")

    monkeypatch.setattr(cli, "load_experiment", lambda _name: _experiment(tmp_path))
    monkeypatch.setattr("serverlab.runner.Runner.run", full)
    monkeypatch.setattr("serverlab.backends.make_backend", lambda *_args: FakeBackend())
    assert cli.main(["run", "fake", "--reports-dir", str(tmp_path / "r")]) == 2
    assert "error: no space left on device while writing X; 3 measured cell(s) are kept" in capsys.readouterr().err


# -- a wrong-typed results field -----------------------------------------------------------


def _results_with(tmp_path: Path, field: str, value) -> Path:
    experiment = _experiment(tmp_path)
    run_dir = _runner(tmp_path, experiment, FakeBackend()).run()
    path = run_dir / "results.jsonl"
    lines = path.read_text().splitlines()
    cell = json.loads(lines[1])
    cell[field] = value
    lines[1] = json.dumps(cell)
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(("field", "value", "expected"), [
    ("requests", "1000", "an integer"),
    ("rps", "fast", "a number"),
    ("level", 4.5, "an integer"),
    ("loadgen_saturated", "no", "true or false"),
    ("server_cpu_s", [1], "a number or null"),
])
def test_a_wrong_typed_results_field_names_the_field_file_and_line(tmp_path, field, value, expected):
    """Before: "'<' not supported between instances of 'str' and 'int'"."""
    path = _results_with(tmp_path, field, value)
    with pytest.raises(ResultsError) as info:
        read_results(path)
    message = str(info.value)
    assert message.startswith(f"{path}:2: cell "), message
    assert f"field {field!r} must be {expected}, got {value!r}" in message
    assert "not supported between" not in message


def test_a_wrong_typed_latency_figure_is_named(tmp_path):
    path = _results_with(tmp_path, "latency_us", {"p50": "2000"})
    with pytest.raises(ResultsError, match=r":2: cell .*field 'latency_us' must map names to numbers, got 'p50': '2000'"):
        read_results(path)


def test_a_wrong_typed_run_header_field_is_named(tmp_path):
    path = _results_with(tmp_path, "requests", 1)
    lines = path.read_text().splitlines()
    header = json.loads(lines[0])
    header["run_id"] = 12
    path.write_text("\n".join([json.dumps(header), *lines[1:]]) + "\n")
    with pytest.raises(ResultsError, match=r":1: run header: field 'run_id' must be a string, got 12"):
        read_results(path)


def test_the_report_command_names_the_field(tmp_path, capsys):
    from serverlab.cli import main

    path = _results_with(tmp_path, "rps", "fast")
    assert main(["report", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"error: {path}:2:" in err and "field 'rps' must be a number, got 'fast'" in err


# -- more Locust processes than CPUs ---------------------------------------------------------


def test_more_locust_processes_than_loadgen_cpus_are_refused_naming_the_limit(tmp_path):
    """Before: accepted, then every cell failed with "Locust recorded no requests"."""
    text = TWO_SERVERS + '[budget]\nloadgen_cpuset = "1"\nloadgen_processes = 64\n'
    with pytest.raises(ExperimentError) as info:
        _experiment(tmp_path, text)
    message = str(info.value)
    assert str(tmp_path / "fake.toml") in message
    assert "'budget.loadgen_processes' = 64" in message
    assert "at most 1: one Locust process per CPU of budget.loadgen_cpuset = '1'" in message
    assert '"auto"' in message


def test_as_many_locust_processes_as_loadgen_cpus_are_accepted(tmp_path):
    text = TWO_SERVERS + '[budget]\nserver_cpuset = "0"\nloadgen_cpuset = "1-3"\nloadgen_processes = 3\n'
    assert _experiment(tmp_path, text).budget.loadgen_processes == 3


# -- a UTF-8 byte-order mark -----------------------------------------------------------------


def test_an_experiment_file_with_a_utf8_bom_is_accepted(tmp_path):
    """Before: "Invalid statement (at line 1, column 1)" (Windows editors save a BOM)."""
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + TWO_SERVERS.encode())
    experiment = load_experiment(str(path))
    assert experiment.servers == ("gunicorn-sync", "uwsgi-processes") and experiment.duration == 2


# -- a matrix estimated over 24 h ------------------------------------------------------------


HUGE = ('servers = "all"\nworkloads = ["hello", "json", "cpu", "io", "mixed"]\n'
        'users = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]\nduration = 600\nwarmup = 10\nrepetitions = 10\n')


def test_a_run_estimated_over_24_hours_needs_yes_without_a_terminal(tmp_path, monkeypatch, capsys):
    """Before: a 26,000-cell matrix (92 days) started unattended when stdin was not a terminal."""
    from serverlab import cli

    path = tmp_path / "huge.toml"
    path.write_text(HUGE)
    started: list[str] = []
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # no terminal, as in CI or cron
    monkeypatch.setattr("serverlab.runner.Runner.run", lambda self, resume=None: started.append("run"))
    assert cli.main(["run", str(path), "--reports-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    experiment = load_experiment(str(path))
    assert experiment.estimated_seconds() > cli.UNATTENDED_LIMIT_S
    assert f"error: {path}: {experiment.cell_count} cells, estimated " in err and " days; " in err
    assert "over 24 h starts only with --yes" in err
    assert started == []


def test_a_short_run_needs_no_yes_without_a_terminal(tmp_path, monkeypatch):
    from serverlab import cli

    experiment = _experiment(tmp_path)
    assert experiment.estimated_seconds() < cli.CONFIRM_ABOVE_S
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    monkeypatch.setattr("serverlab.backends.make_backend", lambda *_args: FakeBackend())
    monkeypatch.setattr(cli, "load_experiment", lambda _name: experiment)
    monkeypatch.setattr("serverlab.runner.ProcStatWatch", FakeCpuWatch)
    assert cli.main(["run", "fake", "--reports-dir", str(tmp_path / "r")]) == 0
    assert (tmp_path / "r" / "latest" / "results.jsonl").is_file()


# -- --resume takes names, not paths ---------------------------------------------------------


@pytest.mark.parametrize("given", ["../E/{run}", "{reports}/{run}", "./{run}"])
def test_resume_refuses_a_path_naming_the_reports_dir_to_use(tmp_path, given):
    """Before: ``--resume ../E/<id> --reports-dir D`` was accepted and left D/latest dangling."""
    experiment = _experiment(tmp_path)
    first = _runner(tmp_path, experiment, FakeBackend()).run()
    given = given.format(run=first.name, reports=first.parent)
    other = tmp_path / "D"
    with pytest.raises(LabError) as info:
        _runner(tmp_path, experiment, FakeBackend(), other).run(resume=given)
    message = str(info.value)
    assert f"--resume takes a run id: the name of a run folder under --reports-dir {other}" in message
    assert f"got {given!r}" in message
    assert f"pass --reports-dir {Path(given).parent} --resume {Path(given).name}" in message
    assert not (other / "latest").exists() and not (other / "latest").is_symlink()


def test_resume_by_name_still_works(tmp_path):
    experiment = _experiment(tmp_path)
    first = _runner(tmp_path, experiment, FakeBackend()).run()
    again = _runner(tmp_path, experiment, FakeBackend()).run(resume=first.name)
    assert again == first
