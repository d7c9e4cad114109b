"""The records a results file holds: the run header and one cell per measured cell (schema 4).

A cell refers to what every cell of a run shares, stored once in the :class:`RunHeader`:
the variants as measured (:class:`~serverlab.records.VariantRecord`, by variant name),
the budget (:class:`~serverlab.budget.Budget`, the experiment record's ``budget``) and each
workload's parameters (the experiment record's ``params``). Results files of versions 1-3
stored the variant's configuration (with the budget) and the workload's parameters in
every cell: :meth:`RunHeader.from_dict` and :meth:`Cell.from_dict` migrate them, so old
files read and render as they did. The file itself (writing, reading, resuming) is
:mod:`serverlab.results`.

Units: times in seconds unless the key ends in ``_ms`` (milliseconds) or ``_us``
(microseconds); memory in bytes; rates in requests per second (RPS).
"""

from __future__ import annotations

import errno
import json
from dataclasses import asdict, dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable, Mapping

from serverlab import LabError
from serverlab.budget import Budget
from serverlab.fieldtypes import check_field_types
from serverlab.findings import Finding, Note, finding_from_dict
from serverlab.records import (CELL_RECORDS, Bottleneck, HostSpeed, Interference, LocustFigures, OpenLoad, RecordError,
                               Timeline, VariantRecord)
from serverlab.terms import MODES, CellStatus

#: Schema version written into every line. Version 2 added the cell fields
#: ``loadgen_busiest_share``, ``interference`` and ``bottleneck`` (all optional);
#: version 3 stores a cell's ``findings`` as data (kind and figures) instead of its
#: ``warnings`` sentences; version 4 stores the variants, the budget and the workload
#: parameters once, in the run header, instead of in every cell's ``config`` and
#: ``workload_params``.
SCHEMA_VERSION = 4
#: Versions this serverlab reads; older lines are migrated on reading (see the module docstring).
READABLE_VERSIONS = (1, 2, 3, 4)
#: Cell statuses: measured; server failed or crashed; server answered wrongly before load.
STATUSES = tuple(status.value for status in CellStatus)
#: The budget's keys, as versions 1-3 stored them in each cell's ``config`` and the header's metadata.
_BUDGET_KEYS = tuple(f.name for f in fields(Budget))


class ResultsError(LabError):
    """A results file is missing, not JSON lines, of another schema version, or inconsistent."""


class ResultsDiskFull(ResultsError):
    """The results file could not be written because the disk is full (``errno.ENOSPC``).

    :param message: what failed; :param filename: the results file (also :attr:`filename`).
    """

    errno = errno.ENOSPC

    def __init__(self, message: str, filename: Path | str) -> None:
        super().__init__(message)
        self.filename = str(filename)


@dataclass(frozen=True)
class RunHeader:
    """The first line of a results file: what ran, where, with what.

    :param run_id: e.g. ``"20261120-231500-quick"``; also the report folder name.
    :param experiment: the experiment as loaded (a JSON-ready dict of its fields, with its
        ``budget`` and each workload's ``params``).
    :param metadata: shared facts stored once: ``backend``, ``image``, ``packages``
        (name -> version), ``cpu_model``, ``host_cores``, ``git_commit``, ``started_at``
        (Unix seconds), ``limits_enforced``, ``quietness_probe``, and ``host_speed``: the run's
        median host-speed probe and threshold (:func:`serverlab.hostspeed.baseline`).
    :param variants: variant name -> its declaration as measured (:class:`~serverlab.records.VariantRecord`).
    :param migrated: files of versions 1-3 only: the ``budget`` and workload ``params`` their cells
        stored (gathered on reading by :meth:`from_dict`; never written), where the experiment
        record lacks them.
    """

    run_id: str
    experiment: dict[str, Any]
    metadata: dict[str, Any]
    variants: dict[str, VariantRecord] = field(default_factory=dict)
    kind: str = "run"
    version: int = SCHEMA_VERSION
    migrated: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        try:
            check_field_types(self)
        except ValueError as err:
            raise ResultsError(f"run header: {err}") from None
        try:
            object.__setattr__(self, "variants", {
                name: record if isinstance(record, VariantRecord) else VariantRecord.from_dict(name, record)
                for name, record in (self.variants or {}).items()})
        except (RecordError, AttributeError, TypeError) as err:
            raise ResultsError(f"run header: variants: {err}") from None

    @cached_property
    def budget(self) -> Budget | None:
        """The servers' and the generator's budget (the experiment record's ``budget``), ``None`` when
        the file recorded none."""
        data = self.experiment.get("budget")
        if not isinstance(data, Mapping):
            data = self.migrated.get("budget")
        if not isinstance(data, Mapping):
            return None
        try:
            return Budget.from_dict(data)
        except (TypeError, ValueError) as err:
            raise ResultsError(f"run {self.run_id}: budget: {err}") from None

    def variant(self, name: str) -> VariantRecord:
        """The declaration of variant ``name`` as measured; when the file recorded none, a record of
        nothing (``None`` fields; its slots derived from those as for a file before slots were recorded)."""
        return self.variants.get(name) or VariantRecord.from_dict(name, {})

    def workload_params(self, workload: str) -> dict[str, int]:
        """The request parameters of ``workload`` (the experiment record's ``params``), ``{}`` when none."""
        for params in (self.experiment.get("params"), self.migrated.get("params")):
            if isinstance(params, Mapping) and isinstance(params.get(workload), Mapping):
                return dict(params[workload])
        return {}

    def to_json(self) -> str:
        """The header line (sorted keys, no newline)."""
        data = {"kind": self.kind, "version": self.version, "run_id": self.run_id, "experiment": self.experiment,
                "metadata": self.metadata, "variants": {name: v.to_dict() for name, v in self.variants.items()}}
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], cells: Iterable[Mapping[str, Any]] = ()) -> RunHeader:
        """The header of a results file's first line, of any readable version.

        Versions 1-3 stored no ``variants`` and kept the budget and workload parameters in each
        cell: the first non-empty ``config`` of each variant among ``cells`` becomes its record;
        the cells' budget (else the metadata's) and ``workload_params`` go to :attr:`migrated`, read
        where the experiment record has none (the record itself is kept as written, so reports of
        old files render as they did).

        :param cells: the file's cell lines as parsed JSON (only versions 1-3 are read).
        :raises ResultsError: when a field is of the wrong type.
        """
        values = {k: v for k, v in data.items() if k in _RUN_FIELDS and k != "migrated"}
        if data.get("version", SCHEMA_VERSION) < 4:
            values.update(_migrated(values.get("metadata") or {}, cells))
        try:
            return cls(**values)
        except TypeError as err:
            raise ResultsError(f"not a run header ({err})") from None


