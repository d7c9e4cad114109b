"""Server declarations (servers/*.toml): loading, commands, overrides, refusals, and the launcher CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from labapp import variants
from labapp.variants import MODELS, SERVERS, Variant, VariantError, env_counts, get_variant, load_variant, load_variants

REPO_ROOT = Path(__file__).resolve().parents[1]
SERVERS_DIR = REPO_ROOT / "servers"
REQUIRED_NAMES = {
    "werkzeug-single",
    "werkzeug-threaded",
    "gunicorn-sync",
    "gunicorn-gthread",
    "gunicorn-gevent",
    "uwsgi-processes",
    "uwsgi-threads",
    "uwsgi-http11",
    "uwsgi-gevent",
    "waitress",
    "granian",
    "nginx-gunicorn",
    "nginx-uwsgi",
    "uvicorn-wsgi",
    "granian-asgi",
}
#: The concurrency model each variant's name promises.
EXPECTED_MODELS = {
    "werkzeug-single": "single",
    "werkzeug-threaded": "threaded",
    "gunicorn-sync": "multi-process",
    "gunicorn-gthread": "threaded",
    "gunicorn-gevent": "gevent",
    "uwsgi-processes": "multi-process",
    "uwsgi-threads": "process-thread",
    "uwsgi-http11": "process-thread",
    "uwsgi-gevent": "gevent",
    "waitress": "threaded",
    "granian": "threaded",
    "nginx-gunicorn": "threaded",
    "nginx-uwsgi": "multi-process",
    "uvicorn-wsgi": "asgi",
    "granian-asgi": "asgi",
}
FAKE_PYTHON = "/opt/fake-env/bin/python3"


@pytest.fixture(scope="module")
def all_variants() -> dict[str, Variant]:
    return load_variants(SERVERS_DIR)


def by_name(name: str) -> Variant:
    return load_variant(SERVERS_DIR / f"{name}.toml")


def option_value(argv: list[str], option: str) -> str:
    """The argument following ``option`` in ``argv``."""
    assert option in argv, f"{option} missing from {argv}"
    return argv[argv.index(option) + 1]


# --- the declarations in servers/ ------------------------------------------------------


def test_default_directory_is_the_repository_servers_folder():
    assert variants.SERVERS_DIR.resolve() == SERVERS_DIR.resolve()
    assert set(load_variants()) == set(load_variants(SERVERS_DIR))


def test_every_file_is_loaded(all_variants):
    stems = {path.stem for path in SERVERS_DIR.glob("*.toml")}
    assert set(all_variants) == stems == REQUIRED_NAMES
    assert list(all_variants) == sorted(all_variants)


@pytest.mark.parametrize("name", sorted(REQUIRED_NAMES))
def test_declaration_fields(name, all_variants):
    variant = all_variants[name]
    assert variant.name == name
    assert isinstance(variant.description, str) and variant.description.strip()
    assert variant.server in SERVERS
    # The name starts with the proxy in front, if any, else with the server.
    assert name.split("-")[0] == (variant.proxy or variant.server)
    if variant.proxy:
        assert name.split("-")[1] == variant.server
    assert variant.model == EXPECTED_MODELS[name]
    assert isinstance(variant.keep_alive, bool)
    assert isinstance(variant.workers, int) and variant.workers >= 1
    assert isinstance(variant.threads, int) and variant.threads >= 0
    assert isinstance(variant.command, tuple) and variant.command
    assert all(isinstance(part, str) for part in variant.command)
    # gevent: greenlets per worker; thread per connection: the bound on those threads.
    assert (variant.connections is not None) == (variant.model == "gevent" or variant.threads == 0)


def test_single_process_models_have_one_worker(all_variants):
    for variant in all_variants.values():
        if variant.model in ("single", "threaded", "gevent"):
            assert variant.workers == 1, variant.name
        if variant.model == "single":
            assert variant.threads == 1, variant.name
        if variant.model in ("multi-process", "process-thread"):
            assert variant.workers > 1, variant.name


def test_slots(all_variants):
    threaded = all_variants["werkzeug-threaded"]
    assert threaded.threads == 0
    assert threaded.slots == threaded.connections == 256  # one thread per connection, at most 256
    assert threaded.with_counts().slots == 256
    assert replace(threaded, connections=None).slots is None  # unbounded, as flask run
    gevent = all_variants["gunicorn-gevent"]
    assert gevent.slots == gevent.workers * gevent.connections == 1000
    assert all_variants["werkzeug-single"].slots == 1
    for name in ("gunicorn-sync", "gunicorn-gthread", "uwsgi-processes", "uwsgi-threads"):
        variant = all_variants[name]
        assert variant.slots == variant.workers * variant.threads
    assert all_variants["uwsgi-threads"].slots == 8
    assert all_variants["gunicorn-gthread"].slots == 8


@pytest.mark.parametrize("name", sorted(REQUIRED_NAMES))
def test_argv_fills_every_placeholder(name, all_variants):
    variant = all_variants[name]
    argv = variant.argv(port=12345, python=FAKE_PYTHON)
    assert not any("{" in part or "}" in part for part in argv), argv
    assert any("12345" in part for part in argv)
    if variant.proxy:
        assert argv == [FAKE_PYTHON, "-m", "labapp.proxy", name, "--port", "12345"]
        server = variant.server_argv("/run/app.sock", python=FAKE_PYTHON)
        assert len(server) == len(variant.command)
        assert server[0] == f"/opt/fake-env/bin/{variant.server}"
        assert not any("{" in part or "}" in part for part in server), server
        return
    assert len(argv) == len(variant.command)
    if variant.server == "werkzeug":
        assert argv[:3] == [FAKE_PYTHON, "-m", "labapp.devserver"]
    else:
        assert argv[0] == f"/opt/fake-env/bin/{'waitress-serve' if variant.server == 'waitress' else variant.server}"


def test_argv_defaults_to_this_interpreter_and_port_8000(all_variants):
    argv = all_variants["werkzeug-single"].argv()
    assert argv[0] == sys.executable
    assert option_value(argv, "--port") == str(variants.DEFAULT_PORT) == "8000"
    gunicorn = all_variants["gunicorn-sync"].argv()
    assert gunicorn[0] == str(Path(sys.executable).parent / "gunicorn")


@pytest.mark.parametrize("name", sorted(REQUIRED_NAMES))
def test_binds_all_interfaces_on_the_port(name, all_variants):
    variant = all_variants[name]
    argv = variant.argv(port=9001, python=FAKE_PYTHON)
    if variant.proxy:
        # nginx listens (0.0.0.0 by default, see labapp.proxy); the app server only on a Unix socket.
        assert option_value(argv, "--port") == "9001"
        server = variant.server_argv("/run/app.sock", python=FAKE_PYTHON)
        assert not any("9001" in part or "0.0.0.0" in part for part in server)
    elif variant.server == "gunicorn":
        assert option_value(argv, "--bind") == "0.0.0.0:9001"
    elif variant.server == "uwsgi":
        socket_option = next(part for part in argv if part in ("--http-socket", "--http11-socket"))
        assert option_value(argv, socket_option) == "0.0.0.0:9001"
    elif variant.server == "waitress":
        assert "--listen=0.0.0.0:9001" in argv
    elif variant.server in ("granian", "uvicorn"):
        assert (option_value(argv, "--host"), option_value(argv, "--port")) == ("0.0.0.0", "9001")
    else:
        # The dev server binds 0.0.0.0 by default (checked in test_app) and must not be told otherwise.
        assert option_value(argv, "--port") == "9001"
        assert "--host" not in argv


@pytest.mark.parametrize("name", sorted(REQUIRED_NAMES))
def test_logging_is_off(name, all_variants):
    variant = all_variants[name]
    argv = variant.server_argv("/run/app.sock", python=FAKE_PYTHON) if variant.proxy else variant.argv(python=FAKE_PYTHON)
    if variant.proxy:
        from labapp.proxy import nginx_config

        assert "access_log off;" in nginx_config(variant, Path("/r"), Path("/r/s"), "0.0.0.0", 1)
    if variant.server == "uwsgi":
        assert "--disable-logging" in argv
    elif variant.server == "gunicorn":
        # Gunicorn writes no access log unless asked to.
        assert not any(part.startswith(("--access-logfile", "--access-logformat")) for part in argv)
        assert "--capture-output" not in argv
    elif variant.server in ("granian", "uvicorn"):
        assert "--no-access-log" in argv
        assert option_value(argv, "--log-level") == "warning"
    elif variant.server == "waitress":
        pass  # Waitress has no access log (it logs only warnings and errors)
    else:
        assert argv[1:3] == ["-m", "labapp.devserver"]  # which uses QuietRequestHandler (test_app)


@pytest.mark.parametrize("name", sorted(n for n in REQUIRED_NAMES if "uwsgi" in n.split("-")[:2]))
def test_uwsgi_safety_options(name, all_variants):
    variant = all_variants[name]
    argv = variant.server_argv("/s") if variant.proxy else variant.argv()
    for option in ("--die-on-term", "--master", "--need-app", "--strict"):
        assert option in argv, option
    assert option_value(argv, "--module") == "labapp.wsgi:app"


@pytest.mark.parametrize("name", sorted(n for n in REQUIRED_NAMES if "gunicorn" in n.split("-")[:2]))
def test_gunicorn_worker_tmp_dir(name, all_variants):
    variant = all_variants[name]
    argv = variant.server_argv("/s") if variant.proxy else variant.argv()
    assert option_value(argv, "--worker-tmp-dir") == "/dev/shm"
    assert argv[-1] == "labapp.wsgi:app"


def test_gunicorn_worker_classes(all_variants):
    worker_class = {name: option_value(all_variants[name].argv(), "--worker-class") for name in ("gunicorn-sync", "gunicorn-gthread", "gunicorn-gevent")}
    assert worker_class == {"gunicorn-sync": "sync", "gunicorn-gthread": "gthread", "gunicorn-gevent": "gevent"}


def test_keep_alive_matches_the_command(all_variants):
    for variant in all_variants.values():
        if variant.proxy:
            assert variant.keep_alive, variant.name  # nginx keeps client connections open
        elif variant.server == "gunicorn":
            assert variant.keep_alive == ("--keep-alive" in variant.command), variant.name
        elif variant.server == "uwsgi":
            assert variant.keep_alive == ("--http11-socket" in variant.command), variant.name
        elif variant.server == "uvicorn":
            assert variant.keep_alive == ("--timeout-keep-alive" in variant.command), variant.name
        elif variant.server == "granian":
            assert variant.keep_alive == ("--http1-keep-alive" in variant.command), variant.name


# --- worker/thread overrides -----------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "option", "kind"),
    [
        ("gunicorn-sync", "--workers", "workers"),
        ("gunicorn-gthread", "--workers", "workers"),
        ("gunicorn-gthread", "--threads", "threads"),
        ("gunicorn-gevent", "--workers", "workers"),
        ("uwsgi-processes", "--processes", "workers"),
        ("uwsgi-threads", "--processes", "workers"),
        ("uwsgi-threads", "--threads", "threads"),
    ],
)
def test_with_counts_reaches_the_command(name, option, kind):
    variant = by_name(name)
    declared = option_value(variant.argv(), option)
    assert declared == str(getattr(variant, kind))
    changed = variant.with_counts(**{kind: 7})
    assert getattr(changed, kind) == 7
    assert option_value(changed.argv(), option) == "7"
    assert changed.environment()[f"SERVERLAB_{kind.upper()}"] == "7"


def test_gevent_connections_reach_the_command():
    variant = by_name("gunicorn-gevent")
    assert option_value(variant.argv(), "--worker-connections") == str(variant.connections)


def test_with_counts_keeps_declared_values_and_the_original():
    variant = by_name("uwsgi-threads")
    assert variant.with_counts() == variant
    changed = variant.with_counts(workers=5)
    assert (changed.workers, changed.threads) == (5, variant.threads)
    assert (variant.workers, variant.threads) == (2, 4)  # frozen, untouched
    assert changed.slots == 5 * variant.threads
    assert by_name("uwsgi-threads").with_counts(threads=2).workers == variant.workers


@pytest.mark.parametrize(
    ("name", "counts", "message"),
    [
        ("gunicorn-sync", {"workers": 0}, "workers must be >= 1, got 0"),
        ("gunicorn-sync", {"workers": -3}, "workers must be >= 1, got -3"),
        ("gunicorn-gthread", {"threads": -1}, "threads must be >= 1, got -1"),
        ("gunicorn-gthread", {"threads": 0}, "threads must be >= 1, got 0"),
        ("werkzeug-threaded", {"threads": -1}, "got -1"),
    ],
)
def test_with_counts_refuses_bad_counts(name, counts, message):
    with pytest.raises(VariantError, match=name) as info:
        by_name(name).with_counts(**counts)
    assert message in str(info.value)


def test_zero_threads_only_where_declared():
    # 0 means "one thread per connection", which only the threaded dev server can do.
    assert by_name("werkzeug-threaded").with_counts(threads=0).slots == by_name("werkzeug-threaded").connections


def test_overrides_are_applied_or_refused(all_variants):
    ignored = []
    for variant in all_variants.values():
        for kind in ("workers", "threads"):
            value = getattr(variant, kind) + 3
            try:
                changed = variant.with_counts(**{kind: value})
            except VariantError:
                continue
            argv = (lambda v: v.server_argv("/s")) if variant.proxy else (lambda v: v.argv())
            if argv(changed) == argv(variant):
                ignored.append(f"{variant.name}:{kind}")
    assert ignored == []


def test_environment_and_record(all_variants):
    variant = all_variants["gunicorn-gevent"]
    assert variant.environment() == {
        "SERVERLAB_VARIANT": "gunicorn-gevent",
        "SERVERLAB_SERVER": "gunicorn",
        "SERVERLAB_MODEL": "gevent",
        "SERVERLAB_WORKERS": "1",
        "SERVERLAB_THREADS": "1",
        "SERVERLAB_KEEP_ALIVE": "1",
    }
    assert all_variants["gunicorn-sync"].environment()["SERVERLAB_KEEP_ALIVE"] == "0"
    for variant in all_variants.values():
        record = json.loads(json.dumps(variant.record()))
        assert record["name"] == variant.name
        assert record["command"] == list(variant.command)
        assert record["slots"] == variant.slots


def test_env_counts_unset_and_empty():
    assert env_counts({}) == (None, None)
    assert env_counts({"SERVERLAB_WORKERS": "", "SERVERLAB_THREADS": "  "}) == (None, None)


def test_env_counts_values():
    assert env_counts({"SERVERLAB_WORKERS": "4", "SERVERLAB_THREADS": " 2 "}) == (4, 2)
    assert env_counts({"SERVERLAB_THREADS": "16"}) == (None, 16)


def test_env_counts_reads_os_environ(monkeypatch):
    monkeypatch.setenv("SERVERLAB_WORKERS", "3")
    monkeypatch.delenv("SERVERLAB_THREADS", raising=False)
    assert env_counts() == (3, None)


@pytest.mark.parametrize(("var", "value"), [("SERVERLAB_WORKERS", "abc"), ("SERVERLAB_THREADS", "1.5"), ("SERVERLAB_WORKERS", "4 workers")])
def test_env_counts_refuses_non_integers(var, value):
    with pytest.raises(VariantError) as info:
        env_counts({var: value})
    assert f"{var}={value!r} is not an integer" in str(info.value)


# --- malformed declarations are refused with a precise message -------------------------

VALID = {
    "description": "a test variant",
    "server": "gunicorn",
    "model": "threaded",
    "keep_alive": True,
    "workers": 1,
    "threads": 4,
    "command": ["{bin}/gunicorn", "--bind", "0.0.0.0:{port}", "--threads", "{threads}", "labapp.wsgi:app"],
}


def to_toml(data: dict) -> str:
    """A tiny TOML writer for flat tables of str/bool/int/float/list values (JSON literals are TOML literals here)."""
    lines = []
    for key, value in data.items():
        literal = ("true" if value else "false") if isinstance(value, bool) else json.dumps(value)
        lines.append(f"{key} = {literal}")
    return "\n".join(lines) + "\n"


def write(tmp_path: Path, data: dict | str, name: str = "test-variant") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(data if isinstance(data, str) else to_toml(data), encoding="utf-8")
    return path


def refusal(path: Path) -> str:
    with pytest.raises(VariantError) as info:
        load_variant(path)
    message = str(info.value)
    assert str(path) in message
    return message


def test_valid_declaration_loads(tmp_path):
    # The baseline every refusal below mutates is itself valid.
    variant = load_variant(write(tmp_path, VALID))
    assert variant.name == "test-variant"
    assert variant.command == tuple(VALID["command"])
    assert variant.connections is None
    assert variant.argv(port=1, python=FAKE_PYTHON) == ["/opt/fake-env/bin/gunicorn", "--bind", "0.0.0.0:1", "--threads", "4", "labapp.wsgi:app"]


def test_declarations_with_comments_load(tmp_path):
    text = to_toml(VALID).replace("workers = 1", "workers = 1   # one process")
    assert load_variant(write(tmp_path, text)).workers == 1


@pytest.mark.parametrize("key", list(VALID))
def test_missing_key(tmp_path, key):
    data = {k: v for k, v in VALID.items() if k != key}
    message = refusal(write(tmp_path, data))
    assert f"missing key {key!r}" in message
    assert "required" in message


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("description", 5),
        ("server", ["gunicorn"]),
        ("keep_alive", 1),
        ("keep_alive", "yes"),
        ("workers", "3"),
        ("workers", True),
        ("workers", 2.0),
        ("threads", False),
        ("command", "gunicorn labapp.wsgi:app"),
    ],
)
def test_wrong_type(tmp_path, key, value):
    message = refusal(write(tmp_path, {**VALID, key: value}))
    assert repr(key) in message
    assert "must be a" in message
    assert repr(value) in message


def test_unknown_key(tmp_path):
    message = refusal(write(tmp_path, {**VALID, "worker_class": "gthread"}))
    assert "unknown key 'worker_class'" in message
    for key in (*VALID, "connections"):
        assert key in message


def test_bad_server(tmp_path):
    message = refusal(write(tmp_path, {**VALID, "server": "nginx"}))
    assert "'server'" in message
    assert "'nginx'" in message
    for server in SERVERS:
        assert server in message


def test_bad_model(tmp_path):
    message = refusal(write(tmp_path, {**VALID, "model": "asyncio"}))
    assert "'model'" in message
    assert "'asyncio'" in message
    for model in MODELS:
        assert model in message


@pytest.mark.parametrize(("workers", "threads"), [(0, 1), (-1, 1), (1, -1)])
def test_bad_counts(tmp_path, workers, threads):
    message = refusal(write(tmp_path, {**VALID, "workers": workers, "threads": threads}))
    assert "workers must be >= 1 and threads >= 0" in message


def test_gevent_needs_connections(tmp_path):
    gevent = {**VALID, "model": "gevent"}
    assert "connections" in refusal(write(tmp_path, gevent))
    assert "connections" in refusal(write(tmp_path, {**gevent, "connections": 0}))
    assert load_variant(write(tmp_path, {**gevent, "connections": 50})).slots == 50


@pytest.mark.parametrize("connections", ["many", True, 1.5, -5], ids=["str", "bool", "float", "negative"])
def test_connections_must_be_a_positive_int(tmp_path, connections):
    message = refusal(write(tmp_path, {**VALID, "model": "gevent", "connections": connections}))
    assert "'connections'" in message


@pytest.mark.parametrize("command", [[], ["gunicorn", 5]])
def test_bad_command(tmp_path, command):
    assert "non-empty list of strings" in refusal(write(tmp_path, {**VALID, "command": command}))


@pytest.mark.parametrize("part", ["--bind={host}:{port}", "{0}", "{port", "{bin!z}"])
def test_bad_placeholder(tmp_path, part):
    message = refusal(write(tmp_path, {**VALID, "command": ["{bin}/gunicorn", part]}))
    assert repr(part) in message
    assert "bad placeholder" in message
    for placeholder in ("port", "workers", "threads", "connections", "python", "bin"):
        assert placeholder in message


def test_invalid_toml(tmp_path):
    message = refusal(write(tmp_path, to_toml(VALID) + "workers = \n"))
    assert len(message) > len(str(tmp_path))


def test_unreadable_file(tmp_path):
    refusal(tmp_path / "absent.toml")


def test_one_bad_file_fails_the_folder(tmp_path):
    write(tmp_path, VALID, "good")
    write(tmp_path, {**VALID, "server": "nginx"}, "bad")
    with pytest.raises(VariantError, match="bad.toml"):
        load_variants(tmp_path)
    (tmp_path / "bad.toml").unlink()
    assert list(load_variants(tmp_path)) == ["good"]


def test_empty_folder(tmp_path):
    with pytest.raises(VariantError, match="no server declarations"):
        load_variants(tmp_path)


def test_get_variant(tmp_path):
    assert get_variant("gunicorn-sync").name == "gunicorn-sync"
    write(tmp_path, VALID, "alpha")
    write(tmp_path, VALID, "beta")
    assert get_variant("beta", tmp_path).name == "beta"
    with pytest.raises(VariantError) as info:
        get_variant("gamma", tmp_path)
    assert "'gamma'" in str(info.value)
    assert "alpha, beta" in str(info.value)


def test_get_unknown_variant_lists_every_valid_name():
    with pytest.raises(VariantError) as info:
        get_variant("nginx-async")
    for name in REQUIRED_NAMES:
        assert name in str(info.value)


# --- the launcher: python -m labapp.serve ----------------------------------------------


def serve(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m labapp.serve ARGS`` with this interpreter (the venv's) and a clean SERVERLAB_* env."""
    environ = {key: value for key, value in os.environ.items() if not key.startswith("SERVERLAB_")}
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "labapp.serve", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=environ,
        cwd=cwd,
    )


