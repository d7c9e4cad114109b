"""The typed parts of a measured cell: what limited it, what disturbed it, how it was loaded over time.

Each record is frozen, built by the module that measures it and stored in
:class:`serverlab.results.Cell`; ``to_dict`` gives its JSON shape in ``results.jsonl``
(the same keys as results schema 3 wrote), ``from_dict`` reads that shape back, from any
readable schema version (keys older files lack take their defaults).

* :class:`Interference` — other programs' CPU time on the lab's CPUs (:func:`serverlab.interference.interference_figures`);
* :class:`HostSpeed` — the host-speed probes around the cell (:func:`serverlab.hostspeed.cell_figures`);
* :class:`Bottleneck` — what limited the cell (:func:`serverlab.bottleneck.classify`), and
  :class:`BottleneckSummary`, one class for a row's repetitions (:func:`serverlab.bottleneck.summarize`);
* :class:`OpenLoad` — the open model's schedule kept or missed (:func:`serverlab.loadgen.read_outcome`);
* :class:`Timeline` — throughput and p99 per second (:func:`serverlab.loadgen.merge_timelines`);
* :class:`LocustFigures` — Locust's own aggregate row (:func:`serverlab.loadgen.parse_locust_csv`).

Units: seconds, fractions (0.05 = 5%), RPS, microseconds (``_us``), milliseconds (``_ms``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping

from serverlab.terms import BottleneckClass


class RecordError(ValueError):
    """A record's mapping lacks a field or holds one of the wrong kind."""


def _number(data: Mapping[str, Any], key: str, default: float | None = None) -> float | None:
    value = data.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RecordError(f"{key!r} must be a number, got {value!r}")
    return float(value)


def _required(data: Mapping[str, Any], key: str) -> float:
    if key not in data or data[key] is None:
        raise RecordError(f"{key!r} is missing")
    return _number(data, key)  # type: ignore[return-value]


def _without_none(data: dict[str, Any], *keys: str) -> dict[str, Any]:
    for key in keys:
        if data.get(key) is None:
            data.pop(key, None)
    return data


@dataclass(frozen=True)
class Interference:
    """CPU time other programs used on the lab's CPUs in a cell's window.

    :param share: the larger of the two sides' shares (fraction of the side's CPU time).
    :param flagged: ``share >= threshold``: the cell's figures are not the server's alone.
    :param threshold: the flagging share (0.05 = 5%).
    :param window_s: the window (seconds).
    :param server_share: other programs' share of the server's CPUs, ``None`` when not read;
        :param loadgen_share: the same on the generator's CPUs.
    :param server_other_s: their CPU seconds there; :param loadgen_other_s: on the generator's.
    :param steal_s: CPU seconds the hypervisor took (steal), both sides.
    :param runner_s: the runner's own CPU seconds in the window (credited to each side).
    """

    share: float
    flagged: bool
    threshold: float = 0.05
    window_s: float | None = None
    server_share: float | None = None
    loadgen_share: float | None = None
    server_other_s: float | None = None
    loadgen_other_s: float | None = None
    steal_s: float | None = None
    runner_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """``{"share", "flagged", "threshold", "window_s", "server_share", ...}``: sides not read are left out."""
        return _without_none({f.name: getattr(self, f.name) for f in fields(self)},
                             "window_s", "server_share", "loadgen_share", "server_other_s", "loadgen_other_s",
                             "steal_s", "runner_s")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Interference:
        """The record of :meth:`to_dict`'s (or :func:`~serverlab.interference.interference_figures`'s) mapping.

        :raises RecordError: for a missing ``share`` or a value that is not a number.
        """
        return cls(share=_required(data, "share"), flagged=bool(data.get("flagged")),
                   threshold=_number(data, "threshold", 0.05) or 0.0,
                   **{key: _number(data, key) for key in ("window_s", "server_share", "loadgen_share",
                                                            "server_other_s", "loadgen_other_s", "steal_s", "runner_s")})


