"""What protects the web UI: a same-origin check on every state-changing request, and the
lab's bounds on Locust's own ``POST /swarm``.

Locust's Flask app answers any origin (it installs Flask-CORS for every route) and its
``/swarm`` takes any user count and any host. :class:`Guard` adds one ``before_request``
hook to that app (Flask's own hook, nothing in Locust's pages changes):

* **Cross-origin refusal.** A ``POST``/``PUT``/``PATCH``/``DELETE`` whose ``Origin`` (or, without
  one, ``Referer``) is not this UI's own origin is refused with 403, and so is one whose
  ``Host`` is not a local name (``localhost``, ``127.0.0.1``, ``::1``, plus
  ``SERVERLAB_UI_HOSTNAMES``): a web page the user visits cannot start load, stop it or
  reset it, not even through DNS rebinding. Clients that send neither header (curl,
  scripts) are not a browser being misused and pass.
* **Bounds on /swarm.** The form is checked by :func:`serverlab.ui.limits.check_swarm_form`
  (users, spawn rate, host limited to the lab's servers, workload and its parameters,
  no unknown fields: Locust would write any field onto its parsed options) and replaced
  by its normalized copy, so Locust's handler only ever sees checked values.
* **No user-class editing.** ``POST /user`` (the class picker's per-class host and
  weight) is refused: the lab's users take their host from the Host field.

Refusals are JSON ``{"success": false, "message": ...}`` with a 4xx status. The one
exception is Locust's own start form, whose script shows a message only from a 2xx
answer: a ``/swarm`` request from a page of this UI (its own ``Origin``, which browsers
send with every POST) gets the same refusal with status 200, as Locust answers its own
bad ``user_count``. Nothing starts either way.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Protocol
from urllib.parse import urlsplit

from flask import Flask, jsonify, request
from werkzeug.datastructures import ImmutableMultiDict

from serverlab.ui.limits import SwarmForm, UIRefused

#: Host names a state-changing request may be addressed to (the UI is published on 127.0.0.1).
LOCAL_HOSTNAMES = frozenset({"localhost", "127.0.0.1", "::1"})
#: Environment variable adding host names (comma-separated) for a UI served under another name.
HOSTNAMES_ENV = "SERVERLAB_UI_HOSTNAMES"
#: Methods that change nothing (no check).
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Largest request body the UI reads (bytes); a start form is well under 1 KiB.
MAX_BODY_BYTES = 64 * 1024


def _origin_of(url: str) -> tuple[str, str] | None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return parts.scheme, parts.netloc.lower()


def _hostname(netloc: str) -> str:
    return (urlsplit("//" + netloc).hostname or "").lower()


def cross_origin_problem(method: str, host: str, origin: str | None, referer: str | None,
                         scheme: str = "http", hostnames: frozenset[str] = LOCAL_HOSTNAMES) -> str | None:
    """Why a request must be refused as cross-origin, or ``None`` when it may proceed.

    :param method: the HTTP method (safe methods always pass).
    :param host: the ``Host`` header (``"127.0.0.1:8089"``).
    :param origin: the ``Origin`` header, or ``None``.
    :param referer: the ``Referer`` header, or ``None`` (read only without ``Origin``).
    :param scheme: the scheme the request arrived on.
    :param hostnames: host names the UI answers state-changing requests on.
    :return: a message naming the origin and this UI's, or ``None``.
    """
    if method.upper() in SAFE_METHODS:
        return None
    if _hostname(host) not in hostnames:
        return (f"refused: this UI changes state only when addressed as one of {', '.join(sorted(hostnames))} "
                f"(got Host {host!r}); add the name to {HOSTNAMES_ENV} to serve it under another")
    own = (scheme, host.lower())
    if origin is not None:
        theirs = _origin_of(origin)
        if theirs != own:
            return f"refused: cross-origin request from {origin!r}; this UI is {scheme}://{host}"
        return None
    if referer:
        theirs = _origin_of(referer)
        if theirs != own:
            return f"refused: cross-origin request (Referer {referer[:80]!r}); this UI is {scheme}://{host}"
    return None


class GuardedLab(Protocol):
    """What the guard asks of the lab's UI (implemented by :class:`serverlab.ui.LabUI`)."""

    def check_swarm(self, form: dict[str, list[str]]) -> SwarmForm:
        """Check a /swarm form and prepare the test it starts; raise :class:`UIRefused`."""

    def before_stop(self) -> None:
        """Locust's Stop was pressed: end a running comparison too."""


def _extra_hostnames() -> frozenset[str]:
    names = {n.strip().lower() for n in os.environ.get(HOSTNAMES_ENV, "").split(",") if n.strip()}
    return LOCAL_HOSTNAMES | names


class Guard:
    """Installs the checks described in the module docstring on Locust's Flask app.

    :param lab: checks /swarm forms and hears Stop.
    :param current_host: the URL loaded now or next, for the ``host`` of a refusal's answer.
    """

    def __init__(self, lab: GuardedLab, current_host: Callable[[], str]) -> None:
        self.lab = lab
        self.current_host = current_host
        self.hostnames = _extra_hostnames()

    def install(self, app: Flask) -> None:
        """Register the ``before_request`` hook and cap request bodies at :data:`MAX_BODY_BYTES`."""
        app.config.update(MAX_CONTENT_LENGTH=MAX_BODY_BYTES)
        app.before_request(self._before_request)

    def _refuse(self, message: str, status: int) -> Any:
        # a browser page of this UI (its Origin passed the check): Locust's start form reads only 2xx answers
        own_form = request.endpoint == "locust.swarm" and bool(request.headers.get("Origin"))
        body = jsonify({"success": False, "message": message, "host": self.current_host()})
        return (body, 200) if own_form else (body, status)

    def _before_request(self) -> Any:
        problem = cross_origin_problem(request.method, request.host, request.headers.get("Origin"),
                                       request.headers.get("Referer"), request.scheme, self.hostnames)
        if problem:
            return jsonify({"success": False, "message": problem}), 403
        if request.method != "POST":
            return None
        endpoint = request.endpoint or ""
        if endpoint == "locust.update_user":
            return self._refuse("editing user classes is off in the lab: the Host field chooses the server, "
                                "Custom parameters the workload", 403)
        if endpoint == "locust.stop":
            self.lab.before_stop()
            return None
        if endpoint != "locust.swarm":
            return None
        if request.mimetype not in ("application/x-www-form-urlencoded", "multipart/form-data"):
            return self._refuse(f"POST /swarm takes form fields (user_count, spawn_rate, host, ...), as Locust's "
                                f"start form sends them; got {request.mimetype or 'no Content-Type'}", 415)
        try:
            checked = self.lab.check_swarm(request.form.to_dict(flat=False))
        except UIRefused as err:
            return self._refuse(str(err), err.status)
        # Locust's handler reads request.form: it sees only the checked, normalized fields.
        request.form = ImmutableMultiDict([(k, v) for k, values in checked.fields.items() for v in values])
        return None
