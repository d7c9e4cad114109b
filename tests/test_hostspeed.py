"""The host-speed probe (issue 16): its kernel and judgement, the runner's use of it through the
fake backend (milliseconds per test), ``serverlab compare`` across hosts of different speed,
and one real Docker test: a CPU hog at nice 19 beside the server slows the probe past the
threshold, and half a CPU quota doubles it.
"""

from __future__ import annotations

import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fakebackend import PROBE_MS, FakeBackend, FakeCpuWatch
from serverlab import hostspeed
from serverlab.experiment import load_experiment
from serverlab.findings import HostSpeedChanged
from serverlab.report.compare import compare
from serverlab.report.rows import aggregate
from serverlab.report.verdicts import verdicts
from serverlab.results import read_results
from serverlab.runner import Runner
from serverlab.report.sentences import row_warnings

ROOT = Path(__file__).resolve().parents[1]
TWO_SERVERS = ('servers = ["gunicorn-sync", "uwsgi-processes"]\nworkloads = ["hello"]\nusers = [4]\nduration = 6\n'
               'warmup = 1\nseed = 7\nrepetitions = 2\n')


# --- the kernel and the judgement (fast) -------------------------------------------------


def test_the_kernel_is_fixed_work_with_a_known_result():
    assert hostspeed.kernel() == hostspeed.KERNEL_CHECKSUM
    assert hostspeed.kernel(1000) == hostspeed.kernel(1000) != hostspeed.kernel(1001)


