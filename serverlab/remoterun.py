"""``serverlab run`` with Locust workers on other hosts: the roll call, each cell's master, and its checks.

With ``[budget] remote_workers = N`` (or ``--remote-workers N``) a run

1. publishes the servers' ports and the master's 5557 on ``master_bind`` (the Docker backend);
2. before its first cell runs a **roll call** (:func:`serverlab.workerhosts.roll_call`): a Locust
   master with no load that waits ``remote_wait`` seconds for the N workers; who answered (host,
   CPUs, processes) goes into the run header, a missing or refused worker stops the run there;
3. runs each cell's Locust in distributed mode (:func:`master_args`): the master waits for its
   local and the N remote workers (``--expect-workers``, ``--expect-workers-max-wait``), checks
   they are this lab's, and gathers every process's recorder at the window's end;
4. fails a cell (:func:`cell_workers`) when a remote worker did not connect in time, was refused,
   or went missing before the end: no cell is recorded ``ok`` with part of its load missing.

A cell's generator capacity (``loadgen_cpu_budget``) is this machine's Locust cores plus the remote
hosts' (:func:`remote_capacity`). Units: seconds, CPUs.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from serverlab import LabError
from serverlab.workerhosts import MASTER_PORT, WORKERS_FILE, describe_hosts


class RemoteWorkersError(LabError):
    """The remote workers a run expects are not all there (or not of this lab); the message names them."""


def remote_capacity(workers: list[dict[str, Any]]) -> int:
    """Generator cores the remote workers add: per host, its processes, at most its CPUs (a Locust process uses one core)."""
    hosts: dict[str, list[dict[str, Any]]] = {}
    for worker in workers:
        if worker.get("remote"):
            hosts.setdefault(str(worker.get("host")), []).append(worker)
    return sum(min(len(ws), max(int(w.get("cpus") or 1) for w in ws)) for ws in hosts.values())



#: What a cell's generator-CPU figure is based on when remote workers took part (the report says it).
CPU_BASIS = ("each Locust process's own CPU time (time.process_time() in the process, read by the lab's "
             "recorder at the end of the measured window and sent to the master with its histogram), summed over "
             "this machine's and the remote workers' processes; Locust's heartbeat CPU % per worker is kept beside "
             "it in each cell's workers.json as a cross-check")


def master_args(standalone: list[str], local: int, remote: int, wait_s: float) -> list[str]:
    """Turn a standalone ``locust ... [--processes K]`` argv into Locust's distributed mode, in one container:
    ``local`` worker processes connected on 127.0.0.1, and the master itself, which waits (``--expect-workers``
    ``local + remote``, ``--expect-workers-max-wait wait_s``) and listens on its port 5557 for the remote ones.

    Locust's ``--run-time`` is dropped: the lab's plug-in on the master quits the test that long after
    every worker took its spawn message (:data:`serverlab.workerhosts.RUN_TIME_ENV`, see
    :meth:`RemoteGenerator.environment`). The local workers get no HDR folder: the master gathers every process's recorder at the end of the
    window and writes the ``hdr-*.json`` files itself (so a worker killed with the container leaves no
    half-written file).

    :return: ``["sh", "-c", script]``.
    """
    args = list(standalone)
    for option in ("--processes", "--run-time"):  # the master's plug-in times the run (RUN_TIME_ENV)
        if option in args:
            at = args.index(option)
            del args[at:at + 2]
    locustfile = args[args.index("-f") + 1]
    from serverlab.terms import HDR_DIR_ENV

    worker = ["locust", "-f", locustfile, "--worker", "--master-host", "127.0.0.1", "--master-port", str(MASTER_PORT),
              "--processes", str(max(1, local))]
    master = [*args, "--master", "--master-bind-port", str(MASTER_PORT), "--expect-workers", str(max(1, local) + remote),
              "--expect-workers-max-wait", str(int(round(wait_s)))]
    return ["sh", "-c", f"{HDR_DIR_ENV}= {shlex.join(worker)} & exec {shlex.join(master)}"]


def cell_workers(out_dir: Path, expected: int, wait_s: float, log_text: str,
                 known: list[dict[str, Any]] | None = None) -> tuple[str | None, dict[str, Any]]:
    """Read a cell's :data:`WORKERS_FILE` and say whether every expected remote worker measured it.

    :param out_dir: the cell's attempt folder (the master's HDR folder).
    :param expected: remote worker processes expected; :param wait_s: how long the master waited.
    :param log_text: the master's output (Locust's "Gave up waiting for workers" line).
    :param known: the run header's roll call (to name the hosts missing now).
    :return: ``(error, facts)``: ``error`` is ``None`` when every expected remote worker was there
        from start to end, else one sentence naming who is missing; ``facts`` is the file's content.
    """
    path = out_dir / WORKERS_FILE
    try:
        facts = json.loads(path.read_text())
    except (OSError, ValueError):
        facts = {}
    remote = [w for w in facts.get("started_with") or facts.get("workers") or [] if w.get("remote")]
    gave_up = "Gave up waiting for workers" in log_text
    seen = {str(w.get("host")) for w in remote}
    absent = sorted({str(w.get("host")) for w in known or [] if w.get("remote")} - seen)
    hint = (f"; absent since the run's roll call: {', '.join(absent)}" if absent else "") + (
        ". Check each worker host's `docker compose -f docker-compose.loadgen.yml logs` (LOCUST_MASTER_HOST must be "
        "an address of this machine, published with --master-bind)")
    if facts.get("error"):
        return f"remote workers: {facts['error']}{hint}", facts
    if gave_up or not facts.get("started_with"):
        return (f"remote workers: {len(remote)} of {expected} connected within {wait_s:g} s"
                + (f" ({describe_hosts(remote)})" if remote else "") + f"; missing: {max(0, expected - len(remote))}"
                + hint), facts
    if facts.get("missing"):
        return (f"remote workers: {', '.join(facts['missing'])} went missing during the cell: their measurements "
                "are not in, so the cell is not recorded with part of its load"), facts
    if facts.get("collected") is None:
        return "remote workers: the master gathered no measurements (it stopped before the end of the window)", facts
    return None, facts




def describe_remote(facts: dict[str, Any]) -> str:
    """The run header's ``remote_workers`` in one line: ``"1 Locust worker process(es) on other hosts
    (master on 10.0.0.5:5557): gen-b: 1 process, 2 CPUs; +1 generator core(s)"``."""
    workers = facts.get("workers") or []
    return (f"{facts.get('expected')} Locust worker process(es) on other hosts (master on {facts.get('master_bind')}:"
            f"{MASTER_PORT}, lab {facts.get('lab_version')}): {describe_hosts(workers) or 'none'}; "
            f"+{facts.get('generator_cores_remote', 0)} generator core(s)")


