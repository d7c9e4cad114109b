"""Checking an experiment file's values: each table and key, naming the file, the key, the bad
value and the valid choices (:class:`Checker`); used by :func:`serverlab.experiment.load_experiment`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from labapp.variants import Variant, VariantError
from serverlab import LabError
from serverlab.budget import (MIN_SERVER_MEMORY, REMOTE_KEYS, Budget, auto_loadgen_processes, is_size, memory_bytes,
                              parse_cpuset, with_remote_workers)
from serverlab.terms import WORKLOADS, Mode
from serverlab.workloadspec import WorkloadParameterError

#: The keys of an experiment's ``[budget]`` table.
BUDGET_KEYS = {"server_cpus", "server_memory", "server_cpuset", "loadgen_cpuset", "loadgen_processes", *REMOTE_KEYS}


class ExperimentError(LabError):
    """An experiment file is missing, malformed, or names something that does not exist."""


class Checker:
    """Validation helpers that name the file and key in every error.

    :param path: the experiment file (named in every error).
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, key: str, value: Any, expected: str) -> ExperimentError:
        """The error for ``key = value``: ``expected`` says what would be valid."""
        return ExperimentError(f"{self.path}: key {key!r} = {value!r} is invalid; expected {expected}")

    def integer(self, key: str, value: Any, low: int, high: int) -> int:
        """``value`` as an integer in ``low..high``.

        :raises ExperimentError: naming the key, the value and the range.
        """
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.fail(key, value, f"an integer in {low}..{high}")
        return value

    def number(self, key: str, value: Any, low: float, high: float) -> float:
        """``value`` as a number in ``low..high``.

        :raises ExperimentError: naming the key, the value and the range.
        """
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise self.fail(key, value, f"a number in {low}..{high}")
        return float(value)

    def int_list(self, key: str, value: Any, low: int, high: int) -> tuple[int, ...]:
        """``value`` (an integer or a list of them) as distinct integers in ``low..high``.

        :raises ExperimentError: naming the key, the value and what is valid.
        """
        if isinstance(value, int) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, list) or not value:
            raise self.fail(key, value, f"a non-empty list of integers in {low}..{high}")
        items = tuple(self.integer(key, item, low, high) for item in value)
        if len(set(items)) != len(items):
            raise self.fail(key, value, "distinct values")
        return items

    def names(self, key: str, value: Any, valid: list[str]) -> tuple[str, ...]:
        """``value`` (``"all"``, a name or a list of them) as distinct names of ``valid``.

        :raises ExperimentError: naming the key, the unknown name and the valid ones.
        """
        if value == "all":
            return tuple(valid)
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise self.fail(key, value, f'"all" or a non-empty list of names from: {", ".join(valid)}')
        for name in value:
            if name not in valid:
                raise ExperimentError(f"{self.path}: key {key!r}: unknown name {name!r}; valid: {', '.join(valid)}")
        if len(set(value)) != len(value):
            raise self.fail(key, value, "no repeated names")
        return tuple(value)


def _loadgen_processes(check: Checker, value: Any, loadgen_cpuset: str, mode: str) -> dict[str, Any]:
    """``budget.loadgen_processes``: ``"auto"`` (resolved for this machine) or an integer in 1..64,
    at most one per CPU of ``loadgen_cpuset``: more processes than CPUs share cores, and
    (seen: 64 on 1 CPU) start so slowly that a cell records no requests at all."""
    if value == "auto":
        return {"loadgen_processes": auto_loadgen_processes(loadgen_cpuset, mode), "loadgen_auto": True}
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 64:
        raise check.fail("budget.loadgen_processes", value, 'an integer in 1..64, or "auto" (one per load-generator CPU)')
    cores = len(parse_cpuset(loadgen_cpuset))
    if value > cores:
        raise check.fail("budget.loadgen_processes", value,
                         f"at most {cores}: one Locust process per CPU of budget.loadgen_cpuset = {loadgen_cpuset!r} "
                         "(more processes than CPUs share cores and start too slowly to measure); "
                         'widen loadgen_cpuset or use "auto"')
    return {"loadgen_processes": value}


def load_params(check: Checker, params_table: Any, workloads: tuple[str, ...]) -> dict[str, dict[str, int]]:
    """``[params.<workload>]``: every named workload's full parameters (defaults applied); tables of
    workloads the experiment does not run are checked too."""
    if not isinstance(params_table, dict):
        raise check.fail("params", params_table, "a table of workload tables, e.g. [params.cpu]")
    params: dict[str, dict[str, int]] = {}
    for name in params_table:
        if not isinstance(params_table[name], dict):
            raise check.fail(f"params.{name}", params_table[name], f"a table of parameters, e.g. [params.{name}]")
        if name not in WORKLOADS:
            raise ExperimentError(f"{check.path}: key 'params.{name}': unknown workload {name!r}; valid: {', '.join(WORKLOADS)}")
    for name in [*workloads, *(n for n in params_table if n not in workloads)]:
        try:
            checked = WORKLOADS[name].params(params_table.get(name))
        except WorkloadParameterError as err:
            raise ExperimentError(f"{check.path}: key 'params.{name}': {err}") from None
        if name in workloads:
            params[name] = checked
    return params


