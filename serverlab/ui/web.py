"""The lab's pages and Locust's extension points: a Blueprint with its own templates and static files.

What Locust's own page gets, all through documented template arguments and its stats
endpoint (nothing rewrites its HTML or reads its DOM):

* ``extended_tabs``: **Compare servers** and **Reports**, each a table Locust renders
  (``extended_tables``) from the ``extended_stats`` key this module adds to
  ``/stats/requests`` (an ``after_request`` hook on that endpoint, as Locust's
  ``examples/extend_web_ui.py`` does);
* ``extended_csv_files``: links in *Download Data* to the lab's pages and the last
  comparison's ``results.jsonl`` / ``summary.md``;
* ``/stats/requests`` also reports ``running`` while a comparison runs (Locust's page
  polls only while it reads ``running``) and an RPS of 0 once nothing runs;
* the start form's Host is the server loaded next, and its custom parameters show the
  values the next test uses (after a reload too).

The Blueprint (``/serverlab/...``) serves the Compare page (a form, live table and chart),
the Reports page (runs under ``reports/``, a report's files, ``compare`` of two runs) and
JSON endpoints. Pages are Jinja2 templates in ``templates/serverlab/``; scripts and styles in
``static/``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Mapping, Protocol

from flask import Blueprint, Response, abort, jsonify, render_template, request, send_from_directory

from serverlab.terms import DEFAULT_WORKLOAD
from serverlab.ui import limits
from serverlab.ui.limits import UIRefused, check_compare_body



class LabUI(Protocol):
    """What the web side reads of :class:`serverlab.ui.LabUI` (typed here: the lab builds its web
    side, so importing it back would tie the two modules into a cycle)."""

    environment: Any
    collector: Any  # serverlab.ui.collect.Collector
    compare: Any  # serverlab.ui.compare.CompareRunner
    live: Any  # serverlab.ui.compare.LiveCpu
    hosts: Any  # serverlab.workerhosts.WorkerHosts
    variants: Mapping[str, Any]
    workload_classes: Mapping[str, type]
    chosen: str

    def server(self) -> str:
        """The chosen server's name."""

    def url(self) -> str:
        """The chosen server's URL."""

    def workload(self) -> str:
        """The chosen workload's name."""

HERE = Path(__file__).resolve().parent
#: Where ``docker compose`` mounts the repository's ``reports/`` (the Compare writes its runs there).
REPORTS_DIR = Path(os.environ.get("SERVERLAB_REPORTS_DIR", str(HERE.parents[1] / "reports")))
COMPARE_TAB, REPORTS_TAB, LIVE_TAB, WORKERS_TAB = "lab-compare", "lab-reports", "lab-live", "lab-workers"
EXTENDED_TABS = [{"title": "Compare servers", "key": COMPARE_TAB}, {"title": "Server CPU", "key": LIVE_TAB},
                 {"title": "Reports", "key": REPORTS_TAB}, {"title": "Worker hosts", "key": WORKERS_TAB}]
#: The columns both the Compare table and the live Server CPU table share with the report.
CPU_COLUMNS = [
    {"key": "cpu_ms", "title": "CPU ms/req"}, {"key": "server_busy", "title": "Server CPU of budget"},
    {"key": "bottleneck", "title": "Bottleneck"}, {"key": "other", "title": "Others on server CPUs"}]
EXTENDED_TABLES = [
    {"key": COMPARE_TAB, "structure": [
        {"key": "order", "title": "#"}, {"key": "server", "title": "Server"}, {"key": "status", "title": "Status"},
        {"key": "rps", "title": "RPS"}, {"key": "p50_us", "title": "p50 µs"}, {"key": "p99_us", "title": "p99 µs"},
        {"key": "p999_us", "title": "p99.9 µs"}, {"key": "requests", "title": "Requests"},
        {"key": "failures", "title": "Failures"}, *CPU_COLUMNS]},
    {"key": LIVE_TAB, "structure": [
        {"key": "server", "title": "Server"}, {"key": "window", "title": "Last interval"},
        {"key": "rps", "title": "RPS"}, *CPU_COLUMNS]},
    {"key": REPORTS_TAB, "structure": [
        {"key": "name", "title": "Run"}, {"key": "experiment", "title": "Experiment"},
        {"key": "cells", "title": "Cells"}, {"key": "written", "title": "Started (UTC)"},
        {"key": "report", "title": "Report (open from Download Data → Reports)"}]},
    {"key": WORKERS_TAB, "structure": [
        {"key": "host", "title": "Host"}, {"key": "where", "title": "Where"},
        {"key": "processes", "title": "Locust workers"}, {"key": "cpus", "title": "CPUs"},
        {"key": "status", "title": "Status"}]},
]
EXTENDED_CSV_FILES = [
    {"href": "./serverlab/compare", "title": "Compare servers: tick servers, start a comparison (serverlab)"},
    {"href": "./serverlab/compare/results.jsonl", "title": "Last comparison: results.jsonl (make report's format)"},
    {"href": "./serverlab/compare/summary.md", "title": "Last comparison: summary.md"},
    {"href": "./serverlab/reports/", "title": "Reports: every run under reports/, and compare two (serverlab)"},
]


