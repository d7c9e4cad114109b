"""The launcher module every server imports when the user's own app is served: ``labapp.userapp:app``.

Reading its ``app`` attribute resolves ``$SERVERLAB_APP`` (``module:attribute`` or
``module:factory()``) through :func:`labapp.appshim.load_app`, the same way for every
server, and wraps the app so that the lab's ``GET /healthz`` is answered in front of
it; nothing else is added to a request's path. The attribute is resolved on first
access (``getattr(module, "app")``, as Gunicorn, uWSGI, Granian and Waitress all do),
so importing this module alone does nothing.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from labapp.appshim import load_app

    app = load_app()
    globals()["app"] = app  # resolved once per process
    return app
