"""Reports: a pure function of results files.

:func:`aggregate` turns the :class:`~serverlab.results.Cell` rows of a run into one
:class:`Row` per (variant, workload, mode, level) over its repetitions; every
format (``summary.md``, ``index.html``, ``report.json``) and every chart is
rendered from one :class:`Document` laid out from those rows, so they always agree.
:func:`write_report` does all of it for results files; :func:`compare` compares two runs.

The package, by job (each module imports only those above it):

* :mod:`~serverlab.report.sentences` — every finding in words, once;
* :mod:`~serverlab.report.ranking` — who is fastest, on evidence valid for each bottleneck class;
* :mod:`~serverlab.report.rows` — aggregation into rows and their findings;
* :mod:`~serverlab.report.formatting`, :mod:`~serverlab.report.verdicts` — number formats; verdicts;
* :mod:`~serverlab.report.answer_data`, :mod:`~serverlab.report.answers` — the answer first: per workload a
  sentence, the places and their evidence;
* :mod:`~serverlab.report.littles` — Little's law per I/O row and an async workload against its sync
  twin, for the verdicts and a table (:class:`~serverlab.report.model.Table`, imported when one is built);
* :mod:`~serverlab.report.model`, :mod:`~serverlab.report.tables`, :mod:`~serverlab.report.document` —
  the document every format shows, and ``compare``'s table;
* :mod:`~serverlab.report.charts`, :mod:`~serverlab.report.answer_chart` — matplotlib charts, imported
  only when HTML is rendered;
* :mod:`~serverlab.report.to_markdown`, :mod:`~serverlab.report.to_html`, :mod:`~serverlab.report.to_json` —
  one renderer per format;
* :mod:`~serverlab.report.files`, :mod:`~serverlab.report.compare` — results files in, reports out.

Units: rows keep latency in microseconds (``_us``), times in seconds (``_s``), CPU
per request in milliseconds (``_ms``), memory in bytes, rates in RPS; tables show
latency in milliseconds.
"""

from __future__ import annotations

from typing import Any

from serverlab.report.answer_data import Answer
from serverlab.report.answers import answer_rows, answers
from serverlab.report.compare import compare
from serverlab.report.document import build_document
from serverlab.report.files import REPORT_FILES, load_results, planned_cell_count, write_report
from serverlab.report.model import Chart, Document, Section, Table
from serverlab.report.rows import CALIBRATION_MIN_RATIO, FailedCell, ReportError, Row, RowFinding, aggregate
from serverlab.report.sentences import NOTES, SENTENCES, UI_MEASURED_SENTENCE, sentence, warning
from serverlab.report.tables import ARTICLE_TOTAL_TIME_S, TABLE_PERCENTILES
from serverlab.report.to_html import render_html
from serverlab.report.to_json import render_json
from serverlab.report.to_markdown import render_markdown
from serverlab.report.verdicts import (
    DEFAULT_P99_BOUND_MS,
    VERDICT_MODE_PREFERENCE,
    proxy_pairs,
    proxy_sentence,
    sustainable_throughput,
    verdicts,
)
from serverlab.stats import NO_CI_NOTE

_CHART_FUNCTIONS = ("render_charts", "ranking_charts", "timeline_charts")


def __getattr__(name: str) -> Any:
    """The chart functions, imported on first use (they load matplotlib; aggregating does not)."""
    if name in _CHART_FUNCTIONS:
        from serverlab.report import charts

        return getattr(charts, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ARTICLE_TOTAL_TIME_S", "Answer", "answer_rows", "answers", "CALIBRATION_MIN_RATIO", "DEFAULT_P99_BOUND_MS", "NOTES", "NO_CI_NOTE", "REPORT_FILES",
    "SENTENCES", "TABLE_PERCENTILES", "UI_MEASURED_SENTENCE", "VERDICT_MODE_PREFERENCE", "Chart", "Document",
    "FailedCell", "ReportError", "Row", "RowFinding", "Section", "Table", "aggregate", "build_document", "compare",
    "load_results", "planned_cell_count", "proxy_pairs", "proxy_sentence", "ranking_charts", "render_charts",
    "render_html", "render_json", "render_markdown", "sentence", "sustainable_throughput", "timeline_charts",
    "verdicts", "warning", "write_report",
]
