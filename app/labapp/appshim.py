"""Serving the user's own WSGI app: one launcher path for every server.

Each server names its app its own way: Gunicorn and Flask accept ``module:attribute``
and ``module:factory()``, uWSGI takes ``--module module:callable`` (no calls), Granian
needs ``--factory``, Waitress ``--call``, and Werkzeug our own
:mod:`labapp.devserver`. Rather than translate the user's target into five syntaxes
(and test five ways of calling a factory), every declaration's ``{app}`` placeholder
names one module: :mod:`labapp.userapp`, whose ``app`` attribute this module resolves
from :data:`APP_ENV` the same way for every server. So each server imports the same
callable through the same code, and the only per-server difference left is the
server itself.

The resolved app is wrapped in :class:`HealthMiddleware`, which answers the lab's
``GET /healthz`` (the container healthcheck and the runner's start and hang checks)
without calling the app; every other request goes to the app unchanged.

* :func:`parse_target` / :func:`resolve` — ``module:attr`` or ``module:factory(args)``
  (literal arguments only, as Gunicorn) to a WSGI callable;
* :func:`wsgi_target` — what ``{app}`` becomes: :data:`DEFAULT_TARGET` (the demo app)
  unless :data:`APP_ENV` is set, then :data:`SHIM_TARGET`;
* :func:`run_setup` — the app's setup commands (:data:`SETUP_ENV`), run before the server;
* ``python -m labapp.appshim --check`` — import the app once, print the import
  error's last line and exit 3 if it does not import.

Stdlib only: it runs before the server starts and on the host.
"""

from __future__ import annotations

import ast
import importlib
import json
import os
import subprocess
import sys
import traceback
from typing import Any, Callable, Iterable

#: The demo app's WSGI target: ``{app}`` when no app of the user's is named.
DEFAULT_TARGET = "labapp.wsgi:app"
#: The launcher module's target: ``{app}`` when the user's app is served.
SHIM_TARGET = "labapp.userapp:app"
#: Environment variable: the user's app target, ``module:attr`` or ``module:factory()``.
APP_ENV = "SERVERLAB_APP"
#: Environment variable: the app's folder (its setup commands run there).
APP_DIR_ENV = "SERVERLAB_APP_DIR"
#: Environment variable: the app's setup commands, a JSON list of shell command lines.
SETUP_ENV = "SERVERLAB_APP_SETUP"
#: The path the lab answers itself in front of a user's app (its health check).
HEALTH_PATH = "/healthz"
#: Seconds one setup command may take before it counts as failed.
SETUP_TIMEOUT_S = 300
#: Exit status of ``--check`` and of a failed setup (distinct from a server's own 1 and 2).
FAILED_STATUS = 3
#: Lines of a failed setup command's output that are shown.
SETUP_OUTPUT_LINES = 20


class TargetError(ValueError):
    """A WSGI target is not ``module:attribute`` or ``module:factory(...)``, or does not
    resolve to a callable; the message names the target and what was wrong."""


def parse_target(target: str) -> tuple[str, str, tuple[Any, ...] | None, dict[str, Any]]:
    """Split ``module:attr`` or ``module:factory(args)`` into its parts.

    :param target: e.g. ``"flaskr:create_app()"`` or ``"wsgi:app"``; a bare module
        name means its ``app`` attribute (Flask's and Gunicorn's convention differ; the lab
        asks for the attribute to be named when it is not ``app``).
    :return: ``(module, attribute, call args or None, call kwargs)``; args is ``None``
        when the attribute is not called.
    :raises TargetError: for an empty module, a bad expression or non-literal arguments.
    """
    module, _, expr = target.strip().partition(":")
    module, expr = module.strip(), expr.strip() or "app"
    if not module or not all(part.isidentifier() for part in module.split(".")):
        raise TargetError(f"WSGI target {target!r}: {module!r} is not a module name (expected module:attribute "
                          "or module:factory(), e.g. myapp:app or myapp:create_app())")
    try:
        node = ast.parse(expr, mode="eval").body
    except SyntaxError:
        raise TargetError(f"WSGI target {target!r}: {expr!r} is not an attribute name or a call") from None
    args: tuple[Any, ...] | None = None
    kwargs: dict[str, Any] = {}
    if isinstance(node, ast.Call):
        try:
            args = tuple(ast.literal_eval(arg) for arg in node.args)
            kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords if kw.arg}
        except ValueError:
            raise TargetError(f"WSGI target {target!r}: factory arguments must be literals (strings, numbers)") from None
        node = node.func
    if not isinstance(node, ast.Name):
        raise TargetError(f"WSGI target {target!r}: {expr!r} must name one attribute of {module} (e.g. app or create_app())")
    return module, node.id, args, kwargs


def resolve(target: str) -> Callable[..., Any]:
    """Import the target's module and return its WSGI callable (calling the factory if asked).

    :raises TargetError: if the attribute is missing or the result is not callable.
    :raises Exception: whatever importing the module or calling the factory raises (the
        app's own errors are not wrapped: ``--check`` shows their last line).
    """
    module_name, attribute, args, kwargs = parse_target(target)
    module = importlib.import_module(module_name)
    try:
        obj = getattr(module, attribute)
    except AttributeError:
        public = sorted(name for name in vars(module) if not name.startswith("_"))[:12]
        raise TargetError(f"WSGI target {target!r}: module {module_name} has no attribute {attribute!r} "
                          f"(it has: {', '.join(public) or 'nothing public'})") from None
    if args is not None:
        obj = obj(*args, **kwargs)
    if not callable(obj):
        raise TargetError(f"WSGI target {target!r} is a {type(obj).__name__}, not a WSGI callable")
    return obj


