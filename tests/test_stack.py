"""docker-stack.yml (written by ``serverlab stack`` from servers/*.toml), checked statically
against the declarations and against docker-compose.yml's budgets, healthcheck and hardening.
``tests/test_stack_docker.py`` deploys it on a real single-node swarm."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from serverlab import cli, stack as stack_gen
from serverlab.compose import HEALTH_INTERVAL, HEALTH_PAUSE_S
from serverlab.stack import LOADGEN_LABEL, SERVER_LABEL, StackError

yaml = pytest.importorskip("yaml", reason="PyYAML is needed to parse docker-stack.yml")

REPO_ROOT = Path(__file__).resolve().parents[1]
STACK_FILE = REPO_ROOT / "docker-stack.yml"
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
SERVER_NAMES = {path.stem for path in (REPO_ROOT / "servers").glob("*.toml")}
#: Keys ``docker stack deploy`` ignores ("Ignoring unsupported options") or refuses; none may
#: appear, so that nothing in the file silently does nothing.
IGNORED_BY_SWARM = {"build", "cgroup_parent", "container_name", "cpuset", "cpus", "mem_limit", "pids_limit",
                    "depends_on", "devices", "external_links", "links", "network_mode", "restart", "security_opt",
                    "tmpfs", "userns_mode", "pull_policy", "profiles"}


@pytest.fixture(scope="module")
def stack() -> dict:
    with STACK_FILE.open(encoding="utf-8") as stream:
        return yaml.safe_load(stream)


@pytest.fixture(scope="module")
def services(stack) -> dict[str, dict]:
    return stack["services"]


@pytest.fixture(scope="module")
def compose_services() -> dict[str, dict]:
    with COMPOSE_FILE.open(encoding="utf-8") as stream:
        return yaml.safe_load(stream)["services"]


def test_the_committed_file_is_what_the_command_writes():
    assert STACK_FILE.read_text(encoding="utf-8") == stack_gen.generate(), \
        "docker-stack.yml is stale: run `serverlab stack` and commit it"


def test_check_flag_reports_current_and_stale(tmp_path, capsys):
    assert cli.main(["stack", "--check"]) == 0
    stale = tmp_path / "docker-stack.yml"
    stale.write_text(STACK_FILE.read_text(encoding="utf-8").replace("gunicorn-sync", "gunicorn-sink"), encoding="utf-8")
    assert cli.main(["stack", "--check", "--output", str(stale)]) == 1
    out, err = capsys.readouterr()
    assert "-  gunicorn-sink:" in out and "+  gunicorn-sync:" in out
    assert "run `serverlab stack`" in err
    assert cli.main(["stack", "--output", str(stale)]) == 0
    assert stale.read_text(encoding="utf-8") == STACK_FILE.read_text(encoding="utf-8")


def test_a_bad_declaration_is_one_error_naming_the_file(tmp_path, capsys):
    (tmp_path / "Bad_Name.toml").write_text((REPO_ROOT / "servers" / "gunicorn-sync.toml").read_text(encoding="utf-8"),
                                            encoding="utf-8")
    assert cli.main(["stack", "--servers", str(tmp_path), "--output", str(tmp_path / "s.yml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Bad_Name" in err
    with pytest.raises(StackError, match="no server variants"):
        stack_gen.render({}, tmp_path)


def test_one_service_per_variant_plus_the_locust_master_and_workers(services):
    assert SERVER_NAMES and set(services) == SERVER_NAMES | {"locust-master", "locust-worker"}
    for name in SERVER_NAMES:
        assert services[name]["entrypoint"] == ["python", "-m", "labapp.serve"], name
        assert services[name]["command"] == [name], name
        prefix = name.upper().replace("-", "_")
        assert services[name]["environment"] == {"SERVERLAB_WORKERS": f"${{{prefix}_WORKERS:-}}",
                                                 "SERVERLAB_THREADS": f"${{{prefix}_THREADS:-}}"}


def test_placement_by_role_label(services):
    for name, service in services.items():
        label = SERVER_LABEL if name in SERVER_NAMES else LOADGEN_LABEL
        assert service["deploy"]["placement"]["constraints"] == [f"node.labels.{label} == true"], name
    # two keys, so that one node can carry both roles (a label key holds one value)
    assert SERVER_LABEL != LOADGEN_LABEL


def test_limits_equal_the_compose_budgets(services, compose_services):
    """``deploy.resources.limits`` say what docker-compose.yml's ``cpus``/``mem_limit``/``pids_limit``
    say, with the same variables and defaults (pids literally: the CLI cannot interpolate an integer)."""
    pairs = [(name, name) for name in SERVER_NAMES] + [("locust-master", "locust-master"),
                                                       ("locust-worker", "locust-worker")]
    for stack_name, compose_name in pairs:
        limits = services[stack_name]["deploy"]["resources"]["limits"]
        theirs = compose_services[compose_name]
        assert limits["cpus"] == str(theirs["cpus"]), stack_name
        assert limits["memory"] == str(theirs["mem_limit"]), stack_name
        assert f"${{{'SERVER' if stack_name in SERVER_NAMES else 'LOADGEN'}_PIDS:-{limits['pids']}}}" == \
            str(theirs["pids_limit"]), stack_name
        assert "reservations" not in services[stack_name]["deploy"]["resources"], \
            "a reservation would keep 15 one-CPU servers from fitting a 2-core node"


def test_healthcheck_as_in_compose(services, compose_services):
    for name in SERVER_NAMES:
        assert services[name]["healthcheck"] == compose_services[name]["healthcheck"], name
        assert services[name]["healthcheck"]["interval"] == HEALTH_INTERVAL
        assert services[name]["healthcheck"]["test"][-1] == str(HEALTH_PAUSE_S)
    for name in ("locust-master", "locust-worker"):
        assert services[name]["healthcheck"] == {"disable": True} == compose_services[name]["healthcheck"]


def test_hardened_like_compose_where_swarm_can_say_it(services, compose_services):
    for name, service in services.items():
        assert service["image"] == compose_services[name]["image"] == "serverlab:${SERVERLAB_TAG:-latest}", name
        assert service["init"] is True and service["read_only"] is True and service["cap_drop"] == ["ALL"], name
        assert {"type": "tmpfs", "target": "/tmp", "tmpfs": {"size": 64 * 2**20}} in service["volumes"], name
        assert service["deploy"]["restart_policy"] == {"condition": "any"}, name
        assert not IGNORED_BY_SWARM & set(service), (name, IGNORED_BY_SWARM & set(service))
    assert services["locust-master"]["user"] == "10001:10001"


def test_nothing_is_published(services):
    """Swarm cannot publish on 127.0.0.1 (ingress and host mode both take every interface), so the
    stack publishes nothing; the UI is reached through serverlab.forward on the node's loopback."""
    for name, service in services.items():
        assert "ports" not in service, name
        assert service["deploy"]["endpoint_mode"] == "dnsrr", name
        assert service["networks"] == ["lab"], name


