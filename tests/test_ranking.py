"""Ranking on intervals: every pair in different places is ordered by non-overlapping 95% CIs.

The recorded fixture is a ``calibration`` run's shape (13 variants, hello, 32 users, 3
repetitions, wrk in every repetition) with per-repetition figures from issue 16: uwsgi-http11's
three repetitions (4,225, 3,647, 5,786 RPS; CPU 0.22, 0.25, 0.17 ms/request) and wrk around the
independent 2026-12-01 figures (granian 5,737–7,172, uwsgi-http11 5,899; measuring-here.md).
It is written as a results file and read back, as ``serverlab report`` would.
"""

from __future__ import annotations

import random
from itertools import combinations
from pathlib import Path

import pytest

from report_factories import make_cell, make_header, write_results
from serverlab.report import aggregate, render_json, render_markdown, verdicts
from serverlab.report.ranking import rank, separated
from serverlab.report.verdicts import rankings
from serverlab.results import read_results
from serverlab.stats import median_ci

#: variant -> (Locust RPS ×3, wrk RPS ×3, server CPU ms/request ×3, server busy, Locust busiest-process share)
CALIBRATION = {
    "uwsgi-http11": ((4_225, 3_647, 5_786), (5_899, 5_310, 6_240), (0.22, 0.25, 0.17), 0.93, 0.80),
    "granian": ((4_400, 4_700, 4_550), (7_172, 5_737, 6_400), (0.20, 0.22, 0.19), 0.88, 0.95),
    "uwsgi-threads": ((3_900, 4_000, 4_100), (4_241, 4_600, 4_400), (0.160, 0.170, 0.165), 0.60, 0.99),
    "nginx-uwsgi": ((4_100, 4_000, 4_200), (4_189, 4_300, 4_050), (0.230, 0.240, 0.235), 0.96, 0.80),
    "uwsgi-processes": ((3_800, 3_900, 3_850), (4_067, 4_200, 3_950), (0.160, 0.170, 0.165), 0.60, 0.99),
    "waitress": ((3_300, 3_400, 3_350), (3_429, 3_500, 3_380), (0.290, 0.300, 0.295), 0.97, 0.70),
    "uwsgi-gevent": ((2_700, 2_750, 2_800), (2_799, 2_850, 2_750), (0.340, 0.350, 0.345), 0.96, 0.60),
    "gunicorn-gthread": ((2_600, 2_650, 2_700), (2_675, 2_700, 2_640), (0.370, 0.380, 0.375), 0.98, 0.60),
    "gunicorn-gevent": ((2_580, 2_620, 2_600), (2_654, 2_690, 2_620), (0.375, 0.385, 0.380), 0.98, 0.60),
    "nginx-gunicorn": ((2_450, 2_500, 2_480), (2_546, 2_580, 2_510), (0.390, 0.400, 0.395), 0.98, 0.60),
    "gunicorn-sync": ((2_000, 2_030, 2_010), (2_063, 2_090, 2_040), (0.470, 0.480, 0.475), 0.95, 0.65),
    "werkzeug-single": ((1_900, 1_950, 1_920), (2_078, 2_100, 2_050), (0.450, 0.460, 0.455), 0.90, 0.70),
    "werkzeug-threaded": ((1_600, 1_620, 1_610), (1_665, 1_690, 1_640), (0.600, 0.610, 0.605), 0.97, 0.60),
}


def calibration_cells(table=CALIBRATION, *, per_repetition_wrk=True, workload="hello"):
    """Cells as the runner records them: one per repetition, each with its own wrk run (or, like
    results from before wrk ran in every repetition, the variant's one wrk figure copied into each)."""
    cells = []
    for variant, (locust, wrk, cpu_ms, busy, share) in table.items():
        for rep in (1, 2, 3):
            rps = float(locust[rep - 1])
            wrk_rps = float(wrk[rep - 1] if per_repetition_wrk else wrk[0])
            calibration = {"wrk_rps": wrk_rps, "locust_rps": rps, "ratio": rps / wrk_rps, "connections": 32,
                           "duration_s": 5.0, **({"repetition": rep} if per_repetition_wrk else {})}
            cells.append(make_cell(variant, workload, "closed", 32, rep, rps=rps, median_us=32e6 / rps, samples=200,
                                   duration_s=5.0, requests=int(rps * 5), server_cpu_s=busy * 5.0,
                                   cpu_ms_per_request=cpu_ms[rep - 1], loadgen_cpu_s=share * 5.0, loadgen_cpu_budget=1.0,
                                   loadgen_busiest_share=share, loadgen_saturated=share >= 0.9,
                                   calibration=calibration))
    return cells


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """The calibration fixture as a results file read back: (header, rows)."""
    header = make_header("calibration", servers=list(CALIBRATION), workloads=["hello"])
    path = write_results(tmp_path_factory.mktemp("recorded") / "results.jsonl", header, calibration_cells())
    header, cells = read_results(path)
    return header, aggregate(header, cells)


