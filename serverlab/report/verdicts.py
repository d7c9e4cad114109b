"""A plain-language verdict per workload, with the reason a person can check.

Closed and requests modes rank variants on the evidence valid for their bottleneck
class (:func:`serverlab.report.rate_verdict.rate_verdict`); open mode names the variant with
the highest :func:`sustainable_throughput`. Each verdict ends with the workload's
principle (keyed by its :class:`~serverlab.workloadspec.Character`), ratios from the measured
rows, what a proxy in front of an app server did (:func:`proxy_sentence`), Little's law
for I/O workloads and an async workload against its sync twin
(:mod:`serverlab.report.littles`).

Units: RPS, latency bounds in milliseconds (rows keep µs).
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, Sequence

from serverlab import bottleneck as _bottleneck
from serverlab.report.formatting import as_int, fmt_ms, format_rps, level_text, worker_model
from serverlab.report.littles import async_sentence, littles_sentence
from serverlab.report.rate_verdict import rate_verdict
from serverlab.report.ranking import LevelRanking, rank_level
from serverlab.report.rows import Row
from serverlab.terms import WORKLOADS, BottleneckClass, Mode, WorkerModel
from serverlab.workloadspec import Character

#: Default latency bound of open-mode "sustainable throughput" (ms); an experiment may set ``p99_bound_ms``.
DEFAULT_P99_BOUND_MS = 100.0
#: Which mode decides a workload's verdict when it was measured in several.
VERDICT_MODE_PREFERENCE = (Mode.CLOSED, Mode.REQUESTS, Mode.OPEN)
#: What bounds a workload of each character, in words (``{cpus}``: the server's CPU budget).
PRINCIPLES = {
    Character.IO: "Concurrency slots matter: an I/O wait releases the GIL, so threads and greenlets help.",
    Character.CPU: ("CPU-bound work holds the GIL: threads in one process add no throughput; extra processes "
                    "help only as far as the CPU budget allows (server_cpus={cpus})."),
    Character.OVERHEAD: ("Each request does almost no work, so per-request overhead dominates: HTTP parsing in the "
                         "server and, without keep-alive, a new TCP connection per request."),
    Character.MIXED: ("A mix of CPU and I/O work: concurrency slots (threads, greenlets) help with the I/O share, "
                      "extra processes with the CPU share, within the CPU budget (server_cpus={cpus})."),
}
#: A workload whose principle says more than its character's.
OWN_PRINCIPLES = {
    "json": ("Each request does little work (serializing a small JSON document), so per-request overhead "
             "dominates: HTTP parsing and, without keep-alive, a new TCP connection per request."),
    "io-async": ("Concurrency slots matter, and an async view adds none: under WSGI Flask runs it in an event loop "
                 "inside the worker thread that took the request, and under an ASGI server asgiref's WsgiToAsgi runs "
                 "the app, async views included, on its own threads, so threads, greenlets or the adapter's threads "
                 "bound it as they bound the sync view."),
}
_CONCURRENT_MODELS = (WorkerModel.THREADED, WorkerModel.GEVENT, WorkerModel.PROCESS_THREAD)
_NOT_THE_SERVERS = (BottleneckClass.GENERATOR_BOUND, BottleneckClass.INTERFERENCE)


def character(workload: str) -> Character | None:
    """What bounds a workload (:data:`serverlab.terms.WORKLOADS`); ``None`` for a name the lab does not define."""
    spec = WORKLOADS.get(workload)
    return spec.character if spec is not None else None


def principle(workload: str, cpus: object = "?") -> str:
    """The workload's principle in words, ``""`` for a workload without one.

    :param workload: the workload's name.
    :param cpus: the server's CPU budget, as the text shows it.
    """
    kind = character(workload)
    text = OWN_PRINCIPLES.get(workload) or (PRINCIPLES.get(kind, "") if kind is not None else "")
    return text.format(cpus=cpus)


def _best(rows: list[Row], test: Callable[[Row], bool]) -> Row | None:
    chosen = [r for r in rows if test(r) and r.rps is not None]
    return max(chosen, key=lambda r: r.rps.median) if chosen else None  # type: ignore[union-attr]


def check_facts(workload: str, rows: list[Row]) -> list[tuple[str, str]]:
    """Checkable ratios between the rows, each about the variant that did better.

    :param workload: the workload (its character decides which ratios are worth a remark).
    :param rows: the rows whose measured RPS is the server's (not generator-bound).
    :return: ``(variant, fact)`` pairs, e.g. ``("gunicorn-gthread", "threads/greenlets in one
        process vs one thread: gunicorn-gthread (4,903 RPS) did 2.16× werkzeug-single (2,267 RPS)")``.
    """
    cpus = next((r.server_cpus for r in rows if r.server_cpus is not None), "?")
    kind = character(workload)
    facts: list[tuple[str, str]] = []

    def ratio_fact(better: Row | None, base: Row | None, what: str) -> float | None:
        if better is None or base is None or better is base or not base.rps or not better.rps:
            return None
        ratio = better.rps.median / base.rps.median if base.rps.median else math.inf
        facts.append((better.variant, f"{what}: {better.variant} ({format_rps(better.rps.median)} RPS) did "
                                      f"{ratio:.2f}× {base.variant} ({format_rps(base.rps.median)} RPS)"))
        return ratio

    one_process = lambda r: as_int(r.declared.workers) <= 1  # noqa: E731
    single = _best(rows, lambda r: worker_model(r) == WorkerModel.SINGLE)
    concurrent = _best(rows, lambda r: one_process(r) and worker_model(r) in _CONCURRENT_MODELS)
    thread_ratio = ratio_fact(concurrent, single, "threads/greenlets in one process vs one thread")
    multi = _best(rows, lambda r: not one_process(r))
    best_one = _best(rows, one_process)
    process_ratio = ratio_fact(multi, best_one, "several processes vs the best single process")
    keep = _best(rows, lambda r: bool(r.declared.keep_alive))
    no_keep = _best(rows, lambda r: r.declared.keep_alive is not None and not r.declared.keep_alive)
    ratio_fact(keep, no_keep, "best with keep-alive vs best without")

    if kind == Character.IO and thread_ratio is not None and thread_ratio < 1.1 and concurrent is not None:
        facts.append((concurrent.variant, "here threads did not help much, so something else (the CPU budget, "
                                          "the load generator) bounded throughput"))
    if kind == Character.CPU and thread_ratio is not None and thread_ratio > 1.1 and concurrent is not None:
        facts.append((concurrent.variant, "threads helped more than the GIL allows for pure CPU work; check the "
                                          "CPU limit and whether the workload really is CPU-bound"))
    if kind == Character.CPU and process_ratio is not None and process_ratio < 1.1 and multi is not None:
        facts.append((multi.variant, f"extra processes did not help: with server_cpus={cpus} there is no spare "
                                     f"CPU for them"))
    return facts


def _reason(workload: str, rows: list[Row], left_out: Sequence[str] = ()) -> str:
    """A reason a person can check: the workload's principle plus facts from these rows.

    :param rows: the rows whose measured RPS is the server's (the ratios compare them).
    :param left_out: variants whose RPS is not the server's (generator-bound); the ratios
        say they are left out, so "best without keep-alive" never silently skips a faster one.
    """
    cpus = next((r.server_cpus for r in rows if r.server_cpus is not None), "?")
    facts = [fact for _, fact in check_facts(workload, rows)]
    text = principle(workload, cpus)
    if facts:
        among = (f" (Locust RPS, among the variants Locust could load fully; left out, generator-bound: "
                 f"{', '.join(left_out)})" if left_out else "")
        text = (text + " " if text else "") + f"Check{among}: " + "; ".join(facts) + "."
    return text


def proxy_pairs(rows: Iterable[Row]) -> list[tuple[Row, Row]]:
    """Pair each proxied row with the direct row that runs the same app server the same way.

    Same workload, mode and level; same ``server``, ``model``, ``workers`` and ``threads``;
    the direct one has no ``proxy`` (e.g. nginx-gunicorn with gunicorn-gthread).

    :return: ``(proxied, direct)`` pairs; rows without RPS are left out.
    """
    rows = [r for r in rows if r.rps is not None]
    same = lambda r: (r.workload, r.mode, r.level, r.declared.server, r.declared.model,  # noqa: E731
                      r.declared.workers, r.declared.threads)
    direct = {same(r): r for r in rows if not r.declared.proxy}
    return [(r, direct[same(r)]) for r in rows if r.declared.proxy and same(r) in direct]


def proxy_facts(rows: Sequence[Row]) -> list[tuple[str, str]]:
    """What the proxy did, per proxied/direct pair at the highest level both were measured.

    Server CPU per request is compared always (it is the server's cost whatever limited
    the cell); RPS and p99 only when neither row's RPS was Locust's or disturbed by
    other programs (bottleneck class ``generator-bound`` or ``interference``).

    :param rows: one workload's rows in one mode.
    :return: ``(proxied variant, fact)`` per pair, e.g. ``("nginx-gunicorn", "nginx in front of
        gunicorn (vs gunicorn-gthread, 64 users) used 1.14× the CPU per request ...")``.
    """
    top: dict[str, tuple[Row, Row]] = {}
    for proxied, direct in proxy_pairs(rows):
        if proxied.variant not in top or proxied.level > top[proxied.variant][0].level:
            top[proxied.variant] = (proxied, direct)
    out = []
    for proxied, direct in top.values():
        name = f"{proxied.declared.proxy} in front of {direct.declared.server}"
        facts = []
        if proxied.cpu_ms_per_request and direct.cpu_ms_per_request and direct.cpu_ms_per_request.median:
            cpu = proxied.cpu_ms_per_request.median / direct.cpu_ms_per_request.median
            facts.append(f"used {cpu:.2f}× the CPU per request ({proxied.cpu_ms_per_request.median:.3f} vs "
                         f"{direct.cpu_ms_per_request.median:.3f} ms, nginx included)")
        unusable = [r.variant for r in (proxied, direct) if r.bottleneck_class in _NOT_THE_SERVERS]
        if unusable:
            facts.append(f"its RPS is not comparable here (Locust or other programs limited {', '.join(unusable)})")
        elif proxied.rps and direct.rps and direct.rps.median:
            ratio = proxied.rps.median / direct.rps.median
            facts.append(f"did {ratio:.2f}× the RPS ({format_rps(proxied.rps.median)} vs {format_rps(direct.rps.median)})"
                         + (f" at p99 {fmt_ms(proxied.p99_us.median)} vs {fmt_ms(direct.p99_us.median)} ms"
                            if proxied.p99_us and direct.p99_us else "")
                         + f", so the proxy {'cost' if ratio < 1 else 'gained'} {abs(1 - ratio):.0%} of throughput")
        if facts:
            out.append((proxied.variant, f"{name} ({proxied.variant} vs {direct.variant}, "
                                         f"{level_text(proxied.mode, proxied.level)}) " + " and ".join(facts)))
    return out


def proxy_sentence(rows: Sequence[Row]) -> str:
    """:func:`proxy_facts` in words: ``"Proxy: <fact>."`` per pair, or ``""`` without pairs.

    :param rows: one workload's rows in one mode.
    """
    return " ".join(f"Proxy: {fact}." for _, fact in proxy_facts(rows))


def _verdict_rate(workload: str, mode: str, rows: list[Row]) -> str:
    """Closed/requests mode: the physics-aware verdict of :func:`serverlab.report.rate_verdict.rate_verdict`."""
    return rate_verdict(workload, mode, rows, _reason, level_text)


def sustainable_throughput(rows: Iterable[Row], p99_bound_ms: float = DEFAULT_P99_BOUND_MS) -> dict[tuple[str, str], int | None]:
    """Open mode: per (workload, variant), the highest target rate the server sustained.

    A target rate is sustained when the merged p99 is under ``p99_bound_ms``, the
    load generator did not fall behind its schedule (``open_load["fell_behind"]``
    false), and no request or repetition failed (a server answering errors
    quickly is not sustaining the rate).

    :param rows: rows of any modes; only ``open`` rows are used.
    :param p99_bound_ms: the latency bound in milliseconds.
    :return: ``{(workload, variant): target RPS or None when no rate was sustained}``.
    """
    result: dict[tuple[str, str], int | None] = {}
    for row in rows:
        if row.mode != Mode.OPEN:
            continue
        key = (row.workload, row.variant)
        result.setdefault(key, None)
        p99 = row.hdr_us.get("p99")
        fell_behind = bool(row.open_load and row.open_load.get("fell_behind"))
        if row.clean and p99 is not None and p99 / 1000.0 < p99_bound_ms and not fell_behind:
            best = result[key]
            result[key] = row.level if best is None else max(best, row.level)
    return result


def _verdict_open(workload: str, rows: list[Row], p99_bound_ms: float) -> str:
    sustained = {v: t for (w, v), t in sustainable_throughput(rows, p99_bound_ms).items() if w == workload}
    ranked = sorted(((t, v) for v, t in sustained.items() if t is not None), reverse=True)
    if not ranked:
        return (f"No winner (open mode): no variant sustained any target rate with p99 under "
                f"{p99_bound_ms:g} ms, without falling behind and without failures.")
    rate, winner = ranked[0]
    text = (f"{winner} wins (open mode): it sustained {rate} RPS with p99 under {p99_bound_ms:g} ms, "
            f"the highest target rate of any variant")
    if len(ranked) > 1:
        tied = [v for t, v in ranked[1:] if t == rate]
        if tied:
            text += f" (tied with {', '.join(tied)})"
        else:
            text += f"; the runner-up {ranked[1][1]} sustained {ranked[1][0]} RPS"
    text += " (target rates are discrete steps, so this has no confidence interval)."
    best_rows = [r for r in rows if sustained.get(r.variant) is not None and r.level == sustained[r.variant]]
    reason = _reason(workload, best_rows)
    return text + (" " + reason if reason else "")


def rankings(rows: Sequence[Row]) -> dict[str, LevelRanking]:
    """The places behind each closed- or requests-mode verdict, as data.

    :param rows: rows from :func:`aggregate`.
    :return: ``{workload: LevelRanking}`` (:class:`serverlab.report.ranking.LevelRanking`: the
        level, its places, each a group of variants that cannot be told apart, with the
        intervals and the decisive evidence each rests on) for the mode that decides the
        workload's verdict; workloads decided in open mode, or with no usable row, are left out.
    """
    out: dict[str, LevelRanking] = {}
    for workload in dict.fromkeys(r.workload for r in rows):
        wrows = [r for r in rows if r.workload == workload]
        mode = next(m for m in VERDICT_MODE_PREFERENCE if m in {r.mode for r in wrows})
        if mode != Mode.OPEN:
            ranking = rank_level([r for r in wrows if r.mode == mode], workload, mode)
            if ranking is not None:
                out[workload] = ranking
    return out


def verdicts(rows: Sequence[Row], p99_bound_ms: float = DEFAULT_P99_BOUND_MS) -> dict[str, str]:
    """A plain-language verdict per workload.

    Closed and requests modes (:func:`serverlab.report.rate_verdict.rate_verdict`): at the highest
    load level where some variant had no failed requests or repetitions, variants
    are ordered on the evidence valid for their bottleneck class — measured RPS only
    where Locust was not the limit, wrk's ceiling and CPU-cost capacity (with CIs)
    where it was; cells flagged for interference are left out. A winner is named only
    when it is ahead of every other variant; otherwise the verdict says it cannot
    tell on this machine and what would. A reason drawn from the variants'
    configuration (model, workers, threads, keep-alive) and measured ratios follows.
    When a workload ran in several modes, closed mode decides, then requests, then
    open (whose winner has the highest :func:`sustainable_throughput`).

    :param rows: rows from :func:`aggregate`.
    :param p99_bound_ms: latency bound for open mode (ms).
    :return: ``{workload: verdict}`` in row order.
    """
    by_workload: dict[str, list[Row]] = {}
    for row in rows:
        by_workload.setdefault(row.workload, []).append(row)
    out: dict[str, str] = {}
    for workload, wrows in by_workload.items():
        modes = {r.mode for r in wrows}
        mode = next(m for m in VERDICT_MODE_PREFERENCE if m in modes)
        mrows = [r for r in wrows if r.mode == mode]
        if mode == Mode.OPEN:
            disturbed = [r.variant for r in mrows if r.bottleneck_class == BottleneckClass.INTERFERENCE]
            out[workload] = _verdict_open(workload, [r for r in mrows if r.variant not in disturbed], p99_bound_ms)
            if disturbed:
                why = _bottleneck.left_out_because([r.bottleneck for r in mrows if r.variant in disturbed])
                out[workload] += (f" Left out ({why}): "
                                  f"{', '.join(dict.fromkeys(disturbed))}.")
        else:
            out[workload] = _verdict_rate(workload, mode, mrows)
        for extra in (proxy_sentence(mrows), littles_sentence(mrows), async_sentence(workload, rows)):
            if extra:
                out[workload] += " " + extra
    return out
