"""Adaptive repetitions and wrk in every repetition, through the real Runner and the fake backend.

The fake backend's "Locust" and wrk throughputs are scripted per run, so one variant's
repetitions agree (its CI is narrow at once) while another's disagree (its CI stays wide):
the runner must add repetitions only to the wide one, stop at the maximum, and the report
must say which cells reached the target.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest

from fakebackend import FakeBackend, FakeCpuWatch
from serverlab.adaptive import TARGET_CI_RANGE, estimate_text, row_width, target_statuses
from serverlab.experiment import ExperimentError, load_experiment
from serverlab.report import aggregate, render_json, render_markdown
from serverlab.results import read_results
from serverlab.runner import Runner

ADAPTIVE = ('servers = ["gunicorn-sync", "uwsgi-processes"]\nworkloads = ["hello"]\nusers = [4]\nduration = 2\n'
            'warmup = 0\nseed = 11\nrepetitions = 3\ntarget_ci = 0.05\nmax_repetitions = 5\n')


@pytest.fixture(autouse=True)
def _distinct_run_ids(monkeypatch):
    counter = itertools.count(1)
    monkeypatch.setattr("serverlab.runner.new_run_id", lambda experiment: f"20261201-0000{next(counter):02d}-{experiment.name}")


def _experiment(tmp_path: Path, text: str):
    path = tmp_path / "adaptive.toml"
    path.write_text(text)
    return load_experiment(str(path))


def _run(tmp_path: Path, experiment, backend: FakeBackend, lines: list[str] | None = None):
    runner = Runner(experiment, backend, tmp_path / "reports", write=(lines.append if lines is not None else lambda _: None),
                    cpu_watch=FakeCpuWatch(), retry_pause_s=0.0)
    run_dir = runner.run()
    return run_dir, *read_results(run_dir / "results.jsonl")


def test_wide_cells_get_more_repetitions_up_to_the_maximum_and_the_report_says_so(tmp_path):
    backend = FakeBackend(rates={"uwsgi-processes": [500, 800, 300, 650, 420, 900]})  # disagreeing repetitions
    lines: list[str] = []
    run_dir, header, cells = _run(tmp_path, _experiment(tmp_path, ADAPTIVE), backend, lines)
    reps = {v: sorted(c.repetition for c in cells if c.variant == v) for v in ("gunicorn-sync", "uwsgi-processes")}
    assert reps == {"gunicorn-sync": [1, 2, 3], "uwsgi-processes": [1, 2, 3, 4, 5]}  # stopped at max_repetitions
    # the added repetitions come after the first pass, one round at a time
    added = sorted((c for c in cells if c.repetition > 3), key=lambda c: c.order)
    assert [c.order for c in added] == [6, 7] and all(c.status == "ok" for c in cells)
    assert any(line.startswith("adaptive repetitions: 1 more cell(s)") for line in lines)
    rows = aggregate(header, cells)
    statuses = {s.variant: s for s in target_statuses(rows, header.experiment)}
    assert statuses["gunicorn-sync"].reached and statuses["gunicorn-sync"].width == 0.0
    wide = statuses["uwsgi-processes"]
    assert not wide.reached and wide.repetitions == 5 and wide.why == "at the maximum of 5 repetitions"
    assert wide.width == pytest.approx(row_width(next(r for r in rows if r.variant == "uwsgi-processes")))
    assert wide.width > 0.05
    md = render_markdown(header, rows)
    assert "Adaptive repetitions (target: every 95% CI the verdict rests on within ±5% of its median, at most 5 " \
           "repetitions): 1 of 2 cells reached it (gunicorn-sync (4 users): ±0.0% after 3)" in md
    assert "not reached: uwsgi-processes (4 users): ±" in md and "after 5 (at the maximum of 5 repetitions)" in md
    assert '"target_ci": 0.05' in render_json(header, rows)


def test_cells_that_reach_the_target_stop_early(tmp_path):
    """The wide cell's later repetitions agree with its median: its CI narrows below ±5% before the maximum."""
    rates = [500, 560, 440] + [500] * 10
    backend = FakeBackend(rates={"uwsgi-processes": rates})
    _, header, cells = _run(tmp_path, _experiment(tmp_path, ADAPTIVE.replace("max_repetitions = 5", "max_repetitions = 12")),
                            backend)
    count = sum(1 for c in cells if c.variant == "uwsgi-processes")
    assert 3 < count < 12
    status = {s.variant: s for s in target_statuses(aggregate(header, cells), header.experiment)}["uwsgi-processes"]
    assert status.reached and status.width <= 0.05 and status.why == "reached"


def test_the_time_budget_stops_the_rounds_and_the_report_says_why(tmp_path):
    experiment = _experiment(tmp_path, ADAPTIVE + "time_budget = 10\n")  # less than the teardown margin: no room
    _, header, cells = _run(tmp_path, experiment, FakeBackend(rates={"uwsgi-processes": [500, 800, 300]}))
    assert len(cells) == 6
    status = {s.variant: s for s in target_statuses(aggregate(header, cells), header.experiment)}["uwsgi-processes"]
    assert not status.reached and status.why == "the time budget ran out"


