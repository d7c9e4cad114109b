"""Locust workers on other hosts: who they are, whether they run this lab, and waiting for a master.

Locust's distributed mode does the work (one ``--master``, ``locust --worker --master-host H``
on every other host, port 5557); this module adds what the lab needs on top of it:

* :func:`worker_info` — what a worker process tells its master when it connects (the
  ``serverlab_worker`` message): the host it runs on (``SERVERLAB_WORKER_HOST``, else its
  host name), its CPU count (the CPUs it may run on), its pid and the :func:`lab_version`;
* :class:`WorkerHosts` — the master's registry of those messages: it **refuses a worker of
  another lab version** (sends it Locust's own ``quit`` after a ``serverlab_refused`` saying
  why), groups workers by host for the web UI, and writes ``workers.json`` for ``serverlab run``;
* ``python -m serverlab.workerhosts wait-master HOST PORT`` — a worker host's check, before
  Locust starts, that the master's port answers at all: an unreachable master is a clear error
  within ``--timeout`` seconds (exit status 2), not Locust's 300 s of silent retries.

Units: CPU counts in CPUs, times in seconds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any, Callable

#: The environment variable naming the host a worker runs on (a container's own host name is its id).
WORKER_HOST_ENV = "SERVERLAB_WORKER_HOST"
#: Set to ``1`` on workers started from ``docker-compose.loadgen.yml`` (another host).
REMOTE_WORKER_ENV = "SERVERLAB_REMOTE_WORKER"
#: How many remote worker processes a headless master expects (``serverlab run`` sets it).
EXPECT_REMOTE_ENV = "SERVERLAB_EXPECT_REMOTE_WORKERS"
#: Seconds a headless master with remote workers runs its test, counted from when every worker
#: took its spawn message (``serverlab run`` sets it instead of Locust's ``--run-time``).
RUN_TIME_ENV = "SERVERLAB_RUN_TIME"
#: The file a headless master with remote workers writes into its HDR folder.
WORKERS_FILE = "workers.json"
#: Locust's default master port.
MASTER_PORT = 5557
#: What the lab version covers: the code and declarations a worker's measurements depend on.
_VERSIONED = (("serverlab", "**/*.py"), ("servers", "*.toml"), ("labapp", "**/*.py"))


def lab_version(locustfile: Path | None = None) -> str:
    """This lab's version: ``serverlab.__version__`` plus a digest of the code a worker runs.

    The digest covers the ``serverlab`` package, ``labapp``, the server declarations and the
    locustfile (file names relative to their folder, so the checkout and the image agree): two
    hosts report the same version exactly when they run the same lab.

    :param locustfile: the locustfile the process runs (default: the repository's).
    :return: e.g. ``"0.1.0+3f2a9c1d0b7e"``.
    """
    import labapp
    import serverlab
    from labapp.variants import SERVERS_DIR

    bases = {"serverlab": Path(serverlab.__file__).parent, "servers": Path(SERVERS_DIR),
             "labapp": Path(labapp.__file__).parent}
    locustfile = locustfile or Path(serverlab.__file__).parents[1] / "locustfiles" / "locustfile.py"
    digest = hashlib.sha256()
    for group, pattern in _VERSIONED:
        for path in sorted(bases[group].glob(pattern)):
            if "__pycache__" in path.parts or not path.is_file():
                continue
            digest.update(f"{group}/{path.relative_to(bases[group]).as_posix()}\0".encode())
            digest.update(path.read_bytes())
    if locustfile.is_file():
        digest.update(b"locustfile\0" + locustfile.read_bytes())
    return f"{serverlab.__version__}+{digest.hexdigest()[:12]}"


def worker_info(version: str) -> dict[str, Any]:
    """What a worker process tells its master: ``{"host", "container", "cpus", "pid", "lab_version", "remote"}``.

    :param version: its :func:`lab_version`.
    :return: ``host`` is ``SERVERLAB_WORKER_HOST`` or the host name; ``cpus`` the CPUs this
        process may run on (its cpuset, not the machine's count); ``remote`` whether it was
        started as another host's worker (``docker-compose.loadgen.yml``).
    """
    container = socket.gethostname()
    return {"host": os.environ.get(WORKER_HOST_ENV) or container, "container": container,
            "cpus": len(os.sched_getaffinity(0)), "pid": os.getpid(), "lab_version": version,
            "remote": os.environ.get(REMOTE_WORKER_ENV) == "1"}


class WorkerHosts:
    """The lab's side of Locust's worker connections, on the master and on each worker.

    :param environment: Locust's environment (its ``runner`` a master or a worker, else nothing happens).
    :param version: this process's :func:`lab_version`.
    :param log: where refusals are reported (the master's log: ``serverlab run`` reads it).
    """

    def __init__(self, environment: Any, version: str, log: Callable[[str], None] | None = None) -> None:
        self.environment = environment
        self.version = version
        self.log = log or (lambda text: print(text, file=sys.stderr, flush=True))
        #: Locust client id -> :func:`worker_info` of the workers that introduced themselves (this lab's version).
        self.workers: dict[str, dict[str, Any]] = {}
        #: Workers refused (another lab version): their info and why.
        self.refused: list[dict[str, Any]] = []

    def install(self, collector: Any = None) -> None:
        """Register the messages: a worker introduces itself (now and when asked); a master keeps the registry.

        A headless master of ``serverlab run`` (:data:`EXPECT_REMOTE_ENV` and the HDR folder set) also
        checks at the test's start that the remote workers it expects are there and of this lab
        (else it quits with an error in :data:`WORKERS_FILE`), and at its end gathers every worker's
        recorder through ``collector`` (:class:`serverlab.ui.collect.Collector`) into ``hdr-*.json``
        files, noting any worker that went missing.
        """
        from locust.runners import MasterRunner, WorkerRunner

        runner = self.environment.runner
        if isinstance(runner, WorkerRunner):
            runner.register_message("serverlab_who", lambda msg, **_kw: self._introduce())
            runner.register_message("serverlab_refused", lambda msg, **_kw: self.log(
                f"serverlab: the Locust master refused this worker: {msg.data.get('reason')}"))
            self._introduce()
        elif isinstance(runner, MasterRunner):
            runner.register_message("serverlab_worker", self._on_worker)
            self.environment.events.worker_connect.add_listener(self._on_connect)
            from serverlab.terms import HDR_DIR_ENV

            expected, out = os.environ.get(EXPECT_REMOTE_ENV), os.environ.get(HDR_DIR_ENV)
            if expected and out and collector is not None:
                self.expected_remote, self.out_dir, self.collector = int(expected), Path(out), collector
                self.environment.events.test_start.add_listener(self._check_at_start)
                self.environment.events.test_stopping.add_listener(self._gather)
                self.write_file()

    #: Set on a headless master of ``serverlab run``: remote worker processes expected, and where to write.
    expected_remote = 0
    out_dir: Path | None = None
    collector: Any = None
    #: Locust's ids of the workers a headless master's test started with.
    started_ids: list[str] = []
    #: Why a headless master's test did not start (its remote workers were not all there).
    error: str | None = None

    def remote(self) -> list[dict[str, Any]]:
        """The connected workers started as another host's (``remote``)."""
        return [w for w in self.connected() if w.get("remote")]

    def write_file(self, **extra: Any) -> None:
        """Write :meth:`status` (plus ``expected_remote`` and ``extra``) to :data:`WORKERS_FILE` in the HDR folder."""
        if self.out_dir is None:
            return
        data = {**self.status(), "expected_remote": self.expected_remote, **extra}
        tmp = self.out_dir / (WORKERS_FILE + ".tmp")
        tmp.write_text(json.dumps(data, sort_keys=True, default=str))
        tmp.replace(self.out_dir / WORKERS_FILE)

    def _check_at_start(self, **_kw: Any) -> None:
        """Note which workers the test starts with; a worker already refused stops it at once.

        It does not wait for introductions: a worker counts as connected before its locustfile's
        set-up has run (seconds on a busy machine), and the master's ``--run-time`` runs from now, so
        waiting here would shorten every worker's measured window. :meth:`_gather` checks them.
        """
        import gevent

        runner = self.environment.runner
        self.started_ids = [c.id for c in runner.clients.all if c.state != "missing"]
        if self.refused:
            self.error = "refused: " + "; ".join(r["reason"] for r in self.refused)
            self.log(f"serverlab: {self.error}")
            self.write_file(error=self.error)
            self.environment.process_exit_code = 3
            gevent.spawn(runner.quit)
            return
        self.write_file(started_ids=self.started_ids)
        run_time = os.environ.get(RUN_TIME_ENV)
        if run_time:
            gevent.spawn(self._run_for, float(run_time))

    def _run_for(self, run_time_s: float, settle_s: float = 30.0) -> None:
        """Quit the test ``run_time_s`` after every worker took its spawn message (at most ``settle_s`` later).

        Locust counts a worker as ready when it connects, before its locustfile's set-up ran (seconds
        on a busy machine), and its ``--run-time`` counts from the master's start: a late worker's
        warm-up would eat into its measured window, which the runner then fails as cut short.
        """
        import gevent

        runner = self.environment.runner
        deadline = time.monotonic() + settle_s
        while time.monotonic() < deadline and any(c.state == "ready" for c in runner.clients.all):
            gevent.sleep(0.05)
        gevent.get_hub().loop.update_now()
        gevent.sleep(run_time_s)
        runner.quit()

    def _gather(self, **_kw: Any) -> None:
        """At the test's end, before Locust stops the workers: every worker's recorder into ``hdr-*.json``,
        and in :data:`WORKERS_FILE` who took part, who went missing, and an ``error`` when a worker was
        refused, never introduced itself, or fewer remote workers than expected took part."""
        if self.out_dir is None or self.error:  # no test ran: keep the start's error in the file
            return
        runner = self.environment.runner
        cpu = {c.id: c.cpu_usage for c in runner.clients.all}  # Locust's heartbeat: each worker's CPU %
        snapshots = self.collector.collect()  # serverlab.hdrdump.ProcessDump, one per worker process
        for snapshot in snapshots:
            snapshot.write(self.out_dir)
        got = {snapshot.process for snapshot in snapshots}
        started = [{**self.workers[cid], "heartbeat_cpu_percent": cpu.get(cid)}
                   for cid in self.started_ids if cid in self.workers]
        unknown = [cid for cid in self.started_ids if cid not in self.workers]
        remote = [w for w in started if w.get("remote")]
        missing = [w for w in started if f"{w.get('container')}-{w.get('pid')}" not in got]
        error = None
        if self.refused:
            error = "refused: " + "; ".join(r["reason"] for r in self.refused)
        elif unknown:
            error = (f"{len(unknown)} Locust worker(s) never said which lab they run ({', '.join(unknown)}): "
                     "not started from this lab's locustfile")
        elif len(remote) < self.expected_remote:
            error = (f"{len(remote)} of {self.expected_remote} remote Locust worker(s) took part"
                     + (f" ({describe_hosts(remote)})" if remote else ""))
        self.write_file(started_with=started, collected=sorted(got), error=error,
                        missing=[f"{w.get('host')} (container {w.get('container')}, pid {w.get('pid')})" for w in missing])

    def _introduce(self) -> None:
        self.environment.runner.send_message("serverlab_worker", worker_info(self.version))

    def _on_connect(self, client_id: str, **_kw: Any) -> None:
        self.environment.runner.send_message("serverlab_who", client_id=client_id)

    def _on_worker(self, msg: Any, **_kw: Any) -> None:
        info = dict(msg.data or {})
        info["client_id"] = client_id = str(msg.node_id)
        if info.get("lab_version") != self.version:
            reason = (f"worker {info.get('host')} (container {info.get('container')}, pid {info.get('pid')}) runs lab "
                      f"version {info.get('lab_version')!r}, this master {self.version!r}: run the same serverlab "
                      f"checkout (and rebuild its image) on every host")
            self.workers.pop(client_id, None)
            if not any(r["client_id"] == client_id for r in self.refused):
                self.refused.append({**info, "reason": reason})
                self.log(f"serverlab: refused a Locust worker: {reason}")
            runner = self.environment.runner
            runner.send_message("serverlab_refused", {"reason": reason}, client_id=client_id)
            runner.send_message("quit", client_id=client_id)  # Locust's own: the worker shuts down
            if self.out_dir is not None:
                self.write_file()
            return
        self.workers[client_id] = info
        if self.out_dir is not None and not self.started_ids:  # who came, should Locust give up waiting
            self.write_file()

    def connected(self) -> list[dict[str, Any]]:
        """The introduced workers Locust still counts (ready, spawning or running), by host then pid."""
        runner = self.environment.runner
        live = {c.id for c in runner.clients.all if c.state != "missing"} if hasattr(runner, "clients") else set()
        return sorted((w for cid, w in self.workers.items() if cid in live),
                      key=lambda w: (not w.get("remote"), str(w.get("host")), int(w.get("pid") or 0)))

    def by_host(self) -> list[dict[str, Any]]:
        """``[{"host", "remote", "processes", "cpus"}]``: :meth:`connected` grouped by host (``cpus``: the
        largest CPU count its processes reported, i.e. the host's generator CPUs)."""
        hosts: dict[tuple[str, bool], dict[str, Any]] = {}
        for worker in self.connected():
            key = (str(worker.get("host")), bool(worker.get("remote")))
            entry = hosts.setdefault(key, {"host": key[0], "remote": key[1], "processes": 0, "cpus": 0})
            entry["processes"] += 1
            entry["cpus"] = max(entry["cpus"], int(worker.get("cpus") or 0))
        return list(hosts.values())

    def status(self) -> dict[str, Any]:
        """For the web UI and ``workers.json``: ``{"lab_version", "connected": n, "unintroduced": n,
        "hosts": by_host(), "workers": connected(), "refused": [...]}``."""
        runner = self.environment.runner
        count = int(getattr(runner, "worker_count", 0) or 0)
        workers = self.connected()
        return {"lab_version": self.version, "connected": count, "unintroduced": max(0, count - len(workers)),
                "hosts": self.by_host(), "workers": workers, "refused": list(self.refused)}


def describe_hosts(workers: list[dict[str, Any]]) -> str:
    """``"gen2: 2 processes, 2 CPUs; gen3: 1 process, 4 CPUs"`` for these workers, grouped by host."""
    hosts: dict[str, list[dict[str, Any]]] = {}
    for worker in workers:
        hosts.setdefault(str(worker.get("host")), []).append(worker)
    return "; ".join(f"{host}: {len(ws)} process{'es' if len(ws) != 1 else ''}, "
                     f"{max(int(w.get('cpus') or 0) for w in ws)} CPUs" for host, ws in hosts.items())


def roll_call(expected: int, timeout_s: float, out_file: Path, port: int = MASTER_PORT) -> int:
    """Run a Locust master with no load until ``expected`` remote workers of this lab introduced themselves.

    ``serverlab run`` calls it once before its first cell (``python -m serverlab.workerhosts roll-call``
    in the loadgen container, the port published on the run's ``master_bind``): the run header
    records who answered, and a missing or refused worker stops the run before anything is measured.
    The workers then get Locust's ``quit`` and wait for the first cell's master.

    :return: 0 when they all came, else 2 (the reason is in the file's ``"error"`` and on stderr).
    """
    import gevent
    from locust import events
    from locust.env import Environment

    env = Environment(events=events)
    env.create_master_runner("*", port)
    hosts = WorkerHosts(env, lab_version())
    hosts.install()
    deadline = time.monotonic() + timeout_s
    while len(hosts.remote()) < expected and not hosts.refused and time.monotonic() < deadline:
        gevent.sleep(0.2)
    gevent.sleep(0.5)  # a refusal or a late introduction of a worker already connected
    remote = hosts.remote()
    error = None
    if hosts.refused:
        error = "refused: " + "; ".join(r["reason"] for r in hosts.refused)
    elif len(remote) < expected:
        error = (f"{len(remote)} of {expected} remote Locust worker(s) connected within {timeout_s:g} s"
                 + (f" ({describe_hosts(remote)})" if remote else "") + f"; missing: {expected - len(remote)}")
    data = {**hosts.status(), "expected_remote": expected, "error": error, "remote": remote}
    out_file.write_text(json.dumps(data, sort_keys=True, default=str))
    if error:
        print(f"error: {error}", file=sys.stderr, flush=True)
    env.runner.quit()
    return 2 if error else 0


def wait_master(host: str, port: int, timeout_s: float, interval_s: float = 0.5) -> str | None:
    """Wait until ``host:port`` accepts a TCP connection.

    :return: ``None`` once it does, else why not (after ``timeout_s`` seconds): the last error.
    """
    deadline = time.monotonic() + timeout_s
    last = "no attempt"
    while True:
        try:
            with socket.create_connection((host, port), timeout=max(0.5, min(3.0, timeout_s))):
                return None
        except OSError as err:
            last = f"{type(err).__name__}: {err.strerror or err}"
        if time.monotonic() >= deadline:
            return last
        time.sleep(interval_s)


def main(argv: list[str] | None = None) -> int:
    """``python -m serverlab.workerhosts wait-master HOST [PORT] [--timeout S]``: 0 once the master's port
    answers; 2 with ``error: ...`` naming the address, the last error and what to check."""
    parser = argparse.ArgumentParser(prog="python -m serverlab.workerhosts")
    sub = parser.add_subparsers(dest="command", required=True)
    wait = sub.add_parser("wait-master", help="wait until the Locust master's port answers")
    wait.add_argument("host")
    wait.add_argument("port", nargs="?", type=int, default=MASTER_PORT)
    wait.add_argument("--timeout", type=float, default=30.0, help="seconds (default 30)")
    call = sub.add_parser("roll-call", help="a Locust master with no load: wait for N remote workers, write a JSON file")
    call.add_argument("expected", type=int)
    call.add_argument("--timeout", type=float, default=60.0)
    call.add_argument("--out", type=Path, required=True)
    call.add_argument("--port", type=int, default=MASTER_PORT)
    args = parser.parse_args(argv)
    if args.command == "roll-call":
        return roll_call(args.expected, args.timeout, args.out, args.port)
    if not args.host:
        print("error: no master host: set LOCUST_MASTER_HOST to the lab machine's address", file=sys.stderr)
        return 2
    why = wait_master(args.host, args.port, args.timeout)
    if why is None:
        return 0
    print(f"error: the Locust master at {args.host}:{args.port} is unreachable after {args.timeout:g} s ({why}). "
          f"On the lab machine start it with LOCUST_MASTER_BIND=<an address of that machine this host reaches> "
          f"(`docker compose up`, or `serverlab run ... --master-bind`), and check LOCUST_MASTER_HOST and any "
          f"firewall on port {args.port}", file=sys.stderr, flush=True)
    return 2


if __name__ == "__main__":
    sys.exit(main())
