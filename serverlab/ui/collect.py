"""Master and worker messages: every Locust process's HDR recorder, gathered on the master.

A worker answers ``serverlab_collect`` with its recorder's snapshot (``serverlab_hdr``)
and forgets what it recorded on ``serverlab_reset`` (the end of a warm-up). A local
runner (no workers) reads its own recorder. Used by the Compare runner
(:mod:`serverlab.ui.compare`).

Units: latency in µs (the encoded histogram), times in Unix seconds, CPU in seconds.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import replace
from typing import Any

import gevent

from serverlab.hdrdump import ProcessDump

#: How long the master waits for every worker's histogram (seconds).
COLLECT_TIMEOUT_S = 10.0


class Collector:
    """Gathers recorder snapshots from every Locust process of a test.

    :param environment: Locust's environment (master, worker or local).
    :param recorder: this process's recorder (``locustfile.Recorder``: ``snapshot()``, ``reset()``,
        ``warmup_end``).
    """

    def __init__(self, environment: Any, recorder: Any) -> None:
        self.environment = environment
        self.recorder = recorder
        self._replies: dict[str, dict[str, dict[str, Any]]] = {}

    def install(self) -> None:
        """Register the message handlers this process's role needs (worker or master)."""
        from locust.runners import MasterRunner, WorkerRunner

        runner = self.environment.runner
        if isinstance(runner, WorkerRunner):
            runner.register_message("serverlab_reset", lambda msg, **_kw: self.end_warmup())
            runner.register_message("serverlab_collect", self._on_collect)
            runner.register_message("serverlab_cpu", self._on_cpu)
        elif isinstance(runner, MasterRunner):
            runner.register_message("serverlab_hdr", self._on_hdr)
            runner.register_message("serverlab_cpu_reply", self._on_hdr)

    def is_master(self) -> bool:
        """Whether this process is a master (its load runs on workers)."""
        from locust.runners import MasterRunner

        return isinstance(self.environment.runner, MasterRunner)

    def snapshot(self) -> ProcessDump:
        """This process's recorder now, while the load runs: the :class:`~serverlab.hdrdump.ProcessDump`
        a headless Locust writes as ``hdr-*.json`` (so :func:`serverlab.loadgen.read_outcome` merges it).

        ``unanswered`` is 0: the requests in flight at this cut are being answered, not left
        unanswered by a stopped Locust (a server that stops answering shows as a measured
        window cut short: its last response comes early).
        """
        return replace(self.recorder.snapshot(), unanswered=0)

    def end_warmup(self) -> None:
        """This process forgets what it recorded; its timeline marks the warm-up's end."""
        self.recorder.reset()
        self.recorder.warmup_end = time.time()

    def reset_all(self) -> None:
        """Every process forgets what it recorded (and Locust's stats too): a measured window starts."""
        runner = self.environment.runner
        if self.is_master():
            runner.send_message("serverlab_reset")
        self.end_warmup()
        runner.stats.reset_all()

    def collect(self) -> list[ProcessDump]:
        """Every process's :meth:`snapshot` (the master waits up to :data:`COLLECT_TIMEOUT_S`).

        :raises serverlab.hdrdump.DumpError: when a worker's reply is not a dump.
        """
        if not self.is_master():
            return [self.snapshot()]
        return [ProcessDump.from_dict(reply) for reply in self._ask("serverlab_collect", COLLECT_TIMEOUT_S)]

    def cpu_times(self, timeout_s: float = 2.0) -> list[dict[str, Any]]:
        """Every process's own CPU seconds now, a small message (the live meter's generator figure):
        ``[{"process", "at" (Unix seconds), "cpu_s"}]``."""
        if not self.is_master():
            return [self._cpu()]
        return self._ask("serverlab_cpu", timeout_s)

    def _ask(self, message: str, timeout_s: float) -> list[dict[str, Any]]:
        runner = self.environment.runner
        token = uuid.uuid4().hex
        self._replies[token] = {}
        expected = runner.worker_count
        runner.send_message(message, {"token": token})
        deadline = time.time() + timeout_s
        while len(self._replies[token]) < expected and time.time() < deadline:
            gevent.sleep(0.05)
        return list(self._replies.pop(token).values())

    def _cpu(self) -> dict[str, Any]:
        return {"process": _process_name(), "at": time.time(),
                "cpu_s": time.process_time()}

    def _on_cpu(self, msg: Any, **_kw: Any) -> None:
        self.environment.runner.send_message("serverlab_cpu_reply", {"token": msg.data["token"], **self._cpu()})

    def _on_collect(self, msg: Any, **_kw: Any) -> None:
        self.environment.runner.send_message("serverlab_hdr", {"token": msg.data["token"], **self.snapshot().to_dict()})

    def _on_hdr(self, msg: Any, **_kw: Any) -> None:
        data = msg.data or {}
        token = data.get("token")
        if token in self._replies:
            self._replies[token][str(getattr(msg, "node_id", "") or data.get("process"))] = data


def _process_name() -> str:
    """``<host>-<pid>``, as the recorder names this process."""
    import os
    import socket

    return f"{socket.gethostname()}-{os.getpid()}"
