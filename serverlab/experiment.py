"""Experiments as files: ``experiments/<name>.toml`` lists only axes and overrides.

Example (``experiments/quick.toml``)::

    description = "Every server variant, hello workload, one load level"
    servers = "all"              # or a list of servers/*.toml names
    workloads = ["hello"]        # hello, json, cpu, io, mixed
    mode = "closed"              # closed (Locust users), open (arrival rate), requests (fixed count)
    users = [8]                  # closed: load levels; open/requests: users (max in flight)
    duration = 8                 # measured seconds per cell (closed, open)
    warmup = 2                   # discarded seconds before each measured period
    repetitions = 1

    [params.cpu]                 # workload parameter overrides
    n = 1000

    [overrides.gunicorn-sync]    # per-variant worker/thread counts
    workers = 5

    [budget]                     # CPU and memory budget (defaults fit 2 cores)
    server_cpus = 1.0
    server_memory = "512m"
    server_cpuset = "0"
    loadgen_cpuset = "1"
    loadgen_processes = "auto"   # one Locust process per load-generator CPU (or an integer)

Open mode takes ``rates = [...]`` (target RPS) and ``p99_bound_ms``; requests mode
takes ``requests = [...]`` (request counts) and needs ``warmup = 0``. Every
refusal names the file, the key, the bad value and the valid choices.
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import psutil

from labapp.variants import Variant, VariantError, load_variants
from serverlab import adaptive
from serverlab.appspec import AppSpec, load_app_keys, with_app
from serverlab.budget import MIN_SERVER_MEMORY, Budget, format_cpuset, memory_bytes, parse_cpuset, usable_cpus
from serverlab.experimentkeys import ExperimentError, Checker, load_budget, load_overrides, load_params
from serverlab.load import DEFAULT_USERS, Load
from serverlab.requestmix import RequestSpec, RequestWorkload, request_workloads
from serverlab.terms import DEFAULT_WORKLOAD, MODES, WORKLOADS, Mode
from serverlab.workloadspec import WorkloadSpec

__all__ = ["EXPERIMENTS_DIR", "Experiment", "ExperimentError", "check_machine", "find_experiment", "list_experiments",
           "load_experiment"]

#: The folder of shipped experiments.
EXPERIMENTS_DIR = Path(__file__).resolve().parents[1] / "experiments"
_TOP_KEYS = {
    "description", "servers", "workloads", "mode", "users", "rates", "requests", "duration", "warmup",
    "repetitions", "calibrate", "p99_bound_ms", "seed", "params", "overrides", "budget", "app", *adaptive.KEYS,
}


@dataclass(frozen=True)
class Experiment:
    """A validated experiment: which variants, workloads and load levels, how long, how often.

    :param name: the file's stem.
    :param mode: the load model.
    :param levels: load levels: users (closed), target RPS (open) or request counts (requests).
    :param users: concurrent users for open/requests modes (open: requests in flight at most);
        closed mode records the largest level here. A cell's users come from :meth:`load`.
    :param duration: measured seconds per cell (closed, open); a time cap in requests mode.
    :param warmup: discarded seconds before each measured period.
    :param params: workload -> full parameter dict (defaults applied).
    :param overrides: variant -> ``{"workers": int, "threads": int}``.
    :param seed: shuffle seed; ``None`` means pick one at run time (then recorded).
    :param target_ci: adaptive repetitions' target relative 95% CI half-width, or ``None``
        (:mod:`serverlab.adaptive`); :param max_repetitions: their maximum per cell;
        :param time_budget: seconds the whole run may take when adding repetitions, or ``None``.
    :param app: the user's app every variant serves (:mod:`serverlab.appspec`); ``None``: the demo app.
    :param requests: the declared ``[[requests]]`` (:mod:`serverlab.requestmix`); when set,
        ``workloads`` are their mix and each request alone.
    """

    name: str
    description: str
    servers: tuple[str, ...]
    workloads: tuple[str, ...]
    mode: Mode
    levels: tuple[int, ...]
    users: int
    duration: float
    warmup: float
    repetitions: int
    calibrate: bool
    p99_bound_ms: float
    seed: int | None
    params: dict[str, dict[str, int]] = field(default_factory=dict)
    overrides: dict[str, dict[str, int]] = field(default_factory=dict)
    budget: Budget = field(default_factory=Budget)
    path: str = ""
    target_ci: float | None = None
    max_repetitions: int | None = None
    time_budget: float | None = None
    app: AppSpec | None = None
    requests: tuple[RequestSpec, ...] = ()

    def workload_spec(self, name: str) -> WorkloadSpec | RequestWorkload:
        """The workload called ``name``: a declared requests' one, else the demo's (:data:`~serverlab.terms.WORKLOADS`)."""
        return request_workloads(self.requests)[name] if self.requests else WORKLOADS[name]

    def load(self, level: int) -> Load:
        """The :class:`~serverlab.load.Load` of one of this experiment's levels (its users derived
        there, once), shared by the budget's Locust processes."""
        return Load.of(self.mode, level, self.users, self.budget.loadgen_processes)

    def variants(self, declared: Mapping[str, Variant] | None = None) -> dict[str, Variant]:
        """Return the experiment's variants with their overrides applied, by name."""
        declared = declared or load_variants()
        return {
            name: declared[name].with_counts(**self.overrides.get(name, {}))
            for name in self.servers
        }

    @property
    def cell_count(self) -> int:
        """Cells per run: servers × workloads × levels × repetitions."""
        return len(self.servers) * len(self.workloads) * len(self.levels) * self.repetitions

    def estimated_seconds(self, overhead_s: float = 6.0, prepare_s: float = 60.0,
                          repetitions: int | None = None) -> float:
        """A rough run time (seconds) of ``repetitions`` (default: the first pass, ``repetitions``):
        per cell warm-up + duration + ``overhead_s`` (start, verify, stop), plus, with
        ``calibrate``, a wrk run per variant and repetition (:func:`serverlab.calibration.estimated_seconds`),
        plus ``prepare_s`` (the Docker image check and version probe, the final teardown:
        ~60 s measured here with a cached image) and the 2 s quietness probe."""
        from serverlab import calibration

        reps = repetitions if repetitions is not None else self.repetitions
        per_cell = self.warmup + (self.duration if self.mode != Mode.REQUESTS else 10.0) + overhead_s
        cells = len(self.servers) * len(self.workloads) * len(self.levels) * reps
        return cells * per_cell + calibration.estimated_seconds(self, overhead_s, reps) + prepare_s + 2.0

    def record(self) -> dict[str, Any]:
        """The experiment as a JSON-ready dict (stored in the results header); the adaptive keys
        only when set, so that an experiment without them keeps its digest."""
        data = asdict(self)
        data["budget"] = self.budget.to_dict()  # without the remote-worker keys while unused: digests stay
        for key in adaptive.KEYS:
            if data.get(key) is None:
                data.pop(key, None)
        return data


