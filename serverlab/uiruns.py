"""The web UI's Compare tab as a run: an experiment, the runner, a run folder under ``reports/``.

A comparison is an experiment like any other (name ``ui-compare``: the ticked
servers, one workload, one closed-model level, one repetition, a seed) measured by
:class:`serverlab.runner.Runner` through :class:`serverlab.backends.lab.LabBackend`.
So it writes ``reports/<run-id>/results.jsonl`` with the same header and cells as
``make report`` (CPU per request, bottleneck, interference included), then
``index.html``, ``summary.md`` and ``report.json`` with :func:`serverlab.report.write_report`;
the Reports tab lists it and ``serverlab compare`` diffs it against any other run.

:func:`comparison_rows` is what the Compare table shows while it runs and after.

No Locust import here: this module is used by the Locust master and by tests alike.
Units: latency in µs, durations in seconds, rates in RPS, shares as fractions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from serverlab import LabError
from serverlab.backends.lab import LabBackend, LabWatch
from serverlab.budget import Budget, format_cpuset
from serverlab.experiment import Experiment
from serverlab.planning import PlannedCell, plan_cells
from serverlab.results import Cell, ResultsError, read_results
from serverlab.selfreport import SelfReport
from serverlab.terms import WORKLOADS, CellStatus, Mode
from serverlab.workloadspec import WorkloadParameterError

#: The experiment name every comparison's run folder carries.
EXPERIMENT_NAME = "ui-compare"
#: Measured seconds per server below which a comparison is refused: too short to rank.
#: A 1 s window ranked werkzeug-threaded above uwsgi-http11 and gunicorn-gthread (issue 15):
#: the load's start, connection set-up and one scheduler hiccup weigh on a second or two;
#: 5 s (``make report EXPERIMENT=quick``'s window) ranked them as the report does. The web
#: UI's bounds (:data:`serverlab.ui.limits.MIN_COMPARE_SECONDS`) use this value.
MIN_RANKABLE_SECONDS = 5.0


class CompareError(LabError):
    """A comparison was asked with parameters it cannot be measured with."""


def lab_budget(report: SelfReport, loadgen_cpus: Sequence[int], processes: int) -> Budget:
    """The budget the lab's servers run under, as a server reports it, and the generator's CPUs.

    :param report: one server's ``/lab/cpu`` (every lab server has the same limits).
    :param loadgen_cpus: the Locust processes' CPUs (the master's affinity: the same cpuset).
    :param processes: Locust processes connected (the workers').
    :return: a :class:`~serverlab.budget.Budget` with the server's quota (its cpuset's size
        when it has none), memory limit (``"0"`` when none), cpusets and ``processes``.
    :raises CompareError: when the server's cpuset or the generator's CPUs are unknown.
    """
    if not report.cpuset or not loadgen_cpus:
        raise CompareError("the lab's CPUs are unknown: the server reported no cpuset" if not report.cpuset
                           else "the lab's CPUs are unknown: this Locust process has no CPU affinity to read")
    cpus = report.quota_cpus or float(len(report.cpuset))
    limit = report.memory_limit_bytes
    memory = "0" if not limit else f"{limit // 2**20}m" if limit % 2**20 == 0 else str(limit)
    return Budget(server_cpus=round(cpus, 3), server_memory=memory, server_cpuset=format_cpuset(list(report.cpuset)),
                  loadgen_cpuset=format_cpuset(list(loadgen_cpus)), loadgen_processes=max(1, int(processes)))


def comparison_experiment(servers: Sequence[str], workload: str, params: dict[str, Any] | None, users: int,
                          seconds: float, warmup_s: float, seed: int, budget: Budget,
                          declared: Sequence[str]) -> Experiment:
    """The experiment of one comparison.

    :param servers: variant names to measure (at least one, each of ``declared``).
    :param workload: a workload name; :param params: its parameters (defaults for the rest).
    :param users: closed-model users; :param seconds: measured seconds per server, at least
        :data:`MIN_RANKABLE_SECONDS`; :param warmup_s: discarded seconds per server.
    :param seed: shuffles the server order (recorded).
    :param budget: from :func:`lab_budget`.
    :param declared: the lab's variant names.
    :raises CompareError: naming the bad value and the valid ones.
    """
    unknown = [s for s in servers if s not in declared]
    if not servers or unknown:
        raise CompareError(f"tick at least one server of {', '.join(declared)}"
                           + (f"; unknown: {', '.join(map(str, unknown))}" if unknown else ""))
    if workload not in WORKLOADS:
        raise CompareError(f"workload must be one of {', '.join(WORKLOADS)}; got {workload!r}")
    if seconds < MIN_RANKABLE_SECONDS:
        raise CompareError(f"{seconds:g} s per server is too short to rank servers: at least "
                           f"{MIN_RANKABLE_SECONDS:g} s (1 s put werkzeug-threaded ahead of uwsgi-http11)")
    try:
        checked = WORKLOADS[workload].params(params or None)
    except WorkloadParameterError as err:
        raise CompareError(str(err)) from None
    return Experiment(
        name=EXPERIMENT_NAME, description="Compare tab of the Locust web UI", servers=tuple(dict.fromkeys(servers)),
        workloads=(workload,), mode=Mode.CLOSED, levels=(int(users),), users=int(users), duration=float(seconds),
        warmup=float(warmup_s), repetitions=1, calibrate=False, p99_bound_ms=100.0, seed=int(seed),
        params={workload: checked}, budget=budget)


def run_comparison(experiment: Experiment, backend: LabBackend, reports_dir: Path,
                   on_run_dir: Callable[[Path], None] = lambda _path: None,
                   write: Callable[[str], None] = lambda _line: None, watch: LabWatch | None = None) -> Path:
    """Measure ``experiment`` with the runner through ``backend``; write the report; return the run folder.

    :param on_run_dir: called with the run folder as soon as its results file exists.
    :param write: the runner's progress lines.
    :param watch: the CPU watch (default: :class:`~serverlab.backends.lab.LabWatch` of ``backend``).
    :raises LabError: when the backend cannot prepare or the folder cannot be written (cells
        measured before a failure stay in its ``results.jsonl``).
    """
    from serverlab.report import write_report
    from serverlab.runner import Runner

    runner = Runner(experiment, backend, reports_dir, write=write, cpu_watch=watch or LabWatch(backend),
                    check_budget=False)

    def progress(line: str) -> None:
        if runner.run_dir is not None and (runner.run_dir / "results.jsonl").is_file():
            on_run_dir(runner.run_dir)
        write(line)

    runner.write = progress
    run_dir = runner.run()
    write_report([run_dir / "results.jsonl"], run_dir)
    return run_dir


def _row(planned: PlannedCell, cell: Cell | None, current: str | None, processes: int) -> dict[str, Any]:
    """One Compare table row (see :func:`comparison_rows`)."""
    row: dict[str, Any] = {"server": planned.variant, "position": planned.order,
                           "status": "running" if cell is None and planned.variant == current else "waiting"}
    if cell is None:
        return row
    bottleneck, interference = cell.bottleneck, cell.interference
    row.update(
        status=str(cell.status), error=cell.error, requests=cell.requests, failures=cell.failures,
        duration_s=round(cell.duration_s, 3), rps=round(cell.rps, 1),
        p50_us=cell.latency_us.get("p50"), p99_us=cell.latency_us.get("p99"), **{"p99.9_us": cell.latency_us.get("p99.9")},
        cpu_ms_per_request=None if cell.cpu_ms_per_request is None else round(cell.cpu_ms_per_request, 4),
        server_utilization=bottleneck.server_utilization if bottleneck else None,
        generator_utilization=bottleneck.generator_utilization if bottleneck else None,
        bottleneck=bottleneck.kind if bottleneck else None, bottleneck_reason=bottleneck.reason if bottleneck else None,
        other_share=interference.server_share if interference else None,
        interference_flagged=bool(interference and interference.flagged),
        findings=[f.kind.value for f in cell.findings], processes=processes,
    )
    return row


def comparison_rows(experiment: Experiment, run_dir: Path | None, current: str | None = None) -> list[dict[str, Any]]:
    """The Compare table: one row per server in run order, filled from the run's ``results.jsonl``.

    :param run_dir: the run folder (``None`` before it exists: every row waiting).
    :param current: the server being measured now.
    :return: ``[{"server", "position", "status" (waiting/running/ok/failed/unverified), and once
        measured "rps", "p50_us", "p99_us", "p99.9_us", "requests", "failures", "duration_s",
        "cpu_ms_per_request", "server_utilization", "generator_utilization" (fractions),
        "bottleneck" (class), "bottleneck_reason", "other_share" (other programs' share of the
        server's CPUs), "interference_flagged", "findings" (kinds), "processes" (Locust processes),
        "error"}, ...]``.
    """
    cells: dict[str, Cell] = {}
    if run_dir is not None and (Path(run_dir) / "results.jsonl").is_file():
        try:
            cells = {c.cell_id: c for c in read_results(Path(run_dir) / "results.jsonl", warn=lambda _m: None)[1]}
        except ResultsError:
            cells = {}
    plan = plan_cells(experiment, int(experiment.seed or 0))
    return [_row(p, cells.get(p.cell_id), current, experiment.budget.loadgen_processes) for p in plan]


def finished(rows: Sequence[dict[str, Any]]) -> bool:
    """Whether every row has been measured (ok, failed or unverified)."""
    return all(r["status"] in (CellStatus.OK, CellStatus.FAILED, CellStatus.UNVERIFIED) for r in rows)