class RemoteGenerator:
    """A run's remote workers: what the runner asks about them (``None`` from :meth:`for_experiment` without).

    :param expected: remote Locust worker processes; :param bind: the address they reach this machine on;
    :param wait_s: how long to wait for them (roll call and each cell).
    :attr roll: the roll call's workers (set by :meth:`roll_call`), as the run header records them.
    """

    def __init__(self, expected: int, bind: str, wait_s: float) -> None:
        self.expected = expected
        self.bind = bind
        self.wait_s = wait_s
        self.roll: list[dict[str, Any]] = []

    @classmethod
    def for_experiment(cls, experiment: Any, backend_name: str) -> "RemoteGenerator | None":
        """The run's remote generator, or ``None`` when its budget expects no remote workers.

        :raises RemoteWorkersError: with the local backend, or for an app's declared requests (the
            workers on other hosts run the lab's workloads only).
        """
        budget = experiment.budget
        if not budget.remote_workers:
            return None
        if backend_name != "docker":
            raise RemoteWorkersError(f"remote workers ({budget.remote_workers}) need --backend docker (the master and "
                                     f"the servers are published on {budget.master_bind}); got --backend {backend_name}")
        from serverlab.requestmix import RequestWorkload

        declared = [name for name in experiment.workloads if isinstance(experiment.workload_spec(name), RequestWorkload)]
        if declared:
            raise RemoteWorkersError(f"remote workers cannot send an app's declared requests ({', '.join(declared)}): "
                                     "they run the lab's own workloads; use remote_workers = 0 for this experiment")
        return cls(budget.remote_workers, budget.master_bind, budget.remote_wait_s)

    def roll_call(self, backend: Any, out_dir: Path, write: Any = print) -> dict[str, Any]:
        """Wait for the remote workers once, before any cell (a master with no load in the loadgen container).

        :return: the header's ``remote_workers`` entry: ``{"expected", "master_bind", "wait_s", "hosts",
            "workers", "generator_cores_remote", "cpu_basis"}``.
        :raises RemoteWorkersError: naming who answered and how many are missing (or who was refused).
        """
        out_dir.mkdir(parents=True, exist_ok=True)
        write(f"waiting up to {self.wait_s:g} s for {self.expected} remote Locust worker(s) on "
              f"{self.bind}:{MASTER_PORT} ...")
        argv = ["python", "-m", "serverlab.workerhosts", "roll-call", str(self.expected), "--timeout",
                f"{self.wait_s:g}", "--out", f"/out/{WORKERS_FILE}"]
        result = backend.run_locust(argv, {}, out_dir, self.wait_s + 60)
        try:
            facts = json.loads((out_dir / WORKERS_FILE).read_text())
        except (OSError, ValueError):
            raise RemoteWorkersError(f"the roll call of remote workers failed (exit status {result.returncode}): "
                                     f"{result.output.strip()[-600:]}") from None
        if facts.get("error"):
            raise RemoteWorkersError(
                f"remote workers on {self.bind}:{MASTER_PORT}: {facts['error']}. Start them on each worker host with "
                f"`LOCUST_MASTER_HOST=<{self.bind if self.bind not in ('0.0.0.0', '::') else 'this machine'}> "
                "docker compose -f docker-compose.loadgen.yml up --build` (the same serverlab checkout); nothing was measured")
        self.roll = [w for w in facts.get("workers") or [] if w.get("remote")]
        write(f"remote workers: {describe_hosts(self.roll)}")
        return {"expected": self.expected, "master_bind": self.bind, "wait_s": self.wait_s,
                "hosts": [h for h in facts.get("hosts") or [] if h.get("remote")],
                "workers": [{k: w.get(k) for k in ("host", "container", "pid", "cpus", "lab_version")} for w in self.roll],
                "generator_cores_remote": remote_capacity(self.roll), "lab_version": facts.get("lab_version"),
                "cpu_basis": CPU_BASIS}

    def capacity(self) -> int:
        """Generator cores the remote workers add (:func:`remote_capacity` of the roll call)."""
        return remote_capacity(self.roll)

    def locust_args(self, standalone: list[str], local_processes: int) -> list[str]:
        """:func:`master_args` for this run (its ``--run-time`` is kept for :meth:`environment`)."""
        if "--run-time" in standalone:
            self.run_time_s = float(standalone[standalone.index("--run-time") + 1].rstrip("s"))
        return master_args(standalone, local_processes, self.expected, self.wait_s)

    #: The last :meth:`locust_args`' run time (seconds), which the master's plug-in times.
    run_time_s = 0.0

    def environment(self, env: dict[str, str]) -> dict[str, str]:
        """The master's environment: ``env`` plus how many remote workers it expects and how long to run."""
        from serverlab.workerhosts import EXPECT_REMOTE_ENV, RUN_TIME_ENV

        return {**env, EXPECT_REMOTE_ENV: str(self.expected), RUN_TIME_ENV: f"{self.run_time_s:g}"}

    def check(self, out_dir: Path, log_text: str) -> tuple[str | None, float]:
        """:func:`cell_workers` for one cell.

        :return: ``(error, remote_cpu_s)``: ``None`` when every remote worker measured it, else why not;
            and the CPU seconds the remote processes used (not this machine's: the interference figures
            subtract only this machine's generator CPU from its CPUs' busy time).
        """
        error, facts = cell_workers(out_dir, self.expected, self.wait_s, log_text, self.roll)
        names = {f"{w.get('container')}-{w.get('pid')}" for w in facts.get("started_with") or [] if w.get("remote")}
        from serverlab.terms import HDR_FILE_PREFIX

        cpu = 0.0
        for path in out_dir.glob(f"{HDR_FILE_PREFIX}*.json"):
            try:
                dump = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if dump.get("process") in names:
                cpu += float(dump.get("cpu_seconds") or 0.0)
        return error, cpu
