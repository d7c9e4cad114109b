"""Master and worker messages: every Locust process's HDR recorder, gathered on the master.

A worker answers ``serverlab_collect`` with its recorder's snapshot (``serverlab_hdr``)
and forgets what it recorded on ``serverlab_reset`` (the end of a warm-up). A local
runner (no workers) reads its own recorder. Used by the Compare runner
(:mod:`serverlab.ui.compare`).

Units: latency in µs (the encoded histogram), times in Unix seconds, CPU in seconds.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from typing import Any

import gevent

#: How long the master waits for every worker's histogram (seconds).
COLLECT_TIMEOUT_S = 10.0


class Collector:
    """Gathers recorder snapshots from every Locust process of a test.

    :param environment: Locust's environment (master, worker or local).
    :param recorder: this process's recorder (``locustfile.Recorder``: ``histogram``,
        ``requests``, ``failures``, ``window_start``, ``cpu_start``, ``reset()``).
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
            runner.register_message("serverlab_reset", lambda msg, **_kw: self.recorder.reset())
            runner.register_message("serverlab_collect", self._on_collect)
        elif isinstance(runner, MasterRunner):
            runner.register_message("serverlab_hdr", self._on_hdr)

    def is_master(self) -> bool:
        """Whether this process is a master (its load runs on workers)."""
        from locust.runners import MasterRunner

        return isinstance(self.environment.runner, MasterRunner)

    def snapshot(self) -> dict[str, Any]:
        """This process's recorder: encoded histogram (µs), counts and measured window (Unix seconds)."""
        rec = self.recorder
        return {
            "process": f"{socket.gethostname()}-{os.getpid()}",
            "requests": rec.requests,
            "failures": rec.failures,
            "window_start_at": rec.window_start,
            "window_end_at": time.time(),
            "cpu_seconds": time.process_time() - rec.cpu_start,
            "histogram": rec.histogram.encode().decode("ascii") if rec.requests else None,
        }

    def reset_all(self) -> None:
        """Every process forgets what it recorded (and Locust's stats too): a measured window starts."""
        runner = self.environment.runner
        if self.is_master():
            runner.send_message("serverlab_reset")
        self.recorder.reset()
        runner.stats.reset_all()

    def collect(self) -> list[dict[str, Any]]:
        """Every process's :meth:`snapshot` (the master waits up to :data:`COLLECT_TIMEOUT_S`)."""
        runner = self.environment.runner
        if not self.is_master():
            return [self.snapshot()]
        token = uuid.uuid4().hex
        self._replies[token] = {}
        expected = runner.worker_count
        runner.send_message("serverlab_collect", {"token": token})
        deadline = time.time() + COLLECT_TIMEOUT_S
        while len(self._replies[token]) < expected and time.time() < deadline:
            gevent.sleep(0.1)
        return list(self._replies.pop(token).values())

    def _on_collect(self, msg: Any, **_kw: Any) -> None:
        self.environment.runner.send_message("serverlab_hdr", {"token": msg.data["token"], **self.snapshot()})

    def _on_hdr(self, msg: Any, **_kw: Any) -> None:
        data = msg.data or {}
        token = data.get("token")
        if token in self._replies:
            self._replies[token][str(getattr(msg, "node_id", "") or data.get("process"))] = data