@dataclass(frozen=True)
class HostSpeed:
    """The host-speed probe right before and after a cell, against the run's median.

    :param deviation: the larger (in size) relative deviation of the two probes, positive when slower.
    :param threshold: the flagging deviation (0.05 = 5%); :param flagged: ``|deviation| > threshold``.
    :param median_ms: the run's median probe (ms); :param before_ms: the probe before (ms,
        ``None``: it failed); :param after_ms: the probe after.
    """

    deviation: float
    threshold: float
    flagged: bool
    median_ms: float
    before_ms: float | None = None
    after_ms: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """``{"before_ms", "after_ms", "median_ms", "deviation", "threshold", "flagged"}``."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HostSpeed:
        """The record of a :func:`serverlab.hostspeed.cell_figures` mapping.

        :raises RecordError: for a missing ``deviation`` or ``median_ms``, or a value that is not a number.
        """
        return cls(deviation=_required(data, "deviation"), threshold=_number(data, "threshold", 0.05) or 0.0,
                   flagged=bool(data.get("flagged")), median_ms=_required(data, "median_ms"),
                   before_ms=_number(data, "before_ms"), after_ms=_number(data, "after_ms"))


@dataclass(frozen=True)
class Bottleneck:
    """What limited one measured cell, and the figures that decided it (:func:`serverlab.bottleneck.classify`).

    :param kind: the class (:class:`~serverlab.terms.BottleneckClass`; ``"class"`` in JSON).
    :param reason: the decision in words, e.g. ``"server at 98% of its CPU budget"``.
    :param server_utilization: server CPU ÷ window ÷ budget (fraction), ``None`` when not measured.
    :param generator_utilization: the busiest Locust process's share of a core, ``None`` likewise.
    :param interference_share: other programs' share of the lab's CPUs, ``None`` when not measured.
    :param host_speed_deviation: the host-speed probe's deviation when it flagged the cell, else ``None``.
    """

    kind: BottleneckClass
    reason: str
    server_utilization: float | None = None
    generator_utilization: float | None = None
    interference_share: float | None = None
    host_speed_deviation: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """``{"class", "reason", "server_utilization", "generator_utilization", "interference_share"}``,
        plus ``"host_speed_deviation"`` when set."""
        return _without_none({"class": str(self.kind), "reason": self.reason, "server_utilization": self.server_utilization,
                              "generator_utilization": self.generator_utilization,
                              "interference_share": self.interference_share,
                              "host_speed_deviation": self.host_speed_deviation}, "host_speed_deviation")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Bottleneck:
        """The record of :meth:`to_dict`'s mapping.

        :raises RecordError: for an unknown class (naming the valid ones) or a figure that is not a number.
        """
        return cls(kind=_bottleneck_class(data.get("class")), reason=str(data.get("reason") or ""),
                   server_utilization=_number(data, "server_utilization"),
                   generator_utilization=_number(data, "generator_utilization"),
                   interference_share=_number(data, "interference_share"),
                   host_speed_deviation=_number(data, "host_speed_deviation"))


def _bottleneck_class(value: Any) -> BottleneckClass:
    try:
        return BottleneckClass(value)
    except ValueError:
        raise RecordError(f"bottleneck class {value!r}; valid: {', '.join(BottleneckClass)}") from None


@dataclass(frozen=True)
class BottleneckSummary:
    """One bottleneck class for a row's repetitions (:func:`serverlab.bottleneck.summarize`).

    :param kind: the row's class; :param counts: class -> repetitions of that class.
    :param server_utilization: the repetitions' median; :param generator_utilization: likewise.
    :param interference_share: the largest repetition's; :param host_speed_deviation: the largest
        (in size) of the repetitions the host-speed probe flagged, else ``None``.
    """

    kind: BottleneckClass
    counts: tuple[tuple[BottleneckClass, int], ...]
    server_utilization: float | None = None
    generator_utilization: float | None = None
    interference_share: float | None = None
    host_speed_deviation: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """``{"class", "counts": {class: n}, "server_utilization", "generator_utilization",
        "interference_share"}``, plus ``"host_speed_deviation"`` when set (``report.json``'s row shape)."""
        return _without_none({"class": str(self.kind), "counts": {str(k): n for k, n in self.counts},
                              "server_utilization": self.server_utilization,
                              "generator_utilization": self.generator_utilization,
                              "interference_share": self.interference_share,
                              "host_speed_deviation": self.host_speed_deviation}, "host_speed_deviation")


@dataclass(frozen=True)
class OpenLoad:
    """How an open-model cell kept its arrival schedule.

    :param target_rps: the schedule's rate (RPS); :param sent: requests sent in the window.
    :param late_sends: sends later than :data:`serverlab.terms.LATE_SEND_S`; :param max_lag_ms: the largest lag (ms).
    :param fell_behind: more than :data:`serverlab.loadgen.FELL_BEHIND_LATE_SHARE` of the sends were late.
    :param achieved_send_rps: ``sent ÷ window`` (RPS); ``None`` in files that did not record it.
    """

    target_rps: float
    sent: int
    late_sends: int
    max_lag_ms: float
    fell_behind: bool
    achieved_send_rps: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """``{"target_rps", "sent", "late_sends", "max_lag_ms", "fell_behind", "achieved_send_rps"}``."""
        return _without_none({f.name: getattr(self, f.name) for f in fields(self)}, "achieved_send_rps")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OpenLoad:
        """The record of :meth:`to_dict`'s mapping.

        :raises RecordError: for a missing ``target_rps`` or a figure that is not a number.
        """
        target = _required(data, "target_rps")
        return cls(target_rps=int(target) if float(target).is_integer() else target,
                   sent=int(_number(data, "sent", 0) or 0), late_sends=int(_number(data, "late_sends", 0) or 0),
                   max_lag_ms=_number(data, "max_lag_ms", 0.0) or 0.0, fell_behind=bool(data.get("fell_behind")),
                   achieved_send_rps=_number(data, "achieved_send_rps"))


@dataclass(frozen=True)
class Timeline:
    """Throughput and p99 latency per interval from the start of the warm-up (merged over processes).

    :param interval_s: seconds per entry (1.0); :param warmup_s: the warm-up's length (seconds).
    :param rps: responses per interval, index 0 = the first of the warm-up.
    :param p99_us: each interval's p99 latency (µs), ``None`` for one without responses.
    """

    interval_s: float
    warmup_s: float
    rps: tuple[int, ...]
    p99_us: tuple[float | None, ...]

    def to_dict(self) -> dict[str, Any]:
        """``{"interval_s", "warmup_s", "rps": [...], "p99_us": [...]}``."""
        return {"interval_s": self.interval_s, "warmup_s": self.warmup_s, "rps": list(self.rps),
                "p99_us": list(self.p99_us)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Timeline:
        """The record of :meth:`to_dict`'s mapping.

        :raises RecordError: when ``rps`` or ``p99_us`` hold something that is not a number.
        """
        try:
            return cls(interval_s=float(data.get("interval_s", 1.0)), warmup_s=float(data.get("warmup_s", 0.0)),
                       rps=tuple(int(n) for n in data.get("rps") or ()),
                       p99_us=tuple(None if v is None else float(v) for v in data.get("p99_us") or ()))
        except (TypeError, ValueError) as err:
            raise RecordError(f"a timeline holds a value that is not a number ({err})") from None


@dataclass(frozen=True)
class LocustFigures:
    """Locust's own aggregate row (its ``*_stats.csv``), kept beside the lab's figures for comparison:
    its percentiles are rounded (whole ms below 100 ms).

    :param requests: requests; :param failures: of them, failed; :param rps: its RPS.
    :param avg_ms: mean; :param p50_ms, p95_ms, p99_ms: its percentiles; :param max_ms: the largest (ms).
    """

    requests: float = 0.0
    failures: float = 0.0
    rps: float = 0.0
    avg_ms: float = 0.0
    p50_ms: float = 0.0
    p95_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """``{"requests", "failures", "rps", "avg_ms", "p50_ms", "p95_ms", "p99_ms", "max_ms"}``."""
        return _without_none({f.name: getattr(self, f.name) for f in fields(self)}, "max_ms")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LocustFigures:
        """The record of :meth:`to_dict`'s mapping (missing figures are 0).

        :raises RecordError: for a figure that is not a number.
        """
        return cls(**{f.name: _number(data, f.name, None if f.name == "max_ms" else 0.0) for f in fields(cls)})


#: Record type of each typed :class:`~serverlab.results.Cell` field, by field name.
CELL_RECORDS: dict[str, type] = {"interference": Interference, "host_speed": HostSpeed, "bottleneck": Bottleneck,
                                 "open_load": OpenLoad, "timeline": Timeline, "locust": LocustFigures}


#: A declared setting's value (a ``[settings]`` entry of ``servers/*.toml``).
SettingValue = str | int | float | bool


@dataclass(frozen=True)
class VariantRecord:
    """A server variant as a run measured it: its declaration with the experiment's overrides
    (:meth:`labapp.variants.Variant.record`), stored once per variant in the run header.

    Fields a results file did not record (older files) are ``None`` (or empty).

    :param name: the variant (a ``servers/*.toml`` stem).
    :param server: ``"gunicorn"``, ``"uwsgi"`` ...; :param model: the worker model
        (:class:`~serverlab.terms.WorkerModel`); :param description: the declaration's description.
    :param workers: worker processes; :param threads: threads per worker (0: one per connection);
        :param connections: greenlets per gevent worker, or the bound on threads per connection.
    :param slots: requests it can serve at once (``None``: unbounded); recorded by
        :attr:`labapp.variants.Variant.slots`, derived by :func:`labapp.variants.slots_of` for files
        from before it was recorded.
    :param keep_alive: whether it keeps connections open between requests.
    :param command: its command line (template).
    :param settings: other settings that shape results, ``(name, value)`` pairs in declared order.
    :param proxy: the reverse proxy in front (``"nginx"``), ``None`` for a direct server;
        :param proxy_protocol: ``"http"`` or ``"uwsgi"``; :param proxy_workers: nginx workers.
    :param headers: the request-head limit (``(name, value)`` pairs of its ``[headers]`` table), or ``()``.
    """

    name: str
    server: str | None = None
    model: str | None = None
    description: str | None = None
    workers: int | None = None
    threads: int | None = None
    connections: int | None = None
    slots: int | None = None
    keep_alive: bool | None = None
    command: tuple[str, ...] = ()
    settings: tuple[tuple[str, SettingValue], ...] = ()
    proxy: str | None = None
    proxy_protocol: str | None = None
    proxy_workers: int | None = None
    headers: tuple[tuple[str, SettingValue], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape :meth:`labapp.variants.Variant.record` gives (``settings`` and ``headers`` as
        objects, ``command`` as a list, ``headers`` ``null`` when none)."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["command"] = list(self.command)
        data["settings"] = dict(self.settings)
        data["headers"] = dict(self.headers) if self.headers else None
        return data

    @classmethod
    def from_dict(cls, name: str, data: Mapping[str, Any]) -> VariantRecord:
        """The record of a variant's mapping: a v4 header's entry, or a v1–3 cell's ``config``
        (whose budget and backend keys are not the variant's and are ignored).

        :raises RecordError: for a count that is not an integer.
        """
        from labapp.variants import slots_of

        def count(key: str) -> int | None:
            value = data.get(key)
            if value is None:
                return None
            if isinstance(value, bool) or not isinstance(value, int):
                raise RecordError(f"variant {name!r}: {key!r} must be an integer, got {value!r}")
            return value

        workers, threads, connections = count("workers"), count("threads"), count("connections")
        model = None if data.get("model") is None else str(data["model"])
        if "slots" in data:
            slots = count("slots")
        else:  # recorded since slots existed; before, the same rule Variant.slots uses
            slots = slots_of(str(model), workers if workers is not None else 1, threads if threads is not None else 1,
                             connections or None)
        keep_alive = data.get("keep_alive")
        return cls(
            name=name, server=None if data.get("server") is None else str(data["server"]), model=model,
            description=None if data.get("description") is None else str(data["description"]),
            workers=workers, threads=threads, connections=connections, slots=slots,
            keep_alive=None if keep_alive is None else bool(keep_alive),
            command=tuple(str(part) for part in data.get("command") or ()),
            settings=tuple((str(k), v) for k, v in (data.get("settings") or {}).items()),
            proxy=None if data.get("proxy") is None else str(data["proxy"]),
            proxy_protocol=None if data.get("proxy_protocol") is None else str(data["proxy_protocol"]),
            proxy_workers=count("proxy_workers"),
            headers=tuple((str(k), v) for k, v in (data.get("headers") or {}).items()))
