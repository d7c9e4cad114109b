"""The variants people deploy: uwsgi-http11, uwsgi-gevent, waitress, granian, nginx-gunicorn, nginx-uwsgi,
and the ASGI servers running the app through asgiref's WsgiToAsgi: uvicorn-wsgi, granian-asgi.

Fast tests check their declarations and nginx's generated configuration. Slow tests
start each one for real — as local processes and from the lab image (Docker) — and
check that it answers verification for every workload, keeps (or closes) a real TCP
connection as declared (Little's law for them: tests/test_known_answers.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from labapp import proxy
from test_e2e_docker import keeps_alive as _keeps_alive
from labapp.variants import get_variant, load_variants
from serverlab.records import BottleneckSummary
from serverlab.terms import BottleneckClass
from serverlab.budget import Budget
from serverlab.terms import WORKLOADS
from serverlab.workloads import verify

ROOT = Path(__file__).resolve().parents[1]
DIRECT = ["uwsgi-http11", "uwsgi-gevent", "waitress", "granian", "uvicorn-wsgi", "granian-asgi"]
PROXIED = ["nginx-gunicorn", "nginx-uwsgi"]
NEW = DIRECT + PROXIED
#: Each proxied variant and the direct variant with the same app-server settings.
PAIRS = {"nginx-gunicorn": "gunicorn-gthread", "nginx-uwsgi": "uwsgi-processes"}
SMALL_PARAMS = {"hello": {}, "json": {}, "cpu": {"n": 50}, "io": {"ms": 5}, "mixed": {"n": 50, "ms": 5},
                "io-async": {"ms": 5}}


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need_nginx(name: str) -> None:
    """Skip a local test of an nginx variant when nginx is not installed (fail in CI, which installs it)."""
    if not get_variant(name).proxy:
        return
    try:
        proxy.find_nginx()
    except proxy.ProxyError as err:
        if _in_ci():
            pytest.fail(f"CI=true but {err}")
        pytest.skip(str(err))


def keeps_alive(host: str, port: int) -> bool:
    """Two requests on one TCP connection, both answered? (the e2e suite's own check)."""
    return _keeps_alive(f"{host}:{port}")

# --- declarations (fast) -----------------------------------------------------------------


def test_every_new_variant_is_declared_once():
    variants = load_variants()
    assert set(NEW) <= set(variants)
    assert len(variants) >= 15


@pytest.mark.parametrize("name", NEW)
def test_declared_bounds_and_settings(name):
    variant = get_variant(name)
    assert variant.workers >= 1 and variant.threads >= 1
    assert variant.slots is not None and variant.slots <= 1000
    record = json.loads(json.dumps(variant.record()))
    assert record["settings"] == dict(variant.settings)
    argv = variant.server_argv("/run/x.sock") if variant.proxy else variant.argv(port=8000)
    assert not any("{" in part or "}" in part for part in argv), argv


def test_waitress_records_its_connection_limit_and_threads():
    variant = get_variant("waitress")
    argv = variant.argv()
    assert f"--threads={variant.threads}" in argv
    assert dict(variant.settings)["connection_limit"] == 100
    assert "--connection-limit=100" in argv


def test_granian_wsgi_interface_threads_and_keep_alive():
    variant = get_variant("granian")
    argv = variant.argv()
    assert argv[argv.index("--interface") + 1] == "wsgi"
    assert argv[argv.index("--blocking-threads") + 1] == str(variant.threads)
    assert argv[argv.index("--workers") + 1] == str(variant.workers)
    assert "--http1-keep-alive" in argv and "--no-access-log" in argv
    assert argv[argv.index("--backpressure") + 1] == str(dict(variant.settings)["backpressure"])
    assert variant.with_counts(threads=3).argv()[argv.index("--blocking-threads") + 1] == "3"


def test_uwsgi_keep_alive_socket_types():
    http11 = get_variant("uwsgi-http11").argv(port=9)
    assert http11[http11.index("--http11-socket") + 1] == "0.0.0.0:9"
    gevent = get_variant("uwsgi-gevent")
    argv = gevent.argv(port=9)
    assert argv[argv.index("--gevent") + 1] == str(gevent.connections)
    assert "--gevent-early-monkey-patch" in argv  # /io's time.sleep must yield to other greenlets
    assert "--http-socket" in argv and not gevent.keep_alive


@pytest.mark.parametrize(("name", "direct"), sorted(PAIRS.items()))
def test_proxied_variant_matches_its_direct_twin(name, direct):
    proxied, twin = get_variant(name), get_variant(direct)
    assert (proxied.server, proxied.model, proxied.workers, proxied.threads) == (twin.server, twin.model, twin.workers, twin.threads)
    assert proxied.proxy == "nginx" and proxied.proxy_workers == 1
    assert proxied.argv(port=8123, python="/x/bin/python") == ["/x/bin/python", "-m", "labapp.proxy", name, "--port", "8123"]
    server = proxied.server_argv("/run/app.sock", python="/x/bin/python")
    assert server[0] == f"/x/bin/{proxied.server}"
    assert "/run/app.sock" in " ".join(server)
    option = "--workers" if proxied.server == "gunicorn" else "--processes"
    changed = proxied.with_counts(workers=5).server_argv("/s")
    assert changed[changed.index(option) + 1] == "5"


def test_nginx_config_for_http_upstream(tmp_path):
    variant = get_variant("nginx-gunicorn")
    config = proxy.nginx_config(variant, tmp_path, tmp_path / "app.sock", "0.0.0.0", 8000)
    assert "daemon off;" in config
    assert f"worker_processes {variant.proxy_workers};" in config
    assert f"pid {tmp_path / 'nginx.pid'};" in config
    assert "access_log off;" in config and "error_log stderr" in config
    for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        assert f"{kind}_temp_path {tmp_path / kind};" in config  # writable in a read-only container
    assert f"server unix:{tmp_path / 'app.sock'};" in config
    assert "proxy_pass http://app;" in config and "proxy_http_version 1.1;" in config
    assert 'proxy_set_header Connection "";' in config and f"keepalive {proxy.UPSTREAM_KEEPALIVE};" in config
    assert "listen 0.0.0.0:8000" in config
    assert "uwsgi_pass" not in config


def test_nginx_config_for_uwsgi_upstream(tmp_path):
    config = proxy.nginx_config(get_variant("nginx-uwsgi"), tmp_path, tmp_path / "s", "127.0.0.1", 9)
    assert "uwsgi_pass app;" in config
    assert "uwsgi_param PATH_INFO $document_uri;" in config and "uwsgi_param QUERY_STRING $query_string;" in config
    assert "proxy_pass" not in config and "listen 127.0.0.1:9" in config


def test_nginx_config_refuses_a_direct_variant(tmp_path):
    with pytest.raises(proxy.ProxyError, match="not an nginx-proxied variant"):
        proxy.nginx_config(get_variant("gunicorn-gthread"), tmp_path, tmp_path / "s", "0.0.0.0", 1)


def run_proxy(*args: str) -> subprocess.CompletedProcess:
    environ = {key: value for key, value in os.environ.items() if not key.startswith("SERVERLAB_")}
    return subprocess.run([sys.executable, "-m", "labapp.proxy", *args], capture_output=True, text=True, timeout=60, env=environ)


def test_proxy_cli_prints_the_config_and_refuses_direct_variants():
    shown = run_proxy("nginx-uwsgi", "--port", "8111", "--print-config")
    assert shown.returncode == 0, shown.stderr
    assert "listen 0.0.0.0:8111" in shown.stdout and "uwsgi_pass app;" in shown.stdout
    refused = run_proxy("gunicorn-sync")
    assert refused.returncode == 2
    assert refused.stderr.startswith("error:") and "has no proxy" in refused.stderr


def test_missing_nginx_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(proxy.shutil, "which", lambda name: None)
    monkeypatch.setattr(proxy, "NGINX_CANDIDATES", ("/nonexistent/nginx",))
    with pytest.raises(proxy.ProxyError, match="apt-get install nginx"):
        proxy.find_nginx()


# --- real servers: local processes (slow) ------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", NEW)
def test_local_start_verify_and_keep_alive(name, start_local_server):
    need_nginx(name)
    url = start_local_server(name)
    for workload in WORKLOADS.values():
        observed = verify(url, workload, SMALL_PARAMS[workload.name])
        assert observed["status"] == 200
    info = json.loads(subprocess.run([sys.executable, "-c", f"import urllib.request;print(urllib.request.urlopen('{url}/lab/info').read().decode())"],
                                     capture_output=True, text=True, timeout=30).stdout)
    variant = get_variant(name)
    assert (info["variant"], info["server"], int(info["workers"]), int(info["threads"])) == (name, variant.server, variant.workers, variant.threads)
    host, port = url[len("http://"):].rsplit(":", 1)
    assert keeps_alive(host, int(port)) == variant.keep_alive, f"{name}: declared keep_alive={variant.keep_alive}"


# Little's law for these variants: tests/test_known_answers.py (both backends).


# --- real servers: from the lab image (Docker, slow) ------------------------------------


@pytest.fixture(scope="module")
def docker_backend(docker_ready):
    """The lab's Docker backend with the image built from this tree; its project removed afterwards."""
    from serverlab.backends import DockerBackend

    backend = DockerBackend(Budget(), project="serverlab-deployed-test")
    backend.prepare(NEW, progress=lambda line: None)
    yield backend
    backend.close()


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.parametrize("name", NEW)
def test_image_start_verify_keep_alive_non_root(name, docker_backend):
    server = docker_backend.start(get_variant(name))
    try:
        for workload in WORKLOADS.values():
            assert verify(server.url_for_host, workload, SMALL_PARAMS[workload.name])["status"] == 200
        variant = get_variant(name)
        host, port = server.url_for_host[len("http://"):].rsplit(":", 1)
        assert keeps_alive(host, int(port)) == variant.keep_alive, f"{name}: declared keep_alive={variant.keep_alive}"
        # Every process in the container (nginx master and workers included) runs as a non-root user.
        uids = subprocess.run(
            ["docker", "exec", str(server.handle), "python", "-c",
             "import os; print(' '.join(sorted({open(f'/proc/{p}/status').read().split('Uid:')[1].split()[0] "
             "for p in os.listdir('/proc') if p.isdigit()})))"],
            capture_output=True, text=True, timeout=30)
        assert uids.returncode == 0, uids.stderr
        assert uids.stdout.split() and "0" not in uids.stdout.split(), f"{name}: processes run as uids {uids.stdout}"
    finally:
        docker_backend.stop(server)


# --- reports: proxied vs direct (fast) ---------------------------------------------------


def test_verdict_says_what_the_proxy_did():
    """A proxied variant is compared with the direct one running the same app server settings."""
    from dataclasses import replace

    from report_factories import CONFIGS, make_cell, make_header

    from serverlab.report import aggregate, proxy_pairs, proxy_sentence, verdicts
    from serverlab.report.tables import config_table, proxy_table

    proxied_config = {**CONFIGS["gunicorn-gthread"], "proxy": "nginx", "proxy_protocol": "http", "proxy_workers": 1}
    cells = []
    for repetition in (1, 2, 3):
        cells.append(make_cell("gunicorn-gthread", level=64, repetition=repetition, rps=2000.0 + repetition,
                               median_us=4000.0, samples=200))
        cells.append(make_cell("nginx-gunicorn", level=64, repetition=repetition, rps=1500.0 + repetition,
                               median_us=6000.0, samples=200))
    header = make_header(configs={"nginx-gunicorn": proxied_config})
    rows = aggregate(header, cells)
    [(proxied_row, direct_row)] = proxy_pairs(rows)
    assert (proxied_row.variant, direct_row.variant) == ("nginx-gunicorn", "gunicorn-gthread")
    verdict = verdicts(rows)["hello"]
    assert "Proxy: nginx in front of gunicorn (nginx-gunicorn vs gunicorn-gthread, 64 users)" in verdict
    assert "used 1.00× the CPU per request (0.800 vs 0.800 ms, nginx included)" in verdict
    assert "did 0.75× the RPS (1,502 vs 2,002)" in verdict and "so the proxy cost 25% of throughput" in verdict
    table = config_table(rows, header)
    assert "proxy" in table.headers
    assert any(line[table.headers.index("proxy")].startswith("nginx (http, 1 worker(s)") for line in table.rows)
    pairs_table = proxy_table(rows)
    assert pairs_table is not None and [line[2:4] for line in pairs_table.rows] == [["nginx-gunicorn", "gunicorn-gthread"]]
    # a generator-bound row's RPS is not compared, its CPU cost still is
    bound = [replace(row, bottleneck=BottleneckSummary(BottleneckClass("generator-bound"), ())) if row.variant == "gunicorn-gthread" else row for row in rows]
    sentence = proxy_sentence(bound)
    assert "not comparable here (Locust or other programs limited gunicorn-gthread)" in sentence
    assert "the CPU per request" in sentence and "RPS (" not in sentence
