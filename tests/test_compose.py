"""docker-compose.yml (written by ``serverlab compose`` from servers/*.toml) and
app/Dockerfile, checked statically (no Docker needed), plus the generator itself.

The compose file is parsed with PyYAML (``safe_load`` resolves the ``<<`` merge keys the
file uses for its shared ``x-server`` / ``x-loadgen`` blocks).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml", reason="PyYAML is needed to parse docker-compose.yml")

REPO_ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
DOCKERFILE = REPO_ROOT / "app" / "Dockerfile"
SERVER_NAMES = {path.stem for path in (REPO_ROOT / "servers").glob("*.toml")}
#: ``${VAR:-default}`` / ``${VAR-default}`` / ``${VAR}`` in a compose value.
INTERPOLATION = re.compile(r"\$\{(?P<var>\w+)(?::?-(?P<default>[^}]*))?\}")


@pytest.fixture(scope="module")
def compose() -> dict:
    with COMPOSE_FILE.open(encoding="utf-8") as stream:
        return yaml.safe_load(stream)


@pytest.fixture(scope="module")
def services(compose) -> dict[str, dict]:
    return compose["services"]


@pytest.fixture(scope="module")
def servers(services) -> dict[str, dict]:
    """The services that run a server variant through the launcher."""
    return {name: service for name, service in services.items() if "labapp.serve" in [*service.get("entrypoint", []), *service.get("command", [])]}


def interpolated_default(value: str) -> str:
    """Resolve every ``${VAR:-default}`` in ``value`` to its default (as with an empty environment)."""
    return INTERPOLATION.sub(lambda match: match.group("default") or "", str(value))


def cpu_set(spec: str) -> set[int]:
    """Parse a cpuset such as ``"0-2,5"``."""
    cpus: set[int] = set()
    for part in spec.split(","):
        low, _, high = part.strip().partition("-")
        cpus.update(range(int(low), int(high or low) + 1))
    return cpus


def published_ports(service: dict) -> list[tuple[str | None, str]]:
    """``(host_ip, raw)`` for each published port, short or long syntax."""
    result = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            result.append((port.get("host_ip"), str(port)))
        else:
            text = str(port)
            # host_ip:host:container has three parts at top level (a ${...} may contain ":").
            parts = re.sub(r"\$\{[^}]*\}", "VAR", text).split(":")
            result.append((parts[0] if len(parts) == 3 else None, text))
    return result


def test_helpers():
    assert interpolated_default("${SERVER_CPUSET:-0}") == "0"
    assert interpolated_default("127.0.0.1:${LOCUST_WEB_PORT:-8089}:8089") == "127.0.0.1:8089:8089"
    assert interpolated_default("${X:-}") == ""
    assert cpu_set("0-2,5") == {0, 1, 2, 5}
    assert published_ports({"ports": ["127.0.0.1:${P:-1}:2", "8000:8000", {"host_ip": "0.0.0.0", "target": 1}]}) == [
        ("127.0.0.1", "127.0.0.1:${P:-1}:2"),
        (None, "8000:8000"),
        ("0.0.0.0", "{'host_ip': '0.0.0.0', 'target': 1}"),
    ]


def test_no_obsolete_version_key(compose):
    assert "version" not in compose


def test_server_services_match_the_declarations(servers):
    assert SERVER_NAMES, "servers/*.toml is empty"
    assert set(servers) == SERVER_NAMES


def test_each_server_runs_its_own_variant(servers):
    for name, service in servers.items():
        assert service["entrypoint"] == ["python", "-m", "labapp.serve"], name
        assert service["command"] == [name], name


def test_every_published_port_is_loopback_only(services):
    """By default: only LOCUST_MASTER_BIND (the user's named interface for other hosts' workers) may
    move a port off 127.0.0.1, and never the web UI's."""
    published = 0
    for name, service in services.items():
        for host_ip, raw in published_ports(service):
            assert host_ip in ("127.0.0.1", "VAR"), f"{name} publishes {raw} beyond localhost"
            if host_ip == "VAR":
                assert raw.startswith("${LOCUST_MASTER_BIND:-127.0.0.1}:"), f"{name}: {raw}"
                assert interpolated_default(raw).startswith("127.0.0.1:"), raw
            published += 1
    assert published >= len(SERVER_NAMES) + 2
    ui = [port for port in services["locust-master"]["ports"] if port.endswith(":8089")]
    assert ui == ["127.0.0.1:${LOCUST_WEB_PORT:-8089}:8089"]


