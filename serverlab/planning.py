"""The plan of a run and the facts recorded about it: cells in order, run ids, the experiment's digest.

* :func:`plan_cells` — every cell of an experiment, shuffled per repetition by a recorded seed;
* :func:`new_run_id` — ``<UTC time>-<experiment>``;
* :func:`experiment_digest` / :func:`check_unchanged` — what ``--resume`` compares;
* :func:`run_metadata` — the facts stored once per run in the results header.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import random
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from labapp import package_versions
from serverlab import LabError
from serverlab.backends import ROOT, Backend
from serverlab.experiment import Experiment
from serverlab.results import RunHeader


@dataclass(frozen=True)
class PlannedCell:
    """One cell of the run's plan, in execution order.

    :param variant: variant name; :param workload: workload name; :param level: load level.
    :param repetition: 1-based; :param order: 0-based position in the run.
    """

    variant: str
    workload: str
    level: int
    repetition: int
    order: int

    @property
    def cell_id(self) -> str:
        """``"<variant>/<workload>/<level>/r<repetition>"``."""
        return f"{self.variant}/{self.workload}/{self.level}/r{self.repetition}"


def plan_cells(experiment: Experiment, seed: int) -> list[PlannedCell]:
    """Every cell of ``experiment``, shuffled within each repetition by ``seed``.

    :return: cells in execution order; repetition 1's cells all come before repetition 2's.
    """
    rng = random.Random(seed)
    cells: list[PlannedCell] = []
    for repetition in range(1, experiment.repetitions + 1):
        combos = [(v, w, lvl) for v in experiment.servers for w in experiment.workloads for lvl in experiment.levels]
        rng.shuffle(combos)
        for variant, workload, level in combos:
            cells.append(PlannedCell(variant, workload, level, repetition, len(cells)))
    return cells


def new_run_id(experiment: Experiment, now: datetime | None = None) -> str:
    """A run id like ``20261120-231500-quick`` (UTC)."""
    now = now or datetime.now(timezone.utc)
    return f"{now:%Y%m%d-%H%M%S}-{experiment.name}"


def _git_commit() -> str | None:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if commit.returncode != 0:
        return None
    return commit.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _settings(record: dict[str, object]) -> dict[str, object]:
    """An experiment record's settings as JSON would give them back, name-independent parts only."""
    return json.loads(json.dumps({k: v for k, v in record.items() if k not in ("description", "path")}, default=str))


def experiment_digest(experiment: Experiment) -> str:
    """A digest of the effective experiment: its settings and its variants as they would run.

    Two loads of an unchanged experiment file (and unchanged ``servers/*.toml``) give the
    same digest; any setting that changes what is measured changes it.

    :return: 16 hex digits (the start of a SHA-256).
    """
    effective = {"settings": _settings(experiment.record()),
                 "variants": {name: variant.record() for name, variant in experiment.variants().items()}}
    return hashlib.sha256(json.dumps(effective, sort_keys=True, default=str).encode()).hexdigest()[:16]


def check_unchanged(experiment: Experiment, header: RunHeader) -> None:
    """Refuse to resume a run whose experiment changed since it began.

    :raises LabError: naming the changed settings, and how to start a new run instead.
    """
    old, new = _settings(header.experiment), _settings(experiment.record())
    changed = sorted(key for key in {*old, *new} if old.get(key) != new.get(key))
    recorded = header.metadata.get("experiment_digest")
    if (recorded is None and not changed) or recorded == experiment_digest(experiment):
        return
    what = "; ".join(f"{key}: {old.get(key)!r} then, {new.get(key)!r} now" for key in changed) \
        or "the server variants' declarations (servers/*.toml)"
    raise LabError(f"experiment {experiment.name!r} changed since run {header.run_id} began ({what}); resuming would "
                   "mix cells measured under different settings. Run it without --resume to start a new run, "
                   "or restore the settings to resume this one")


def run_metadata(experiment: Experiment, backend: Backend, seed: int) -> dict[str, object]:
    """The facts stored once per run: host, versions, the backend's limits, commit, seed (the budget is
    the experiment record's, :attr:`serverlab.results.RunHeader.budget`)."""
    return {
        "packages": package_versions(),  # this environment's; the Docker backend replaces them with the image's
        "python": platform.python_version(),
        **backend.describe(),
        "cpu_model": _cpu_model(),
        "host_cores": os.cpu_count(),
        "git_commit": _git_commit(),
        "started_at": time.time(),
        "seed": seed,
        "experiment_digest": experiment_digest(experiment),
        # the budget itself is the experiment record's (stored once: RunHeader.budget)
        "loadgen_processes_chosen": (
            f"{experiment.budget.loadgen_processes} Locust process(es)"
            + (f" (auto: one per CPU of loadgen_cpuset {experiment.budget.loadgen_cpuset!r} on this machine)"
               if experiment.budget.loadgen_auto else " (set in the experiment)")),
    }
