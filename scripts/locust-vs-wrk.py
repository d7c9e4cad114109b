"""Why does Locust's RPS differ from wrk's on the same server? (issue 16's calibration gaps)

For each variant named, alone under an experiment's budget (default ``calibration-headroom``:
half a CPU on CPU 0, the generator on CPU 1), this runs ROUNDS interleaved rounds of

* **Locust** — the lab's own locustfile and load plan, hello at 32 users, a warm-up, the
  measured window, exactly as a ``make report`` cell runs it;
* **wrk at 32 connections** — what the calibration compares Locust with;
* **wrk at Locust's in-flight** — as many connections as Locust kept requests in flight in that
  round's window (Little's law, L = λ·W: Locust's RPS × its mean response time, Little 1961).

Locust and wrk-32 swap order each round, so a host that drifts slows each side as often.
For each it prints RPS and the server cgroup's CPU ms per request over the same window, then
the median of the per-round ratios. If Locust/wrk-at-its-in-flight is near 1 where
Locust/wrk-32 is not, the gap is the concurrency each generator really offers, not the server.

    .venv/bin/python scripts/locust-vs-wrk.py granian gunicorn-gthread uwsgi-http11
    .venv/bin/python scripts/locust-vs-wrk.py --experiment calibration --rounds 6 all

Needs the lab image (``make offline``; ``SERVERLAB_TAG`` picks the tag). A benchmark: run it
alone on a quiet machine (``vmstat 1``: us+sy near 0).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from serverlab.backends import make_backend
from serverlab.calibration import CALIBRATION_CONNECTIONS, measure_wrk, run_locust_plan
from serverlab.experiment import ExperimentError, load_experiment
from serverlab.load import Load
from serverlab.loadgen import LoadError, LoadPlan
from serverlab.terms import WORKLOADS, Mode


def server_counters(cid: str) -> tuple[int, int]:
    """The server container's context switches (voluntary + involuntary, summed over its threads
    now alive) and CFS-throttled periods so far, read from its cgroup (v1 or v2) and ``/proc``."""
    tasks = [Path(f"/sys/fs/cgroup/cpuacct/docker/{cid}/tasks"), Path(f"/sys/fs/cgroup/system.slice/docker-{cid}.scope/cgroup.threads")]
    stats = [Path(f"/sys/fs/cgroup/cpu/docker/{cid}/cpu.stat"), Path(f"/sys/fs/cgroup/system.slice/docker-{cid}.scope/cpu.stat")]
    switches = 0
    for tid in next((p for p in tasks if p.exists()), tasks[0]).read_text().split():
        try:
            for line in Path(f"/proc/{tid}/status").read_text().splitlines():
                if "ctxt_switches:" in line:
                    switches += int(line.split()[1])
        except OSError:
            pass  # the thread ended meanwhile
    stat = dict(line.split() for line in next((p for p in stats if p.exists()), stats[0]).read_text().splitlines())
    return switches, int(stat.get("nr_throttled", 0))


def counted(server, fn, *args, **kwargs) -> dict[str, float]:
    """``fn(...)``'s figures plus the server's context switches per request and throttled CFS periods during it."""
    switches0, throttled0 = server_counters(str(server.handle))
    figures = fn(*args, **kwargs)
    switches1, throttled1 = server_counters(str(server.handle))
    figures["switches"] = (switches1 - switches0) / max(1.0, figures["requests"])
    figures["throttled"] = throttled1 - throttled0
    return figures


def locust_round(backend, server, work: Path, duration_s: float, warmup_s: float, processes: int) -> dict[str, float]:
    """One Locust window at :data:`CALIBRATION_CONNECTIONS` users on hello: RPS, in-flight (λ·W) and
    the server's CPU ms per request over the measured window.

    :raises LoadError: when Locust measured nothing.
    """
    work.mkdir(parents=True, exist_ok=True)
    plan = LoadPlan(WORKLOADS["hello"], {}, Load.of(Mode.CLOSED, CALIBRATION_CONNECTIONS, processes=processes),
                    duration_s, warmup_s, not server.variant.keep_alive)
    outcome = run_locust_plan(backend, server, plan, work)
    start, end = outcome.window
    cpu = server.sampler.cpu_between(start, end) if server.sampler else None
    total = sum(outcome.timeline.rps) if outcome.timeline else outcome.requests  # warm-up included, like the counters
    return {"rps": outcome.rps, "requests": total, "in_flight": outcome.rps * outcome.latency_us["mean"] / 1e6,
            "cpu_ms": cpu * 1000 / outcome.requests if cpu is not None and outcome.requests else float("nan")}


def wrk_round(backend, server, work: Path, duration_s: float, connections: int) -> dict[str, float]:
    """One wrk window at ``connections``: RPS and the server's CPU ms per request."""
    rps, cpu_ms = measure_wrk(backend, server, duration_s, work / f"wrk-{connections}.log", connections=connections)
    return {"rps": rps, "requests": rps * duration_s, "cpu_ms": cpu_ms if cpu_ms is not None else float("nan"), "connections": connections}


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, measure every variant, print a table; 2 for a bad experiment or variant."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("variants", nargs="+", help="variant names, or 'all'")
    parser.add_argument("--experiment", default="calibration-headroom", help="whose budget, duration and warm-up")
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds per variant (default 4)")
    parser.add_argument("--lab-order", action="store_true",
                        help="as a make report cell does it: a freshly started server each round, Locust first, then wrk")
    args = parser.parse_args(argv)
    try:
        experiment = load_experiment(args.experiment)
    except ExperimentError as err:
        print(err, file=sys.stderr)
        return 2
    declared = experiment.variants()
    names = sorted(declared) if args.variants == ["all"] else args.variants
    unknown = [n for n in names if n not in declared]
    if unknown:
        print(f"unknown variant(s) {', '.join(unknown)}; valid: {', '.join(sorted(declared))}", file=sys.stderr)
        return 2
    budget = experiment.budget
    duration = float(experiment.duration)
    backend = make_backend("docker", budget)
    backend.prepare(names)
    print(f"# {time.strftime('%H:%M:%S')} budget: {budget.server_cpus:g} CPU on {budget.server_cpuset}, generator on "
          f"{budget.loadgen_cpuset}; {duration:g} s windows, {args.rounds} rounds")
    print("CPU ms: the server's CPU per request; cs/req: its context switches per request (all its threads)")
    print(f"{'variant':18s} {'round':>5s} {'Locust RPS':>10s} {'in flight':>9s} {'CPU ms':>7s} {'cs/req':>6s}   "
          f"{'wrk-32 RPS':>10s} {'CPU ms':>7s} {'cs/req':>6s}   {'wrk-N':>5s} {'RPS':>7s} {'CPU ms':>7s} {'cs/req':>6s}")
    try:
        with tempfile.TemporaryDirectory(prefix="serverlab-lvw-") as tmp:
            for name in names:
                server = backend.start(declared[name])
                try:
                    if not args.lab_order:
                        wrk_round(backend, server, Path(tmp), 3, CALIBRATION_CONNECTIONS)  # warm-up
                    ratios32, ratios_n = [], []
                    for r in range(args.rounds):
                        work = Path(tmp) / name / str(r)
                        work.mkdir(parents=True)
                        if args.lab_order and r:
                            backend.stop(server)
                            server = backend.start(declared[name])
                        first_locust = args.lab_order or r % 2 == 0
                        if first_locust:
                            loc = counted(server, locust_round, backend, server, work, duration, experiment.warmup, budget.loadgen_processes)
                        w32 = counted(server, wrk_round, backend, server, work, duration, CALIBRATION_CONNECTIONS)
                        if not first_locust:
                            loc = counted(server, locust_round, backend, server, work, duration, experiment.warmup, budget.loadgen_processes)
                        wn = counted(server, wrk_round, backend, server, work, duration, max(1, round(loc["in_flight"])))
                        ratios32.append(loc["rps"] / w32["rps"])
                        ratios_n.append(loc["rps"] / wn["rps"])
                        print(f"{name:18s} {r + 1:5d} {loc['rps']:10,.0f} {loc['in_flight']:9.1f} {loc['cpu_ms']:7.3f} "
                              f"{loc['switches']:6.2f}   {w32['rps']:10,.0f} {w32['cpu_ms']:7.3f} {w32['switches']:6.2f}   "
                              f"{wn['connections']:5d} {wn['rps']:7,.0f} {wn['cpu_ms']:7.3f} {wn['switches']:6.2f}", flush=True)
                    print(f"{name:18s} median Locust/wrk-32 {statistics.median(ratios32):.2f} "
                          f"(rounds {min(ratios32):.2f}-{max(ratios32):.2f}), Locust/wrk-at-its-in-flight "
                          f"{statistics.median(ratios_n):.2f} ({min(ratios_n):.2f}-{max(ratios_n):.2f})", flush=True)
                except LoadError as err:
                    print(f"{name}: {err}", file=sys.stderr)
                finally:
                    backend.stop(server)
    finally:
        backend.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
