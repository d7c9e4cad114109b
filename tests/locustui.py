"""A real Locust web UI (local runner) of the lab's locustfile, and a real server of the lab's app,
both on 127.0.0.1, for the tests that drive the UI over HTTP without Docker
(tests/test_ui_http.py, tests/test_ui_compare_local.py).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping

import pytest
from werkzeug.serving import make_server

from labapp import create_app

REPO_ROOT = Path(__file__).resolve().parents[1]
LOCUSTFILE = REPO_ROOT / "locustfiles" / "locustfile.py"
VENV_BIN = Path(sys.executable).parent
#: How long the web UI has to answer after ``locust`` starts (seconds).
UI_START_TIMEOUT_S = 30.0


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call_json(url: str, payload: dict | None = None, timeout: float = 30) -> dict:
    """GET ``url``, or POST ``payload`` as JSON from the web UI's own origin (the guard refuses other
    origins); the decoded JSON answer.

    :raises urllib.error.URLError: when the UI does not answer (or answers 4xx/5xx).
    """
    origin = url.split("/serverlab", 1)[0]
    request = urllib.request.Request(url, data=None if payload is None else json.dumps(payload).encode(),
                                     headers={"Content-Type": "application/json", "Origin": origin})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


@contextmanager
def app_server() -> Iterator[str]:
    """A threaded Werkzeug server of the lab's app on a free 127.0.0.1 port; yields its base URL."""
    server = make_server("127.0.0.1", 0, create_app(), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()


@contextmanager
def locust_web_ui(env: Mapping[str, str], log: Path) -> Iterator[str]:
    """``locust -f locustfiles/locustfile.py`` with its web UI on a free 127.0.0.1 port; yields the UI's URL
    once ``/serverlab/state`` answers, and stops Locust afterwards.

    :param env: variables added to this process's environment (``SERVERLAB_*``).
    :param log: where Locust's output goes (its tail is in every failure message).
    :raises pytest.fail.Exception: Locust exited, or its UI did not answer within :data:`UI_START_TIMEOUT_S`.
    """
    port = free_port()
    with log.open("w") as out:
        proc = subprocess.Popen([str(VENV_BIN / "locust"), "-f", str(LOCUSTFILE), "--web-host", "127.0.0.1",
                                 "--web-port", str(port)], cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1", **env})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + UI_START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"locust exited {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                urllib.request.urlopen(url + "/serverlab/state", timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"the web UI never answered:\n{log.read_text()[-3000:]}")
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