def load_overrides(check: Checker, overrides_table: Any, declared: Mapping[str, Variant]) -> dict[str, dict[str, int]]:
    """``[overrides.<variant>]``: worker/thread counts per declared variant."""
    if not isinstance(overrides_table, dict):
        raise check.fail("overrides", overrides_table, "a table of variant tables, e.g. [overrides.gunicorn-sync]")
    overrides: dict[str, dict[str, int]] = {}
    for name, table in overrides_table.items():
        if name not in declared:
            raise ExperimentError(f"{check.path}: key 'overrides.{name}': unknown server variant {name!r}; valid: {', '.join(declared)}")
        if not isinstance(table, dict):
            raise check.fail(f"overrides.{name}", table, "a table with workers and/or threads")
        for key, value in table.items():
            if key not in ("workers", "threads"):
                raise ExperimentError(f"{check.path}: key 'overrides.{name}.{key}' is unknown; valid: workers, threads")
            check.integer(f"overrides.{name}.{key}", value, 1, 1024)
        try:
            declared[name].with_counts(**table)
        except VariantError as err:
            raise ExperimentError(f"{check.path}: key 'overrides.{name}': {err}") from None
        overrides[name] = dict(table)
    return overrides


def load_budget(check: Checker, budget_table: Any, mode: Mode) -> Budget:
    """``[budget]``: the servers' CPU/memory budget and the load generator's CPUs and processes."""
    if not isinstance(budget_table, dict):
        raise check.fail("budget", budget_table, "a table")
    for key in budget_table:
        if key not in BUDGET_KEYS:
            raise ExperimentError(f"{check.path}: key 'budget.{key}' is unknown; valid: {', '.join(sorted(BUDGET_KEYS))}")
    defaults = Budget()
    memory = budget_table.get("server_memory", defaults.server_memory)
    if not isinstance(memory, str) or not is_size(memory):
        raise check.fail("budget.server_memory", memory, "a string size like '512m' or '1g'")
    memory = memory.lower()
    if memory_bytes(memory) < MIN_SERVER_MEMORY:
        raise check.fail("budget.server_memory", memory, f"a size from {MIN_SERVER_MEMORY // 2**20}m up to this "
                         "machine's memory (a server with a few workers needs tens of MiB)")
    cpusets = {}
    for key in ("server_cpuset", "loadgen_cpuset"):
        value = budget_table.get(key, getattr(defaults, key))
        if not isinstance(value, str):
            raise check.fail(f"budget.{key}", value, "a string cpuset such as '0', '0-1' or '0,2'")
        try:
            cpusets[key] = set(parse_cpuset(value))
        except ValueError:
            raise check.fail(f"budget.{key}", value, "a cpuset such as '0', '0-1' or '0,2'") from None
    if cpusets["server_cpuset"] & cpusets["loadgen_cpuset"]:
        raise ExperimentError(
            f"{check.path}: budget.server_cpuset = {budget_table.get('server_cpuset', defaults.server_cpuset)!r} and "
            f"budget.loadgen_cpuset = {budget_table.get('loadgen_cpuset', defaults.loadgen_cpuset)!r} overlap on CPU(s) "
            f"{sorted(cpusets['server_cpuset'] & cpusets['loadgen_cpuset'])}: the load generator must run on other CPUs than the server")
    budget = Budget(
        server_cpus=check.number("budget.server_cpus", budget_table.get("server_cpus", defaults.server_cpus), 0.1, 256),
        server_memory=memory,
        server_cpuset=str(budget_table.get("server_cpuset", defaults.server_cpuset)),
        loadgen_cpuset=str(budget_table.get("loadgen_cpuset", defaults.loadgen_cpuset)),
        **_loadgen_processes(check, budget_table.get("loadgen_processes", "auto"),
                             str(budget_table.get("loadgen_cpuset", defaults.loadgen_cpuset)), mode),
    )
    if budget.server_cpus > len(cpusets["server_cpuset"]):
        raise check.fail("budget.server_cpus", budget.server_cpus, f"at most the {len(cpusets['server_cpuset'])} CPU(s) of server_cpuset")
    if mode == Mode.REQUESTS and budget.loadgen_processes != 1:
        raise check.fail("budget.loadgen_processes", budget.loadgen_processes, "1 in requests mode (one process counts the requests)")
    try:  # Locust workers on other hosts (serverlab.remoterun)
        return with_remote_workers(budget, mode, **{REMOTE_KEYS[k]: v for k, v in budget_table.items() if k in REMOTE_KEYS})
    except ValueError as err:
        raise ExperimentError(f"{check.path}: {err}") from None