def _fmt(value: Any, digits: int = 0) -> str:
    if value is None:
        return "—"
    return f"{float(value):,.{digits}f}"


def _share(value: Any) -> str:
    return "—" if value is None else f"{float(value):.0%}"


def cpu_cells(r: dict[str, Any]) -> dict[str, str]:
    """The CPU columns of a row (:data:`CPU_COLUMNS`), formatted: CPU ms per request, the
    server's utilisation of its budget, the bottleneck class (and why), others' share of its CPUs."""
    cpu = r.get("cpu_ms_per_request")
    reason = r.get("bottleneck_reason") or r.get("reason")
    return {"cpu_ms": "—" if cpu is None else f"{float(cpu):.3f}", "server_busy": _share(r.get("server_utilization")),
            "bottleneck": (r.get("bottleneck") or "—") + (f" ({reason})" if reason else ""),
            "other": _share(r.get("other_share")) + (" (interference)" if r.get("interference_flagged") else "")}


def compare_table_rows(status: dict[str, Any]) -> list[dict[str, Any]]:
    """The Compare tab's table rows (Locust's ``extended_stats`` data): one per server, numbers formatted.

    :param status: :meth:`serverlab.ui.compare.CompareRunner.status`.
    :return: ``[{"order", "server", "status", "rps", "p50_us", ..., "cpu_ms", "server_busy",
        "bottleneck", "other"}]``, all strings; one explanatory row when no comparison has run.
    """
    if not status.get("rows"):
        return [{"order": "", "server": "no comparison yet", "status": "idle", "rps": "—", "p50_us": "—",
                 "p99_us": "—", "p999_us": "—", "requests": "—", "failures": "—", "cpu_ms": "—", "server_busy": "—",
                 "other": "—", "bottleneck": "start one on the Compare servers page (Download Data tab links it)"}]
    out = []
    for r in status["rows"]:
        ok = r["status"] == "ok"
        out.append({
            "order": str(r["position"] + 1), "server": r["server"],
            "status": r["status"] + (f": {r['error']}" if r.get("error") else ""),
            "rps": _fmt(r["rps"]) if ok else "—", "p50_us": _fmt(r["p50_us"]) if ok else "—",
            "p99_us": _fmt(r["p99_us"]) if ok else "—", "p999_us": _fmt(r["p99.9_us"]) if ok else "—",
            "requests": _fmt(r["requests"]) if ok else "—", "failures": _fmt(r["failures"]) if ok else "—",
            **(cpu_cells(r) if ok else {"cpu_ms": "—", "server_busy": "—", "bottleneck": "—", "other": "—"}),
        })
    return out