def test_server_host_ports_are_distinct(servers):
    host_ports = []
    for service in servers.values():
        [port] = service["ports"]
        _, host, container = interpolated_default(port).split(":")
        assert container == "8000"
        host_ports.append(host)
    assert len(set(host_ports)) == len(host_ports)


def test_servers_share_one_budget(servers):
    budgets = {name: (str(service["cpus"]), str(service["cpuset"]), str(service["mem_limit"])) for name, service in servers.items()}
    assert len(set(budgets.values())) == 1, budgets
    cpus, cpuset, mem_limit = next(iter(budgets.values()))
    # Each is configurable, with a default.
    assert INTERPOLATION.fullmatch(cpus) and INTERPOLATION.fullmatch(cpuset) and INTERPOLATION.fullmatch(mem_limit)
    assert float(interpolated_default(cpus)) > 0
    assert cpu_set(interpolated_default(cpuset))
    assert re.fullmatch(r"\d+[kmg]", interpolated_default(mem_limit))


def test_servers_healthcheck_starts_no_interpreter(servers):
    """Docker runs a healthcheck inside the server's container, on its CPU budget: the check is
    bash's /dev/tcp (app/labapp/healthcheck.sh), not a Python interpreter importing the app."""
    for name, service in servers.items():
        check = service.get("healthcheck")
        assert check, name
        assert not check.get("disable", False), name
        assert check["test"] == ["CMD", "bash", "/srv/app/labapp/healthcheck.sh", "--pause-once-healthy",
                                 str(compose_gen.HEALTH_PAUSE_S)], name
        assert "python" not in " ".join(check["test"])
        assert check.get("retries", 0) >= 1
        assert check["interval"] == compose_gen.HEALTH_INTERVAL == "1s", name  # fast until healthy ...
        assert compose_gen.HEALTH_PAUSE_S >= 30  # ... then rare: ~20 ms of the server's CPU per exec
        assert int(check["timeout"].rstrip("s")) > compose_gen.HEALTH_PAUSE_S, name  # the pause is inside the check
    script = (REPO_ROOT / "app" / "labapp" / "healthcheck.sh").read_text(encoding="utf-8")
    code = [line for line in script.splitlines() if not line.lstrip().startswith("#")]
    assert any("/dev/tcp/127.0.0.1/" in line for line in code)
    assert not any("python" in line for line in code)


def test_servers_take_worker_and_thread_overrides(servers):
    # The compose file's header promises NAME_WORKERS / NAME_THREADS (upper case, "-" as "_").
    for name, service in servers.items():
        prefix = name.upper().replace("-", "_")
        assert service["environment"] == {
            "SERVERLAB_WORKERS": f"${{{prefix}_WORKERS:-}}",
            "SERVERLAB_THREADS": f"${{{prefix}_THREADS:-}}",
        }


def test_locust_master_waits_for_every_healthy_server(services):
    master = services["locust-master"]
    depends_on = master["depends_on"]
    assert isinstance(depends_on, dict)
    assert set(depends_on) == SERVER_NAMES
    for name, condition in depends_on.items():
        assert condition == {"condition": "service_healthy"}, name


def test_locust_web_ui_is_published_on_localhost(services):
    ports = [interpolated_default(port) for port in services["locust-master"]["ports"]]
    assert "127.0.0.1:8089:8089" in ports
    assert "--web-port" in services["locust-master"]["command"]


def test_loadgen_runs_on_other_cpus(services, servers):
    [server_cpuset] = {str(service["cpuset"]) for service in servers.values()}
    server_default = cpu_set(interpolated_default(server_cpuset))
    loadgens = {name: service for name, service in services.items() if name not in servers and name != "hostspeed"}
    assert {"locust-master", "locust-worker"} <= set(loadgens)
    for name, service in loadgens.items():
        assert "cpuset" in service, name
        cpuset = str(service["cpuset"])
        # Its own variable, and by default CPUs the servers do not use.
        assert INTERPOLATION.fullmatch(cpuset).group("var") != INTERPOLATION.fullmatch(server_cpuset).group("var")
        loadgen_default = cpu_set(interpolated_default(cpuset))
        assert loadgen_default != server_default, name
        assert loadgen_default.isdisjoint(server_default), name