def assert_ordered_pairs_do_not_overlap(ranking):
    """Every pair in different places: decided for the earlier one, on cited evidence whose intervals do not overlap."""
    for i, earlier in enumerate(ranking.places):
        for later in ranking.places[i + 1:]:
            for a in earlier.rows:
                for b in later.rows:
                    decision = ranking.decisions[(a.variant, b.variant)]
                    assert decision.sign == 1 and decision.decisive, (a.variant, b.variant)
                    for evidence in decision.decisive:
                        assert evidence.a.has_ci and evidence.b.has_ci
                        assert evidence.a.low > evidence.b.high, (a.variant, b.variant, evidence.text)


def test_every_pair_the_calibration_verdict_orders_has_non_overlapping_intervals(recorded):
    header, rows = recorded
    ranking = rankings(rows)["hello"]
    assert_ordered_pairs_do_not_overlap(ranking)
    places = [set(p.variants) for p in ranking.places]
    # granian and uwsgi-http11 (the "granian wins" on one wrk sample): their intervals overlap
    place_of = {v: n for n, group in enumerate(places) for v in group}
    assert place_of["granian"] == place_of["uwsgi-http11"] == 0
    assert ranking.winner is None
    # the slow end is told apart: werkzeug-threaded is last and alone
    assert places[-1] == {"werkzeug-threaded"}
    assert len(places) >= 4
    verdict = verdicts(rows)["hello"]
    assert "granian wins" not in verdict and "uwsgi-http11 wins" not in verdict
    assert "cannot tell on this machine which of" in verdict and "their intervals overlap" in verdict
    assert "wrk 6,400 [5,737–7,172] vs" in verdict or "wrk 6,400 [" in verdict
    assert "Order on the evidence" in verdict and "non-overlapping 95% CIs" in verdict


def test_pairs_sharing_a_place_are_undecided_or_joined_through_an_undecided_neighbour(recorded):
    _, rows = recorded
    ranking = rankings(rows)["hello"]
    for place in ranking.places:
        if len(place.rows) < 2:
            continue
        undecided = {frozenset((a.variant, b.variant)) for a, b in combinations(place.rows, 2)
                     if ranking.decisions[(a.variant, b.variant)].sign == 0}
        assert undecided, place.variants  # a shared place always has some pair that cannot be told apart
        linked = {place.rows[0].variant}
        for _ in place.rows:
            linked |= {v for pair in undecided if linked & pair for v in pair}
        assert linked == set(place.variants)  # connected through undecided pairs (or a cycle)


def test_the_places_are_data_for_the_report(recorded):
    header, rows = recorded
    data = rankings(rows)["hello"].to_dict()
    assert data["workload"] == "hello" and data["level"] == 32 and data["winner"] is None
    first = data["places"][0]
    assert {"granian", "uwsgi-http11"} <= set(first["variants"]) and first["place"] == 1
    assert set(first["intervals"]["granian"]) == {"measured RPS", "wrk", "CPU cost"}
    assert first["intervals"]["granian"]["wrk"]["n"] == 3 and "granian" in first["floors"]
    for pair in first["ahead_of_next"]:
        assert pair["evidence"] and all(e["low"] > e["over_high"] for e in pair["evidence"])
    assert '"rankings"' in render_json(header, rows)


def test_a_winner_is_named_only_when_its_interval_clears_the_runner_up():
    table = {k: CALIBRATION[k] for k in ("nginx-uwsgi", "waitress", "gunicorn-gthread")}
    rows = aggregate(make_header(), calibration_cells(table))
    verdict = verdicts(rows)["hello"]
    assert verdict.startswith("nginx-uwsgi wins (closed mode, 32 users) on ")
    assert "its interval clears the runner-up waitress's (95% CIs, no overlap)" in verdict
    assert_ordered_pairs_do_not_overlap(rankings(rows)["hello"])


