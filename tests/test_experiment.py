"""Experiment files: the shipped ones load and are sane; every bad file is refused clearly; the cell plan.

Each refusal is triggered by one small TOML file in ``tmp_path`` that differs from a
valid base in exactly one place, and the message must name the file, the key, the bad
value and (where there is a set of choices) the valid choices.
"""

from __future__ import annotations

import collections
import os
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from labapp.variants import load_variants
from serverlab.budget import Budget, auto_loadgen_processes, parse_cpuset
from serverlab.experiment import EXPERIMENTS_DIR, ExperimentError, find_experiment, list_experiments, load_experiment
from serverlab.planning import plan_cells
from serverlab.terms import WORKLOADS

#: The default budget as loaded on this machine: loadgen_processes = "auto" resolved.
AUTO_BUDGET = Budget(loadgen_processes=auto_loadgen_processes("1"), loadgen_auto=True)

REPO_ROOT = Path(__file__).resolve().parents[1]
SERVERLAB = Path(sys.executable).parent / "serverlab"
SHIPPED = ("default", "full", "quick", "threading")
VARIANT_NAMES = list(load_variants())
#: A valid closed-mode experiment; every refusal test changes exactly one thing in it.
BASE: dict[str, Any] = {
    "description": "a test experiment",
    "servers": ["werkzeug-single"],
    "workloads": ["hello"],
    "mode": "closed",
    "users": [1],
    "duration": 1,
    "warmup": 0,
}
REQUESTS_BASE: dict[str, Any] = {**BASE, "mode": "requests", "requests": [10], "users": 2}


# --- helpers -------------------------------------------------------------------------


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string for the ASCII used here
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    raise TypeError(f"no TOML for {value!r}")


def to_toml(data: dict[str, Any], prefix: str = "") -> str:
    """A small TOML writer: scalars and arrays first, then ``[tables]`` (nested by dotted names)."""
    lines = [f"{key} = {toml_value(value)}" for key, value in data.items() if not isinstance(value, dict)]
    for key, value in data.items():
        if isinstance(value, dict):
            name = f"{prefix}{key}"
            lines.append(f"\n[{name}]")
            lines.append(to_toml(value, prefix=name + "."))
    return "\n".join(lines) + "\n"