def test_the_host_speed_probe_gets_the_servers_budget_and_no_healthcheck(services, servers):
    """``make report`` times its host-speed probe in the ``hostspeed`` container: the servers' CPU
    quota, cpuset and memory, beside (never inside) a server's cgroup; a tool, not in the lab."""
    probe = services["hostspeed"]
    budget = {(str(s["cpus"]), str(s["cpuset"]), str(s["mem_limit"])) for s in servers.values()}
    assert budget == {(str(probe["cpus"]), str(probe["cpuset"]), str(probe["mem_limit"]))}
    assert probe["profiles"] == ["tools"] and probe["entrypoint"] == ["sleep", "infinity"]
    assert probe["healthcheck"] == {"disable": True} and probe["restart"] == "no"
    assert "ports" not in probe


def test_init_everywhere(services):
    for name, service in services.items():
        assert service.get("init") is True, name


def test_one_image_for_everything_built_by_one_service(services):
    """Every service runs one image; only one service builds it, so ``docker compose up``
    builds it once (a ``build:`` per service made the classic builder build it 15 times);
    the others never pull it (no registry has it)."""
    images = {service.get("image") for service in services.values()}
    assert len(images) == 1
    builders = [name for name, service in services.items() if "build" in service]
    assert builders == [compose_gen.BUILD_SERVICE] == ["locust-master"]
    build = services["locust-master"]["build"]
    assert build["dockerfile"] == "app/Dockerfile"
    assert interpolated_default(build["args"]["PYTHON_IMAGE"]) == "python:3.12-slim"
    for name, service in services.items():
        assert service.get("pull_policy") == "never", name


# --- app/Dockerfile --------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` pairs, continuation lines joined, comments dropped."""
    instructions, pending = [], ""
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        text = pending + stripped
        pending = ""
        keyword, _, arguments = text.partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
    return instructions


def test_dockerfile_python_image_argument():
    instructions = dockerfile_instructions()
    assert instructions[0] == ("ARG", "PYTHON_IMAGE=python:3.12-slim")
    assert ("FROM", "${PYTHON_IMAGE}") in instructions


def test_dockerfile_runs_as_non_root():
    users = [arguments for keyword, arguments in dockerfile_instructions() if keyword == "USER"]
    assert users, "no USER instruction: the container would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")


def test_dockerfile_healthcheck_is_the_shell_check():
    [healthcheck] = [arguments for keyword, arguments in dockerfile_instructions() if keyword == "HEALTHCHECK"]
    assert "CMD" in healthcheck
    command = healthcheck.split("CMD", 1)[1]
    assert '"bash", "/srv/app/labapp/healthcheck.sh", "--pause-once-healthy", "30"' in command
    assert "python" not in command and "curl" not in command


# --- hardening (issue 8) ----------------------------------------------------------------


def size_in_bytes(text: str) -> int:
    """``"512m"`` -> bytes (k, m, g suffixes, binary units)."""
    match = re.fullmatch(r"(\d+)([kmg]?)b?", str(text).strip().lower())
    assert match, text
    return int(match.group(1)) * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[match.group(2)]


def test_every_service_is_hardened(services):
    for name, service in services.items():
        assert service.get("cap_drop") == ["ALL"], name
        assert "no-new-privileges:true" in service.get("security_opt", []), name
        assert service.get("read_only") is True, name
        assert any(str(mount).split(":")[0] == "/tmp" for mount in service.get("tmpfs", [])), f"{name}: no writable /tmp"
        pids = int(interpolated_default(service.get("pids_limit", "0")))
        assert 64 <= pids <= 4096, f"{name}: pids_limit {pids}"


def test_every_service_has_cpu_and_memory_limits(services):
    for name, service in services.items():
        assert INTERPOLATION.fullmatch(str(service.get("cpus", ""))), f"{name}: no configurable cpus"
        assert INTERPOLATION.fullmatch(str(service.get("mem_limit", ""))), f"{name}: no configurable mem_limit"
        assert 0 < float(interpolated_default(service["cpus"])) <= 2, name  # sized for a 2-core machine
        assert 64 << 20 <= size_in_bytes(interpolated_default(service["mem_limit"])) <= 4 << 30, name


def test_servers_restart_in_the_lab_but_not_in_runs(servers, services):
    for name, service in servers.items():
        assert service.get("restart") in ("unless-stopped", "on-failure", "always"), name
    for name, service in services.items():
        if name not in servers:
            assert service.get("restart", "no") == "no", f"{name}: a load generator should not restart"


def test_dockerfile_strips_setuid_bits():
    runs = " ".join(arguments for keyword, arguments in dockerfile_instructions() if keyword == "RUN")
    assert re.search(r"find / -xdev -perm /6000 -type f -exec chmod a-s \{\} \+", runs)


