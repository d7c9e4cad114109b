"""Shared fixtures: the lab's Flask app and its test client (the Flask testing pattern),
Docker's and the browser's availability, a local server factory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import labapp  # installed in editable mode (package-dir app/labapp)
import serverlab  # noqa: F401  (must import: the suite tests both packages)


@pytest.fixture
def app():
    """A fresh app per test (its own background jobs), in testing mode."""
    return labapp.create_app({"TESTING": True})


@pytest.fixture
def client(app):
    """Flask's test client for :func:`app`."""
    return app.test_client()


def _docker_problem() -> str | None:
    """Why Docker tests cannot run here, or ``None`` when the engine and Compose answer."""
    import shutil
    import subprocess

    if not shutil.which("docker"):
        return "the docker CLI is not installed (make offline installs it)"
    for argv, what in ((["docker", "info"], "the Docker engine"), (["docker", "compose", "version"], "docker compose")):
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as err:
            return f"{what} does not answer: {err}"
        if proc.returncode != 0:
            return f"{what} does not answer: {(proc.stderr or proc.stdout).strip()[-200:]}"
    return None


@pytest.fixture(scope="session")
def docker_ready() -> None:
    """Skip (with the reason) when Docker is missing; in CI (``CI=true``) fail instead."""
    problem = _docker_problem()
    if problem:
        if in_ci():
            pytest.fail(f"CI=true but Docker is unavailable: {problem}. .ci/run must provision it.")
        pytest.skip(f"Docker unavailable: {problem}")


@pytest.fixture(autouse=True, scope="session")
def _session_cpu_locks(tmp_path_factory):
    """Runs started by this test session lock CPUs in a folder of the session's own, so a
    test run is not refused because someone else's run (or test session) holds CPUs 0-1."""
    previous = os.environ.get("SERVERLAB_LOCK_DIR")
    os.environ["SERVERLAB_LOCK_DIR"] = str(tmp_path_factory.mktemp("cpu-locks"))
    yield
    if previous is None:
        os.environ.pop("SERVERLAB_LOCK_DIR", None)
    else:
        os.environ["SERVERLAB_LOCK_DIR"] = previous


@pytest.fixture(scope="module")
def start_local_server():
    """A factory: ``start_local_server("gunicorn-gthread")`` starts that variant on a free
    127.0.0.1 port with the project's own local backend and returns its base URL; every
    server started is stopped when the module's tests are done."""
    from labapp.variants import get_variant
    from serverlab.backends import LocalBackend
    from serverlab.budget import Budget

    started = []

    def start(name: str) -> str:
        backend = LocalBackend(Budget())
        server = backend.start(get_variant(name))
        started.append((backend, server))
        return server.url_for_host

    yield start
    for backend, server in started:
        backend.stop(server)


#: The browser the browser tests drive: Debian's Chromium, never a downloaded one.
CHROMIUM = os.environ.get("SERVERLAB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]


def in_ci() -> bool:
    """Whether this is CI (``CI=true``): a missing tool fails the test there instead of skipping it."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(reason: str) -> None:
    """Skip the test for ``reason``; in CI fail it, since ``.ci/run`` must provision what is missing."""
    if in_ci():
        pytest.fail(f"CI=true but {reason}; .ci/run must provision it (apt-get install chromium; pip install -e '.[test]')")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium (headless, :data:`CHROMIUM`), started by Playwright for one test module;
    skipped without Playwright or Chromium (failed in CI)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("Playwright for Python is not installed")
    if not Path(CHROMIUM).exists():
        unavailable(f"{CHROMIUM} is missing (Debian's chromium package)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            yield chromium
        finally:
            chromium.close()