def write(tmp_path: Path, data: dict[str, Any] | str, name: str = "exp.toml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else to_toml(data), encoding="utf-8")
    return path


def with_changes(base: dict[str, Any], drop: tuple[str, ...] = (), **changes: Any) -> dict[str, Any]:
    data = {key: value for key, value in base.items() if key not in drop}
    data.update(changes)
    return data


def refused(tmp_path: Path, data: dict[str, Any] | str, *fragments: str) -> str:
    """Load ``data`` from a file, expect ExperimentError naming the file and every fragment."""
    path = write(tmp_path, data)
    with pytest.raises(ExperimentError) as info:
        load_experiment(str(path))
    message = str(info.value)
    assert str(path) in message, message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


# --- the shipped experiments ------------------------------------------------------------


def test_shipped_experiments_are_listed():
    assert set(SHIPPED) <= set(list_experiments())
    assert list_experiments() == {name: EXPERIMENTS_DIR / f"{name}.toml" for name in list_experiments()}
    assert EXPERIMENTS_DIR.resolve() == (REPO_ROOT / "experiments").resolve()


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_experiment_loads(name):
    experiment = load_experiment(name)
    assert experiment.name == name
    assert experiment.description
    assert Path(experiment.path) == EXPERIMENTS_DIR / f"{name}.toml"
    assert set(experiment.servers) <= set(VARIANT_NAMES)
    assert set(experiment.workloads) <= set(WORKLOADS)
    assert set(experiment.params) == set(experiment.workloads)
    assert experiment.cell_count == len(experiment.servers) * len(experiment.workloads) * len(experiment.levels) * experiment.repetitions
    # the shipped ones use the default 2-core budget, with Locust sized to the machine
    assert experiment.budget == AUTO_BUDGET
    assert experiment.variants().keys() == set(experiment.servers)
    record = experiment.record()
    assert record["name"] == name and record["budget"]["server_cpuset"] == "0"
    json.dumps(record)  # JSON-ready: it goes into every results header


def test_quick_is_quick():
    quick = load_experiment("quick")
    assert quick.servers == tuple(VARIANT_NAMES)  # "all"
    assert quick.mode == "closed"
    assert quick.estimated_seconds() < 270  # 15 variants, one short cell each, plus preparation (~4 min)


def test_default_fits_twenty_minutes():
    default = load_experiment("default")
    # every WSGI variant; the ASGI ones (issue 20) would take it past 20 minutes: `asyncio` and `full` have them
    wsgi = [name for name, variant in load_variants().items() if variant.model != "asgi"]
    assert sorted(default.servers) == sorted(wsgi) and len(wsgi) == len(VARIANT_NAMES) - 2
    assert {"hello", "io"} <= set(default.workloads)
    # at least 3 repetitions (confidence intervals), within 20 minutes including
    # server restarts and the wrk calibration (issue 7): with 13 variants (issue 10)
    # that is one load level and two workloads; `full` has all four
    assert default.repetitions >= 3
    assert default.calibrate
    assert default.estimated_seconds() <= 1200


def test_full_covers_every_workload():
    full = load_experiment("full")
    assert full.servers == tuple(VARIANT_NAMES)
    assert {"hello", "cpu", "io", "mixed"} <= set(full.workloads)
    assert full.repetitions >= 3 and full.calibrate
    assert full.estimated_seconds() <= 2400


def test_estimate_counts_the_calibration(tmp_path):
    plain = load_experiment(str(write(tmp_path, with_changes(BASE, servers=["gunicorn-sync"]))))
    calibrated = load_experiment(str(write(tmp_path, with_changes(BASE, servers=["gunicorn-sync"], calibrate=True))))
    assert calibrated.estimated_seconds() > plain.estimated_seconds()


def test_loadgen_processes_auto_is_one_per_loadgen_cpu(tmp_path):
    cpus = len(os.sched_getaffinity(0))
    experiment = load_experiment(str(write(tmp_path, with_changes(BASE, budget={"loadgen_processes": "auto"}))))
    assert experiment.budget.loadgen_auto and experiment.budget.loadgen_processes == 1  # loadgen_cpuset "1"
    if cpus >= 3:
        wide = load_experiment(str(write(tmp_path, with_changes(BASE, budget={"loadgen_cpuset": "1-2"}))))
        assert wide.budget.loadgen_processes == 2
    # a cpuset naming CPUs this machine lacks gets one process per CPU it has (at least 1)
    assert auto_loadgen_processes("1-200") == len(set(range(1, 201)) & os.sched_getaffinity(0))
    assert auto_loadgen_processes("1-200", mode="requests") == 1
    requests = load_experiment(str(write(tmp_path, REQUESTS_BASE)))
    assert requests.budget.loadgen_processes == 1


def test_threading_reproduces_the_article_experiment():
    threading = load_experiment("threading")
    declared = load_variants()
    assert threading.mode == "requests"
    assert threading.levels == (10, 100, 1000)
    assert threading.warmup == 0
    assert threading.workloads == ("cpu",)
    assert "werkzeug-single" in threading.servers
    models = {name: declared[name].model for name in threading.servers}
    assert models["werkzeug-single"] == "single"
    assert "threaded" in models.values(), models
    assert "multi-process" in models.values(), models
    assert any(declared[name].workers > 1 for name in threading.servers)
    assert threading.budget.loadgen_processes == 1


def test_defaults_of_a_minimal_file(tmp_path):
    experiment = load_experiment(str(write(tmp_path, {"users": [4]})))
    assert experiment.name == "exp"
    assert experiment.servers == tuple(VARIANT_NAMES)
    assert experiment.workloads == ("hello",)
    assert experiment.mode == "closed"
    assert experiment.levels == (4,) and experiment.users == 4
    assert (experiment.duration, experiment.warmup, experiment.repetitions) == (10.0, 2.0, 1)
    assert experiment.calibrate is False and experiment.seed is None
    assert experiment.budget == AUTO_BUDGET


def test_a_full_valid_file(tmp_path):
    data = {
        "servers": ["gunicorn-sync", "werkzeug-threaded"],
        "workloads": ["cpu", "mixed"],
        "mode": "open",
        "rates": [100, 200],
        "users": 50,
        "duration": 3,
        "warmup": 1.5,
        "repetitions": 2,
        "calibrate": True,
        "seed": 7,
        "p99_bound_ms": 25,
        "params": {"cpu": {"n": 50}, "mixed": {"ms": 3}},
        "overrides": {"gunicorn-sync": {"workers": 5}},
        "budget": {"server_cpus": 2.0, "server_memory": "1G", "server_cpuset": "0-1",
                   "loadgen_cpuset": "2,3", "loadgen_processes": 2},
    }
    experiment = load_experiment(str(write(tmp_path, data)))
    assert experiment.levels == (100, 200) and experiment.users == 50
    assert experiment.warmup == 1.5 and experiment.repetitions == 2 and experiment.seed == 7
    assert experiment.calibrate is True and experiment.p99_bound_ms == 25.0
    assert experiment.params == {"cpu": {"n": 50}, "mixed": {"n": 500, "ms": 3}}
    assert experiment.overrides == {"gunicorn-sync": {"workers": 5}}
    assert experiment.variants()["gunicorn-sync"].workers == 5
    assert experiment.budget == Budget(2.0, "1g", "0-1", "2,3", 2)
    assert experiment.budget.loadgen_cores == 2
    assert experiment.cell_count == 2 * 2 * 2 * 2


def test_users_as_a_single_integer(tmp_path):
    assert load_experiment(str(write(tmp_path, with_changes(BASE, users=5)))).levels == (5,)


# --- refusals: the file itself ----------------------------------------------------------


def test_unknown_top_level_key(tmp_path):
    refused(tmp_path, with_changes(BASE, worklaods=["cpu"]), "unknown key 'worklaods'", "valid:", "workloads", "servers")


def test_invalid_toml(tmp_path):
    refused(tmp_path, 'servers = ["werkzeug-single"\nmode = closed\n', "not valid TOML")


def test_unknown_experiment_name_lists_the_valid_ones():
    with pytest.raises(ExperimentError) as info:
        find_experiment("nope")
    message = str(info.value)
    assert "'nope'" in message
    for name in SHIPPED:
        assert name in message
    with pytest.raises(ExperimentError, match="'nope'"):
        load_experiment("nope")


@pytest.mark.parametrize("name", ["missing.toml", "sub/missing"])
def test_a_path_that_does_not_exist(tmp_path, name):
    path = tmp_path / name
    with pytest.raises(ExperimentError) as info:
        load_experiment(str(path))
    assert str(path) in str(info.value) and "no such experiment file" in str(info.value)


def test_find_experiment_resolves_names_and_paths(tmp_path):
    assert find_experiment("quick") == EXPERIMENTS_DIR / "quick.toml"
    path = write(tmp_path, BASE)
    assert find_experiment(str(path)) == path
    other = tmp_path / "mine"
    other.mkdir()
    write(other, BASE, name="mine.toml")
    assert find_experiment("mine", directory=other) == other / "mine.toml"


# --- refusals: names and modes --------------------------------------------------------------


def test_unknown_server_name(tmp_path):
    refused(tmp_path, with_changes(BASE, servers=["werkzeug-single", "nginx"]),
            "'servers'", "'nginx'", "valid:", *VARIANT_NAMES)


@pytest.mark.parametrize("value", [[], 5, ["werkzeug-single", "werkzeug-single"]])
def test_bad_servers_value(tmp_path, value):
    refused(tmp_path, with_changes(BASE, servers=value), "'servers'", repr(value))


def test_unknown_workload_name(tmp_path):
    refused(tmp_path, with_changes(BASE, workloads=["fib"]), "'workloads'", "'fib'", "valid:", *WORKLOADS)


def test_bad_mode(tmp_path):
    refused(tmp_path, with_changes(BASE, mode="burst"), "'mode'", "'burst'", "closed", "open", "requests")


@pytest.mark.parametrize(("mode", "level_key", "drop"), [
    ("closed", "users", ("users",)),
    ("open", "rates", ()),
    ("requests", "requests", ()),
])
def test_missing_level_key(tmp_path, mode, level_key, drop):
    data = with_changes(BASE, drop=drop, mode=mode)
    if mode == "requests":
        data["users"] = 2
    refused(tmp_path, data, f"mode {mode!r}", f"key {level_key!r}")


@pytest.mark.parametrize(("mode", "key", "level_key"), [
    ("closed", "rates", "users"),
    ("closed", "requests", "users"),
    ("open", "requests", "rates"),
    ("requests", "rates", "requests"),
])
def test_level_key_of_another_mode(tmp_path, mode, key, level_key):
    data = with_changes(BASE, mode=mode, **{key: [10], level_key: [5]})
    if mode != "closed":
        data["users"] = 2
    refused(tmp_path, data, f"key {key!r}", f"mode {mode!r}", repr(level_key))


# --- refusals: numbers ------------------------------------------------------------------------


@pytest.mark.parametrize(("users", "bad", "expected"), [
    (["8"], "'8'", "an integer in 1..1000"),
    ([1.5], "1.5", "an integer in 1..1000"),
    ([], "[]", "non-empty list"),
    ([-1], "-1", "an integer in 1..1000"),
    ([0], "0", "an integer in 1..1000"),
    ([1001], "1001", "an integer in 1..1000"),
    ([8, 8], "[8, 8]", "distinct"),
    ([True], "True", "an integer in 1..1000"),
    (True, "True", "non-empty list"),
    ("eight", "'eight'", "non-empty list"),
])
def test_bad_users(tmp_path, users, bad, expected):
    refused(tmp_path, with_changes(BASE, users=users), "'users'", bad, expected)


@pytest.mark.parametrize(("key", "value", "bad", "expected"), [
    ("duration", 0, "0", "a number in 1..3600"),
    ("duration", "5", "'5'", "a number in 1..3600"),
    ("duration", 3601, "3601", "a number in 1..3600"),
    ("warmup", -1, "-1", "a number in 0..600"),
    ("repetitions", 0, "0", "an integer in 1..100"),
    ("repetitions", 2.0, "2.0", "an integer in 1..100"),
    ("calibrate", "yes", "'yes'", "true or false"),
    ("calibrate", 1, "1", "true or false"),
    ("seed", -1, "-1", "an integer in 0.."),
    ("seed", "42", "'42'", "an integer in 0.."),
    ("p99_bound_ms", 0, "0", "a number in"),
    ("description", 3, "3", "a string"),
])
def test_bad_numbers(tmp_path, key, value, bad, expected):
    refused(tmp_path, with_changes(BASE, **{key: value}), f"{key!r}", bad, expected)


def test_warmup_must_be_zero_in_requests_mode(tmp_path):
    refused(tmp_path, with_changes(REQUESTS_BASE, warmup=2), "'warmup'", "2.0", "0 in requests mode")
    assert load_experiment(str(write(tmp_path, REQUESTS_BASE))).warmup == 0.0


@pytest.mark.parametrize("mode", ["open", "requests"])
def test_bad_users_in_open_and_requests_modes(tmp_path, mode):
    level_key = {"open": "rates", "requests": "requests"}[mode]
    data = with_changes(BASE, drop=("users",), mode=mode, **{level_key: [10], "users": 0})
    refused(tmp_path, data, "'users'", "= 0", "an integer in 1..10000")


# --- refusals: workload parameters --------------------------------------------------------------


def test_params_for_an_unknown_workload(tmp_path):
    refused(tmp_path, with_changes(BASE, params={"fib": {"n": 5}}), "params.fib", "'fib'", "valid:", *WORKLOADS)


def test_param_unknown_for_its_workload(tmp_path):
    refused(tmp_path, with_changes(BASE, workloads=["cpu"], params={"cpu": {"m": 5}}),
            "params.cpu", "'m'", "valid: n")


def test_param_of_a_workload_without_params(tmp_path):
    refused(tmp_path, with_changes(BASE, params={"hello": {"n": 5}}), "params.hello", "'n'", "valid: none")


@pytest.mark.parametrize(("workload", "key", "value", "allowed"), [
    ("cpu", "n", 10**9, "1..20000"),
    ("cpu", "n", 0, "1..20000"),
    ("io", "ms", -1, "0..10000"),
    ("mixed", "ms", 10_001, "0..10000"),
    ("mixed", "n", "500", "1..20000"),
    ("io", "ms", True, "0..10000"),
])
def test_param_out_of_the_apps_bounds(tmp_path, workload, key, value, allowed):
    data = with_changes(BASE, workloads=[workload], params={workload: {key: value}})
    refused(tmp_path, data, f"params.{workload}", f"{key!r}", repr(value), allowed)


def test_params_of_an_unlisted_workload_are_still_validated(tmp_path):
    refused(tmp_path, with_changes(BASE, workloads=["hello"], params={"cpu": {"n": 10**9}}), "params.cpu", "1..20000")


# --- refusals: overrides --------------------------------------------------------------------------


def test_overrides_for_an_unknown_variant(tmp_path):
    refused(tmp_path, with_changes(BASE, overrides={"nginx": {"workers": 2}}),
            "overrides.nginx", "'nginx'", "valid:", *VARIANT_NAMES)


def test_override_key_other_than_workers_threads(tmp_path):
    refused(tmp_path, with_changes(BASE, overrides={"gunicorn-sync": {"processes": 2}}),
            "overrides.gunicorn-sync.processes", "valid: workers, threads")


@pytest.mark.parametrize(("key", "value"), [("workers", 0), ("threads", 0), ("workers", -3), ("workers", "2"), ("threads", 2000)])
def test_override_value_out_of_range(tmp_path, key, value):
    refused(tmp_path, with_changes(BASE, overrides={"gunicorn-gthread": {key: value}}),
            f"overrides.gunicorn-gthread.{key}", repr(value), "an integer in 1..1024")


# --- refusals: budget ----------------------------------------------------------------------------------


def test_budget_unknown_key(tmp_path):
    refused(tmp_path, with_changes(BASE, budget={"cpus": 1}), "budget.cpus", "valid:", "server_cpus", "loadgen_cpuset")


@pytest.mark.parametrize("key", ["server_cpuset", "loadgen_cpuset"])
@pytest.mark.parametrize("value", ["", "a", "0-", "-1", "1,,2", "0 1", "0;1", "1-2-3"])
def test_bad_cpuset(tmp_path, key, value):
    budget = {"server_cpuset": "0", "loadgen_cpuset": "1", key: value}
    refused(tmp_path, with_changes(BASE, budget=budget), f"budget.{key}", repr(value), "a cpuset such as")


def test_reversed_cpuset_range_is_refused():
    with pytest.raises(ValueError):
        parse_cpuset("3-1")


def test_reversed_loadgen_cpuset_is_refused_by_load_experiment(tmp_path):
    refused(tmp_path, with_changes(BASE, budget={"loadgen_cpuset": "3-1"}), "budget.loadgen_cpuset", "'3-1'")


@pytest.mark.parametrize(("text", "cpus"), [("0", [0]), ("0-3", [0, 1, 2, 3]), ("0,2", [0, 2]), ("0-1,4-5", [0, 1, 4, 5])])
def test_parse_cpuset(text, cpus):
    assert parse_cpuset(text) == cpus


@pytest.mark.parametrize(("server", "loadgen"), [("0", "0"), ("0-1", "1"), ("0,2", "2-3")])
def test_overlapping_cpusets(tmp_path, server, loadgen):
    refused(tmp_path, with_changes(BASE, budget={"server_cpuset": server, "loadgen_cpuset": loadgen}),
            "budget.server_cpuset", "budget.loadgen_cpuset", "overlap")


def test_overlapping_cpusets_message_names_the_values(tmp_path):
    refused(tmp_path, with_changes(BASE, budget={"server_cpuset": "0-1", "loadgen_cpuset": "1"}), "'0-1'", "'1'")


def test_server_cpus_more_than_the_cpuset_holds(tmp_path):
    refused(tmp_path, with_changes(BASE, budget={"server_cpus": 2.0, "server_cpuset": "0", "loadgen_cpuset": "1"}),
            "budget.server_cpus", "2.0", "at most the 1 CPU(s) of server_cpuset")
    experiment = load_experiment(str(write(tmp_path, with_changes(
        BASE, budget={"server_cpus": 2.0, "server_cpuset": "0-1", "loadgen_cpuset": "2"}))))
    assert experiment.budget.server_cpus == 2.0


@pytest.mark.parametrize("value", [0, 0.05, 300, "1", True])
def test_bad_server_cpus(tmp_path, value):
    refused(tmp_path, with_changes(BASE, budget={"server_cpus": value}), "budget.server_cpus", repr(value))


@pytest.mark.parametrize("value", ["512mb", "lots", "-1m", "1.5g", ""])
def test_bad_memory(tmp_path, value):
    refused(tmp_path, with_changes(BASE, budget={"server_memory": value}), "budget.server_memory", repr(value), "'512m'")


@pytest.mark.parametrize("value", [0, 65, "2", 1.0])
def test_bad_loadgen_processes(tmp_path, value):
    refused(tmp_path, with_changes(BASE, budget={"loadgen_processes": value}),
            "budget.loadgen_processes", repr(value), "an integer in 1..64")


def test_loadgen_processes_must_be_one_in_requests_mode(tmp_path):
    refused(tmp_path, with_changes(REQUESTS_BASE, budget={"loadgen_processes": 2, "loadgen_cpuset": "1-2"}),
            "budget.loadgen_processes", "2", "1 in requests mode")
    closed = load_experiment(str(write(tmp_path, with_changes(BASE, budget={"loadgen_processes": 2, "loadgen_cpuset": "1-2"}))))
    assert closed.budget.loadgen_processes == 2


@pytest.mark.parametrize("key", ["params", "overrides", "budget"])
def test_tables_must_be_tables(tmp_path, key):
    refused(tmp_path, with_changes(BASE, **{key: 3}), f"{key!r}", "= 3")


# --- the plan of cells ----------------------------------------------------------------------------


@pytest.fixture
def big_experiment(tmp_path):
    data = with_changes(BASE, servers="all", workloads=["hello", "cpu"], users=[1, 4, 16], repetitions=3)
    return load_experiment(str(write(tmp_path, data)))


def test_plan_covers_every_cell_once_per_repetition(big_experiment):
    experiment = big_experiment
    plan = plan_cells(experiment, seed=1)
    assert len(plan) == experiment.cell_count == len(VARIANT_NAMES) * 2 * 3 * 3
    assert [cell.order for cell in plan] == list(range(len(plan)))
    combos = {(v, w, lvl) for v in experiment.servers for w in experiment.workloads for lvl in experiment.levels}
    for repetition in range(1, experiment.repetitions + 1):
        seen = collections.Counter((c.variant, c.workload, c.level) for c in plan if c.repetition == repetition)
        assert set(seen) == combos
        assert set(seen.values()) == {1}
    # repetitions run in blocks: all of r1, then all of r2, ...
    repetitions = [cell.repetition for cell in plan]
    assert repetitions == sorted(repetitions)
    per_block = len(combos)
    assert repetitions == [r for r in range(1, experiment.repetitions + 1) for _ in range(per_block)]
    ids = [cell.cell_id for cell in plan]
    assert len(set(ids)) == len(ids)
    assert all(cell.cell_id == f"{cell.variant}/{cell.workload}/{cell.level}/r{cell.repetition}" for cell in plan)


def test_plan_is_seeded(big_experiment):
    assert plan_cells(big_experiment, 1) == plan_cells(big_experiment, 1)
    first, other = plan_cells(big_experiment, 1), plan_cells(big_experiment, 2)
    assert [c.cell_id for c in first] != [c.cell_id for c in other]
    assert sorted(c.cell_id for c in first) == sorted(c.cell_id for c in other)


def test_plan_shuffles_each_repetition_differently(big_experiment):
    plan = plan_cells(big_experiment, 3)
    blocks = collections.defaultdict(list)
    for cell in plan:
        blocks[cell.repetition].append((cell.variant, cell.workload, cell.level))
    assert blocks[1] != blocks[2] or blocks[2] != blocks[3]
    natural = [(v, w, lvl) for v in big_experiment.servers for w in big_experiment.workloads for lvl in big_experiment.levels]
    assert any(block != natural for block in blocks.values())


def test_plan_of_a_single_cell(tmp_path):
    experiment = load_experiment(str(write(tmp_path, BASE)))
    (cell,) = plan_cells(experiment, 0)
    assert (cell.variant, cell.workload, cell.level, cell.repetition, cell.order) == ("werkzeug-single", "hello", 1, 1, 0)
    assert cell.cell_id == "werkzeug-single/hello/1/r1"


# --- the command line -----------------------------------------------------------------------------------


def serverlab(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(SERVERLAB), *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_cli_refuses_a_bad_experiment_file(tmp_path):
    path = write(tmp_path, with_changes(BASE, duration=0))
    result = serverlab("run", str(path), "--backend", "local", cwd=tmp_path)
    assert result.returncode == 2, result
    assert result.stderr.startswith("error:"), result.stderr
    assert "'duration'" in result.stderr and str(path) in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "reports").exists()  # refused before anything ran


def test_cli_unknown_experiment_lists_the_valid_ones(tmp_path):
    result = serverlab("run", "nope", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("error:")
    assert "'nope'" in result.stderr
    for name in SHIPPED:
        assert name in result.stderr


def test_cli_list(tmp_path):
    result = serverlab("run", "--list", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for name in [*VARIANT_NAMES, *SHIPPED, *WORKLOADS]:
        assert name in result.stdout
    assert "INVALID" not in result.stdout


@pytest.mark.parametrize("args", [("--help",), ("run", "--help")])
def test_cli_help(tmp_path, args):
    result = serverlab(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: serverlab")
    if args[0] == "run":
        assert "--resume" in result.stdout and "--list" in result.stdout and "--backend" in result.stdout