@pytest.mark.parametrize("name", ["gunicorn-sync", "werkzeug-threaded", "uwsgi-threads"])
def test_serve_dry_run(name, tmp_path):
    result = serve("--dry-run", name, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    expected = " ".join(by_name(name).argv(port=8000, python=sys.executable))
    assert result.stdout.strip() == expected


def test_serve_dry_run_port_and_overrides():
    result = serve("--dry-run", "--port", "9123", "gunicorn-gthread", env={"SERVERLAB_WORKERS": "3", "SERVERLAB_THREADS": ""})
    assert result.returncode == 0, result.stderr
    argv = result.stdout.split()
    assert option_value(argv, "--bind") == "0.0.0.0:9123"
    assert option_value(argv, "--workers") == "3"
    assert option_value(argv, "--threads") == "8"


def test_serve_port_from_environment():
    result = serve("--dry-run", "uwsgi-processes", env={"SERVERLAB_PORT": "8765"})
    assert result.returncode == 0, result.stderr
    assert option_value(result.stdout.split(), "--http-socket") == "0.0.0.0:8765"


def test_serve_list():
    result = serve("--list")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert {line.split()[0] for line in lines} == REQUIRED_NAMES
    for variant in load_variants(SERVERS_DIR).values():
        assert any(line.startswith(variant.name) and line.endswith(variant.description) for line in lines)


def test_serve_without_a_name_lists_and_fails():
    result = serve()
    assert result.returncode == 2
    assert "gunicorn-sync" in result.stdout


def test_serve_unknown_name():
    result = serve("--dry-run", "nginx-async")
    assert result.returncode == 2
    assert result.stderr.startswith("error:")
    assert "nginx-async" in result.stderr
    assert "gunicorn-sync" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(("env", "fragment"), [({"SERVERLAB_WORKERS": "lots"}, "SERVERLAB_WORKERS='lots'"), ({"SERVERLAB_THREADS": "0"}, "threads must be >= 1")])
def test_serve_bad_override(env, fragment):
    result = serve("--dry-run", "gunicorn-gthread", env=env)
    assert result.returncode == 2
    assert result.stderr.startswith("error:")
    assert fragment in result.stderr


def test_serve_refuses_a_malformed_declaration(tmp_path):
    write(tmp_path, {**VALID, "model": "asyncio"}, "broken")
    result = serve("--list", env={"SERVERLAB_SERVERS_DIR": str(tmp_path)})
    assert result.returncode == 2
    assert result.stderr.startswith("error:")
    assert "broken.toml" in result.stderr


# --- [settings] and proxied declarations -----------------------------------------------

PROXIED = {**VALID, "proxy": "nginx", "proxy_protocol": "http", "proxy_workers": 1,
           "command": ["{bin}/gunicorn", "--bind", "unix:{socket}", "--threads", "{threads}", "labapp.wsgi:app"]}


def test_settings_are_placeholders_and_recorded(tmp_path):
    text = to_toml({**VALID, "command": [*VALID["command"], "--limit={connection_limit}"]}) + "[settings]\nconnection_limit = 50\n"
    variant = load_variant(write(tmp_path, text))
    assert variant.settings == (("connection_limit", 50),)
    assert variant.argv()[-1] == "--limit=50"
    assert variant.record()["settings"] == {"connection_limit": 50}


@pytest.mark.parametrize(("table", "fragment"), [("port = 1", "settings key 'port'"), ("limit = [1]", "settings.limit"),
                                                 ("limit = 1.5", "settings.limit")])
def test_bad_settings(tmp_path, table, fragment):
    assert fragment in refusal(write(tmp_path, to_toml(VALID) + f"[settings]\n{table}\n"))


def test_undeclared_setting_placeholder(tmp_path):
    assert "bad placeholder" in refusal(write(tmp_path, {**VALID, "command": ["{bin}/x", "{limit}"]}))


def test_proxied_declaration_loads(tmp_path):
    variant = load_variant(write(tmp_path, PROXIED, "nginx-test"))
    assert (variant.proxy, variant.proxy_protocol, variant.proxy_workers) == ("nginx", "http", 1)
    assert variant.argv(port=5, python=FAKE_PYTHON) == [FAKE_PYTHON, "-m", "labapp.proxy", "nginx-test", "--port", "5"]
    assert "unix:/s" in variant.server_argv("/s")
    with pytest.raises(VariantError, match="not a proxied variant"):
        load_variant(write(tmp_path, VALID)).server_argv("/s")


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"proxy": "haproxy"}, "key 'proxy' is 'haproxy'"),
        ({"proxy_protocol": "fastcgi"}, "key 'proxy_protocol' is 'fastcgi'"),
        ({"proxy_workers": 0}, "'proxy_workers' must be an integer in 1..16"),
        ({"proxy_workers": 17}, "'proxy_workers' must be an integer in 1..16"),
        ({"proxy_workers": "1"}, "'proxy_workers' must be a int"),
        ({"command": ["{bin}/gunicorn", "--bind", "0.0.0.0:{port}"]}, "must listen on {socket}"),
    ],
)
def test_bad_proxied_declarations(tmp_path, change, fragment):
    assert fragment in refusal(write(tmp_path, {**PROXIED, **change}))


