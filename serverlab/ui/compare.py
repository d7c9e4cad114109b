"""The Compare tab's runner: the same load against several servers in turn.

Order shuffled (seeded, recorded), warm-up discarded, each server measured from the HDR
recorders of every Locust process merged (:mod:`serverlab.ui.collect`). The web layer
(:mod:`serverlab.ui.web`) talks to it through :meth:`CompareRunner.start`, ``stop``,
``running``, ``status`` and ``results_files`` only, so this module can be replaced by one
that measures through ``make report``'s own path.

Units: latency in µs, durations in seconds, rates in RPS.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import gevent

from serverlab.ui.collect import Collector
from serverlab.ui.limits import CompareRequest, UIRefused
from serverlab.terms import WORKLOADS

UNKNOWN_IN_UI = "unknown (make report measures it)"
#: Locust runner states in which a test is underway (Locust's STATE_* values).
BUSY_STATES = ("spawning", "running", "stopping", "cleanup")


@dataclass
class CompareRow:
    """One server's figures in a comparison (µs, seconds, RPS)."""

    server: str
    position: int
    status: str = "waiting"
    requests: int = 0
    failures: int = 0
    duration_s: float = 0.0
    rps: float = 0.0
    latency_us: dict[str, float] = field(default_factory=dict)
    hdr: str | None = None
    started_at: float | None = None
    processes: int = 0
    generator_share: float | None = None
    error: str | None = None

    def bottleneck(self) -> str:
        """What the UI can tell: ``generator-bound`` when a Locust process used ≥ 90% of a core, else unknown."""
        from serverlab.bottleneck import GENERATOR_BOUND_UTILIZATION

        if self.generator_share is None:
            return UNKNOWN_IN_UI
        if self.generator_share >= GENERATOR_BOUND_UTILIZATION:
            return f"generator-bound (Locust at {self.generator_share:.0%} of a core): the RPS is a floor"
        return f"unknown: Locust at {self.generator_share:.0%} of a core, server CPU not visible here"

    def public(self) -> dict[str, Any]:
        """The row as the Compare tab shows it (no histogram)."""
        return {
            "server": self.server, "position": self.position, "status": self.status,
            "requests": self.requests, "failures": self.failures, "duration_s": round(self.duration_s, 3),
            "rps": round(self.rps, 1), "p50_us": self.latency_us.get("p50"), "p99_us": self.latency_us.get("p99"),
            "p99.9_us": self.latency_us.get("p99.9"), "processes": self.processes, "error": self.error,
            "cpu_ms_per_request": UNKNOWN_IN_UI, "bottleneck": self.bottleneck(),
            "generator_share": None if self.generator_share is None else round(self.generator_share, 3),
        }


@dataclass
class Comparison:
    """A comparison's parameters and its rows, in the (shuffled) order they run."""

    compare_id: str
    workload: str
    users: int
    seconds: float
    warmup_s: float
    seed: int
    started_at: float
    rows: list[CompareRow]
    state: str = "running"
    current: str | None = None
    message: str = ""
    finished_at: float | None = None