def test_a_probe_times_its_kernels_and_prints_json(capsys):
    result = hostspeed.probe(kernels=3, iterations=20_000)
    assert result["kernels"] == 3 and len(result["kernel_ms"]) == 3
    assert result["ms"] >= sum(result["kernel_ms"]) * 0.99 > 0
    assert hostspeed.main(["--probes", "2", "--kernels", "2", "--iterations", "10000"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all(json.loads(line)["kernels"] == 2 for line in lines)
    assert hostspeed.parse_probes("noise\n" + "\n".join(lines)) == [json.loads(line)["ms"] for line in lines]
    with pytest.raises(hostspeed.HostSpeedError, match="no probe result"):
        hostspeed.parse_probes("Traceback: something broke")


def test_python_m_serverlab_hostspeed_runs_as_the_containers_run_it():
    done = subprocess.run([sys.executable, "-m", "serverlab.hostspeed", "--kernels", "1"], capture_output=True,
                          text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert hostspeed.parse_probes(done.stdout)[0] > 0


def test_the_threshold_comes_from_the_quiet_repeats():
    # back-to-back probes agreeing within 1%: the floor (5%) holds
    assert hostspeed.derive_threshold([300, 301, 299, 302, 300]) == hostspeed.THRESHOLD_FLOOR
    # noisier quiet probes (4% off the median) widen it to twice their noise
    assert hostspeed.derive_threshold([300, 312, 300, 296, 300]) == pytest.approx(0.08)
    # never beyond the cap
    assert hostspeed.derive_threshold([300, 600, 300]) == hostspeed.THRESHOLD_CAP
    with pytest.raises(ValueError):
        hostspeed.derive_threshold([])
    base = hostspeed.baseline([300, 312, 300, 296, 300])
    assert base["median_ms"] == 300 and base["noise"] == pytest.approx(0.04) and base["threshold"] == pytest.approx(0.08)


def test_a_cell_is_flagged_when_either_probe_leaves_the_median():
    base = hostspeed.baseline([300.0] * 5)
    quiet = hostspeed.cell_figures(305.0, 297.0, base)
    assert quiet["flagged"] is False and quiet["deviation"] == pytest.approx(305 / 300 - 1, abs=1e-4)
    slower = hostspeed.cell_figures(300.0, 360.0, base)
    assert slower["flagged"] is True and slower["deviation"] == pytest.approx(0.2)
    faster = hostspeed.cell_figures(None, 240.0, base)
    assert faster["flagged"] is True and faster["deviation"] == pytest.approx(-0.2)
    assert hostspeed.cell_figures(None, None, base) is None


# --- the runner, through the fake backend ------------------------------------------------


@pytest.fixture(autouse=True)
def _distinct_run_ids(monkeypatch):
    counter = itertools.count(1)
    monkeypatch.setattr("serverlab.runner.new_run_id", lambda experiment: f"20261201-0000{next(counter):02d}-{experiment.name}")


def _run(tmp_path, backend, retry_busy=0, resume=None, lines=None, text=TWO_SERVERS):
    path = tmp_path / "fake.toml"
    path.write_text(text)
    runner = Runner(load_experiment(str(path)), backend, tmp_path / "reports", retry_busy=retry_busy,
                    write=(lines.append if lines is not None else lambda _: None), cpu_watch=FakeCpuWatch(),
                    retry_pause_s=0.0)
    run_dir = runner.run(resume=resume)
    header, cells = read_results(run_dir / "results.jsonl")
    return run_dir, header, sorted(cells, key=lambda c: c.order)


def test_the_runs_own_spread_widens_the_threshold_once_it_has_enough_probes():
    """A quiet host drifts between cells minutes apart more than between back-to-back baseline
    probes (seen: robust sigma 3.5% over a run, baseline noise 1.8%): once the run has
    MIN_SPREAD_READINGS probes the threshold is 3 robust sigmas of them, never below the baseline's."""
    base = hostspeed.baseline([300, 303, 298, 301, 300])
    early = hostspeed.OUTLIER_Z * hostspeed.PRIOR_SPREAD  # before the run has seen its spread
    assert hostspeed.run_reference(base, [])["threshold"] == pytest.approx(early)
    drifting = [276, 324, 288, 312, 300, 282, 318, 294, 306, 315]  # the cells' probes: up to 8% apart
    sigma = hostspeed.robust_spread(drifting)
    reference = hostspeed.run_reference(base, drifting)
    assert reference["median_ms"] == statistics.median(base["probes_ms"] + drifting)
    assert reference["threshold"] == pytest.approx(hostspeed.OUTLIER_Z * sigma, abs=1e-4)
    assert reference["threshold"] > hostspeed.THRESHOLD_FLOOR
    assert not hostspeed.cell_figures(318, 283, reference)["flagged"]
    assert hostspeed.cell_figures(300, 390, reference)["flagged"]  # a 30% slower host still is
    # a steadier run tightens it; too few probes: the prior's; never below the floor or past the cap
    steady = hostspeed.run_reference(base, [300, 301, 299, 300, 302, 298, 300, 301, 299, 300])
    assert steady["threshold"] == hostspeed.THRESHOLD_FLOOR
    assert hostspeed.run_reference(base, drifting[:9])["threshold"] == pytest.approx(early)
    assert hostspeed.run_reference(base, [150, 450] * 5)["threshold"] == hostspeed.THRESHOLD_CAP
    with pytest.raises(ValueError):
        hostspeed.robust_spread([])


def test_a_drifting_quiet_host_flags_only_its_slow_spell(tmp_path):
    """The runner's judgement over a run: probes drifting +-6% between cells flag nothing once the
    run knows its spread; a probe 35% slower (seen in a quiet run: 225 vs 166 ms) is flagged."""
    backend = FakeBackend()
    text = TWO_SERVERS.replace("repetitions = 2", "repetitions = 4")  # 8 cells
    probes = [300, 303, 298, 301, 300,  276, 324,  288, 312,  300, 282,  318, 294,  306, 315,  405, 300,  288, 311,
              306, 294]
    backend.script_host_speed(probes)
    _, _, cells = _run(tmp_path, backend, text=text)
    by_order = sorted(cells, key=lambda c: c.order)
    flagged = [c.host_speed.after_ms for c in by_order if c.host_speed.flagged]
    assert flagged == [300.0] or [c.host_speed.before_ms for c in by_order if c.host_speed.flagged] == [405.0]
    late = [c for c in by_order if c.host_speed.before_ms in (288.0, 306.0)]
    assert late and all(c.host_speed.threshold > hostspeed.THRESHOLD_FLOOR for c in late)


def test_every_cell_records_its_host_speed_and_the_header_the_runs_median(tmp_path):
    backend = FakeBackend()
    backend.script_host_speed([300, 306, 297, 300, 303])  # the run's quiet baseline
    lines: list[str] = []
    _, header, cells = _run(tmp_path, backend, lines=lines)
    speed = header.metadata["host_speed"]
    assert speed["median_ms"] == 300 and speed["probes_ms"] == [300, 306, 297, 300, 303]
    assert speed["threshold"] == hostspeed.THRESHOLD_FLOOR
    assert backend.probes == hostspeed.BASELINE_PROBES + 2 * len(cells)  # one before, one after each cell
    for cell in cells:
        assert cell.host_speed.before_ms == cell.host_speed.after_ms == PROBE_MS
        assert cell.host_speed.flagged is False and cell.bottleneck.kind != "interference"
        assert not any(isinstance(f, HostSpeedChanged) for f in cell.findings)
    assert any(line.startswith("host speed: a fixed CPU probe took 300 ms") for line in lines)


def test_a_cell_whose_host_slowed_is_flagged_and_left_out_of_the_verdict(tmp_path):
    backend = FakeBackend()
    # baseline 300 ms; the first cell measured ran on a host 40% slower (probes before and after)
    backend.script_host_speed([300] * 5 + [420, 420])
    _, header, cells = _run(tmp_path, backend)
    slow, rest = cells[0], cells[1:]
    assert slow.status == "ok" and slow.host_speed.flagged is True
    assert slow.host_speed.deviation == pytest.approx(0.4)
    assert [f for f in slow.findings if isinstance(f, HostSpeedChanged)] == [
        HostSpeedChanged(0.4, round(hostspeed.OUTLIER_Z * hostspeed.PRIOR_SPREAD, 4), 420.0, 420.0, 300.0)]
    assert slow.bottleneck.kind == "interference" and "host speed changed" in slow.bottleneck.reason
    assert not any(c.host_speed.flagged for c in rest)
    # the report: the row is classed interference, its repetition's finding is worded, and the verdict leaves it out
    rows = aggregate(header, cells)
    row = next(r for r in rows if r.variant == slow.variant)
    assert row.bottleneck.kind == "interference" and row.bottleneck.host_speed_deviation == pytest.approx(0.4)
    assert any("host speed changed: the fixed CPU probe" in w and "40% slower" in w for w in row_warnings(row))
    assert not any("other programs used" in w for w in row_warnings(row))
    verdict = verdicts(rows)["hello"]
    assert f"{slow.variant} (the host's speed changed by +40%)" in verdict
    assert "or the host's speed changed, while they ran" in verdict


def test_a_row_keeps_its_undisturbed_repetitions_and_is_ranked_on_them(tmp_path):
    """One disturbed repetition of three does not take the row out of the verdict: the row's
    figures come from the two undisturbed ones, and it says so. With one undisturbed left (the
    test above) the row stays whole and classed interference."""
    from serverlab.findings import RepetitionsLeftOut
    from serverlab.report.rows import MIN_CLEAN_REPETITIONS

    backend = FakeBackend()
    backend.script_host_speed([300] * 5 + [420, 420])  # the first cell measured: a host 40% slower
    _, header, cells = _run(tmp_path, backend, text=TWO_SERVERS.replace("repetitions = 2", "repetitions = 3"))
    slow = cells[0]
    assert slow.host_speed.flagged and slow.bottleneck.kind == "interference"
    row = next(r for r in aggregate(header, cells) if r.variant == slow.variant)
    kept = [c for c in cells if c.variant == slow.variant and c is not slow]
    assert len(kept) == MIN_CLEAN_REPETITIONS == 2
    assert row.bottleneck.kind != "interference" and row.repetitions == row.repetitions_ok == 3
    assert row.rps.median == pytest.approx(statistics.median(c.rps for c in kept))
    assert RepetitionsLeftOut(1, 2) in [f.finding for f in row.findings]
    assert any("1 of 3 repetitions were disturbed" in w for w in row_warnings(row))
    assert any("host speed changed" in w for w in row_warnings(row))  # the left-out repetition still says why
    assert slow.variant in verdicts([r for r in aggregate(header, cells)])["hello"]


def test_retry_busy_remeasures_a_cell_whose_host_speed_changed(tmp_path):
    backend = FakeBackend()
    backend.script_host_speed([300] * 5 + [300, 390])  # the first cell: the host slowed by 30% during it
    lines: list[str] = []
    run_dir, _, cells = _run(tmp_path, backend, retry_busy=2, lines=lines)
    assert not any(c.host_speed.flagged for c in cells)
    first = cells[0]
    attempts = sorted(p.name for p in (run_dir / "cells" / first.cell_id.replace("/", "_")).glob("attempt-*"))
    assert attempts == ["attempt-1", "attempt-2"]
    assert sum("the host's speed changed by +30%: re-measuring (retry 1 of 2)" in line for line in lines) == 1


def test_a_resumed_run_keeps_its_reference_host_speed(tmp_path):
    from fakebackend import Fault

    backend = FakeBackend()
    backend.script("gunicorn-sync", [Fault.NO_START])
    backend.script_host_speed([300] * 5)
    run_dir, header, first = _run(tmp_path, backend)
    [failed] = [c.cell_id for c in first if c.status == "failed"]
    later = FakeBackend()
    later.script_host_speed([345, 345])  # the host is now 15% slower: the resumed cell is flagged against the start
    _, resumed, cells = _run(tmp_path, later, resume=run_dir.name)
    assert later.probes == 2  # no new baseline: the header's is kept
    assert resumed.metadata["host_speed"] == header.metadata["host_speed"]
    [remeasured] = [c for c in cells if c.cell_id == failed]
    assert remeasured.status == "ok"
    assert remeasured.host_speed.flagged is True and remeasured.host_speed.median_ms == 300


def test_compare_shows_both_host_speeds_and_normalises_when_they_differ(tmp_path):
    fast = FakeBackend()
    fast.script_host_speed([300] * 5)
    old_dir, _, _ = _run(tmp_path, fast)
    slow = FakeBackend()
    slow.script_host_speed([390] * 5 + [390] * 8)  # the whole run on a host 30% slower
    new_dir, _, new_cells = _run(tmp_path, slow)
    assert not any(c.host_speed.flagged for c in new_cells)  # steady within its own run
    text = compare(old_dir / "results.jsonl", new_dir / "results.jsonl")
    assert "the fixed CPU probe took 300 ms in the old run and 390 ms in the new one (the new host 30% slower" in text
    assert "the runs are not comparable as they stand" in text
    assert "new RPS normalised to the old host speed" in text and "(normalised)" in text
    # the same host speed: no warning, no normalised columns
    same = FakeBackend()
    same.script_host_speed([303] * 5)
    same_dir, _, _ = _run(tmp_path, same)
    text = compare(old_dir / "results.jsonl", same_dir / "results.jsonl")
    assert "300 ms in the old run and 303 ms in the new one" in text
    assert "not comparable" not in text and "normalised" not in text


# --- real: Docker ------------------------------------------------------------------------


def _median_probe(backend, probes: int = 3) -> float:
    return statistics.median(backend.probe_host_speed(probes))


@pytest.mark.docker
@pytest.mark.slow
def test_the_probe_sees_a_niced_cpu_hog_and_a_halved_quota(docker_ready):
    """Real containers: the probe runs with the servers' budget in its own container. A CPU hog at
    nice 19 on the server's CPU (another container: a cgroup beside the server's, where nice does
    not protect it) slows the probe past the threshold and /proc/stat attributes it to another
    process; a 0.5-CPU budget makes the probe take twice as long as a 1-CPU one."""
    from serverlab.backends import DockerBackend
    from serverlab.budget import Budget, parse_cpuset
    from serverlab.interference import quietness_probe

    tag = os.environ.get("SERVERLAB_TAG") or "latest"
    one = DockerBackend(Budget(server_cpus=1.0), project="serverlab-hostspeed-one")
    half = DockerBackend(Budget(server_cpus=0.5), project="serverlab-hostspeed-half")
    hog = f"serverlab-hostspeed-hog-{tag}"
    try:
        one.prepare([], progress=lambda _: None)
        half.prepare([], progress=lambda _: None)
        reference = hostspeed.baseline(one.probe_host_speed(hostspeed.BASELINE_PROBES))
        # One-CPU and half-CPU probes taken in turns, so a neighbour that starts or stops between
        # them (CI's own processes share CPU 0) moves both sides of a pair, not one (seen: ×2.79
        # when the halved probes were all taken after the reference). CFS quotas are handed out
        # per 100 ms period, so a probe of ~170 ms of CPU at 0.5 CPU takes 3-5 periods: ×1.5-3.
        pairs = [(_median_probe(one, 1), _median_probe(half, 1)) for _ in range(3)]
        ratio = statistics.median(h / o for o, h in pairs)
        assert 1.5 <= ratio <= 3.0, f"half the CPU quota moved the probe by ×{ratio:.2f} (one/half ms: {pairs}); " \
                                    "expected about ×2"
        started = subprocess.run(["docker", "run", "-d", "--rm", "--name", hog, "--cpuset-cpus", Budget().server_cpuset,
                                  "--entrypoint", "nice", f"serverlab:{tag}", "-n", "19", "python", "-c",
                                  "while True: pass"], capture_output=True, text=True, timeout=60)
        assert started.returncode == 0, started.stderr
        time.sleep(1.0)
        seen = quietness_probe(parse_cpuset(Budget().server_cpuset), parse_cpuset(Budget().loadgen_cpuset), seconds=1.0)
        hogged = _median_probe(one)
        figures = hostspeed.cell_figures(hogged, hogged, reference)
        assert figures["flagged"] and figures["deviation"] > reference["threshold"], (figures, reference)
        assert seen["server_share"] >= 0.25 and not seen["quiet"], seen  # /proc/stat: another program on CPU 0
    finally:
        subprocess.run(["docker", "rm", "-f", hog], capture_output=True, timeout=60)
        one.close()
        half.close()
