"""The launcher module every server imports when the user's own app is served: ``labapp.userapp:app``.

Importing it resolves ``$SERVERLAB_APP`` (``module:attribute`` or ``module:factory()``)
through :func:`labapp.appshim.load_app`, the same way for every server, and wraps the
app so that the lab's ``GET /healthz`` is answered in front of it; nothing else is
added to a request's path. It resolves at import (uWSGI reads ``app`` from the module's
dictionary, so it must be a real attribute), which makes a server fail at start-up,
not at its first request, when the app does not import. Without ``$SERVERLAB_APP``
(imported by a tool, not a server) ``app`` answers every request with 500 saying so.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Iterable

from labapp.appshim import APP_ENV, load_app


def _unset(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """The WSGI app when ``$SERVERLAB_APP`` is unset: 500, naming the variable."""
    body = f"{APP_ENV} is not set: labapp.userapp serves the app it names".encode()
    start_response("500 Internal Server Error", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


app: Callable[..., Iterable[bytes]] = load_app() if os.environ.get(APP_ENV, "").strip() else _unset
