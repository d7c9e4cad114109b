"""Lay out a report: from rows to a :class:`~serverlab.report.model.Document` every format renders.

:func:`build_document` writes the answer per workload first (sentence, ranking chart,
compact table, reasoning), then the run's metadata and settings, the verdicts, one section per
(workload, mode) with its tables (and, for HTML, its charts), proxied vs direct,
the configuration, the warnings (every finding in words), the failed cells and the
open-mode sustainable throughput, the findings grouped — once, so Markdown, HTML and JSON cannot disagree.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

from serverlab import __version__
from serverlab.hostspeed import describe_baseline
from serverlab.interference import describe_probe
from serverlab.adaptive import target_paragraph
from serverlab.report.formatting import fmt_params, level_text
from serverlab.report.answer_data import Answer
from serverlab.report.answers import answers
from serverlab.report.littles import littles_table
from serverlab.report.model import AnswerBlock, Document, Section, Setting
from serverlab.report.rows import Row
from serverlab.report.sentences import grouped_findings, row_warnings
from serverlab.report.tables import (
    answer_table,
    article_table,
    calibration_table,
    config_table,
    main_table,
    open_tables,
    proxy_table,
    reasons_table,
    requests_table,
)
from serverlab.report.verdicts import DEFAULT_P99_BOUND_MS, sustainable_throughput, verdicts
from serverlab.results import RunHeader
from serverlab.terms import MIX_WORKLOAD, Mode


def _metadata(header: RunHeader) -> list[tuple[str, str]]:
    exp, meta = header.experiment, header.metadata
    out: list[tuple[str, str]] = []
    name = exp.get("name", "?")
    out.append(("experiment", f"{name}" + (f": {exp['description']}" if exp.get("description") else "")))
    out.append(("run", header.run_id))
    app = exp.get("app")
    if isinstance(app, dict) and app.get("wsgi"):
        image = f", image {meta['app_image']}" if meta.get("app_image") else ""
        out.append(("app", f"{app['wsgi']} from {app.get('path')} (digest {app.get('digest')}{image})"))
    if meta.get("started_at") is not None:
        try:
            out.append(("started", time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(meta["started_at"])))))
        except (TypeError, ValueError, OverflowError):
            out.append(("started", str(meta["started_at"])))
    for key, label in (("backend", "backend"), ("image", "image"), ("host_cores", "host cores"),
                       ("cpu_model", "CPU model"), ("git_commit", "git commit")):
        if meta.get(key) is not None:
            out.append((label, str(meta[key])))
    unenforced = ("server_cpus", "server_memory") if meta.get("limits_enforced") is False else ()
    budget = header.budget
    limits = [f"{k}={getattr(budget, k)}" + (" (not enforced by the local backend)" if k in unenforced else "")
              for k in ("server_cpus", "server_memory", "server_cpuset", "loadgen_cpuset")
              if budget is not None and getattr(budget, k) is not None]
    if limits:
        out.append(("limits", ", ".join(limits)))
    if meta.get("loadgen_processes_chosen"):
        out.append(("load generator", str(meta["loadgen_processes_chosen"])))
    if isinstance(meta.get("remote_workers"), dict):  # Locust workers on other hosts (serverlab.remoterun)
        from serverlab.remoterun import describe_remote

        out.append(("remote workers", describe_remote(meta["remote_workers"])))
        out.append(("generator CPU", str(meta["remote_workers"].get("cpu_basis") or "")))
    if isinstance(meta.get("quietness_probe"), dict):
        out.append(("quietness", describe_probe(meta["quietness_probe"])))
    if isinstance(meta.get("host_speed"), dict):
        out.append(("host speed", describe_baseline(meta["host_speed"])))
    packages = meta.get("packages")
    if isinstance(packages, dict) and packages:
        out.append(("packages", ", ".join(f"{k} {v}" for k, v in sorted(packages.items()))))
    out.append(("report", f"serverlab {__version__}; medians over repetitions with 95% percentile-bootstrap "
                          f"confidence intervals; latency percentiles from merged HDR histograms"))
    return out


def _settings(header: RunHeader) -> list[Setting]:
    """The experiment's settings (name and description aside), a list's items kept apart so HTML can fold them."""
    def text(value: Any) -> str:
        if isinstance(value, dict):
            return ", ".join(f"{k}={text(v)}" for k, v in sorted(value.items())) or "—"
        if isinstance(value, (list, tuple)):
            return ", ".join(text(v) for v in value)
        return str(value)

    out = []
    for key, value in sorted(header.experiment.items()):
        if key in ("name", "description"):
            continue
        if isinstance(value, (list, tuple)) and len(value) > 3:
            out.append(Setting(key, f"{len(value)}: {text(value[:2])}, …", tuple(text(v) for v in value)))
        else:
            out.append(Setting(key, text(value)))
    return out


def _blocks(answers: Sequence[Answer], charts: bool) -> list[AnswerBlock]:
    """Each answer laid out: the sentence, the compact and reasoning tables and (HTML) the ranking chart."""
    blocks = []
    for answer in answers:
        block = AnswerBlock(answer.workload, answer.where, f"answer-{answer.workload}", answer.sentence,
                            answer_table(answer), reasons_table(answer), answer.principle)
        if charts:
            from serverlab.report.answer_chart import answer_chart  # matplotlib: only here

            block.chart = answer_chart(answer)
        blocks.append(block)
    return blocks


def build_document(header: RunHeader, rows: Sequence[Row], verdict_texts: dict[str, str] | None = None,
                   *, charts: bool = False, extra_warnings: Sequence[str] = ()) -> Document:
    """Lay out a report: the text every format shows, in order.

    :param header: the run header (metadata, experiment settings).
    :param rows: rows from :func:`serverlab.report.rows.aggregate`.
    :param verdict_texts: from :func:`serverlab.report.verdicts.verdicts`; computed when ``None``.
    :param charts: also render the SVG charts (HTML only; slower).
    :param extra_warnings: warnings about the inputs (e.g. merged files).
    :return: a :class:`Document`.
    """
    rows = list(rows)
    bound = _p99_bound(header)
    if verdict_texts is None:
        verdict_texts = verdicts(rows, bound)
    sections: list[Section] = []
    groups: dict[tuple[str, str], list[Row]] = {}
    for row in rows:
        groups.setdefault((row.workload, row.mode), []).append(row)
    for (workload, mode), grows in groups.items():
        section = Section(f"Workload {workload}: {mode} mode", f"{workload}-{mode}")
        section.paragraphs.append(
            f"{_declared(header, workload) or 'Parameters: ' + fmt_params(grows[0].workload_params)}. "
            f"RPS is the median over repetitions with its "
            f"95% bootstrap CI; p50/p99/p99.9 come from the HDR histograms of all repetitions merged; CPU ms/req "
            f"is the median server CPU time per request.")
        target = target_paragraph(grows, header.experiment, lambda s: f"{s.variant} ({level_text(s.mode, s.level)})")
        if target:
            section.paragraphs.append(target)
        section.tables.append(main_table(grows, mode))
        if mode == Mode.REQUESTS:
            section.tables.append(requests_table(grows, header))
            article = article_table(grows)
            if article:
                section.tables.append(article)
        if mode == Mode.OPEN:
            section.tables.extend(open_tables(grows, bound))
        for extra in (calibration_table(grows), littles_table(grows)):
            if extra:
                section.tables.append(extra)
        if charts:
            from serverlab.report.charts import ranking_charts, render_charts, timeline_charts  # matplotlib: only here

            section.charts.extend(ranking_charts(grows))
            section.charts.extend(render_charts(grows))
            section.charts.extend(timeline_charts(grows))
        sections.append(section)
    proxied = proxy_table(rows)
    if proxied:
        sections.append(Section("Proxied vs direct", "proxy", tables=[proxied], paragraphs=[
            "Each proxied variant runs nginx and the app server in one container (one CPU budget); its direct twin "
            "runs the same app server with the same workers and threads alone. CPU per request includes nginx."]))
    sections.append(Section("Configuration", "configuration", tables=[config_table(rows, header)],
                            paragraphs=["The effective configuration of every variant as it ran."]))
    warnings: list[str] = list(dict.fromkeys([*extra_warnings, *(w for r in rows for w in row_warnings(r))]))
    failed = [f for r in rows for f in r.failed_cells]
    title = f"serverlab report: {header.experiment.get('name', header.run_id)}"
    sustained = [(w, v, rate) for (w, v), rate in sustainable_throughput(rows, bound).items()]
    found = answers(rows, bound)
    return Document(title, _metadata(header), list(verdict_texts.items()), sections, warnings, failed, sustained,
                    answers=found, blocks=_blocks(found, charts), settings=_settings(header),
                    findings=[*dict.fromkeys(extra_warnings), *grouped_findings(rows)])


def _declared(header: RunHeader, workload: str) -> str:
    """The declared requests a workload sent ("Requests: index GET / → 200, weight 6; ..."), ``""`` for a demo workload."""
    declared = [r for r in header.experiment.get("requests") or () if isinstance(r, dict)]
    sent = [r for r in declared if workload in (MIX_WORKLOAD, r.get("name"))]
    if not sent:
        return ""
    what = "; ".join(f"{r.get('name')} {r.get('method')} {r.get('path')} → {r.get('status')}"
                     + (f", weight {r.get('weight')}" if workload == MIX_WORKLOAD else "") for r in sent)
    return ("The weighted mix of the app's requests: " if workload == MIX_WORKLOAD and len(sent) > 1
            else "The app's request: ") + what


def _p99_bound(header: RunHeader) -> float:
    """The experiment's open-mode latency bound (ms), :data:`DEFAULT_P99_BOUND_MS` when unset or not a number."""
    try:
        return float(header.experiment.get("p99_bound_ms", DEFAULT_P99_BOUND_MS))
    except (TypeError, ValueError):
        return DEFAULT_P99_BOUND_MS
