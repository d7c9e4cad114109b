"""``report.json``: the answer per workload as data, the run's rows, the verdicts, findings and sustainable throughput."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from typing import Any, Sequence

from serverlab import __version__
from serverlab.report.document import build_document
from serverlab.report.model import Document
from serverlab.report.rows import Row
from serverlab.report.sentences import row_warnings
from serverlab.report.verdicts import rankings
from serverlab.results import RunHeader


def _jsonable(value: Any) -> Any:
    """``value`` with non-finite floats as ``None`` and tuples/sets as lists (keys as strings)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    return value


def _row_dict(row: Row) -> dict[str, Any]:
    """A row as report.json holds it: its fields, the findings as their warnings."""
    data = asdict(row)
    del data["findings"]
    data["bottleneck"] = row.bottleneck.to_dict() if row.bottleneck is not None else None
    data["declared"] = row.declared.to_dict()
    data["warnings"] = list(row_warnings(row))
    return data


def json_text(doc: Document, header: RunHeader, rows: Sequence[Row]) -> str:
    """Render ``report.json`` from a laid-out document (verdicts, sustainable throughput,
    warnings) and the rows it was laid out from (the data).

    :return: JSON text (sorted keys, indented, a final newline).
    """
    data = {
        "kind": "report", "version": 2, "serverlab": __version__, "run_id": header.run_id,
        "experiment": header.experiment, "metadata": header.metadata,
        "answers": {a.workload: a.to_dict() for a in doc.answers}, "verdicts": dict(doc.verdicts),
        "findings": list(doc.findings),
        "sustainable_throughput": [{"workload": w, "variant": v, "rps": t} for w, v, t in doc.sustainable_throughput],
        "warnings": list(doc.warnings),
        "rankings": {w: r.to_dict() for w, r in rankings(rows).items()},
        "rows": [_row_dict(r) for r in rows],
    }
    return json.dumps(_jsonable(data), indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"


def render_json(header: RunHeader, rows: Sequence[Row], verdict_texts: dict[str, str] | None = None,
                *, extra_warnings: Sequence[str] = ()) -> str:
    """Render ``report.json``: ``{"kind": "report", "version": 2, "run_id", "experiment",
    "metadata", "answers", "verdicts", "findings", "sustainable_throughput", "warnings",
    "rankings", "rows": [Row as dict]}``.

    ``answers`` is the answer as data, per workload (:meth:`serverlab.report.answers.Answer.to_dict`):
    ``{"sentence", "winner", "runner_up", "lead", "places": [[variant, ...], ...], "variants":
    [{"variant", "place", "shared", "evidence", "figures", "reasons", ...}], ...}``; ``verdicts``
    the full reasoning in words; ``findings`` the warnings grouped per kind and variant;
    ``rankings`` the places behind each verdict with every interval and the decisive evidence
    (:meth:`serverlab.report.ranking.LevelRanking.to_dict`).

    Units as in :class:`~serverlab.report.rows.Row` (µs, s, ms, bytes, RPS); non-finite
    numbers become ``null``. Each row's findings appear as its ``warnings`` sentences.

    :param header: the run header.
    :param rows: rows from :func:`serverlab.report.rows.aggregate`.
    :param verdict_texts: from :func:`serverlab.report.verdicts.verdicts`; computed when ``None``.
    :param extra_warnings: warnings about the inputs.
    :return: JSON text (sorted keys, indented).
    """
    rows = list(rows)
    return json_text(build_document(header, rows, verdict_texts, extra_warnings=extra_warnings), header, rows)