def compose_config(argv: list[str], env: dict[str, str] | None = None) -> dict:
    """``docker compose ... config --format json`` (Compose's own resolution of anchors,
    merge keys, defaults and override files) as a dict."""
    import json
    import os
    import subprocess

    env = env or {key: value for key, value in os.environ.items()
                  if not key.startswith(("SERVER_", "LOADGEN_", "SERVERLAB_"))}
    proc = subprocess.run([*argv, "config", "--format", "json"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def assert_hardened(name: str, service: dict) -> None:
    """The hardening every service must carry, as ``docker compose config`` resolves it."""
    assert service.get("cap_drop") == ["ALL"], name
    assert "no-new-privileges:true" in service.get("security_opt", []), name
    assert service.get("read_only") is True, name
    assert any(mount.split(":")[0] == "/tmp" for mount in service.get("tmpfs", [])), name
    assert 64 <= int(service.get("pids_limit", 0)) <= 4096, name
    assert 0 < float(service.get("cpus", 0)) <= 2, name
    assert 64 << 20 <= int(service.get("mem_limit", 0)) <= 4 << 30, name
    assert str(service.get("user", "")) not in ("0", "root"), name


@pytest.mark.docker
def test_docker_compose_config_is_hardened(docker_ready):
    """Compose itself (not PyYAML) resolves every server and Locust service to the hardened settings."""
    config = compose_config(["docker", "compose", "-f", str(COMPOSE_FILE), "--profile", "tools"])
    services = config["services"]
    assert {"locust-master", "locust-worker", "loadgen"} | SERVER_NAMES <= set(services)
    for name, service in services.items():
        assert_hardened(name, service)
        expected = ("unless-stopped",) if name in SERVER_NAMES else (None, "no")
        assert service.get("restart") in expected, (name, service.get("restart"))


@pytest.mark.docker
@pytest.mark.slow
def test_docker_backend_runs_servers_without_restart(docker_ready):
    """``make report``'s backend: its override keeps the hardening and sets restart "no",
    so a crashed server fails its cell instead of coming back mid-measurement."""
    from serverlab.backends import DockerBackend
    from serverlab.budget import Budget

    backend = DockerBackend(Budget(), project="serverlab-test-config")
    try:
        backend.prepare(progress=lambda _: None)
        config = compose_config(backend._compose(), env=backend._env())
    finally:
        backend.close()
    for name in SERVER_NAMES:
        service = config["services"][name]
        assert service.get("restart") == "no", name
        assert_hardened(name, service)


def test_only_the_locust_master_mounts_reports_writable_as_a_non_root_user(services):
    """The web UI's Reports tab reads the runs under reports/ and a Compare writes its run there,
    as an unprivileged user (10001 unless SERVERLAB_UID names the host user); nothing else mounts it."""
    master = services["locust-master"]
    volumes = [str(v) for v in master.get("volumes", [])]
    assert len(volumes) == 1 and volumes[0].endswith(":/srv/reports"), volumes
    assert interpolated_default(volumes[0].rsplit(":", 1)[0]) == "./reports"
    assert master["environment"]["SERVERLAB_REPORTS_DIR"] == "/srv/reports"
    assert interpolated_default(master["user"]) == "10001:10001"
    others = [name for name, service in services.items() if name != "locust-master" and service.get("volumes")]
    assert others == []


def test_locust_workers_run_one_process_per_loadgen_cpu():
    """The compose lab's workers are sized like `make report`'s generator: one Locust
    process per CPU of their cpuset (not of the host), overridable by LOCUST_WORKER_PROCESSES."""
    import yaml

    worker = yaml.safe_load((Path(__file__).resolve().parents[1] / "docker-compose.yml").read_text())["services"]["locust-worker"]
    command = " ".join(worker["command"])
    assert "--worker" in command and "--processes" in command
    assert "os.sched_getaffinity(0)" in command and "LOCUST_WORKER_PROCESSES" in command
    assert "LOCUST_WORKER_PROCESSES" in worker["environment"]


# --- generated from servers/*.toml (serverlab compose, issue 11) ------------------------

from labapp.variants import Variant, VariantError, load_variant, load_variants  # noqa: E402
from serverlab import compose as compose_gen  # noqa: E402
from serverlab.cli import main  # noqa: E402

SERVERS_DIR = REPO_ROOT / "servers"
#: A declaration to add in a copy of servers/: the next free host port after 8001..8013.
NEW_VARIANT = """\
description = "Gunicorn sync, two workers (a test's added variant)"
host_port = 8016
server = "gunicorn"
model = "multi-process"
keep_alive = false
workers = 2
threads = 1
command = ["{bin}/gunicorn", "--bind", "0.0.0.0:{port}", "--workers", "{workers}", "labapp.wsgi:app"]
"""


def test_committed_file_is_what_serverlab_compose_writes():
    expected = compose_gen.generate(SERVERS_DIR)
    diff = compose_gen.difference(COMPOSE_FILE, expected)
    assert not diff, ("docker-compose.yml is generated from servers/*.toml and differs from what "
                      "`serverlab compose` writes: run `serverlab compose` (or `make compose`) and commit "
                      "docker-compose.yml; never edit it by hand.\n" + diff[:4000])


def test_committed_file_says_it_is_generated():
    head = COMPOSE_FILE.read_text(encoding="utf-8").splitlines()[:5]
    assert head[0].startswith("# GENERATED by `serverlab compose`"), head
    assert any("hand edits are lost" in line for line in head), head


def test_every_declaration_has_its_own_host_port():
    declared = {name: variant.host_port for name, variant in load_variants(SERVERS_DIR).items()}
    assert None not in declared.values(), declared
    assert len(set(declared.values())) == len(declared)
    assert all(1024 <= port <= 65535 and port != 8089 for port in declared.values())


@pytest.fixture
def servers_copy(tmp_path) -> Path:
    """A copy of servers/ to add declarations to."""
    folder = tmp_path / "servers"
    folder.mkdir()
    for path in SERVERS_DIR.glob("*.toml"):
        (folder / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    return folder


def test_adding_a_variant_adds_its_service_port_and_dependency(servers_copy):
    (servers_copy / "gunicorn-pair.toml").write_text(NEW_VARIANT, encoding="utf-8")
    text = compose_gen.generate(servers_copy)
    generated = yaml.safe_load(text)["services"]
    committed = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))["services"]
    service = generated["gunicorn-pair"]
    assert service["command"] == ["gunicorn-pair"]
    assert service["entrypoint"] == ["python", "-m", "labapp.serve"]  # the x-server block: hardening, budget, healthcheck
    assert service["ports"] == ["${LOCUST_MASTER_BIND:-127.0.0.1}:8016:8000"]
    assert service["environment"] == {"SERVERLAB_WORKERS": "${GUNICORN_PAIR_WORKERS:-}",
                                      "SERVERLAB_THREADS": "${GUNICORN_PAIR_THREADS:-}"}
    assert service["cap_drop"] == ["ALL"] and service["read_only"] is True
    assert generated["locust-master"]["depends_on"]["gunicorn-pair"] == {"condition": "service_healthy"}
    assert set(generated["locust-master"]["depends_on"]) == SERVER_NAMES | {"gunicorn-pair"}
    # Nothing else moves: every existing service (and its port) is as committed.
    assert {name: s for name, s in generated.items() if name != "gunicorn-pair" and name != "locust-master"} == \
        {name: s for name, s in committed.items() if name != "locust-master"}
    # Appended in host_port order, after the last variant and before the Locust services.
    assert list(generated).index("gunicorn-pair") == len(SERVER_NAMES)
    assert "  # Gunicorn sync, two workers (a test's added variant)\n  gunicorn-pair:\n" in text


def test_cli_writes_checks_and_shows_the_diff(servers_copy, tmp_path, capsys):
    output = tmp_path / "docker-compose.yml"
    assert main(["compose", "--check", "--servers", str(servers_copy), "--output", str(output)]) == 1  # missing
    assert main(["compose", "--servers", str(servers_copy), "--output", str(output)]) == 0
    assert output.read_text(encoding="utf-8") == COMPOSE_FILE.read_text(encoding="utf-8")
    assert main(["compose", "--check", "--servers", str(servers_copy), "--output", str(output)]) == 0
    capsys.readouterr()

    (servers_copy / "gunicorn-pair.toml").write_text(NEW_VARIANT, encoding="utf-8")
    assert main(["compose", "--check", "--servers", str(servers_copy), "--output", str(output)]) == 1
    out, err = capsys.readouterr()
    assert "+  gunicorn-pair:\n" in out and '+    ports: ["${LOCUST_MASTER_BIND:-127.0.0.1}:8016:8000"]' in out
    assert "run `serverlab compose` (or `make compose`)" in err
    assert output.read_text(encoding="utf-8") == COMPOSE_FILE.read_text(encoding="utf-8")  # --check writes nothing
    assert main(["compose", "--servers", str(servers_copy), "--output", str(output)]) == 0
    assert "gunicorn-pair:" in output.read_text(encoding="utf-8")


def test_cli_help_names_the_options_and_exit_statuses(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["compose", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for text in ("--check", "--output PATH", "--servers DIR", "host_port", "exit status", "1    --check only"):
        assert text in out, text


def refused(servers_dir: Path, capsys) -> str:
    """Run ``serverlab compose --check`` on ``servers_dir``; assert it fails as an error (2) and return the message."""
    assert main(["compose", "--check", "--servers", str(servers_dir), "--output", str(COMPOSE_FILE)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: "), err
    return err


def test_a_clashing_host_port_names_both_files_the_port_and_a_free_one(servers_copy, capsys):
    (servers_copy / "gunicorn-pair.toml").write_text(NEW_VARIANT.replace("8016", "8003"), encoding="utf-8")
    err = refused(servers_copy, capsys)
    assert "host_port 8003" in err and "gunicorn-sync.toml" in err and "gunicorn-pair.toml" in err
    assert "next free: 8016" in err
    with pytest.raises(VariantError, match="host_port 8003 is already declared"):
        load_variants(servers_copy)


def test_a_missing_host_port_is_refused_with_the_next_free_one(servers_copy, capsys):
    (servers_copy / "gunicorn-pair.toml").write_text(NEW_VARIANT.replace("host_port = 8016\n", ""), encoding="utf-8")
    assert load_variants(servers_copy)["gunicorn-pair"].host_port is None  # the launcher does not need it
    err = refused(servers_copy, capsys)
    assert "gunicorn-pair.toml" in err and "host_port = 8016" in err


@pytest.mark.parametrize("value", ["8089"])
def test_the_locust_web_port_is_reserved(servers_copy, capsys, value):
    (servers_copy / "gunicorn-pair.toml").write_text(NEW_VARIANT.replace("8016", value), encoding="utf-8")
    err = refused(servers_copy, capsys)
    assert "host_port 8089" in err and "Locust web UI" in err


@pytest.mark.parametrize("value", ["80", "65536", "0", "-1", '"8016"', "true", "8016.0"])
def test_host_port_must_be_an_unprivileged_port_number(tmp_path, value):
    path = tmp_path / "bad-port.toml"
    path.write_text(NEW_VARIANT.replace("8016", value), encoding="utf-8")
    with pytest.raises(VariantError) as info:
        load_variant(path)
    message = str(info.value)
    assert str(path) in message and "host_port" in message and value.strip('"') in message.lower()


@pytest.mark.parametrize("name", ["loadgen", "locust-master", "Gunicorn_pair", "gunicorn--pair"])
def test_a_name_compose_cannot_use_is_refused(tmp_path, capsys, name):
    folder = tmp_path / "servers"
    folder.mkdir()
    (folder / f"{name}.toml").write_text(NEW_VARIANT, encoding="utf-8")
    err = refused(folder, capsys)
    assert f"{name}.toml" in err and "cannot name a compose service" in err


def test_host_port_is_not_part_of_the_recorded_configuration():
    """Where the lab publishes a variant does not change what it measures: results files
    and --resume comparisons stay as they were before host_port existed."""
    variant = load_variant(SERVERS_DIR / "gunicorn-sync.toml")
    assert variant.host_port == 8003
    assert "host_port" not in variant.record()
    assert isinstance(variant, Variant)


@pytest.mark.docker
def test_docker_compose_resolves_an_added_variant(docker_ready, servers_copy, tmp_path):
    """Compose itself parses the generated file with one more variant, hardened like the others."""
    (servers_copy / "gunicorn-pair.toml").write_text(NEW_VARIANT, encoding="utf-8")
    path = tmp_path / "docker-compose.yml"
    compose_gen.write(path, compose_gen.generate(servers_copy))
    config = compose_config(["docker", "compose", "-f", str(path), "--project-directory", str(REPO_ROOT)])
    service = config["services"]["gunicorn-pair"]
    assert_hardened("gunicorn-pair", service)
    assert [(port["host_ip"], port["published"], port["target"]) for port in service["ports"]] == [("127.0.0.1", "8016", 8000)]
    assert config["services"]["locust-master"]["depends_on"]["gunicorn-pair"]["condition"] == "service_healthy"