def worker_table_rows(status: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The Worker hosts tab's rows: one per host with connected workers, one per refused worker,
    one for workers that have not introduced themselves (yet).

    :param status: :meth:`serverlab.workerhosts.WorkerHosts.status`; ``None`` on a process without workers.
    :return: ``[{"host", "where", "processes", "cpus", "status"}]``, all strings.
    """
    if not status:
        return [{"host": "this process", "where": "local", "processes": "0", "cpus": "—",
                 "status": "no workers: Locust runs here (start it with --master for workers)"}]
    rows = [{"host": h["host"], "where": "another host (docker-compose.loadgen.yml)" if h["remote"] else "this lab",
             "processes": str(h["processes"]), "cpus": str(h["cpus"]), "status": f"connected, lab {status['lab_version']}"}
            for h in status.get("hosts") or []]
    if status.get("unintroduced"):
        rows.append({"host": "?", "where": "?", "processes": str(status["unintroduced"]), "cpus": "—",
                     "status": "connected, not introduced (yet): not a serverlab locustfile?"})
    rows += [{"host": str(r.get("host")), "where": "another host" if r.get("remote") else "this lab",
              "processes": "1", "cpus": str(r.get("cpus", "—")), "status": f"refused: {r['reason']}"}
             for r in status.get("refused") or []]
    if not rows:
        rows.append({"host": "—", "where": "—", "processes": "0", "cpus": "—",
                     "status": "no worker connected: docker compose up --scale locust-worker=N, or workers on other "
                               "hosts (README: More load than one machine)"})
    return rows


def live_table_rows(live: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The Server CPU tab's one row: the last interval of the running test (:mod:`serverlab.livemeter`)."""
    if not live or live.get("error"):
        return [{"server": (live or {}).get("server", "no test running"), "window": "—", "rps": "—", "cpu_ms": "—",
                 "server_busy": "—", "other": "—",
                 "bottleneck": (live or {}).get("error") or "start a test: the server's CPU shows here every 5 s"}]
    return [{"server": live["server"], "window": f"{live['window_s']:.1f} s", "rps": _fmt(live["rps"]), **cpu_cells(live)}]


def run_listing(directory: Path) -> list[dict[str, Any]]:
    """The runs under ``directory`` (:func:`serverlab.runfolders.list_runs`), newest first:
    ``[{"name", "experiment", "cells" (lines after the header), "has_html", "written" (UTC text)}]``."""
    from serverlab.runfolders import list_runs

    out = []
    for run in reversed(list_runs(directory)):
        try:
            with (run.path / "results.jsonl").open(encoding="utf-8") as handle:
                cells = sum(1 for number, line in enumerate(handle) if number and line.strip())
        except OSError:
            cells = 0
        out.append({"name": run.path.name, "experiment": run.experiment, "cells": cells,
                    "has_html": (run.path / "index.html").is_file(),
                    "written": time.strftime("%Y-%m-%d %H:%M", time.gmtime(run.started_at))})
    return out


def reports_table_rows(directory: Path) -> list[dict[str, Any]]:
    """The Reports tab's table rows: runs under ``directory``, newest first (strings)."""
    return [{"name": r["name"], "experiment": r["experiment"], "cells": str(r["cells"]), "written": r["written"],
             "report": f"reports/{r['name']}/index.html" if r["has_html"] else "no index.html"}
            for r in run_listing(directory)]


class LabWeb:
    """The web side of :class:`~serverlab.ui.LabUI`: template arguments, stats hook and Blueprint.

    :param lab: the lab's UI state (server, workload, Compare runner, targets).
    :param reports_dir: the runs the Reports tab lists (default :data:`REPORTS_DIR`).
    """

    def __init__(self, lab: LabUI, reports_dir: Path | None = None) -> None:
        self.lab = lab
        self.reports_dir = reports_dir or REPORTS_DIR

    # ---------------------------------------------------------------- Locust's page

    def install(self, web_ui: Any) -> None:
        """Set Locust's template arguments, hook ``/stats/requests`` and register the Blueprint."""
        web_ui.template_args.update(extended_tabs=EXTENDED_TABS, extended_tables=EXTENDED_TABLES,
                                    extended_csv_files=EXTENDED_CSV_FILES)
        original = web_ui.update_template_args

        def update_template_args() -> None:
            original()
            self._template_args(web_ui.template_args)

        web_ui.update_template_args = update_template_args
        web_ui.app.after_request(self._extend_stats)
        web_ui.app.register_blueprint(self.blueprint())

    def _busy_state(self, state: str) -> str:
        # Locust's page stops polling once it reads a state other than spawning/running: a
        # comparison (stopped between servers) and a stop underway must keep it polling.
        return "running" if self.lab.compare.running() or state in ("stopping", "cleanup") else state

    def _template_args(self, args: dict[str, Any]) -> None:
        args["host"] = self.lab.chosen
        args["missing_host_warning"] = False
        args["state"] = self._busy_state(str(args.get("state")))
        options = self.lab.environment.parsed_options
        for key, option in (args.get("extra_options") or {}).items():
            if hasattr(options, key):  # what the next test uses, not the command line's default
                option["default_value"] = getattr(options, key)

    def _extend_stats(self, response: Response) -> Response:
        if request.endpoint != "locust.request_stats" or response.status_code != 200:
            return response
        data = response.get_json(silent=True)
        if not isinstance(data, dict):
            return response
        state = self._busy_state(str(data.get("state")))
        data["state"] = state
        if state not in ("running", "spawning"):
            data["current_rps"] = data["current_fail_per_sec"] = 0.0
        data["extended_stats"] = [
            {"key": COMPARE_TAB, "data": compare_table_rows(self.lab.compare.status())},
            {"key": LIVE_TAB, "data": live_table_rows(self.lab.live.status())},
            {"key": REPORTS_TAB, "data": reports_table_rows(self.reports_dir)},
            {"key": WORKERS_TAB, "data": worker_table_rows(self.workers())},
        ]
        response.set_data(json.dumps(data))
        return response

    # ---------------------------------------------------------------- the Blueprint

    def state(self) -> dict[str, Any]:
        """What the lab's pages show: runner state, the server and workload loaded now or next, workers."""
        env = self.lab.environment
        runner = env.runner
        return {
            "state": self._busy_state(runner.state), "server": self.lab.server(), "url": self.lab.url(),
            "workload": self.lab.workload(), "user_classes": sorted(c.__name__ for c in env.user_classes),
            "workers": runner.worker_count if self.lab.collector.is_master() else 0,
            "worker_hosts": self.workers(),
            "comparing": self.lab.compare.running(), "current": self.lab.compare.status().get("current"),
            "live": self.lab.live.status(),
        }

    def workers(self) -> dict[str, Any] | None:
        """The master's :meth:`~serverlab.workerhosts.WorkerHosts.status` (workers by host); ``None`` elsewhere."""
        return self.lab.hosts.status() if self.lab.collector.is_master() else None

    def compare_status(self) -> dict[str, Any]:
        """The Compare page's live data: choices, limits, state and one row per server."""
        return {**self.lab.compare.status(), "servers": sorted(self.lab.variants),
                "workloads": sorted(self.lab.workload_classes), "default_workload": DEFAULT_WORKLOAD,
                "workers": self.state()["workers"]}

    def blueprint(self) -> Blueprint:
        """The ``/serverlab`` Blueprint: pages from ``templates/serverlab/``, files from ``static/``."""
        bp = Blueprint("serverlab", __name__, url_prefix="/serverlab", template_folder="templates",
                       static_folder="static", static_url_path="/static")

        @bp.errorhandler(UIRefused)
        def refused(err: UIRefused) -> Any:
            return jsonify({"success": False, "message": str(err)}), err.status

        @bp.route("/state")
        def state() -> Response:
            return jsonify(self.state())

        @bp.route("/compare")
        def compare_page() -> str:
            return render_template("serverlab/compare.html", servers=sorted(self.lab.variants),
                                   workloads=sorted(self.lab.workload_classes), default_workload=DEFAULT_WORKLOAD,
                                   limits=limits)

        @bp.route("/compare/status")
        def compare_status() -> Response:
            return jsonify(self.compare_status())

        @bp.route("/compare/start", methods=["POST"])
        def compare_start() -> Any:
            if request.mimetype != "application/json":
                raise UIRefused(f"the body must be JSON (Content-Type: application/json); "
                                f"got {request.mimetype or 'none'}", status=415)
            req = check_compare_body(request.get_json(silent=True), sorted(self.lab.variants),
                                     sorted(self.lab.workload_classes))
            self.lab.compare.start(req)
            return jsonify({"success": True, **self.compare_status()})

        @bp.route("/compare/stop", methods=["POST"])
        def compare_stop() -> Response:
            self.lab.compare.stop()
            return jsonify({"success": True, **self.compare_status()})

        @bp.route("/compare/<any('results.jsonl', 'summary.md'):name>")
        def compare_download(name: str) -> Response:
            try:
                compare_id, jsonl, markdown = self.lab.compare.results_files()
            except UIRefused as err:
                return Response(str(err) + "\n", status=err.status, mimetype="text/plain")
            text, mimetype = (jsonl, "application/x-ndjson") if name == "results.jsonl" else (markdown, "text/markdown")
            response = Response(text, mimetype=mimetype)
            response.headers["Content-Disposition"] = f"attachment; filename={compare_id}-{name}"
            return response

        @bp.route("/reports/")
        def reports_page() -> str:
            runs = run_listing(self.reports_dir)
            return render_template("serverlab/reports.html", runs=runs, directory=str(self.reports_dir))

        @bp.route("/reports/compare")
        def reports_compare() -> str:
            from serverlab import LabError
            from serverlab.report import compare

            a, b = self._run_dir(request.args.get("a", "")), self._run_dir(request.args.get("b", ""))
            try:
                text = compare(a / "results.jsonl", b / "results.jsonl")
            except LabError as err:
                text = f"error: {err}"
            return render_template("serverlab/reports_compare.html", a=a.name, b=b.name, text=text)

        @bp.route("/reports/<path:subpath>")
        def reports_file(subpath: str) -> Response:
            return send_from_directory(self.reports_dir, subpath, max_age=0)  # safe_join refuses ../

        return bp

    def _run_dir(self, name: str) -> Path:
        """A run folder directly under the reports folder (404 for anything else)."""
        if not name or "/" in name or name.startswith("."):
            abort(404)
        path = self.reports_dir / name
        if not (path / "results.jsonl").is_file():
            abort(404)
        return path
