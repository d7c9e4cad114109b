"""``index.html``: the report document with its charts, through a Jinja2 template (autoescaped)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from serverlab.report.document import build_document
from serverlab.report.model import Document
from serverlab.report.rows import Row
from serverlab.results import RunHeader

_TEMPLATES = Path(__file__).resolve().parents[1] / "templates"


def html(doc: Document) -> str:
    """Render a laid-out document (with charts, see :func:`build_document`) as ``index.html`` text."""
    import jinja2  # only where HTML is rendered

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(_TEMPLATES)), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    return env.get_template("report.html.j2").render(doc=doc)


def render_html(header: RunHeader, rows: Sequence[Row], verdict_texts: dict[str, str] | None = None,
                *, extra_warnings: Sequence[str] = ()) -> str:
    """Render ``index.html``: the Markdown report's content plus inline SVG charts.

    Self-contained (inline CSS and SVG, no scripts, no external resources); rendered
    with Jinja2 from ``serverlab/templates/report.html.j2`` with autoescaping on.

    :param header: the run header.
    :param rows: rows from :func:`serverlab.report.rows.aggregate`.
    :param verdict_texts: from :func:`serverlab.report.verdicts.verdicts`; computed when ``None``.
    :param extra_warnings: warnings about the inputs.
    :return: HTML text.
    """
    return html(build_document(header, rows, verdict_texts, charts=True, extra_warnings=extra_warnings))
