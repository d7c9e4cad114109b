"""Little's law in every report (issue 20): each I/O row beside min(users, slots) / wait, and the
async workload's verdict against its sync twin. Rows are built from real HDR histograms
(tests/report_factories.py); the figures are made up, the arithmetic is the report's."""

from __future__ import annotations

import json
from dataclasses import replace

from report_factories import make_cell, make_header, write_results

from serverlab.records import BottleneckSummary
from serverlab.terms import BottleneckClass
from serverlab.report import aggregate, verdicts, write_report
from serverlab.report.littles import LITTLE_TOLERANCE, async_sentence, littles_law, littles_sentence, littles_table

ASGI = {"server": "uvicorn", "model": "asgi", "workers": 1, "threads": 1, "keep_alive": True, "slots": 1}


def cells(workload: str, figures: dict[tuple[str, int], float], ms: int = 50) -> list:
    """Three repetitions per (variant, users), RPS near the given figure (the wait ``ms`` is the header's:
    :func:`header`)."""
    out = []
    for (variant, users), rps in figures.items():
        for repetition in (1, 2, 3):
            cell = make_cell(variant, workload, level=users, repetition=repetition, rps=rps * (1 + 0.01 * repetition),
                             median_us=max(ms, 1) * 1000.0, samples=300)
            out.append(cell)
    return out


def header(ms: int = 50, **experiment):
    """A run header whose io workloads wait ``ms`` and whose uvicorn-wsgi is the ASGI variant."""
    return make_header(params={"io": {"ms": ms}, "io-async": {"ms": ms}}, configs={"uvicorn-wsgi": ASGI}, **experiment)


def rows_of(*groups: list, ms: int = 50) -> list:
    return aggregate(header(ms), [cell for group in groups for cell in group])


def test_prediction_is_min_users_slots_over_the_wait():
    rows = rows_of(cells("io", {("gunicorn-gthread", 32): 158.0, ("gunicorn-gthread", 4): 79.0,
                                ("uvicorn-wsgi", 128): 19.6, ("gunicorn-gevent", 128): 1500.0}))
    laws = {(law.row.variant, law.row.level): law for law in map(littles_law, rows)}
    assert laws[("gunicorn-gthread", 32)].predicted_rps == 8 / 0.05 == 160.0  # 8 threads
    assert laws[("gunicorn-gthread", 4)].predicted_rps == 4 / 0.05  # fewer users than slots
    assert laws[("uvicorn-wsgi", 128)].predicted_rps == 20.0 and laws[("uvicorn-wsgi", 128)].slots == 1
    assert laws[("gunicorn-gevent", 128)].predicted_rps == 128 / 0.05  # 1000 greenlets: the users bound it
    assert laws[("gunicorn-gthread", 32)].within and laws[("uvicorn-wsgi", 128)].within
    gevent = laws[("gunicorn-gevent", 128)]
    assert not gevent.within and gevent.ratio < 1 - LITTLE_TOLERANCE
    assert laws[("gunicorn-gthread", 32)].bound == "slots"
    assert laws[("gunicorn-gthread", 4)].bound.startswith("users")


def test_what_bounded_a_row_off_the_prediction_comes_from_its_bottleneck():
    [row] = rows_of(cells("io", {("gunicorn-gevent", 128): 1500.0}))
    assert littles_law(replace(row, bottleneck=BottleneckSummary(BottleneckClass("server-bound"), ()))).bound == "the CPU budget"
    assert littles_law(replace(row, bottleneck=BottleneckSummary(BottleneckClass("generator-bound"), ()))).bound == "the load generator"
    assert "queueing" in littles_law(replace(row, bottleneck=BottleneckSummary(BottleneckClass("below-saturation"), ()))).bound
    [fast] = rows_of(cells("io", {("gunicorn-gthread", 32): 400.0}))
    assert littles_law(fast).bound == "more requests in service than its slots"


def test_it_applies_only_to_io_rows_with_a_wait_and_bounded_slots():
    hello = rows_of([make_cell("gunicorn-gthread", "hello", level=8, repetition=r) for r in (1, 2, 3)])
    assert littles_law(hello[0]) is None and littles_table(hello) is None and littles_sentence(hello) == ""
    [zero] = rows_of(cells("io", {("gunicorn-gthread", 8): 1000.0}, ms=0), ms=0)
    assert littles_law(zero) is None  # no wait: nothing to predict
    [unbounded] = rows_of(cells("io", {("werkzeug-threaded", 8): 150.0}))
    assert littles_law(unbounded) is None  # one thread per connection, unbounded
    [row] = rows_of(cells("io", {("gunicorn-gthread", 32): 158.0}))
    assert littles_law(replace(row, mode="open")) is None


