"""Interference detection: per-CPU accounting against the lab's own CPU, and a real CPU hog.

The slow test runs two short cells of one variant with the local backend, the
second with a CPU hog pinned (taskset) to the server's CPU, and checks that the
hogged cell is classified ``interference`` and the quiet one is not.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from serverlab.backends import LocalBackend
from serverlab.experiment import load_experiment
from serverlab.interference import (
    INTERFERENCE_THRESHOLD,
    CpuTimes,
    Sample,
    interference_figures,
    quietness_probe,
    read_proc_stat,
)
from serverlab.results import read_results
from serverlab.runner import Runner

PROC_STAT = """cpu  25824 0 9762 42410 496 0 203 67 0 0
cpu0 11223 0 4387 23634 75 0 21 30 0 0
cpu1 14601 5 5375 18775 420 0 181 36 0 0
intr 123 0
ctxt 456
"""


def test_proc_stat_is_read_per_cpu(tmp_path):
    path = tmp_path / "stat"
    path.write_text(PROC_STAT)
    cpus = read_proc_stat(path)
    assert set(cpus) == {0, 1}
    # user + nice + system, in seconds of USER_HZ ticks (100 per second on Linux)
    assert cpus[1].busy == pytest.approx((14601 + 5 + 5375) / 100)
    assert cpus[0].steal == pytest.approx(30 / 100)
    assert read_proc_stat(tmp_path / "missing") == {}


def sample(at, busy0, busy1, own=0.0, steal0=0.0):
    return Sample(at, {0: CpuTimes(busy0, steal0), 1: CpuTimes(busy1, 0.0)}, own)


def test_other_programs_are_what_is_left_after_the_lab():
    before = sample(100.0, 50.0, 80.0, own=1.0)
    # 10 s window: CPU 0 busy 9.9 s, the server used 9.8 s; CPU 1 busy 7.5 s, Locust 7.3 s; runner 0.1 s
    quiet = interference_figures(before, sample(110.0, 59.9, 87.5, own=1.1), [0], [1], 9.8, 7.3)
    assert not quiet["flagged"] and quiet["share"] < INTERFERENCE_THRESHOLD
    assert quiet["server_other_s"] == pytest.approx(0.0) and quiet["loadgen_other_s"] == pytest.approx(0.1)
    # a hog took half of CPU 0: the server got 5 s of the 10
    hogged = interference_figures(before, sample(110.0, 60.0, 87.5, own=1.1), [0], [1], 5.0, 7.3)
    assert hogged["flagged"] and hogged["server_share"] == pytest.approx(0.49)
    # steal counts too: the hypervisor gave CPU 0 away for 1 s
    stolen = interference_figures(before, sample(110.0, 59.8, 87.3, own=1.1, steal0=1.0), [0], [1], 9.8, 7.3)
    assert stolen["flagged"] and stolen["steal_s"] == pytest.approx(1.0)
    # CPUs this machine lacks are skipped; none at all gives "not measured"
    assert interference_figures(before, sample(110.0, 59.9, 87.5), [0, 7], [1], 9.8, 7.3)["flagged"] is False
    assert interference_figures(before, sample(110.0, 59.9, 87.5), [5], [6], 1.0, 1.0) is None


def test_quietness_probe_records_what_it_saw():
    probe = quietness_probe([0], [1], seconds=0.3)
    assert probe["measured"] is True and probe["seconds"] == 0.3
    assert probe["quiet"] is (not probe["flagged"])
    assert 0.0 <= probe["share"] and isinstance(probe["busiest"], list)


# ---------------------------------------------------------------- real cells

def _experiment(tmp_path: Path) -> Path:
    path = tmp_path / "hog.toml"
    path.write_text('servers = ["gunicorn-gthread"]\nworkloads = ["hello"]\nusers = [8]\nduration = 4\nwarmup = 1\n')
    return path


def _one_cell(tmp_path: Path, name: str, retry_busy: int = 0):
    experiment = load_experiment(str(_experiment(tmp_path)))
    run_dir = Runner(experiment, LocalBackend(experiment.budget), tmp_path / name, write=lambda line: None,
                     retry_busy=retry_busy).run()
    header, cells = read_results(run_dir / "results.jsonl")
    assert len(cells) == 1 and cells[0].status == "ok", cells[0].error
    return header, cells[0]


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("taskset"), reason="taskset is needed to pin the hog and the server")
def test_a_cpu_hog_beside_the_server_is_flagged_and_a_quiet_cell_is_not(tmp_path):
    hog = subprocess.Popen(["taskset", "-c", "0", sys.executable, "-c", "while True: pass"])
    try:
        header, hogged = _one_cell(tmp_path, "hogged", retry_busy=1)
    finally:
        hog.kill()
        hog.wait()
    assert hogged.interference.flagged, hogged.interference
    assert hogged.interference.server_share >= 0.25, hogged.interference  # the hog shares CPU 0 with the server
    assert hogged.bottleneck.kind == "interference"
    assert "quietness_probe" in header.metadata
    # --retry-busy 1: the flagged cell was measured a second time (still hogged)
    attempts = sorted(p.name for p in (tmp_path / "hogged").glob("*/cells/*/attempt-*"))
    assert attempts == ["attempt-1", "attempt-2"], attempts
    # the quiet cell: retried while other programs (another test run, a build) or the host's own
    # speed (the host-speed probe around the cell: a VM's host can slow down with this machine
    # idle) disturb it
    reasons = []
    for attempt in range(3):
        _, quiet = _one_cell(tmp_path, f"quiet{attempt}")
        slowed = quiet.host_speed is not None and quiet.host_speed.flagged
        if not quiet.interference.flagged and not slowed:
            break
        reasons.append(f"host speed {quiet.host_speed.deviation:+.0%}" if slowed and not quiet.interference.flagged
                       else f"{quiet.interference.share:.0%} of a lab CPU side used by other programs")
    else:
        message = (f"the machine is busy: the quiet cell was disturbed in every attempt ({', '.join(reasons)}); "
                   f"the hogged cell was flagged as expected ({hogged.interference.server_share:.0%} on the "
                   "server's CPU)")
        print(message)
        pytest.skip(message)
    assert quiet.bottleneck.kind != "interference"
    assert quiet.interference.share < hogged.interference.share


def test_retry_busy_option_is_bounded():
    from serverlab.cli import build_parser

    assert build_parser().parse_args(["run", "quick", "--retry-busy", "3"]).retry_busy == 3
    assert build_parser().parse_args(["run", "quick"]).retry_busy == 0
    for bad in ("11", "-1", "many"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["run", "quick", "--retry-busy", bad])
