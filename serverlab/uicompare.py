"""The web UI's side of results: a Compare tab's figures as ``make report`` files, and the runs list.

The Locust web UI (:mod:`serverlab.ui.compare`) measures servers one after another
and keeps, per server, what its HDR recorders merged; :func:`comparison_results`
turns that into the same ``results.jsonl`` (a :class:`~serverlab.results.RunHeader`
line, then one :class:`~serverlab.results.Cell` per server) and ``summary.md``
(:func:`serverlab.report.render_markdown`) that ``make report`` writes, so
``serverlab report`` and ``serverlab compare`` read a comparison made in the UI.
:func:`list_runs` lists the runs the Reports tab offers.

No Locust import here: this module is used by the Locust master and by tests alike.
Units: latency in µs, durations in seconds, rates in RPS.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, Mapping, Sequence

from serverlab import LabError
from serverlab.bottleneck import GENERATOR_BOUND_UTILIZATION
from serverlab.findings import UIMeasured
from serverlab.report import UI_MEASURED_SENTENCE, aggregate, render_markdown
from serverlab.results import Cell, RunHeader
from serverlab.terms import CellStatus, Mode

#: What a UI-measured cell cannot know (the server's cgroup is out of the UI's reach): the
#: sentence of its :class:`~serverlab.findings.UIMeasured` finding.
UI_CELL_WARNING = UI_MEASURED_SENTENCE


class UICompareError(LabError):
    """A comparison has nothing measured to write."""


def comparison_results(compare_id: str, workload: str, workload_params: dict[str, Any], users: int,
                       seconds: float, warmup_s: float, seed: int, started_at: float,
                       rows: Sequence[Mapping[str, Any]], configs: Mapping[str, dict[str, Any]]) -> tuple[str, str]:
    """Render a Compare tab's rows as ``results.jsonl`` and ``summary.md`` text.

    :param compare_id: the run id (e.g. ``"20261121-053258-ui-compare"``).
    :param workload: workload name (``hello``, ``cpu``, ...).
    :param workload_params: its request parameters, e.g. ``{"n": 1000}``.
    :param users: concurrent users (closed model).
    :param seconds: measured seconds per server.
    :param warmup_s: discarded warm-up seconds per server.
    :param seed: the seed that shuffled the server order.
    :param started_at: Unix time the comparison started.
    :param rows: one mapping per server in run order with ``server``, ``position``,
        ``status`` (``ok``/``failed``; others are skipped), ``error``, ``started_at``,
        ``duration_s``, ``requests``, ``failures``, ``rps``, ``latency_us`` (µs),
        ``hdr`` (encoded merged histogram), ``processes`` (Locust processes merged) and
        ``generator_share`` (the busiest Locust process's share of a core, or ``None``).
    :param configs: variant name -> its configuration record (``Variant.record()``).
    :return: ``(results.jsonl text, summary.md text)``.
    :raises UICompareError: when no row was measured.
    :raises serverlab.results.ResultsError: if a row is inconsistent (e.g. failures > requests).
    """
    measured = [r for r in rows if r.get("status") in (CellStatus.OK, CellStatus.FAILED)]
    if not measured:
        raise UICompareError("no server has been measured yet")
    header = RunHeader(
        run_id=compare_id,
        experiment={"name": "ui-compare", "description": "Compare tab of the Locust web UI",
                    "servers": sorted(r["server"] for r in rows), "workloads": [workload], "mode": Mode.CLOSED,
                    "users": [users], "duration": seconds, "warmup": warmup_s, "repetitions": 1, "seed": seed},
        metadata={"backend": "locust web UI", "started_at": started_at,
                  "loadgen_processes": max((int(r.get("processes") or 0) for r in measured), default=0)},
    )
    cells = []
    for row in measured:
        status = row["status"] if row.get("requests") else CellStatus.FAILED
        share = None if row.get("generator_share") is None else float(row["generator_share"])
        saturated = share is not None and share >= GENERATOR_BOUND_UTILIZATION
        cells.append(Cell(
            run_id=compare_id, cell_id=f"{row['server']}/{workload}/{users}/r1", variant=row["server"],
            workload=workload, workload_params=dict(workload_params), mode=Mode.CLOSED, level=users, users=users,
            repetition=1, order=int(row.get("position", 0)), status=status,
            error=row.get("error") or (None if status == CellStatus.OK else "no responses in the measured period"),
            started_at=row.get("started_at"), warmup_s=warmup_s, duration_s=float(row.get("duration_s") or 0.0),
            requests=int(row.get("requests") or 0), failures=int(row.get("failures") or 0),
            rps=float(row.get("rps") or 0.0), latency_us=dict(row.get("latency_us") or {}), hdr=row.get("hdr"),
            config={**configs.get(row["server"], {}), "loadgen_processes": int(row.get("processes") or 0)},
            findings=(UIMeasured(),), loadgen_busiest_share=share, loadgen_saturated=saturated,
        ))
    jsonl = "\n".join([json.dumps(asdict(header), sort_keys=True), *(c.to_json() for c in cells)]) + "\n"
    return jsonl, render_markdown(header, aggregate(header, cells))


def list_runs(directory: Path) -> list[dict[str, Any]]:
    """Runs under ``directory``: folders holding ``results.jsonl``, newest first (symlinks such as ``latest`` skipped).

    :param directory: the reports folder (a missing folder has no runs).
    :return: ``[{"name", "experiment", "cells", "has_html", "mtime"}, ...]``; ``cells``
        counts the lines after the header, ``mtime`` is the results file's (Unix seconds).
    """
    runs: list[dict[str, Any]] = []
    if not Path(directory).is_dir():
        return runs
    for path in Path(directory).iterdir():
        results = path / "results.jsonl"
        if path.is_symlink() or not results.is_file():
            continue
        experiment, cells = "?", 0
        try:
            with results.open(encoding="utf-8") as handle:
                first = json.loads(handle.readline() or "{}")
                experiment = str((first.get("experiment") or {}).get("name", "?"))
                cells = sum(1 for line in handle if line.strip())
        except (OSError, ValueError, AttributeError):
            pass
        runs.append({"name": path.name, "experiment": experiment, "cells": cells,
                     "has_html": (path / "index.html").is_file(), "mtime": results.stat().st_mtime})
    runs.sort(key=lambda r: (r["mtime"], r["name"]), reverse=True)
    return runs
