"""Results files in, report files out: :func:`load_results` and :func:`write_report`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from serverlab.report.document import build_document
from serverlab.report.rows import ReportError, aggregate
from serverlab.report.to_html import html
from serverlab.report.to_json import json_text
from serverlab.report.to_markdown import markdown
from serverlab.results import Cell, RunHeader, read_results
from serverlab.runmatch import check_agree

#: File names :func:`write_report` writes.
REPORT_FILES = {"html": "index.html", "markdown": "summary.md", "json": "report.json"}


def planned_cell_count(experiment: dict[str, Any]) -> int | None:
    """Cells a run of this experiment record plans (servers × workloads × levels × repetitions), or ``None``."""
    try:
        return (len(experiment["servers"]) * len(experiment["workloads"]) * len(experiment["levels"])
                * int(experiment["repetitions"]))
    except (KeyError, TypeError, ValueError):
        return None


def load_results(results_paths: Sequence[Path]) -> tuple[RunHeader, list[Cell], list[str]]:
    """Read one or more results files of the same experiment and concatenate their cells.

    :param results_paths: ``results.jsonl`` paths.
    :return: (a header for all of them, cells, warnings about differences between files).
        With several runs the header's ``run_id`` joins their ids with ``" + "``.
    :raises ReportError: no paths, files of different experiments, or no cells at all.
    :raises serverlab.runmatch.RunsDisagree: the runs disagree on their image, budget or a
        variant's settings (:func:`serverlab.runmatch.check_agree`), naming the key and both values.
    :raises serverlab.results.ResultsError: a file is missing or malformed.
    """
    paths = [Path(p) for p in results_paths]
    if not paths:
        raise ReportError("no results files given")
    loaded = [read_results(p) for p in paths]
    headers = [h for h, _ in loaded]
    first = headers[0]
    extra: list[str] = []
    for path, h in zip(paths[1:], headers[1:]):
        if h.experiment.get("name") != first.experiment.get("name"):
            raise ReportError(f"{path}: experiment {h.experiment.get('name')!r}, but {paths[0]} has "
                              f"{first.experiment.get('name')!r}; a report covers one experiment "
                              f"(use 'compare' for two runs)")
        check_agree(first, h, (str(paths[0]), str(path)))
        if h.experiment != first.experiment:
            extra.append(f"{path}: the experiment's settings differ from {paths[0]}'s; the cells were merged anyway.")
        for key in ("backend", "cpu_model", "host_cores"):
            if h.metadata.get(key) != first.metadata.get(key):
                extra.append(f"{path}: {key} {h.metadata.get(key)!r} differs from {first.metadata.get(key)!r} "
                             f"in {paths[0]}; figures from the two may not be comparable.")
    for path, (h, cs) in zip(paths, loaded):
        planned = planned_cell_count(h.experiment)
        if planned and len({c.cell_id for c in cs}) < planned:
            missing = planned - len({c.cell_id for c in cs})
            extra.append(f"{path}: {missing} of {planned} planned cells are missing (the run was stopped, or a "
                         f"results line was lost); continue it with: serverlab run {h.experiment.get('name')} "
                         f"--resume {h.run_id}")
    cells = [c for _, cs in loaded for c in cs]
    if not cells:
        raise ReportError(f"no cells in {', '.join(map(str, paths))}: nothing was measured yet")
    run_ids = list(dict.fromkeys(h.run_id for h in headers))
    header = first if len(run_ids) == 1 else RunHeader(
        " + ".join(run_ids), first.experiment, first.metadata,
        {name: v for h in reversed(headers) for name, v in h.variants.items()}, migrated=first.migrated)
    return header, cells, extra


def _write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it over ``path``."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_report(results_paths: Sequence[Path], out_dir: Path) -> dict[str, Path]:
    """Write ``index.html``, ``summary.md`` and ``report.json`` for results files.

    Results files are only read. Several files of the same experiment are
    concatenated (see :func:`load_results`).

    :param results_paths: one or more ``results.jsonl`` paths.
    :param out_dir: the report folder (created if needed).
    :return: ``{"html": .../index.html, "markdown": .../summary.md, "json": .../report.json}``.
    :raises ReportError: see :func:`load_results`, or an output path is a results file.
    :raises serverlab.results.ResultsError: a results file is missing or malformed.
    """
    out_dir = Path(out_dir)
    targets = {kind: out_dir / name for kind, name in REPORT_FILES.items()}
    inputs = {Path(p).resolve() for p in results_paths}
    for target in targets.values():
        if target.resolve() in inputs:
            raise ReportError(f"{target}: is a results file; choose another report folder")
    header, cells, extra = load_results(results_paths)
    rows = aggregate(header, cells)
    doc = build_document(header, rows, charts=True, extra_warnings=extra)  # one document, three formats
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_atomic(targets["markdown"], markdown(doc))
    _write_atomic(targets["html"], html(doc))
    _write_atomic(targets["json"], json_text(doc, header, rows))
    return targets
