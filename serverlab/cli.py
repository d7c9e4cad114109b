"""The ``serverlab`` command: run experiments, render and compare reports.

    serverlab run [EXPERIMENT] [--backend docker|local] [--resume RUN_ID] [--retry-busy N] [--yes]
                  [--app PATH [--wsgi TARGET]] [--remote-workers N [--master-bind ADDR] [--remote-wait S]]
    serverlab run --list
    serverlab report RESULTS.jsonl... [--out DIR]
    serverlab compare OLD NEW
    serverlab compose [--check] [--output PATH] [--servers DIR]   (also docker-compose.loadgen.yml beside it)
    serverlab stack [--check] [--output PATH] [--servers DIR]

Every failure ends as one ``error: ...`` line. Exit statuses (also in ``--help``):

    0    done; every cell ok
    1    the run finished, but some cells failed or were unverified
    2    error: bad experiment or arguments, a backend that cannot start, CPUs held
         by another run (the message names it), results that cannot be written ...
    129  stopped by SIGHUP  } in each case the run first stopped its servers and
    130  stopped by SIGINT  } load generators (processes or containers), kept every
    143  stopped by SIGTERM } finished cell, and printed how to --resume
"""

from __future__ import annotations

import argparse
import errno
import sys
from pathlib import Path

from labapp.variants import load_variants
from serverlab import LabError
from serverlab.adaptive import estimate_text
from serverlab.backends import strip_ansi
from serverlab.experiment import list_experiments, load_experiment
from serverlab.terms import WORKLOADS, CellStatus

DEFAULT_REPORTS = Path("reports")
#: A run estimated to take longer than this (seconds) asks first when stdin is a terminal
#: (``--yes`` skips the question; without a terminal, as in CI or cron, it just starts,
#: up to :data:`UNATTENDED_LIMIT_S`).
#: The shipped ``default`` experiment (~18 min) runs without asking.
CONFIRM_ABOVE_S = 30 * 60
#: A run estimated to take longer than this (seconds, 24 h) starts only with ``--yes``,
#: terminal or not: a matrix of thousands of cells (weeks) must not start unattended by mistake.
UNATTENDED_LIMIT_S = 24 * 3600
#: The exit statuses, as ``--help`` prints them.
EXIT_STATUSES = (
    "exit status:\n"
    "  0    done; every cell ok\n"
    "  1    the run finished, but some cells failed or were unverified\n"
    "  2    error (bad experiment, backend unavailable, CPUs held by another run, results not writable)\n"
    "  129  stopped by SIGHUP   (each after stopping the run's servers and load generators;\n"
    "  130  stopped by SIGINT    finished cells are kept: continue with --resume RUN_ID)\n"
    "  143  stopped by SIGTERM")


def _listing() -> str:
    lines = ["experiments (experiments/*.toml):"]
    for name, path in list_experiments().items():
        try:
            experiment = load_experiment(str(path))
            lines.append(f"  {name:12} {experiment.cell_count:4} cells, ~{estimate_text(experiment)}  {experiment.description}")
        except LabError as err:
            lines.append(f"  {name:12} INVALID: {err}")
    lines.append("server variants (servers/*.toml):")
    for variant in load_variants().values():
        threads = "per-connection" if variant.threads == 0 else str(variant.threads)
        lines.append(f"  {variant.name:18} {variant.model:14} workers={variant.workers} threads={threads} "
                     f"keep-alive={'yes' if variant.keep_alive else 'no'}  {variant.description}")
    lines.append("workloads:")
    for workload in WORKLOADS.values():
        lines.append(f"  {workload.name:8} {workload.summary}")
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    """``"92 days"``, ``"26.5 h"`` or ``"18 min"``."""
    if seconds >= 3 * 86400:
        return f"{seconds / 86400:.0f} days"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.0f} min"