def list_experiments(directory: Path | None = None) -> dict[str, Path]:
    """Return the shipped experiments, name -> path, sorted."""
    directory = directory or EXPERIMENTS_DIR
    return {path.stem: path for path in sorted(directory.glob("*.toml"))}


def find_experiment(name_or_path: str, directory: Path | None = None) -> Path:
    """Resolve an experiment name (``quick``) or a path to a ``.toml`` file.

    :raises ExperimentError: naming the valid experiments if there is no such one.
    """
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml" or "/" in name_or_path:
        if not candidate.is_file():
            raise ExperimentError(f"{candidate}: no such experiment file")
        return candidate
    known = list_experiments(directory)
    if name_or_path not in known:
        raise ExperimentError(f"unknown experiment {name_or_path!r}; valid: {', '.join(known)}")
    return known[name_or_path]


def check_machine(experiment: Experiment, cpus: list[int] | None = None, memory: int | None = None) -> None:
    """Check an experiment's budget against this machine, before anything starts.

    :param cpus: usable CPU numbers (default :func:`usable_cpus`).
    :param memory: this machine's memory in bytes (default: ``psutil.virtual_memory().total``).
    :raises ExperimentError: for a cpuset naming CPUs this machine lacks (or does not let
        this process use), or a server memory limit above the machine's memory — naming
        the key, the value and the valid range.
    """
    check = Checker(Path(experiment.path or experiment.name))
    usable = set(cpus if cpus is not None else usable_cpus())
    for key in ("server_cpuset", "loadgen_cpuset"):
        value = getattr(experiment.budget, key)
        missing = sorted(set(parse_cpuset(value)) - usable)
        if missing:
            raise check.fail(f"budget.{key}", value, f"CPUs of this machine that serverlab may use: "
                             f"{format_cpuset(sorted(usable))} (CPU(s) {format_cpuset(missing)} do not exist here "
                             "or are outside this process's affinity)")
    total = memory if memory is not None else psutil.virtual_memory().total
    if memory_bytes(experiment.budget.server_memory) > total:
        raise check.fail("budget.server_memory", experiment.budget.server_memory,
                         f"a size from {MIN_SERVER_MEMORY // 2**20}m to this machine's memory, {total // 2**20}m")