def test_proxy_keys_need_a_proxy(tmp_path):
    assert "needs 'proxy'" in refusal(write(tmp_path, {**VALID, "proxy_protocol": "http"}))
    missing = {key: value for key, value in PROXIED.items() if key != "proxy_workers"}
    assert "needs 'proxy_workers'" in refusal(write(tmp_path, missing))
    assert "bad placeholder" in refusal(write(tmp_path, {**VALID, "command": ["{bin}/x", "{socket}"]}))


# --- request-head limits ([headers], issue 22) --------------------------------------------

HEADERS = '\n[headers]\nmax_bytes = 8190\nscope = "line"\nover = 431\nline_over = 414\n'


def test_every_declaration_states_its_request_head_limit(all_variants):
    """Each variant declares how large a request head it takes and what it answers beyond
    (tests/test_hostile_requests.py checks the answers on real servers)."""
    missing = [name for name, variant in all_variants.items() if variant.headers is None]
    assert missing == [], (f"servers/{{{','.join(missing)}}}.toml: add a [headers] table (max_bytes, scope, "
                           "over, line_over): see labapp.variants.HeaderLimit and servers/gunicorn-sync.toml")


def test_head_limits_are_chosen_alike(all_variants):
    """Fairness: every variant takes the same 8 KiB heads (Gunicorn's line limit tops out at
    8190) and refuses larger ones; uWSGI's --buffer-size is 16 KiB because its variables
    buffer holds the URL twice (in 8 KiB a 6 KiB URL lost its query string silently)."""
    for variant in all_variants.values():
        assert variant.headers is not None, variant.name
        expected = (16384,) if variant.server == "uwsgi" and not variant.proxy else (8190, 8192)
        assert variant.headers.max_bytes in expected, (variant.name, variant.headers)