def _retries(text: str) -> int:
    """``--retry-busy``: an integer in 0..10."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 0 <= value <= 10:
        raise argparse.ArgumentTypeError(f"{value} is out of range; expected 0..10")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="serverlab", description="Measure which way of serving a Flask app is fastest, and why.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  serverlab run quick\n  serverlab run default --backend local\n"
               "  serverlab run default --resume latest\n  serverlab report reports/latest/results.jsonl\n"
               "  serverlab compare reports/A/results.jsonl reports/B/results.jsonl\n\n" + EXIT_STATUSES)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run an experiment and write reports/<run-id>/",
                         description="Run an experiment (servers × workloads × load levels × repetitions) headless.",
                         formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXIT_STATUSES)
    run.add_argument("experiment", nargs="?", default="default", help="experiment name or .toml path (default: default)")
    run.add_argument("--backend", choices=("docker", "local"), default="docker",
                     help="docker: compose services with CPU/memory limits (default); local: processes on 127.0.0.1")
    run.add_argument("--resume", metavar="RUN_ID",
                     help="continue an interrupted run: a run id, or 'latest' (the newest run of this experiment "
                          "started); refused if the experiment's settings changed since (start a new run instead)")
    run.add_argument("--yes", action="store_true",
                     help=f"start without asking, even when the run is estimated over {CONFIRM_ABOVE_S // 60} min "
                          f"(runs estimated over {UNATTENDED_LIMIT_S // 3600} h need it, terminal or not)")
    run.add_argument("--retry-busy", type=_retries, default=0, metavar="N",
                     help="re-measure a cell up to N times (0..10) while other programs use the lab's CPUs "
                          "(interference above 5%%); default 0: flag it and move on")
    run.add_argument("--reports-dir", type=Path, default=DEFAULT_REPORTS, help="where run folders go (default: reports)")
    run.add_argument("--list", action="store_true", help="list experiments, server variants and workloads, then exit")
    run.add_argument("--app", metavar="PATH",
                     help="serve your own app (its project folder) behind every variant instead of the demo app; "
                          "its image is derived from the lab image (see README, 'Your own app')")
    run.add_argument("--wsgi", metavar="TARGET",
                     help="your app's WSGI target, module:attribute or module:factory() (default: found in PATH)")
    run.add_argument("--remote-workers", type=int, metavar="N",
                     help="wait for N Locust worker processes on other hosts before each cell (docker-compose.loadgen.yml "
                          "there; README: More load than one machine); overrides budget.remote_workers")
    run.add_argument("--master-bind", metavar="ADDR",
                     help="this machine's address the remote workers reach: the Locust master's port and the servers' "
                          "ports are published there (budget.master_bind; default 127.0.0.1)")
    run.add_argument("--remote-wait", type=float, metavar="S",
                     help="seconds to wait for the remote workers before each cell, 5..600 (budget.remote_wait; default 60)")

    report = sub.add_parser("report", help="re-render a report from results files (nothing is re-run)")
    report.add_argument("results", nargs="+", type=Path, help="results.jsonl file(s) of one experiment")
    report.add_argument("--out", type=Path, help="output folder (default: the first file's folder)")

    compare = sub.add_parser("compare", help="show the change per cell between two runs")
    compare.add_argument("old", type=Path, help="results.jsonl (or run folder) of the baseline")
    compare.add_argument("new", type=Path, help="results.jsonl (or run folder) of the new run")
    compare.add_argument("--compare", action="append", default=[], metavar="WHAT", dest="on",
                         help="what the comparison is about, so the runs may differ there: image, budget or "
                              "variants (repeatable); by default runs that disagree on any of them are refused")

    from serverlab.compose import COMPOSE_FILE

    compose = sub.add_parser(
        "compose", help="write docker-compose.yml from servers/*.toml (after adding or changing a variant)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Write docker-compose.yml from the server declarations (servers/*.toml): one hardened "
                    "service per variant, published on 127.0.0.1:<its host_port>, plus the Locust master, "
                    "workers and the headless loadgen; and beside it docker-compose.loadgen.yml, Locust workers "
                    "only, for other hosts. The files are generated: commit them, never edit them by hand.",
        epilog="examples:\n  serverlab compose            # after adding servers/<name>.toml (give it a free host_port)\n"
               "  serverlab compose --check    # in CI: is the committed file current?\n\n"
               "exit status:\n  0    written (or already current); with --check: current\n"
               "  1    --check only: the file differs (the diff is printed; run `serverlab compose`)\n"
               "  2    error: an invalid declaration, a host_port missing, clashing or reserved (8089)")
    compose.add_argument("--check", action="store_true",
                         help="write nothing; print the diff and exit 1 if the file differs from what would be written")
    compose.add_argument("--output", type=Path, default=COMPOSE_FILE, metavar="PATH",
                         help="the compose file (default: docker-compose.yml at the repository root)")
    compose.add_argument("--servers", type=Path, metavar="DIR",
                         help="the declarations' folder (default: servers/, or $SERVERLAB_SERVERS_DIR)")

    from serverlab.stack import STACK_FILE

    stack = sub.add_parser(
        "stack", help="write docker-stack.yml (the lab as a Docker Swarm stack) from servers/*.toml",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Write docker-stack.yml from the server declarations (servers/*.toml): the lab for "
                    "`docker stack deploy`, servers on nodes labelled serverlab.role.server=true, the Locust "
                    "master and workers on nodes labelled serverlab.role.loadgen=true, with the compose "
                    "file's budgets as deploy.resources limits. Generated: commit it, never edit it by hand.",
        epilog="examples:\n  serverlab stack            # after adding or changing servers/<name>.toml\n"
               "  serverlab stack --check    # in CI: is the committed file current?\n\n"
               "exit status:\n  0    written (or already current); with --check: current\n"
               "  1    --check only: the file differs (the diff is printed; run `serverlab stack`)\n"
               "  2    error: an invalid declaration")
    stack.add_argument("--check", action="store_true",
                       help="write nothing; print the diff and exit 1 if the file differs from what would be written")
    stack.add_argument("--output", type=Path, default=STACK_FILE, metavar="PATH",
                       help="the stack file (default: docker-stack.yml at the repository root)")
    stack.add_argument("--servers", type=Path, metavar="DIR",
                       help="the declarations' folder (default: servers/, or $SERVERLAB_SERVERS_DIR)")
    return parser


def _results_path(path: Path) -> Path:
    return path / "results.jsonl" if path.is_dir() else path


def cmd_run(args: argparse.Namespace) -> int:
    """``serverlab run``: returns 0 when every cell is ok, 1 when some failed."""
    if args.list:
        print(_listing())
        return 0
    experiment = load_experiment(args.experiment)
    if args.app or args.wsgi:
        from serverlab.appspec import apply_cli_app

        experiment = apply_cli_app(experiment, args.app, args.wsgi)
    if args.remote_workers is not None or args.master_bind is not None or args.remote_wait is not None:
        from dataclasses import replace

        from serverlab.budget import with_remote_workers

        try:
            budget = with_remote_workers(experiment.budget, experiment.mode, args.remote_workers, args.master_bind,
                                         args.remote_wait)
        except ValueError as err:
            raise LabError(f"{err.args[0].replace('budget.', '--').replace('_', '-')} (command line)") from None
        experiment = replace(experiment, budget=budget)
    from serverlab.backends import make_backend
    from serverlab.report import write_report
    from serverlab.runfolders import update_latest
    from serverlab.runner import Runner

    estimate = experiment.estimated_seconds()
    print(f"{experiment.name}: {experiment.cell_count} cells planned, estimated {estimate_text(experiment)} "
          f"({args.backend} backend){'; resuming ' + args.resume if args.resume else ''}")
    if estimate > UNATTENDED_LIMIT_S and not args.yes:
        raise LabError(f"{experiment.path or experiment.name}: {experiment.cell_count} cells, estimated "
                       f"{_duration(estimate)}; a run estimated over {UNATTENDED_LIMIT_S // 3600} h starts only with "
                       "--yes (with or without a terminal). Shrink it (fewer servers, workloads, load levels or "
                       "repetitions, a shorter duration) or pass --yes if you mean it")
    if estimate > CONFIRM_ABOVE_S and not args.yes and sys.stdin.isatty():
        try:
            answer = input(f"that is over {CONFIRM_ABOVE_S // 60} min; start it? [y/N] ")
        except EOFError:
            answer = ""
        if answer.strip().lower() not in ("y", "yes"):
            raise LabError(f"not started; pass --yes to start runs of over {CONFIRM_ABOVE_S // 60} min without asking")

    if experiment.app:
        print(f"app: {experiment.app.wsgi} from {experiment.app.path} (digest {experiment.app.digest}); "
              f"workloads: {', '.join(experiment.workloads)}")
    runner = Runner(experiment, make_backend(args.backend, experiment.budget, experiment.app), args.reports_dir,
                    retry_busy=args.retry_busy)
    run_dir = runner.run(resume=args.resume)
    update_latest(args.reports_dir, run_dir)
    try:
        files = write_report([run_dir / "results.jsonl"], run_dir)
    except OSError as err:
        if err.errno != errno.ENOSPC:
            raise
        raise LabError(f"no space left on device while writing the report ({err.filename or run_dir}); every "
                       f"measured cell is kept in {run_dir}/results.jsonl. Free space (df -h {run_dir.parent}), then "
                       f"render it with: serverlab report {run_dir}/results.jsonl") from None
    print()
    print((run_dir / "summary.md").read_text())
    print("report:", ", ".join(str(path) for path in files.values()))
    from serverlab.results import read_results

    _, cells = read_results(run_dir / "results.jsonl")
    return 0 if all(cell.status == CellStatus.OK for cell in cells) else 1


def cmd_report(args: argparse.Namespace) -> int:
    """``serverlab report``: render index.html, summary.md and report.json."""
    from serverlab.report import write_report

    paths = [_results_path(p) for p in args.results]
    out = args.out or paths[0].parent
    files = write_report(paths, out)
    print("\n".join(str(path) for path in files.values()))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """``serverlab compare``: print the per-cell change as Markdown."""
    from serverlab.report import compare

    print(compare(_results_path(args.old), _results_path(args.new), args.on))
    return 0


def cmd_compose(args: argparse.Namespace) -> int:
    """``serverlab compose``: write the compose file, or with ``--check`` diff it (0 current, 1 differs)."""
    from serverlab import compose

    from serverlab import loadgencompose

    # the lab's file, and beside it the workers-only file for other hosts (docker-compose.loadgen.yml)
    files = [(args.output, compose.generate(args.servers)),
             (args.output.with_name(loadgencompose.LOADGEN_FILE.name), loadgencompose.render())]
    if args.check:
        stale = 0
        for path, text in files:
            diff = compose.difference(path, text)
            if diff:
                stale += 1
                print(diff, end="")
                print(f"{path} differs from what `{compose.COMMAND}` writes; "
                      f"run `{compose.COMMAND}` (or `make compose`) and commit the result", file=sys.stderr)
            else:
                print(f"{path} is current")
        return 1 if stale else 0
    for path, text in files:
        changed = compose.write(path, text)
        print(f"{'wrote' if changed else 'unchanged:'} {path}")
    return 0


def cmd_stack(args: argparse.Namespace) -> int:
    """``serverlab stack``: write the stack file, or with ``--check`` diff it (0 current, 1 differs)."""
    from serverlab import compose, stack

    text = stack.generate(args.servers)
    if args.check:
        diff = compose.difference(args.output, text).replace(f"`{compose.COMMAND}`", f"`{stack.COMMAND}`")
        if diff:
            print(diff, end="")
            print(f"{args.output} differs from what `{stack.COMMAND}` writes from the server declarations; "
                  f"run `{stack.COMMAND}` and commit the result", file=sys.stderr)
            return 1
        print(f"{args.output} is current")
        return 0
    changed = compose.write(args.output, text)
    print(f"{'wrote' if changed else 'unchanged:'} {args.output}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse, dispatch, and turn every :class:`LabError` into ``error: ...``."""
    args = build_parser().parse_args(argv)
    handlers = {"run": cmd_run, "report": cmd_report, "compare": cmd_compare, "compose": cmd_compose,
                "stack": cmd_stack}
    try:
        return handlers[args.command](args)
    except LabError as err:
        print(f"error: {strip_ansi(str(err))}", file=sys.stderr)
        return 2
    except OSError as err:  # e.g. a full disk while writing a report
        where = f"{err.filename}: " if err.filename else ""
        print(f"error: {where}{err.strerror or err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:  # RunStopped (SIGINT/SIGTERM/SIGHUP) carries its own status
        return getattr(err, "exit_code", 130)


if __name__ == "__main__":
    sys.exit(main())