class HealthMiddleware:
    """Answers ``GET /healthz`` with 200 ``ok`` itself and passes every other request to ``app``.

    :param app: the user's WSGI callable.
    """

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """The WSGI entry point."""
        if environ.get("PATH_INFO") == HEALTH_PATH and environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
            start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
            return [b"ok"]
        return self.app(environ, start_response)


def load_app(environ: dict[str, str] | None = None) -> HealthMiddleware:
    """The user's app named by :data:`APP_ENV`, wrapped in :class:`HealthMiddleware`.

    :raises TargetError: if :data:`APP_ENV` is unset or names no callable.
    """
    environ = os.environ if environ is None else environ
    target = environ.get(APP_ENV, "").strip()
    if not target:
        raise TargetError(f"{APP_ENV} is not set: it names the app to serve (module:attribute or module:factory())")
    return HealthMiddleware(resolve(target))


def wsgi_target(environ: dict[str, str] | None = None) -> str:
    """What a declaration's ``{app}`` placeholder becomes: :data:`SHIM_TARGET` when
    :data:`APP_ENV` names a user's app, else :data:`DEFAULT_TARGET` (the demo app)."""
    environ = os.environ if environ is None else environ
    return SHIM_TARGET if environ.get(APP_ENV, "").strip() else DEFAULT_TARGET


def setup_commands(environ: dict[str, str] | None = None) -> list[str]:
    """The setup command lines from :data:`SETUP_ENV` (a JSON list; empty when unset).

    :raises TargetError: if the variable is not a JSON list of strings.
    """
    environ = os.environ if environ is None else environ
    raw = environ.get(SETUP_ENV, "").strip()
    if not raw:
        return []
    try:
        commands = json.loads(raw)
    except ValueError:
        commands = None
    if not isinstance(commands, list) or not all(isinstance(c, str) for c in commands):
        raise TargetError(f"{SETUP_ENV} must be a JSON list of command lines, got {raw[:80]!r}")
    return commands


def run_setup(environ: dict[str, str] | None = None) -> str | None:
    """Run the app's setup commands in order, in :data:`APP_DIR_ENV`, as this (the app's) user,
    with this interpreter's ``bin`` folder first on ``PATH``.

    :return: ``None`` when all succeeded (or there are none), else the error: the failed
        command, its exit status and the last :data:`SETUP_OUTPUT_LINES` lines of its output.
    """
    environ = dict(os.environ if environ is None else environ)
    try:
        commands = setup_commands(environ)
    except TargetError as err:
        return str(err)
    cwd = environ.get(APP_DIR_ENV) or None
    # the servers' environment first on PATH, so `flask ...` is this interpreter's Flask
    environ["PATH"] = os.pathsep.join(filter(None, [os.path.dirname(sys.executable), environ.get("PATH")]))
    for command in commands:
        try:
            done = subprocess.run(["/bin/sh", "-c", command], cwd=cwd, env=environ, capture_output=True, text=True,
                                  errors="replace", timeout=SETUP_TIMEOUT_S, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return f"setup command {command!r} did not finish within {SETUP_TIMEOUT_S} s"
        except OSError as err:
            return f"setup command {command!r} could not start: {err}"
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-SETUP_OUTPUT_LINES:])
            return f"setup command {command!r} failed with exit status {done.returncode}:\n{tail}"
    return None


def setup_or_exit() -> None:
    """Run the setup commands (:func:`run_setup`); on failure print ``error: ...`` and exit
    :data:`FAILED_STATUS`, so the server never starts and the variant fails with the output."""
    error = run_setup()
    if error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        sys.exit(FAILED_STATUS)


def _missing_variable(err: BaseException) -> str | None:
    """The environment variable a ``KeyError`` from ``os.environ[...]`` was about, if it was one."""
    if not isinstance(err, KeyError) or not err.args or not isinstance(err.args[0], str):
        return None
    frames = traceback.extract_tb(err.__traceback__)
    return err.args[0] if any("environ" in (frame.line or "") for frame in frames) else None


def check(environ: dict[str, str] | None = None) -> str | None:
    """Import the user's app as a server would; ``None`` if it imports, else one line saying why.

    A ``KeyError`` from reading ``os.environ`` names the variable the app needs.
    """
    try:
        load_app(environ)
    except TargetError as err:
        return str(err)
    except BaseException as err:  # the app's own import error, whatever it is
        variable = _missing_variable(err)
        if variable:
            return (f"the app reads the environment variable {variable} and it is not set; set it in the "
                    f"experiment's [app] env table (if it names a service such as a database, the lab does not "
                    f"start one: the app must work with what runs in its own container, e.g. SQLite)")
        last = traceback.format_exception_only(type(err), err)[-1].strip()
        return f"{os.environ.get(APP_ENV) if environ is None else environ.get(APP_ENV)}: does not import: {last}"
    return None


def main(argv: list[str] | None = None) -> int:
    """``python -m labapp.appshim --check``: 0 if the app imports, :data:`FAILED_STATUS` (and the reason) if not."""
    args = sys.argv[1:] if argv is None else argv
    if args != ["--check"]:
        print("usage: python -m labapp.appshim --check", file=sys.stderr)
        return 2
    error = check()
    if error:
        print(f"error: {error}", file=sys.stderr)
        return FAILED_STATUS
    print("ok: the app imports")
    return 0


if __name__ == "__main__":
    sys.exit(main())