@pytest.mark.parametrize("name", sorted(REQUIRED_NAMES))
def test_the_head_limit_reaches_the_server(name, all_variants):
    """The declared max_bytes is what the server is started with (a {header_bytes} placeholder,
    or nginx's large_client_header_buffers written by labapp.proxy)."""
    variant = all_variants[name]
    if variant.proxy:
        from labapp.proxy import nginx_config

        config = nginx_config(variant, Path("/RUNTIME"), Path("/RUNTIME/app.sock"), "0.0.0.0", 8000)
        assert f"large_client_header_buffers 4 {variant.headers.max_bytes};" in config
        return
    argv = variant.argv(port=8000, python=FAKE_PYTHON)
    limit = str(variant.headers.max_bytes)
    if variant.server == "gunicorn":
        assert option_value(argv, "--limit-request-line") == limit == option_value(argv, "--limit-request-field_size")
    elif variant.server == "uwsgi":
        assert option_value(argv, "--buffer-size") == limit
    elif variant.server == "waitress":
        assert f"--max-request-header-size={limit}" in argv
    elif variant.server == "granian":
        assert option_value(argv, "--http1-buffer-size") == limit
    elif variant.server == "uvicorn":
        from labapp.asgi import MAX_HEAD_BYTES

        # h11 bounds an incomplete head; labapp.asgi refuses a whole one over the same limit
        assert option_value(argv, "--h11-max-incomplete-event-size") == limit == str(MAX_HEAD_BYTES)
    else:
        assert option_value(argv, "--max-line-bytes") == limit


