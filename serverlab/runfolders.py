"""Run folders on disk: finding runs, numbering a cell's attempts, the ``reports/latest`` link,
writing files that name themselves when the disk is full, and how to ``--resume`` a run.

A run lives in ``reports/<run-id>/``: its ``results.jsonl``, the report, and
``cells/<cell>/attempt-<N>/`` with what each measurement of a cell left behind.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from serverlab import LabError


class DiskFullError(LabError):
    """The disk filled up during a run: the message names the file, the cells kept and the
    ``--resume`` command that continues once space is freed."""


@dataclass(frozen=True)
class RunFolder:
    """A run folder found under the reports folder.

    :param path: the folder; :param experiment: its experiment's name;
    :param started_at: Unix seconds it started (its header's, else the file's change time).
    """

    path: Path
    experiment: str
    started_at: float


def list_runs(reports_dir: Path) -> list[RunFolder]:
    """Every run folder under ``reports_dir`` (the ``latest`` link excluded), oldest first.

    A folder whose ``results.jsonl`` has an unreadable header is left out.
    """
    runs = []
    for results in Path(reports_dir).glob("*/results.jsonl"):
        if results.parent.is_symlink():
            continue
        try:
            with results.open(encoding="utf-8") as handle:
                header = json.loads(handle.readline())
            started = float(header.get("metadata", {}).get("started_at") or results.stat().st_ctime)
            runs.append(RunFolder(results.parent, str(header.get("experiment", {}).get("name")), started))
        except (OSError, ValueError, AttributeError, TypeError):
            continue
    return sorted(runs, key=lambda run: (run.started_at, run.path.name))


def new_attempt_dir(cell_root: Path) -> Path:
    """Create and return ``cell_root/attempt-<N>``, N one more than any attempt there (1 first).

    :raises OSError: if the folder cannot be created.
    """
    cell_root.mkdir(parents=True, exist_ok=True)
    numbers = [int(p.name.split("-", 1)[1]) for p in cell_root.glob("attempt-*") if p.name.split("-", 1)[1].isdigit()]
    attempt = cell_root / f"attempt-{max(numbers, default=0) + 1}"
    attempt.mkdir()
    return attempt


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` (UTF-8), naming ``path`` in the error if it fails.

    A full disk fails on the write, not the open, and Python's ``OSError`` then names no
    file ("No space left on device"): this one does.

    :raises OSError: with ``filename`` set to ``path``.
    """
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as err:
        raise OSError(err.errno, err.strerror or str(err), str(path)) from None


def update_latest(reports_dir: Path, run_dir: Path) -> None:
    """Point ``reports/latest`` at ``run_dir`` (a relative symlink)."""
    link = Path(reports_dir) / "latest"
    tmp = link.with_name(".latest.tmp")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(run_dir.name)
    os.replace(tmp, link)


def resume_command(experiment: str, run_dir: Path, reports_dir: Path, path: str = "",
                   shipped: Path | None = None) -> str:
    """The command that continues the run in ``run_dir``: ``serverlab run NAME --resume RUN_ID``,
    with ``--reports-dir`` when ``reports_dir`` is not ``reports/`` of the current folder.

    :param experiment: the experiment's name; :param path: its file, named instead when it
        is not the shipped experiment of that name (``serverlab run NAME`` would not find it).
    :param shipped: the file of the shipped experiment of that name
        (:func:`serverlab.experiment.list_experiments`), ``None`` when there is none.
    """
    which = experiment if not path or (shipped and shipped.resolve() == Path(path).resolve()) else path
    default = Path(reports_dir).resolve() == Path("reports").resolve()
    return f"serverlab run {which} --resume {run_dir.name}" + ("" if default else f" --reports-dir {reports_dir}")


def disk_full_message(err: OSError | LabError, run_dir: Path, resume: str) -> str:
    """Why a run stopped on a full disk: the file it was writing, the measured cells kept in
    ``run_dir/results.jsonl`` (counted from the file), and ``resume``, the command to continue.

    :param err: the ``OSError`` (``errno.ENOSPC``) or :class:`serverlab.results.ResultsDiskFull`;
        its ``filename`` names the file, if set.
    """
    from serverlab.results import read_results  # results imports nothing from here; kept lazy all the same
    from serverlab.terms import CellStatus

    try:
        _, cells = read_results(run_dir / "results.jsonl", warn=lambda _message: None)
        kept = sum(1 for cell in cells if cell.status == CellStatus.OK)
    except LabError:
        kept = 0
    where = getattr(err, "filename", None) or f"a file under {run_dir}"
    return (f"no space left on device while writing {where}; the run stopped there and its servers and load "
            f"generators were stopped. {kept} measured cell(s) are kept in {run_dir}/results.jsonl. Free space "
            f"on that disk (df -h {run_dir.parent}), then continue with: {resume}")