def load_experiment(name_or_path: str, directory: Path | None = None, variants_dir: Path | None = None) -> Experiment:
    """Load and validate an experiment before anything runs.

    :param name_or_path: a shipped experiment's name or a path to a TOML file.
    :raises ExperimentError: for a missing file, invalid TOML, an unknown key, a
        wrong server or workload name, or a value out of range — naming the file,
        the key, the bad value and the valid choices.
    """
    path = find_experiment(name_or_path, directory)
    try:
        # utf-8-sig: a byte-order mark (Windows editors write one) is accepted and dropped;
        # tomllib alone reports it as "Invalid statement (at line 1, column 1)".
        data = tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except tomllib.TOMLDecodeError as err:
        raise ExperimentError(f"{path}: not valid TOML: {err}") from None
    except UnicodeDecodeError as err:
        raise ExperimentError(f"{path}: not UTF-8 text (byte {err.object[err.start]:#04x} at offset {err.start}); "
                              "save the experiment file as UTF-8") from None
    except OSError as err:
        raise ExperimentError(f"{path}: {err.strerror}") from None
    check = Checker(path)
    for key in data:
        if key not in _TOP_KEYS:
            raise ExperimentError(f"{path}: unknown key {key!r}; valid: {', '.join(sorted(_TOP_KEYS))}")
    try:
        declared = load_variants(variants_dir)
    except VariantError as err:
        raise ExperimentError(str(err)) from None
    app, requests, data = load_app_keys(data, path)  # [app] and [[requests]] (serverlab.appspec)

    mode = data.get("mode", Mode.CLOSED.value)
    if mode not in MODES:
        raise check.fail("mode", mode, f"one of {', '.join(MODES)}")
    mode = Mode(mode)
    servers = check.names("servers", data.get("servers", "all"), list(declared))
    workloads = check.names("workloads", data.get("workloads", [DEFAULT_WORKLOAD]), list(WORKLOADS))
    description = data.get("description", "")
    if not isinstance(description, str):
        raise check.fail("description", description, "a string")

    level_key = mode.level_key
    for key in (m.level_key for m in Mode):
        if key in data and key != level_key and not (key == "users" and mode != Mode.CLOSED):
            raise ExperimentError(f"{path}: key {key!r} does not apply to mode {mode.value!r} (its load levels are {level_key!r})")
    if level_key not in data:
        raise ExperimentError(f"{path}: mode {mode.value!r} needs key {level_key!r} (its load levels)")
    levels = check.int_list(level_key, data[level_key], *mode.level_range)
    # closed mode: each level is its users (Load.of); the header records the largest
    users = max(levels) if mode == Mode.CLOSED else check.integer("users", data.get("users", DEFAULT_USERS[mode]), 1, 10_000)

    duration = check.number("duration", data.get("duration", 10), 1, 3600)
    warmup = check.number("warmup", data.get("warmup", 0 if mode == Mode.REQUESTS else 2), 0, 600)
    if mode == Mode.REQUESTS and warmup:
        raise check.fail("warmup", warmup, "0 in requests mode (the total time of N requests includes start-up)")
    repetitions = check.integer("repetitions", data.get("repetitions", 1), 1, 100)
    adaptive_settings = adaptive.load_settings(check, data, repetitions)
    calibrate = data.get("calibrate", False)
    if not isinstance(calibrate, bool):
        raise check.fail("calibrate", calibrate, "true or false")
    p99_bound_ms = check.number("p99_bound_ms", data.get("p99_bound_ms", 100), 0.001, 600_000)
    seed = data.get("seed")
    if seed is not None:
        seed = check.integer("seed", seed, 0, 2**32 - 1)

    params = load_params(check, data.get("params", {}), workloads)
    overrides = load_overrides(check, data.get("overrides", {}), declared)
    budget = load_budget(check, data.get("budget", {}), mode)

    return with_app(Experiment(
        name=path.stem, description=description, servers=servers, workloads=workloads, mode=mode,
        levels=levels, users=users, duration=duration, warmup=warmup, repetitions=repetitions,
        calibrate=calibrate, p99_bound_ms=p99_bound_ms, seed=seed, params=params, overrides=overrides,
        budget=budget, path=str(path), **adaptive_settings,
    ), app, requests, declared)