def test_old_results_with_one_wrk_run_per_variant_never_decide_on_wrk(tmp_path):
    """Schema-3 files copied one calibration into every cell: one sample, no interval, no decision."""
    table = {k: CALIBRATION[k] for k in ("granian", "uwsgi-http11")}
    header = make_header("calibration", servers=list(table), workloads=["hello"])
    path = write_results(tmp_path / "results.jsonl", header, calibration_cells(table, per_repetition_wrk=False))
    header, cells = read_results(path)
    rows = aggregate(header, cells)
    assert all(r.wrk_rps.n == 1 and not r.wrk_rps.has_ci for r in rows)
    ranking = rankings(rows)["hello"]
    assert not any(e.sign for d in ranking.decisions.values() for e in d.evidence if e.source == "wrk")
    verdict = verdicts(rows)["hello"]
    assert "granian wins" not in verdict and "(1 run: no interval)" in verdict
    assert "an interval for wrk" in verdict
    assert "Calibration against wrk" in render_markdown(header, rows)


def test_the_invariant_holds_on_random_tables():
    """Any figures at all: places never order a pair without non-overlapping intervals on the evidence cited."""
    rng = random.Random(16)
    names = list(CALIBRATION)
    for _ in range(60):
        table = {}
        for name in rng.sample(names, rng.randint(2, 8)):
            centre = rng.uniform(1_000, 8_000)
            noise = rng.uniform(0.0, 0.3)
            figures = [tuple(round(centre * rng.uniform(1 - noise, 1 + noise)) for _ in range(3)) for _ in range(2)]
            cpu = tuple(round(1000 / (centre * rng.uniform(0.8, 1.2)), 4) for _ in range(3))
            table[name] = (*figures, cpu, rng.choice((0.6, 0.95)), rng.choice((0.6, 0.99)))
        rows = aggregate(make_header(), calibration_cells(table))
        ranking = rank(rows, "hello", "closed", 32)
        assert_ordered_pairs_do_not_overlap(ranking)
        assert sorted(v for p in ranking.places for v in p.variants) == sorted(table)
        if ranking.winner is not None and len(ranking.places) > 1:
            assert verdicts(rows)["hello"].startswith(f"{ranking.winner.variant} wins")


def test_separated_needs_two_intervals_that_do_not_touch():
    low, high, single = median_ci([1, 2, 3]), median_ci([5, 6, 7]), median_ci([10])
    assert separated(high, low) == 1 and separated(low, high) == -1
    assert separated(single, low) == 0  # one repetition: no interval, no decision
    assert separated(median_ci([1, 2, 3]), median_ci([3, 4, 5])) == 0  # touching intervals overlap


#: A real run (docker backend, 2026-12-01, on a busy shared machine: most cells flagged for
#: interference) of 5 variants on hello at 32 users: wrk in every repetition, adaptive repetitions
#: to ±5% with at most 5. Its figures are not to be quoted; its shape is what the runner writes.
RECORDED = Path(__file__).parent / "data" / "calibration-subset-20261201.jsonl"


def test_a_recorded_run_with_wrk_in_every_repetition_renders_and_keeps_the_invariant():
    from serverlab.findings import RepetitionsLeftOut

    header, cells = read_results(RECORDED)
    rows = aggregate(header, cells)
    assert len(rows) == 5 and all(r.repetitions == 5 for r in rows)
    left_out = {r.variant: next((f.finding for f in r.findings if isinstance(f.finding, RepetitionsLeftOut)), None)
                for r in rows}
    for row in rows:  # wrk ran after each undisturbed repetition's Locust window, with the server's CPU per request
        kept = left_out[row.variant].kept if left_out[row.variant] else 5
        assert row.wrk_rps.n == kept and row.wrk_rps.has_ci and row.wrk_cpu_ms_per_request.n == kept
    # rows with two or more undisturbed repetitions are built from them; the others stay out of the verdict
    assert {v for v, f in left_out.items() if f} == {"granian", "uwsgi-http11", "gunicorn-gevent"}
    md = render_markdown(header, rows)
    assert "(at the maximum of 5 repetitions)" in md and "| CPU ms/req Locust / wrk |" in md
    assert "2 disturbed repetition(s) left out, 3 kept" in md
    ranking = rankings(rows)["hello"]
    assert set(ranking.to_dict()["left_out"]) == {"gunicorn-gthread", "werkzeug-threaded"}  # every repetition disturbed
    ranked = {v for p in ranking.places for v in p.variants}
    assert ranked == {"granian", "uwsgi-http11", "gunicorn-gevent"}
    by_name = {r.variant: r for r in rows}
    for better, worse in zip(ranking.places, ranking.places[1:]):  # each place clears the next on the evidence cited
        assert all(separated(by_name[a].wrk_rps, by_name[b].wrk_rps) == 1
                   or separated(by_name[a].rps, by_name[b].rps) == 1
                   or separated(by_name[a].cost_capacity_rps, by_name[b].cost_capacity_rps) == 1
                   for a in better.variants for b in worse.variants)