def test_head_limit_is_recorded_and_described(all_variants):
    record = json.loads(json.dumps(all_variants["uwsgi-processes"].record()))
    assert record["headers"] == {"max_bytes": 16384, "scope": "head", "over": 0, "line_over": 0}
    assert all_variants["uwsgi-processes"].headers.describe() == "16384 B head; closes, no answer"
    assert all_variants["gunicorn-sync"].headers.describe() == "8190 B per line; 431 (URL: 414)"


def test_a_headers_table_loads_and_fills_its_placeholder(tmp_path):
    data = {**VALID, "command": [*VALID["command"], "--limit-request-line", "{header_bytes}"]}
    variant = load_variant(write(tmp_path, to_toml(data) + HEADERS))
    assert variant.headers == variants.HeaderLimit(8190, "line", 431, 414)
    assert variant.argv(port=1, python=FAKE_PYTHON)[-1] == "8190"


def test_header_bytes_placeholder_needs_a_headers_table(tmp_path):
    data = {**VALID, "command": [*VALID["command"], "{header_bytes}"]}
    assert "bad placeholder" in refusal(write(tmp_path, data))


@pytest.mark.parametrize(("change", "words"), [
    ("max_bytes = 8190", ("headers.max_bytes", "1024..65535", "100")),
    ('scope = "line"', ("headers.scope", "'body'", "line, head")),
    ("over = 431", ("headers.over", "500", "0, 400, 414, 431", "closes without an answer")),
    ("line_over = 414", ("headers.line_over", "must be an integer", "'414'")),
])
def test_bad_headers_tables_are_refused_naming_the_key(tmp_path, change, words):
    bad = {"max_bytes = 8190": "max_bytes = 100", 'scope = "line"': 'scope = "body"', "over = 431": "over = 500",
           "line_over = 414": 'line_over = "414"'}[change]
    message = refusal(write(tmp_path, to_toml(VALID) + HEADERS.replace(change, bad)))
    for word in words:
        assert word in message, message


def test_unknown_headers_key_is_refused(tmp_path):
    message = refusal(write(tmp_path, to_toml(VALID) + HEADERS + "max_lines = 3\n"))
    assert "headers.max_lines" in message and "max_bytes, scope, over, line_over" in message


def test_a_declaration_with_a_byte_order_mark_loads(tmp_path):
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + to_toml(VALID).encode())
    assert load_variant(path).workers == VALID["workers"]


def test_the_readme_variant_table_shows_each_declared_head_limit(all_variants):
    """The README's variant table has a "request head" column: each row shows its declaration's limit."""
    rows = {line.split(" | ", 1)[0].strip("|` "): line
            for line in (REPO_ROOT / "README.md").read_text(encoding="utf-8").splitlines() if line.startswith("| `")}
    for name in sorted(REQUIRED_NAMES):
        assert name in rows, f"README.md: no row for {name} in the variant table"
        assert f" | {all_variants[name].headers.describe()} | " in rows[name], (name, rows[name])
