"""Result rows and the JSON-lines files that hold them.

A results file (``results.jsonl``) starts with one **run header** line and then has
one **cell** line per measured (or failed) cell, appended and flushed the moment
the cell finishes, so an interrupted run keeps everything already measured::

    {"kind": "run", "version": 3, "run_id": ..., "experiment": {...}, "metadata": {...}}
    {"kind": "cell", "version": 3, "cell_id": ..., "variant": ..., ...}

Every report format is rendered from :class:`Cell` rows read back with
:func:`read_results`. Modelled on pyperf: versioned, sorted keys, validated on load.

Units: times in seconds unless the key ends in ``_ms`` (milliseconds) or ``_us``
(microseconds); memory in bytes; rates in requests per second (RPS).
"""

from __future__ import annotations

import errno
import json
import os
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

from serverlab import LabError
from serverlab.fieldtypes import check_field_types
from serverlab.findings import Finding, Note, finding_from_dict
from serverlab.terms import MODES, CellStatus

#: Schema version written into every line. Version 2 added the cell fields
#: ``loadgen_busiest_share``, ``interference`` and ``bottleneck`` (all optional);
#: version 3 stores a cell's ``findings`` as data (kind and figures) instead of its
#: ``warnings`` sentences.
SCHEMA_VERSION = 3
#: Versions this serverlab reads; older cells get the new fields' defaults, and their
#: ``warnings`` sentences become :class:`serverlab.findings.Note` findings.
READABLE_VERSIONS = (1, 2, 3)
#: Cell statuses: measured; server failed or crashed; server answered wrongly before load.
STATUSES = tuple(status.value for status in CellStatus)


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
    :param experiment: the experiment as loaded (a JSON-ready dict of its fields).
    :param metadata: shared facts stored once: ``backend``, ``image``, ``packages``
        (name -> version), ``cpu_model``, ``host_cores``, ``git_commit``, ``started_at``
        (Unix seconds), limits (``server_cpus``, ``server_memory``, ``server_cpuset``,
        ``loadgen_cpuset``), ``quietness_probe``, and ``host_speed``: the run's median host-speed
        probe and threshold (:func:`serverlab.hostspeed.baseline`; absent in older files).
    """

    run_id: str
    experiment: dict[str, Any]
    metadata: dict[str, Any]
    kind: str = "run"
    version: int = SCHEMA_VERSION


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
            elif value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise ValueError(f"calibration {key} {value!r} is not a number")
        return cls(**values)


@dataclass(frozen=True)
class Cell:
    """One measured cell: a variant × workload × load level × repetition.

    Identity
    :param run_id: the run this cell belongs to.
    :param cell_id: ``"<variant>/<workload>/<level>/r<repetition>"``, unique in a run.
    :param variant: server variant name (a ``servers/*.toml`` stem).
    :param workload: workload name (``hello``, ``json``, ``cpu``, ``io``, ``mixed``).
    :param workload_params: the workload's request parameters, e.g. ``{"n": 1000}``.
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
    :param locust: Locust's own aggregate figures from its CSV (``rps``, ``p50_ms``,
        ``p95_ms``, ``p99_ms``, ``requests``, ``failures``, ``avg_ms``), kept for
        comparison: its percentiles are rounded (whole ms below 100 ms).

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
        CPUs in the window (see :func:`serverlab.interference.interference_figures`):
        ``{"share", "flagged", "server_share", "loadgen_share", "steal_s", ...}``; ``None``
        when not measured.
    :param host_speed: the host-speed probe right before and after the cell against the run's
        median (see :func:`serverlab.hostspeed.cell_figures`): ``{"before_ms", "after_ms",
        "median_ms", "deviation", "threshold", "flagged"}``; ``None`` when not measured (and in
        files written before it existed: the field is optional, so schema 3 is unchanged).
    :param bottleneck: what limited the cell (see :func:`serverlab.bottleneck.classify`):
        ``{"class", "server_utilization", "generator_utilization", "interference_share",
        "reason"}``; ``None`` for unmeasured cells and files before version 2.

    Mode-specific
    :param total_time_s: requests mode: wall time to complete all requests (seconds).
    :param open_load: open mode: ``{"target_rps", "sent", "late_sends", "max_lag_ms",
        "fell_behind"}``; ``None`` otherwise.
    :param calibration: the variant's calibration against wrk (:class:`Calibration`),
        when it was calibrated.
    :param config: the effective configuration: the variant's record (workers,
        threads, keep_alive, command, ...) plus ``server_cpus``, ``server_memory``,
        ``server_cpuset``, ``loadgen_cpuset``, ``loadgen_processes``.
    :param findings: what the measurement says about its own trustworthiness (saturation,
        warm-up trend, interference, ...), as data (:mod:`serverlab.findings`); the report
        words them.
    :param timeline: throughput and latency over time, one entry per second from the
        start of the warm-up: ``{"interval_s": 1.0, "warmup_s": s, "rps": [...],
        "p99_us": [µs or None, ...]}``; ``None`` when not recorded (older runs).
    """

    run_id: str
    cell_id: str
    variant: str
    workload: str
    workload_params: dict[str, Any]
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
    locust: dict[str, float] = field(default_factory=dict)
    server_cpu_s: float | None = None
    server_peak_memory_bytes: int | None = None
    cpu_ms_per_request: float | None = None
    loadgen_cpu_s: float | None = None
    loadgen_cpu_budget: float | None = None
    loadgen_saturated: bool = False
    loadgen_busiest_share: float | None = None
    interference: dict[str, Any] | None = None
    host_speed: dict[str, Any] | None = None
    bottleneck: dict[str, Any] | None = None
    total_time_s: float | None = None
    open_load: dict[str, Any] | None = None
    calibration: Calibration | None = None
    config: dict[str, Any] = field(default_factory=dict)
    findings: tuple[Finding, ...] = ()
    timeline: dict[str, Any] | None = None
    kind: str = "cell"
    version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        try:
            check_field_types(self)
        except ValueError as err:
            raise ResultsError(f"cell {self.cell_id!r}: {err}" if isinstance(self.cell_id, str) else f"cell: {err}") from None
        # JSON shapes are accepted and stored typed: a calibration mapping, findings as mappings or a list
        try:
            if isinstance(self.calibration, Mapping):
                object.__setattr__(self, "calibration", Calibration.from_dict(self.calibration))
            object.__setattr__(self, "findings", tuple(
                finding_from_dict(f) if isinstance(f, Mapping) else f for f in self.findings))
        except ValueError as err:
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
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Cell:
        """A cell from a results line's object, of any readable schema version.

        Versions 1 and 2 stored ``warnings`` sentences: each becomes a :class:`~serverlab.findings.Note`.
        Unknown keys are ignored.

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

class ResultsWriter:
    """Append-only writer for one run's results file.

    Creates the file with its :class:`RunHeader`, or (``resume=True``) opens an
    existing one after checking its header has the same ``run_id``. Each
    :meth:`append` writes, flushes and fsyncs one line.

    :raises ResultsError: if the file cannot be written (:class:`ResultsDiskFull` when the
        disk is full: the runner then names the cells kept and the ``--resume`` command).
    """

    def __init__(self, path: Path, header: RunHeader, resume: bool = False) -> None:
        self.path = Path(path)
        if resume:
            existing = read_results(self.path, warn=lambda _message: None)[0]
            if existing.run_id != header.run_id:
                raise ResultsError(f"{self.path}: holds run {existing.run_id!r}, not {header.run_id!r}")
            self._drop_partial_line()
        else:
            if self.path.exists():
                raise ResultsError(f"{self.path}: already exists; use --resume to continue it")
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._write_line(json.dumps(asdict(header), sort_keys=True))

    def _drop_partial_line(self) -> None:
        """Cut a last line that is not a valid cell (a write cut short, or garbage), so the
        next cell starts on a line of its own; the cut text is kept in ``<file>.dropped``."""
        data = self.path.read_bytes()
        lines = data.splitlines(keepends=True)
        while lines and not lines[-1].strip():
            lines.pop()
        if len(lines) < 2:
            return
        try:
            _parse_cell(self.path, len(lines), lines[-1].decode("utf-8"))
        except (ResultsError, UnicodeDecodeError):
            keep = sum(len(line) for line in lines[:-1])
            with self.path.with_name(self.path.name + ".dropped").open("ab") as dropped:
                dropped.write(lines[-1].rstrip(b"\n") + b"\n")
            with self.path.open("r+b") as handle:
                handle.truncate(keep)
            return
        if not data.endswith(b"\n"):  # a valid cell whose newline was never written
            with self.path.open("ab") as handle:
                handle.write(b"\n")

    def _write_line(self, line: str) -> None:
        try:
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(line + "\n")
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as err:
            if err.errno == errno.ENOSPC:
                raise ResultsDiskFull(f"cannot write to {self.path}: {err.strerror} (the disk is full: free space, "
                                      "then resume the run); every cell written before this one is kept",
                                      self.path) from None
            raise ResultsError(f"cannot write to {self.path}: {err.strerror}; every cell written "
                               "before this one is kept") from None

    def append(self, cell: Cell) -> None:
        """Append one cell as a JSON line, durably."""
        self._write_line(cell.to_json())


class _PartialLine(ResultsError):
    """A line that is not JSON (as a write cut short leaves it)."""


def _parse_line(path: Path, number: int, line: str) -> dict[str, Any]:
    try:
        data = json.loads(line)
    except json.JSONDecodeError as err:
        raise _PartialLine(f"{path}:{number}: not JSON ({err.msg})") from None
    if not isinstance(data, dict):
        raise ResultsError(f"{path}:{number}: a line must be a JSON object")
    if data.get("version") not in READABLE_VERSIONS:
        raise ResultsError(f"{path}:{number}: schema version {data.get('version')!r}, this serverlab reads "
                           f"{', '.join(map(str, READABLE_VERSIONS))}")
    return data


def _parse_cell(path: Path, number: int, line: str) -> Cell:
    """Parse line ``number`` of ``path`` as a cell.

    :raises ResultsError: naming the line if it is not a valid cell line.
    """
    data = _parse_line(path, number, line)
    if data.get("kind") != "cell":
        raise ResultsError(f"{path}:{number}: expected a cell line, got kind {data.get('kind')!r}")
    try:
        return Cell.from_dict(data)
    except ResultsError as err:
        raise ResultsError(f"{path}:{number}: {err}") from None


def _warn_stderr(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def read_results(path: Path, warn: Callable[[str], None] | None = None) -> tuple[RunHeader, list[Cell]]:
    """Read one results file.

    A bad last line (a run killed mid-write, or garbage) is skipped with a warning
    naming its line number; a bad line anywhere else is an error. Of cells with the
    same ``cell_id`` the last one wins (a resumed run re-measures failed cells).

    :param warn: receives the warning text (default: printed to stderr as ``warning: ...``).
    :return: the run header and its cells in file order.
    :raises ResultsError: if the file is missing, empty, not UTF-8, or malformed.
    """
    path = Path(path)
    warn = warn or _warn_stderr
    try:
        lines = path.read_text(encoding="utf-8", errors="surrogateescape").splitlines()
    except OSError as err:
        raise ResultsError(f"{path}: {err.strerror}") from None
    if not lines:
        raise ResultsError(f"{path}: empty results file")
    header_data = _parse_line(path, 1, lines[0])
    if header_data.get("kind") != "run":
        raise ResultsError(f"{path}:1: the first line must be the run header")
    try:
        header = RunHeader(**{k: v for k, v in header_data.items() if k in _RUN_FIELDS})
    except TypeError as err:
        raise ResultsError(f"{path}:1: not a run header ({err})") from None
    try:
        check_field_types(header)
    except ValueError as err:
        raise ResultsError(f"{path}:1: run header: {err}") from None
    last = max((n for n, line in enumerate(lines, start=1) if line.strip()), default=1)
    cells: dict[str, Cell] = {}
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        try:
            cell = _parse_cell(path, number, line)
        except ResultsError as err:
            if number == last:
                warn(f"skipped line {number} of {path}, the last one: {str(err).split(': ', 1)[-1]} "
                     "(a write cut short, or garbage); its cell counts as not measured")
                break
            raise
        cells.pop(cell.cell_id, None)
        cells[cell.cell_id] = cell
    return header, list(cells.values())


def read_many(paths: Iterable[Path]) -> Iterator[tuple[RunHeader, list[Cell]]]:
    """Read several results files (see :func:`read_results`), one (header, cells) each."""
    for path in paths:
        yield read_results(Path(path))