def test_table_and_sentence_name_each_row():
    rows = rows_of(cells("io", {("gunicorn-gthread", 32): 158.0, ("gunicorn-gevent", 128): 1500.0}))
    table = littles_table(rows)
    assert table.headers[:5] == ["variant", "users", "slots", "wait (ms)", "Little's law RPS"]
    assert [line[:5] for line in table.rows] == [["gunicorn-gevent", "128", "1000", "50", "2,560"],
                                                 ["gunicorn-gthread", "32", "8", "50", "160"]]
    assert table.failed_rows == {0}
    sentence = littles_sentence(rows)
    assert sentence.startswith("Little's law (RPS = min(users, slots) / 50 ms wait): 1 of 2 rows within 10%")
    assert "gunicorn-gevent at 128 users did 1,530 vs 2,560 predicted (1000 slots; 0.60×" in sentence
    good = rows_of(cells("io", {("gunicorn-gthread", 32): 158.0}))
    assert littles_sentence(good).endswith("all 1 rows within 10%, so the slots explain every figure.")


def test_async_verdict_compares_each_variant_with_its_sync_twin():
    figures = {("gunicorn-gthread", 32): 158.0, ("gunicorn-gthread", 128): 157.0, ("uvicorn-wsgi", 128): 19.6}
    rows = rows_of(cells("io", figures), cells("io-async", figures))
    sentence = async_sentence("io-async", rows)
    assert sentence.startswith("Async vs sync (io-async vs io, the same wait awaited instead of slept): "
                               "gunicorn-gthread at 128 users 1.00× (160 vs 160 RPS; slots: 8); "
                               "uvicorn-wsgi at 128 users 1.00× (20.0 vs 20.0 RPS; slots: 1).")
    assert "Under ASGI (uvicorn-wsgi) the slots are the adapter's thread pool" in sentence
    assert "did what the sync view did on every variant, within 10%" in sentence
    assert "Flask's documentation, \"Using async and await\"" in sentence
    assert async_sentence("io", rows) == "" and async_sentence("cpu-async", rows) == ""
    # measured otherwise: the verdict says so
    faster = rows_of(cells("io", figures), cells("io-async", {**figures, ("gunicorn-gthread", 128): 600.0}))
    differ = async_sentence("io-async", faster)
    assert "They differ by more than 10% on gunicorn-gthread" in differ and "3.82×" in differ
    verdict = verdicts(rows)["io-async"]
    assert "Async vs sync" in verdict and "Little's law" in verdict
    assert "Async vs sync" not in verdicts(rows)["io"] and "Little's law" in verdicts(rows)["io"]


def test_every_format_shows_the_littles_law_table(tmp_path):
    figures = {("gunicorn-gthread", 32): 158.0, ("uvicorn-wsgi", 32): 19.6}
    results = write_results(tmp_path / "results.jsonl", header(workloads=["io", "io-async"]),
                            cells("io", figures) + cells("io-async", figures))
    paths = write_report([results], tmp_path / "report")
    summary = paths["markdown"].read_text()
    assert summary.count("Little's law: throughput = requests in service / wait") == 2  # io and io-async
    assert "## Workload io-async: closed mode" in summary
    assert "law: throughput = requests in service / wait" in paths["html"].read_text()
    assert "Little's law (RPS = min(users, slots) / 50 ms wait)" in json.dumps(json.loads(paths["json"].read_text()))


def test_rows_with_failed_requests_are_not_explained_by_the_slots():
    """Flask async views under gunicorn's gevent worker answer 500 when requests overlap: fast errors
    inflate the RPS, so neither Little's law nor the async-vs-sync ratio may read them as answers."""
    figures = {("gunicorn-gthread", 32): 158.0, ("gunicorn-gevent", 32): 640.0}
    broken = [replace(cell, failures=cell.requests // 2) if cell.variant == "gunicorn-gevent" else cell
              for cell in cells("io-async", {**figures, ("gunicorn-gevent", 32): 1800.0})]
    rows = rows_of(cells("io", figures), broken)
    [gevent] = [r for r in rows if r.workload == "io-async" and r.variant == "gunicorn-gevent"]
    law = littles_law(gevent)
    assert not law.within and law.bound.startswith("nothing: 50% of its requests failed")
    sentence = async_sentence("io-async", rows)
    assert "gunicorn-gthread at 32 users 1.00×" in sentence
    assert "Not comparable, requests failed (errors, not answers; see the warnings): gunicorn-gevent (50% of its " \
           "io-async requests failed at 32 users)." in sentence
    assert "on every variant whose requests were all answered, within 10%" in sentence
    only = rows_of(cells("io", {("gunicorn-gevent", 32): 640.0}),
                   [c for c in broken if c.variant == "gunicorn-gevent"])
    assert async_sentence("io-async", only).startswith("Async vs sync (io-async vs io): not comparable on any variant")