def test_network_is_an_attachable_overlay_and_reports_a_named_volume(stack, services):
    assert stack["networks"] == {"lab": {"driver": "overlay", "attachable": True}}
    assert stack["volumes"] == {"reports": {}}
    assert {"type": "volume", "source": "reports", "target": "/srv/reports"} in services["locust-master"]["volumes"]
    assert services["locust-master"]["environment"]["SERVERLAB_REPORTS_DIR"] == "/srv/reports"
    assert services["locust-worker"]["deploy"]["replicas"] == "${LOCUST_WORKERS:-1}"
    assert services["locust-worker"]["command"][-2:] == ["--master-host", "locust-master"]


def test_schema_version_both_clis_read():
    assert yaml.safe_load(STACK_FILE.read_text(encoding="utf-8"))["version"] == stack_gen.SCHEMA_VERSION == "3.9"


def _stack_config_available() -> bool:
    if not shutil.which("docker"):
        return False
    proc = subprocess.run(["docker", "stack", "config", "--help"], capture_output=True, text=True, timeout=30)
    return proc.returncode == 0 and "--compose-file" in proc.stdout


@pytest.mark.skipif(not _stack_config_available(), reason="this docker CLI has no `docker stack config` (CLI < 23)")
def test_the_docker_cli_accepts_and_interpolates_it():
    """The CLI's own loader (schema, merge keys, interpolation) reads the file, no engine needed."""
    proc = subprocess.run(["docker", "stack", "config", "-c", str(STACK_FILE)], capture_output=True, text=True,
                          timeout=60, env={"PATH": "/usr/local/bin:/usr/bin:/bin", "SERVERLAB_TAG": "t",
                                           "SERVER_CPUS": "0.5", "LOCUST_WORKERS": "3"})
    assert proc.returncode == 0, proc.stderr
    rendered = yaml.safe_load(proc.stdout)["services"]
    assert rendered["gunicorn-sync"]["image"] == "serverlab:t"
    assert rendered["gunicorn-sync"]["deploy"]["resources"]["limits"]["cpus"] == "0.5"
    assert rendered["locust-worker"]["deploy"]["replicas"] == 3
    assert rendered["locust-master"]["deploy"]["resources"]["limits"]["memory"] == str(2**30)