class CompareRunner:
    """Runs comparisons on one Locust master (or local runner).

    :param environment: Locust's environment.
    :param collector: gathers every process's recorder.
    :param workload_classes: workload name -> its User class.
    :param variants: server name -> its ``labapp.variants.Variant``.
    :param target_url: server name -> URL.
    """

    def __init__(self, environment: Any, collector: Collector, workload_classes: dict[str, type],
                 variants: dict[str, Any], target_url: Callable[[str], str]) -> None:
        self.environment = environment
        self.collector = collector
        self.workload_classes = workload_classes
        self.variants = variants
        self.target_url = target_url
        self.comparison: Comparison | None = None
        self._greenlet: gevent.Greenlet | None = None

    def running(self) -> bool:
        """Whether a comparison is underway."""
        return self.comparison is not None and self.comparison.state == "running"

    def start(self, req: CompareRequest) -> Comparison:
        """Start a checked comparison in the background; return it (rows fill in as servers finish).

        :raises UIRefused: (409) when a comparison or a load test is running, or no worker is connected.
        """
        if self.running():
            raise UIRefused("a comparison is already running: stop it first", status=409)
        runner = self.environment.runner
        if runner.state in BUSY_STATES:
            raise UIRefused(f"a load test is {runner.state}: stop it first", status=409)
        if self.collector.is_master() and runner.worker_count < 1:
            raise UIRefused("no Locust worker is connected yet", status=409)
        seed = random.SystemRandom().randrange(1, 2**31) if req.seed is None else req.seed
        order = list(req.servers)
        random.Random(seed).shuffle(order)
        comparison = Comparison(
            compare_id=time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-ui-compare",
            workload=req.workload, users=req.users, seconds=req.seconds, warmup_s=req.warmup_s, seed=seed,
            started_at=time.time(), rows=[CompareRow(s, i) for i, s in enumerate(order)],
        )
        self.comparison = comparison
        self._greenlet = gevent.spawn(self._run, comparison)
        return comparison

    def stop(self) -> None:
        """Stop a running comparison: measured rows are kept, the others say they were not run."""
        if self._greenlet is not None:
            self._greenlet.kill(block=True)
            self._greenlet = None
        c = self.comparison
        if c is not None and c.state == "running":
            c.state, c.message = "stopped", "stopped by the user"
        if c is not None:
            for row in c.rows:
                if row.status == "running":
                    row.status, row.error = "stopped", "stopped by the user before its window ended"
                elif row.status == "waiting":
                    row.status = "not run"
        self._stop_runner()

    def _stop_runner(self, timeout_s: float = 15.0) -> None:
        runner = self.environment.runner
        if runner.state not in ("stopped", "ready"):
            runner.stop()
        deadline = time.time() + timeout_s
        while runner.state not in ("stopped", "ready") and time.time() < deadline:
            gevent.sleep(0.2)

    def _run(self, comparison: Comparison) -> None:
        env = self.environment
        saved_host, saved_classes = env.host, list(env.user_classes)
        try:
            env.user_classes = [self.workload_classes[comparison.workload]]
            for row in comparison.rows:
                comparison.current = row.server
                row.status = "running"
                try:
                    self._measure(comparison, row)
                    row.status = "ok" if row.requests else "failed"
                    if not row.requests:
                        row.error = "no responses in the measured period"
                except Exception as err:  # one server failing must not end the comparison
                    row.status, row.error = "failed", f"{type(err).__name__}: {err}"
                self._stop_runner()
            comparison.state = "done"
            comparison.message = f"{len(comparison.rows)} servers measured"
        finally:
            comparison.current = None
            comparison.finished_at = time.time()
            env.host, env.user_classes = saved_host, saved_classes
            if comparison.state == "running":
                comparison.state = "stopped"

    def _measure(self, comparison: Comparison, row: CompareRow) -> None:
        from serverlab.histograms import latency_summary, merge_histograms

        env, runner = self.environment, self.environment.runner
        env.host = row.server  # the users turn a server name into its URL; the header names it
        runner.start(comparison.users, spawn_rate=max(comparison.users, 1))
        gevent.sleep(comparison.warmup_s)
        self.collector.reset_all()  # warm-up over
        row.started_at = time.time()
        gevent.sleep(comparison.seconds)
        parts = self.collector.collect()
        merged = merge_histograms(p.get("histogram") for p in parts)
        row.requests = sum(int(p.get("requests", 0)) for p in parts)
        row.failures = sum(int(p.get("failures", 0)) for p in parts)
        row.processes = len(parts)
        shares = [float(p["cpu_seconds"]) / max(float(p["window_end_at"]) - float(p["window_start_at"]), 1e-9)
                  for p in parts if p.get("cpu_seconds") is not None]
        row.generator_share = max(shares) if shares else None
        starts = [p["window_start_at"] for p in parts if p.get("requests")]
        ends = [p["window_end_at"] for p in parts if p.get("requests")]
        row.duration_s = (max(ends) - min(starts)) if starts else comparison.seconds
        row.rps = row.requests / row.duration_s if row.duration_s > 0 else 0.0
        row.latency_us = latency_summary(merged)
        row.hdr = merged.encode().decode("ascii") if merged.get_total_count() else None

    def status(self) -> dict[str, Any]:
        """The Compare tab's live data: parameters, state and one row per server (``state`` ``idle`` before any)."""
        c = self.comparison
        if c is None:
            return {"state": "idle", "rows": []}
        return {"state": c.state, "message": c.message, "current": c.current, "compare_id": c.compare_id,
                "workload": c.workload, "users": c.users, "seconds": c.seconds, "warmup_s": c.warmup_s,
                "seed": c.seed, "rows": [r.public() for r in c.rows]}

    def results_files(self) -> tuple[str, str, str]:
        """The comparison as ``(compare_id, results.jsonl text, summary.md text)``, as ``make report`` writes them.

        :raises UIRefused: (404) when no comparison has measured anything.
        """
        from serverlab.uicompare import UICompareError, comparison_results

        c = self.comparison
        if c is None:
            raise UIRefused("no comparison has run yet", status=404)
        spec = WORKLOADS.get(c.workload)
        params = spec.option_values(self.environment.parsed_options) if spec is not None else {}
        configs = {name: variant.record() for name, variant in self.variants.items()}
        try:
            jsonl, markdown = comparison_results(
                c.compare_id, c.workload, params, c.users, c.seconds, c.warmup_s, c.seed, c.started_at,
                [vars(row) for row in c.rows], configs)
        except UICompareError as err:
            raise UIRefused(str(err), status=404) from None
        return c.compare_id, jsonl, markdown
