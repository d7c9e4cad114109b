"""The JSON-lines results file: written cell by cell as a run measures, read back for every report.

A results file (``results.jsonl``) starts with one **run header** line and then has
one **cell** line per measured (or failed) cell, appended and flushed the moment
the cell finishes, so an interrupted run keeps everything already measured::

    {"kind": "run", "version": 4, "run_id": ..., "experiment": {...}, "metadata": {...}, "variants": {...}}
    {"kind": "cell", "version": 4, "cell_id": ..., "variant": ..., ...}

The records themselves (:class:`RunHeader`, :class:`Cell`, the schema version and the
migrations of older files) are :mod:`serverlab.resultrecords`; every report format is
rendered from the cells :func:`read_results` gives back. Modelled on pyperf: versioned,
sorted keys, validated on load.
"""

from __future__ import annotations

import errno
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from serverlab.resultrecords import (READABLE_VERSIONS, SCHEMA_VERSION, STATUSES, Calibration, Cell, ResultsDiskFull,
                                     ResultsError, RunHeader)

__all__ = ["READABLE_VERSIONS", "SCHEMA_VERSION", "STATUSES", "Calibration", "Cell", "ResultsDiskFull", "ResultsError",
           "ResultsWriter", "RunHeader", "read_many", "read_results"]


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
            self._write_line(header.to_json())

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
    return _cell_of(path, number, _parse_line(path, number, line))


def _cell_of(path: Path, number: int, data: dict[str, Any]) -> Cell:
    """The cell of line ``number``'s parsed object.

    :raises ResultsError: naming the line if it is not a valid cell line.
    """
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
    last = max((n for n, line in enumerate(lines, start=1) if line.strip()), default=1)
    cells: dict[str, Cell] = {}
    older: list[dict[str, Any]] = []  # lines of versions 1-3: their configs move into the header
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        try:
            data = _parse_line(path, number, line)
            cell = _cell_of(path, number, data)
        except ResultsError as err:
            if number == last:
                warn(f"skipped line {number} of {path}, the last one: {str(err).split(': ', 1)[-1]} "
                     "(a write cut short, or garbage); its cell counts as not measured")
                break
            raise
        if cell.version < 4:
            older.append(data)
        cells.pop(cell.cell_id, None)
        cells[cell.cell_id] = cell
    try:
        header = RunHeader.from_dict(header_data, older)
    except ResultsError as err:
        raise ResultsError(f"{path}:1: {err}") from None
    return header, list(cells.values())


def read_many(paths: Iterable[Path]) -> Iterator[tuple[RunHeader, list[Cell]]]:
    """Read several results files (see :func:`read_results`), one (header, cells) each."""
    for path in paths:
        yield read_results(Path(path))
