"""``summary.md``: the report document as Markdown, and the one Markdown table function.

:func:`md_table` renders every table of the reports and of ``serverlab compare``, so
they escape and lay out cells the same way.
"""

from __future__ import annotations

from typing import Sequence

from serverlab.report.document import build_document
from serverlab.report.model import Document, Table
from serverlab.report.rows import Row
from serverlab.results import RunHeader


def _md_escape(text: str) -> str:
    """Text safe inside a Markdown table cell or list item: ``|`` and ``\\`` escaped, line breaks as spaces."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("\r", " ")


def md_table(table: Table) -> list[str]:
    """A table's lines: its title (``###``), intro paragraphs, header, rule, rows, and a blank line."""
    lines: list[str] = []
    if table.title:
        lines += [f"### {table.title}", ""]
    for paragraph in table.intro:
        lines += [paragraph, ""]
    lines.append("| " + " | ".join(_md_escape(h) for h in table.headers) + " |")
    lines.append("|" + "|".join("---" for _ in table.headers) + "|")
    for row in table.rows:
        cells = ["; ".join(c.splitlines()) if i in table.list_columns else c for i, c in enumerate(row)]
        lines.append("| " + " | ".join(_md_escape(c) for c in cells) + " |")
    lines.append("")
    return lines


def markdown(doc: Document) -> str:
    """Render a laid-out document as ``summary.md`` text (charts are left to the HTML).

    The answer comes first, paste-able into an issue: one line per workload and its
    compact table (the verdict section), then the reasoning per variant, the run, the
    detailed tables, the findings grouped (the full list folded) and the failed cells.
    """
    lines = [f"# {doc.title}", "", "## Verdict", ""]
    lines += [f"- {_md_escape(b.sentence)}" for b in doc.blocks] or ["- no measured workloads"]
    lines.append("")
    for block in doc.blocks:
        if len(doc.blocks) > 1:
            lines += [f"### {block.workload} ({block.where})", ""]
        lines += md_table(block.table)
    reasons = [b for b in doc.blocks if b.reasons or b.principle]
    if reasons:
        lines += ["## Why this order", ""]
        for block in reasons:
            lines += [f"### {block.workload} ({block.where})", ""]
            if block.principle:
                lines += [block.principle, ""]
            if block.reasons:
                lines += md_table(block.reasons)
    lines += ["## Run", ""]
    lines += [f"- **{label}**: {_md_escape(value)}" for label, value in doc.metadata]
    lines.append("")
    if doc.settings:
        lines += md_table(Table(["setting", "value"], [[s.name, ", ".join(s.items) if s.items else s.text]
                                                         for s in doc.settings], title="Settings"))
    for section in doc.sections:
        lines += [f"## {section.title}", ""]
        for paragraph in section.paragraphs:
            lines += [paragraph, ""]
        for table in section.tables:
            lines += md_table(table)
    lines += ["## Findings", ""]
    lines += [f"- {_md_escape(f)}" for f in doc.findings] or ["- none"]
    lines.append("")
    if doc.warnings:
        lines += [f"<details><summary>All {len(doc.warnings)} findings, one per row and repetition</summary>", ""]
        lines += [f"- {_md_escape(w)}" for w in doc.warnings]
        lines += ["", "</details>", ""]
    lines += ["## Failed cells", ""]
    lines += [f"- {f.cell_id} ({f.status}): {_md_escape(f.error)}" for f in doc.failed] or ["- none"]
    lines += ["", "Charts are in index.html.", ""]
    return "\n".join(lines)


def render_markdown(header: RunHeader, rows: Sequence[Row], verdict_texts: dict[str, str] | None = None,
                    *, extra_warnings: Sequence[str] = ()) -> str:
    """Render ``summary.md``: the answer per workload (a sentence and a compact table),
    the reasoning per variant, metadata and settings, one table per workload and mode,
    requests/open/calibration tables where applicable, configuration, the findings
    grouped (every one folded below) and failed cells.

    :param header: the run header.
    :param rows: rows from :func:`serverlab.report.rows.aggregate`.
    :param verdict_texts: from :func:`serverlab.report.verdicts.verdicts`; computed when ``None``.
    :param extra_warnings: warnings about the inputs.
    :return: Markdown text.
    """
    return markdown(build_document(header, rows, verdict_texts, extra_warnings=extra_warnings))