def _migrated(metadata: Mapping[str, Any], cells: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """A version 1-3 header's ``variants`` and ``migrated`` budget and parameters, from what its cells
    stored each (see :meth:`RunHeader.from_dict`)."""
    configs: dict[str, Mapping[str, Any]] = {}
    params: dict[str, Mapping[str, Any]] = {}
    for cell in cells:
        if cell.get("version", SCHEMA_VERSION) >= 4:
            continue
        config = cell.get("config")
        name = str(cell.get("variant"))
        if isinstance(config, Mapping) and (name not in configs or (not configs[name] and config)):
            configs[name] = config
        if isinstance(cell.get("workload_params"), Mapping):
            params.setdefault(str(cell.get("workload")), cell["workload_params"])
    first = next((c for c in configs.values() if c.get("server_cpus") is not None), {})
    budget = {key: first[key] for key in _BUDGET_KEYS if first.get(key) is not None}
    budget.update({key: metadata[key] for key in _BUDGET_KEYS if key not in budget and metadata.get(key) is not None})
    migrated: dict[str, Any] = {"params": {w: dict(p) for w, p in params.items()}}
    if budget:
        migrated["budget"] = budget
    return {"migrated": migrated, "variants": {name: VariantRecord.from_dict(name, config)
                                               for name, config in configs.items()}}


@dataclass(frozen=True)
class Calibration:
    """A variant's hello ceiling measured with wrk and with Locust at the same concurrency.

    :param wrk_rps: wrk's RPS; ``None`` when wrk failed.
    :param locust_rps: Locust's RPS; ``None`` when Locust (or wrk before it) failed.
    :param ratio: ``locust_rps / wrk_rps``; ``None`` when either failed.
    :param connections: wrk connections and Locust users.
    :param duration_s: each tool's run (seconds).
    :param note: which tool failed and why; ``None`` when both ran.
    :param repetition: the repetition this wrk run belongs to (wrk runs in every repetition,
        so a row's wrk figures have an interval); ``None`` in results from before that, where
        one calibration per variant was copied into every cell (it counts once).
    :param wrk_cpu_ms_per_request: server CPU milliseconds per request during wrk's run
        (compare with the cell's :attr:`~serverlab.results.Cell.cpu_ms_per_request` under Locust);
        ``None`` when not measured.
    :param workload: the workload both tools sent (``hello``, or an app's first GET request);
        ``None`` in results files written before it was recorded (then ``hello``).
    :param wrk_first: wrk ran before the cell's Locust window (even repetitions); ``None`` before it alternated.
    """

    wrk_rps: float | None = None
    locust_rps: float | None = None
    ratio: float | None = None
    connections: int | None = None
    duration_s: float | None = None
    note: str | None = None
    repetition: int | None = None
    wrk_cpu_ms_per_request: float | None = None
    workload: str | None = None
    wrk_first: bool | None = None

    @property
    def measured(self) -> bool:
        """Both tools ran: the ratio is known."""
        return self.wrk_rps is not None and self.ratio is not None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, the fields that are ``None`` left out (the layout of results files before version 3)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Calibration:
        """Read a results file's ``calibration`` object (any schema version; unknown keys ignored).

        :raises ValueError: a field is not a number (or the note not text).
        """
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for key, value in values.items():
            if key in ("note", "workload"):
                if value is not None and not isinstance(value, str):
                    raise ValueError(f"calibration {key} {value!r} is not text")
            elif key == "wrk_first":
                if value is not None and not isinstance(value, bool):
                    raise ValueError(f"calibration wrk_first {value!r} is not true or false")
            elif value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise ValueError(f"calibration {key} {value!r} is not a number")
        return cls(**values)


@dataclass(frozen=True)
class Cell:
    """One measured cell: a variant × workload × load level × repetition.

    The cell refers to what is stored once in the run header: its variant's declaration
    (:meth:`RunHeader.variant`), the budget (:attr:`RunHeader.budget`) and its workload's
    parameters (:meth:`RunHeader.workload_params`).

    Identity
    :param run_id: the run this cell belongs to.
    :param cell_id: ``"<variant>/<workload>/<level>/r<repetition>"``, unique in a run.
    :param variant: server variant name (a ``servers/*.toml`` stem).
    :param workload: workload name (``hello``, ``json``, ``cpu``, ``io``, ``mixed``).
    :param mode: one of :data:`serverlab.terms.MODES`.
    :param level: the load level: users (closed), target RPS (open) or request count (requests).
    :param users: concurrent Locust users (closed and requests modes; open mode: max in flight).
    :param repetition: 1-based repetition number.
    :param order: position of this cell in the run's (shuffled) execution order, 0-based.

    Outcome
    :param status: one of :data:`STATUSES`.
    :param error: why the cell failed or was unverified; ``None`` when ``ok``.
    :param started_at: Unix time (seconds) the measured period started.
    :param warmup_s: warm-up length whose figures were discarded (seconds).
    :param duration_s: the measured period (seconds): wall time from the end of the
        warm-up to the last response (requests mode) or the end of the run.

    Throughput and latency (from the lab's own HDR recorder, exact across processes)
    :param requests: responses received in the measured period (failures included).
    :param failures: of those, failed requests (errors, non-200 answers).
    :param rps: ``requests / duration_s``.
    :param latency_us: percentile key (see :func:`serverlab.terms.percentile_key`) -> microseconds,
        plus ``"max"`` and ``"mean"``; empty when nothing was measured.
    :param hdr: the merged HdrHistogram of response times in microseconds, base64
        encoded (``HdrHistogram.encode()``); ``None`` when nothing was measured.
    :param locust: Locust's own aggregate figures from its CSV (:class:`~serverlab.records.LocustFigures`),
        kept for comparison (its percentiles are rounded); ``None`` when it left none.

    Resources
    :param server_cpu_s: CPU seconds the server used during the measured period.
    :param server_peak_memory_bytes: the server's peak memory (cgroup or RSS sum).
    :param cpu_ms_per_request: ``server_cpu_s * 1000 / requests``.
    :param loadgen_cpu_s: CPU seconds the load generator used in the measured period.
    :param loadgen_cpu_budget: cores the load generator may use (its cpuset size).
    :param loadgen_saturated: the generator's CPU was >= 90% of its budget or Locust
        warned of high CPU: the figure then measures Locust, not the server.
    :param loadgen_busiest_share: the busiest Locust process's CPU share of one core in
        the window (0.99 = 99%); ``None`` in files before version 2.
    :param interference: CPU time other programs used on the server's and generator's
        CPUs in the window (:class:`~serverlab.records.Interference`); ``None`` when not measured.
    :param host_speed: the host-speed probe right before and after the cell against the run's
        median (:class:`~serverlab.records.HostSpeed`); ``None`` when not measured.
    :param bottleneck: what limited the cell (:class:`~serverlab.records.Bottleneck`, from
        :func:`serverlab.bottleneck.classify`); ``None`` for unmeasured cells and files before version 2.

    Mode-specific
    :param total_time_s: requests mode: wall time to complete all requests (seconds).
    :param open_load: open mode: how the schedule was kept (:class:`~serverlab.records.OpenLoad`); ``None`` otherwise.
    :param calibration: the variant's calibration against wrk (:class:`~serverlab.calibration.Calibration`),
        when it was calibrated.
    :param findings: what the measurement says about its own trustworthiness (saturation,
        warm-up trend, interference, ...), as data (:mod:`serverlab.findings`); the report
        words them.
    :param timeline: throughput and p99 per second from the start of the warm-up
        (:class:`~serverlab.records.Timeline`); ``None`` when not recorded (older runs).
    """

    run_id: str
    cell_id: str
    variant: str
    workload: str
    mode: str
    level: int
    users: int
    repetition: int
    order: int
    status: str
    error: str | None = None
    started_at: float | None = None
    warmup_s: float = 0.0
    duration_s: float = 0.0
    requests: int = 0
    failures: int = 0
    rps: float = 0.0
    latency_us: dict[str, float] = field(default_factory=dict)
    hdr: str | None = None
    locust: LocustFigures | None = None
    server_cpu_s: float | None = None
    server_peak_memory_bytes: int | None = None
    cpu_ms_per_request: float | None = None
    loadgen_cpu_s: float | None = None
    loadgen_cpu_budget: float | None = None
    loadgen_saturated: bool = False
    loadgen_busiest_share: float | None = None
    interference: Interference | None = None
    host_speed: HostSpeed | None = None
    bottleneck: Bottleneck | None = None
    total_time_s: float | None = None
    open_load: OpenLoad | None = None
    calibration: Calibration | None = None
    findings: tuple[Finding, ...] = ()
    timeline: Timeline | None = None
    kind: str = "cell"
    version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        try:
            check_field_types(self)
        except ValueError as err:
            raise ResultsError(f"cell {self.cell_id!r}: {err}" if isinstance(self.cell_id, str) else f"cell: {err}") from None
        # JSON shapes are accepted and stored typed: a calibration mapping, findings as mappings or a list,
        # each record's mapping (serverlab.records); Locust's figures as {} when it left none
        try:
            if isinstance(self.calibration, Mapping):
                object.__setattr__(self, "calibration", Calibration.from_dict(self.calibration))
            for name, record in CELL_RECORDS.items():
                value = getattr(self, name)
                if isinstance(value, Mapping):
                    object.__setattr__(self, name, record.from_dict(value) if value else None)
                elif value is not None and not isinstance(value, record):
                    raise ValueError(f"{name} must be a {record.__name__} or its mapping, got {value!r:.60}")
            object.__setattr__(self, "findings", tuple(
                finding_from_dict(f) if isinstance(f, Mapping) else f for f in self.findings))
        except (ValueError, TypeError) as err:
            raise ResultsError(f"cell {self.cell_id}: {err}") from None
        if not all(isinstance(f, Finding) for f in self.findings):
            raise ResultsError(f"cell {self.cell_id}: findings must be serverlab.findings.Finding objects")
        if self.status not in STATUSES:
            raise ResultsError(f"cell {self.cell_id}: status {self.status!r} not in {STATUSES}")
        if self.mode not in MODES:
            raise ResultsError(f"cell {self.cell_id}: mode {self.mode!r} not in {MODES}")
        if self.requests < 0 or self.failures < 0 or self.failures > self.requests:
            raise ResultsError(f"cell {self.cell_id}: bad counts requests={self.requests} failures={self.failures}")
        if self.status != CellStatus.OK and not self.error:
            raise ResultsError(f"cell {self.cell_id}: status {self.status!r} needs an error message")

    @property
    def key(self) -> tuple[str, str, str, int]:
        """The cell's identity without the repetition: (variant, workload, mode, level)."""
        return (self.variant, self.workload, self.mode, self.level)

    @property
    def failure_ratio(self) -> float:
        """Failed requests / requests (0.0 when nothing was measured)."""
        return self.failures / self.requests if self.requests else 0.0

    def to_json(self) -> str:
        """One JSON line (sorted keys, no newline); findings as ``{"kind", <figures>}`` objects."""
        data = asdict(self)
        data["findings"] = [f.to_dict() for f in self.findings]
        data["calibration"] = self.calibration.to_dict() if self.calibration is not None else None
        for name in CELL_RECORDS:
            value = getattr(self, name)
            data[name] = value.to_dict() if value is not None else None
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Cell:
        """A cell from a results line's object, of any readable schema version.

        Versions 1 and 2 stored ``warnings`` sentences: each becomes a :class:`~serverlab.findings.Note`.
        Versions 1-3 stored the variant's ``config`` and the ``workload_params`` in every cell:
        :meth:`RunHeader.from_dict` moves them into the header. Unknown keys are ignored.

        :raises ResultsError: a field is missing or malformed (a finding of an unknown kind, a
            calibration that is not numbers, a bad status or mode, inconsistent counts).
        """
        values = {k: v for k, v in data.items() if k in _CELL_FIELDS}
        if data.get("version", SCHEMA_VERSION) < 3:
            values["findings"] = tuple(Note(str(text)) for text in data.get("warnings") or ())
        try:
            return cls(**values)
        except TypeError as err:
            raise ResultsError(f"cell {data.get('cell_id', '?')}: {err}") from None




_CELL_FIELDS = {f.name for f in fields(Cell)}
_RUN_FIELDS = {f.name for f in fields(RunHeader)}
