"""What one Locust process recorded: the ``hdr-*.json`` dump, as one typed record.

Each Locust process's recorder (``locustfiles/locustfile.py``'s ``Recorder``) gives a
:class:`ProcessDump`: a headless Locust writes it at test stop (:meth:`ProcessDump.write`),
the web UI's workers send it to the master as a message (:meth:`ProcessDump.to_dict`,
:meth:`ProcessDump.from_dict`) and the lab backend writes those the same way;
:func:`read_dumps` reads a cell's dumps back for :func:`serverlab.loadgen.read_outcome`.

Units: times in Unix seconds, latencies in microseconds (the encoded HDR histograms),
CPU in seconds, lags in milliseconds.

No Locust import here: the locustfile, the orchestrator and the tests share it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Mapping

from serverlab.terms import HDR_FILE_PREFIX, LATENCY_UNIT


class DumpError(ValueError):
    """A dump is not JSON, or lacks a field, or has a field of the wrong kind."""


@dataclass(frozen=True)
class ProcessTimeline:
    """One process's per-second record from the start of its test, warm-up included.

    :param start_at: Unix seconds the test started (second 0).
    :param warmup_end_at: Unix seconds the warm-up ended, ``None`` without one (or not yet).
    :param responses: responses that ended in each second.
    :param histograms: each second's encoded HDR histogram (µs, 2 significant digits), ``None``
        for a second without responses.
    """

    start_at: float
    warmup_end_at: float | None
    responses: tuple[int, ...]
    histograms: tuple[str | None, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """``{"start_at", "warmup_end_at", "responses": [...], "histograms": [...]}``."""
        return {"start_at": self.start_at, "warmup_end_at": self.warmup_end_at,
                "responses": list(self.responses), "histograms": list(self.histograms)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProcessTimeline:
        """The timeline :meth:`to_dict` wrote.

        :raises DumpError: for a missing ``start_at`` or non-numeric counts.
        """
        try:
            return cls(float(data["start_at"]),
                       None if data.get("warmup_end_at") is None else float(data["warmup_end_at"]),
                       tuple(int(n) for n in data.get("responses") or ()),
                       tuple(data.get("histograms") or ()))
        except (KeyError, TypeError, ValueError) as err:
            raise DumpError(f"a timeline needs start_at and whole response counts ({err})") from None


@dataclass(frozen=True)
class ProcessDump:
    """Everything one Locust process recorded in its measured window (and its timeline).

    :param process: ``<host>-<pid>``, naming the process (and its file ``hdr-<process>.json``).
    :param requests: responses in the measured window; :param failures: of them, failed.
    :param sent: requests sent in the window; :param unanswered: requests still unanswered
        when the test stopped (warm-up included; 0 for a snapshot taken while the load runs).
    :param late_sends: open model: sends later than :data:`serverlab.terms.LATE_SEND_S`;
        :param max_lag_ms: the largest send lag (milliseconds).
    :param first_send_at: Unix seconds of the window's first send (``None``: none).
    :param last_response_at: Unix seconds of the window's last response (``None``: none).
    :param window_start_at: Unix seconds the window started (the warm-up's end);
        :param window_end_at: when the dump was taken (the test's stop).
    :param cpu_seconds: the process's CPU seconds in the window.
    :param responses_per_second: responses in each second of the window.
    :param histogram: the window's HDR histogram of latencies (µs), base64 (``HdrHistogram.encode()``).
    :param timeline: per second from the start of the test (:class:`ProcessTimeline`), or ``None``.
    :param unit: the histogram's unit, ``"microseconds"``.
    """

    requests: int
    failures: int
    sent: int
    window_start_at: float
    window_end_at: float
    cpu_seconds: float
    histogram: str
    process: str = ""
    unanswered: int = 0
    late_sends: int = 0
    max_lag_ms: float = 0.0
    first_send_at: float | None = None
    last_response_at: float | None = None
    responses_per_second: tuple[int, ...] = ()
    timeline: ProcessTimeline | None = None
    unit: str = LATENCY_UNIT

    @property
    def file_name(self) -> str:
        """``hdr-<process>.json`` (a ``/`` in the name becomes ``_``)."""
        return f"{HDR_FILE_PREFIX}{self.process.replace('/', '_')}.json"

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready dump (the content of ``hdr-*.json`` and of the workers' messages)."""
        data = asdict(self)
        data["responses_per_second"] = list(self.responses_per_second)
        data["timeline"] = self.timeline.to_dict() if self.timeline is not None else None
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProcessDump:
        """The dump :meth:`to_dict` wrote (unknown keys, such as a message's ``token``, are ignored).

        :raises DumpError: naming the missing or malformed field.
        """
        known = {f.name for f in fields(cls)}
        values = {key: value for key, value in data.items() if key in known}
        try:
            timeline = values.get("timeline")
            values["timeline"] = ProcessTimeline.from_dict(timeline) if isinstance(timeline, Mapping) else None
            values["responses_per_second"] = tuple(int(n) for n in values.get("responses_per_second") or ())
            for key in ("requests", "failures", "sent", "unanswered", "late_sends"):
                if key in values:
                    values[key] = int(values[key])
            for key in ("window_start_at", "window_end_at", "cpu_seconds", "max_lag_ms"):
                if key in values:
                    values[key] = float(values[key])
            values["process"] = str(values.get("process") or "")
            return cls(**values)
        except TypeError as err:
            raise DumpError(f"a Locust process's dump is incomplete: {err}") from None
        except ValueError as err:
            raise DumpError(f"a Locust process's dump has a malformed field: {err}") from None

    def write(self, directory: Path | str) -> Path:
        """Write the dump as :attr:`file_name` into ``directory`` (sorted keys); return its path."""
        path = Path(directory) / self.file_name
        path.write_text(json.dumps(self.to_dict(), sort_keys=True))
        return path


def read_dumps(directory: Path | str) -> list[ProcessDump]:
    """Every ``hdr-*.json`` in ``directory``, sorted by file name.

    :raises DumpError: naming the file that is not JSON or not a dump.
    """
    dumps = []
    for path in sorted(Path(directory).glob(f"{HDR_FILE_PREFIX}*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise DumpError(f"{path}: not readable as JSON ({err})") from None
        if not isinstance(data, dict):
            raise DumpError(f"{path}: a dump must be a JSON object")
        try:
            dump = ProcessDump.from_dict(data)
        except DumpError as err:
            raise DumpError(f"{path}: {err}") from None
        dumps.append(dump if dump.process else replace(dump, process=path.stem[len(HDR_FILE_PREFIX):]))
    return dumps