def test_wrk_runs_in_every_repetition_after_the_hello_cell_and_gets_an_interval(tmp_path):
    text = ('servers = ["gunicorn-sync", "uwsgi-processes"]\nworkloads = ["hello", "io"]\nusers = [32]\nduration = 3\n'
            'warmup = 0\nseed = 5\nrepetitions = 3\ncalibrate = true\n[params.io]\nms = 1\n')
    backend = FakeBackend(wrk_rates={"gunicorn-sync": [900, 1000, 1100], "uwsgi-processes": [2000, 2100, 1900]})
    _, header, cells = _run(tmp_path, _experiment(tmp_path, text), backend)
    hello = [c for c in cells if c.workload == "hello"]
    assert len(backend.wrk_runs) == 6 and {v for v, _ in backend.wrk_runs} == {"gunicorn-sync", "uwsgi-processes"}
    # wrk is part of each repetition's hello cell (its Locust half), in the shuffled order; io cells carry none
    assert sorted((c.variant, c.calibration.repetition) for c in hello) == [
        ("gunicorn-sync", 1), ("gunicorn-sync", 2), ("gunicorn-sync", 3),
        ("uwsgi-processes", 1), ("uwsgi-processes", 2), ("uwsgi-processes", 3)]
    assert all(c.calibration is None for c in cells if c.workload == "io")
    assert all(c.calibration.locust_rps == c.rps and c.calibration.wrk_cpu_ms_per_request is not None for c in hello)
    assert sum(1 for _, args in backend.locust_runs) == len(cells)  # no separate Locust calibration run
    rows = {(r.variant, r.workload): r for r in aggregate(header, cells)}
    wrk = rows[("gunicorn-sync", "hello")].wrk_rps
    assert wrk.n == 3 and wrk.median == 1000 and wrk.has_ci and wrk.low >= 900 and wrk.high <= 1100
    assert rows[("uwsgi-processes", "hello")].wrk_rps.median == 2000
    assert rows[("gunicorn-sync", "io")].wrk_rps is None
    md = render_markdown(header, list(rows.values()))
    assert "wrk RPS [95% CI]" in md and "1,000 [" in md


@pytest.mark.parametrize(("changes", "key", "expected"), [
    ("target_ci = 0\nmax_repetitions = 5\n", "target_ci", f"in {TARGET_CI_RANGE[0]:g}..{TARGET_CI_RANGE[1]:g}"),
    ("target_ci = 1.5\nmax_repetitions = 5\n", "target_ci", "(0.05 = within ±5% of the median)"),
    ("target_ci = 0.05\n", "target_ci", "a companion max_repetitions, an integer in 3..100"),
    ("target_ci = 0.05\nmax_repetitions = 2\n", "max_repetitions", "an integer in 3..100"),
    ("target_ci = 0.05\nmax_repetitions = 101\n", "max_repetitions", "an integer in 3..100"),
    ("max_repetitions = 5\n", "max_repetitions", "nothing unless target_ci is set too"),
    ("target_ci = 0.05\nmax_repetitions = 5\ntime_budget = 5\n", "time_budget", "seconds in 10..86400"),
])
def test_bad_adaptive_settings_name_the_value_and_the_valid_range(tmp_path, changes, key, expected):
    text = ADAPTIVE.replace("target_ci = 0.05\nmax_repetitions = 5\n", "") + changes
    with pytest.raises(ExperimentError) as info:
        _experiment(tmp_path, text)
    assert f"key {key!r}" in str(info.value) and expected in str(info.value), str(info.value)


def test_target_ci_needs_three_first_pass_repetitions(tmp_path):
    with pytest.raises(ExperimentError, match=r"key 'repetitions' = 2 is invalid; expected at least 3 with target_ci"):
        _experiment(tmp_path, ADAPTIVE.replace("repetitions = 3", "repetitions = 2"))


def test_default_uses_adaptive_repetitions_within_twenty_minutes():
    default = load_experiment("default")
    assert default.target_ci == 0.05 and default.max_repetitions > default.repetitions >= 3
    assert default.time_budget is not None and default.time_budget <= 1200
    assert default.estimated_seconds() <= default.time_budget  # the first pass fits, the rounds use what is left
    text = estimate_text(default)
    assert "(first pass), at most 20.0 min (time budget)" in text, text


def test_an_experiment_without_a_target_keeps_its_record_and_digest_keys():
    quick = load_experiment("quick")
    assert quick.target_ci is None and "target_ci" not in quick.record() and math.isfinite(quick.estimated_seconds())
    assert estimate_text(quick) == f"{quick.estimated_seconds() / 60:.1f} min"
