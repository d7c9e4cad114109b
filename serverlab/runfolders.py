"""Run folders on disk: finding runs, numbering a cell's attempts, the ``reports/latest`` link.

A run lives in ``reports/<run-id>/``: its ``results.jsonl``, the report, and
``cells/<cell>/attempt-<N>/`` with what each measurement of a cell left behind.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path


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


def update_latest(reports_dir: Path, run_dir: Path) -> None:
    """Point ``reports/latest`` at ``run_dir`` (a relative symlink)."""
    link = Path(reports_dir) / "latest"
    tmp = link.with_name(".latest.tmp")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(run_dir.name)
    os.replace(tmp, link)
