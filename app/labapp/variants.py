"""Server variants: each declared once, as ``servers/<name>.toml``.

A declaration says which server runs the app, in which concurrency model, with
how many workers and threads, whether it keeps connections alive, and the
command that starts it. The container launcher (:mod:`labapp.serve`), the
compose file's tests, the local backend and the reports all read these files.

Example (``servers/gunicorn-gthread.toml``)::

    description = "Gunicorn, one worker process with a pool of threads"
    server = "gunicorn"
    model = "threaded"
    keep_alive = true
    workers = 1
    threads = 8
    command = ["{bin}/gunicorn", "--bind", "0.0.0.0:{port}", "--threads", "{threads}", ...]

``host_port`` (optional, unique across declarations, in 1024..65535) is the port on
127.0.0.1 where ``docker compose up`` publishes the variant; ``serverlab compose``
writes it into ``docker-compose.yml`` and refuses a declaration without one.

Command placeholders: ``{port}``, ``{workers}``, ``{threads}``, ``{connections}``,
``{python}`` (this interpreter), ``{bin}`` (its ``bin`` directory), ``{app}`` (the WSGI
target, in ``module:attribute`` form: ``labapp.wsgi:app``, the demo app, unless a user's
app is served, then ``labapp.userapp:app``, see :mod:`labapp.appshim`), and the name of
every entry of the optional ``[settings]`` table (server settings that are not
workers/threads but change results, e.g. Waitress's ``connection_limit``; they are
recorded with the variant), and ``{header_bytes}``: the optional ``[headers]`` table's
``max_bytes``, the request-head limit the server is configured with, declared with its
``scope`` (``"line"`` or ``"head"``) and what the server answers over it (``over`` for a
header, ``line_over`` for the request line: 431, 414, 400, or 0 for "closes without an
answer"); see :class:`HeaderLimit`.

A proxied variant (``proxy = "nginx"``) runs nginx in front of the app server in
the same container, sharing its CPU budget. Its ``command`` starts the app server on
a Unix socket (placeholder ``{socket}``); ``proxy_protocol`` says how nginx talks to
it (``"http"``: ``proxy_pass`` with upstream keep-alive; ``"uwsgi"``: ``uwsgi_pass``)
and ``proxy_workers`` how many nginx worker processes run. :mod:`labapp.proxy`
writes nginx's configuration and supervises both processes.
"""

from __future__ import annotations

import os
import sys
import tomllib
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Mapping

from labapp.appshim import wsgi_target
from serverlab.terms import APP_PORT, WorkerModel

#: The folder of declarations: ``servers/`` at the repository root (``/srv/servers`` in the image).
SERVERS_DIR = Path(os.environ.get("SERVERLAB_SERVERS_DIR") or Path(__file__).resolve().parents[2] / "servers")
#: Servers a declaration may name.
SERVERS = ("werkzeug", "gunicorn", "uwsgi", "waitress", "granian", "uvicorn")
#: Reverse proxies a declaration may put in front of its server.
PROXIES = ("nginx",)
#: How the proxy talks to the app server: HTTP/1.1 (``proxy_pass``) or the uwsgi protocol (``uwsgi_pass``).
PROXY_PROTOCOLS = ("http", "uwsgi")
#: Concurrency models, in the field's terms (:class:`serverlab.terms.WorkerModel`).
MODELS = tuple(model.value for model in WorkerModel)
#: The port every server listens on inside its container.
DEFAULT_PORT = APP_PORT
_REQUIRED = {"description": str, "server": str, "model": str, "keep_alive": bool, "workers": int, "threads": int, "command": list}
_OPTIONAL = {"connections": int, "settings": dict, "proxy": str, "proxy_protocol": str, "proxy_workers": int, "host_port": int,
             "headers": dict}
_PLACEHOLDERS = ("port", "workers", "threads", "connections", "python", "bin", "app")
#: Extra placeholder of proxied variants: the Unix socket the app server listens on.
_PROXY_PLACEHOLDERS = ("socket",)
#: Command placeholder of a variant with a ``[headers]`` table: its ``max_bytes``.
_HEADER_PLACEHOLDER = "header_bytes"
#: What ``[headers]`` may declare a server answers over its limit: a status, or 0 for
#: "closes the connection without an answer" (uWSGI's HTTP parser).
HEADER_REFUSALS = (0, 400, 414, 431)
#: ``[headers] scope``: the limit bounds each line (request line, one header line), or the whole head.
HEADER_SCOPES = ("line", "head")
#: The range of ``[headers] max_bytes`` (uWSGI's --buffer-size is at most 65535).
HEADER_BYTES = range(1024, 65536)
#: Upper bound of nginx worker processes (each is one more process in the same CPU budget).
MAX_PROXY_WORKERS = 16
#: Host ports a declaration's ``host_port`` may take (unprivileged TCP ports).
HOST_PORTS = range(1024, 65536)


@dataclass(frozen=True)
class HeaderLimit:
    """How large a request head a variant accepts, and what it answers beyond (``[headers]``).

    :param max_bytes: the limit in bytes (1024..65535), also the command placeholder ``{header_bytes}``.
    :param scope: ``"line"``: the request line and each header line may each be this long
        (Gunicorn, Werkzeug, nginx); ``"head"``: the request line and all headers together
        (uWSGI's ``--buffer-size``, Waitress, Granian).
    :param over: the status answered for a header over the limit (431, or 400 for nginx),
        or ``0``: the server closes the connection without an answer (uWSGI).
    :param line_over: the same for a request line (URL) over the limit (414 where the
        server tells the two apart).
    """

    max_bytes: int
    scope: str
    over: int
    line_over: int

    def describe(self) -> str:
        """E.g. ``"8190 B per line; 431 (URL: 414)"`` or ``"8192 B head; closes"``."""
        def status(code: int) -> str:
            return str(code) if code else "closes, no answer"

        where = "per line" if self.scope == "line" else "head"
        line = "" if self.line_over == self.over else f" (URL: {status(self.line_over)})"
        return f"{self.max_bytes} B {where}; {status(self.over)}{line}"


class VariantError(ValueError):
    """A declaration is missing, malformed, or asked for by a name that does not exist.

    The message names the file, the key, the bad value and the valid choices.
    """


@dataclass(frozen=True)
class Variant:
    """One server variant, as declared in ``servers/<name>.toml``.

    :param name: the file's stem, also the compose service name (e.g. ``"gunicorn-sync"``).
    :param server: one of :data:`SERVERS` (``"gunicorn"``, ``"uvicorn"`` ...).
    :param model: one of :data:`MODELS`.
    :param keep_alive: whether the server keeps HTTP/1.1 connections open between requests.
    :param workers: worker processes (1 for single-process servers).
    :param threads: threads per worker; ``0`` means one thread per connection, unbounded.
    :param connections: concurrent connections per worker: greenlets for gevent, connection
        threads at most for one thread per connection (``threads == 0``); else ``None``.
    :param command: argv template with the placeholders listed in this module's docstring;
        for a proxied variant, the app server's command (it listens on ``{socket}``).
    :param settings: other server settings that shape results, as ``(name, value)`` pairs
        (also command placeholders), e.g. ``(("connection_limit", 100),)``.
    :param proxy: the reverse proxy in front (``"nginx"``) or ``None`` for a direct server.
    :param proxy_protocol: ``"http"`` or ``"uwsgi"`` when proxied, else ``None``.
    :param proxy_workers: nginx worker processes when proxied, else ``None``.
    :param host_port: the 127.0.0.1 port ``docker compose up`` publishes this variant on
        (``None`` if undeclared). Where the lab is reachable, not how it serves: it is left
        out of :meth:`record`, so results files and ``--resume`` do not depend on it.
    :param headers: the request-head limit it is configured with and what it answers over
        it (:class:`HeaderLimit`, the ``[headers]`` table), or ``None`` if undeclared.
    """

    name: str
    description: str
    server: str
    model: str
    keep_alive: bool
    workers: int
    threads: int
    command: tuple[str, ...]
    connections: int | None = None
    settings: tuple[tuple[str, Any], ...] = ()
    proxy: str | None = None
    proxy_protocol: str | None = None
    proxy_workers: int | None = None
    host_port: int | None = None
    headers: HeaderLimit | None = None

    @property
    def slots(self) -> int | None:
        """Requests this variant can serve at once (workers × threads, or × connections for gevent).

        For one thread per connection (``threads == 0``), ``workers × connections``
        when ``connections`` bounds the threads, else ``None`` (unbounded). Used for Little's-law
        predictions: an I/O workload sleeping S seconds peaks at ``slots / S`` requests/s.
        """
        return slots_of(self.model, self.workers, self.threads, self.connections)

    @property
    def serves_app(self) -> bool:
        """Whether the command names its app through ``{app}`` (and so can serve a user's app)."""
        return any("{app}" in part for part in self.command)

    def with_counts(self, workers: int | None = None, threads: int | None = None) -> "Variant":
        """Return a copy with other worker/thread counts (``None`` keeps the declared one).

        :raises VariantError: if a count is below its minimum (workers 1, threads 0), or
            differs from the declared one while the command has no placeholder for it
            (the override would be recorded but never take effect).
        """
        for key, value in (("workers", workers), ("threads", threads)):
            fixed = getattr(self, key)
            if value is not None and value != fixed and not any("{" + key + "}" in part for part in self.command):
                raise VariantError(f"{self.name}: {key} is fixed at {fixed} (its command has no {{{key}}} placeholder); got {value}")
        if workers is not None and workers < 1:
            raise VariantError(f"{self.name}: workers must be >= 1, got {workers}")
        if threads is not None and (threads < 0 or (threads == 0 and self.threads != 0)):
            raise VariantError(f"{self.name}: threads must be >= 1, got {threads}")
        return replace(
            self,
            workers=self.workers if workers is None else workers,
            threads=self.threads if threads is None else threads,
        )

    def argv(self, port: int = DEFAULT_PORT, python: str | None = None, app: str | None = None) -> list[str]:
        """Return the command that starts this variant, placeholders filled.

        For a proxied variant this is the supervisor, ``python -m labapp.proxy NAME
        --port PORT``, which starts nginx on ``port`` and the app server
        (:meth:`server_argv`) behind it.

        :param port: the TCP port to listen on.
        :param python: the interpreter whose environment holds the servers (default: this one).
        :param app: what ``{app}`` becomes (default: :func:`labapp.appshim.wsgi_target` of this
            process's environment; a launcher preparing another process's environment passes its own).
        """
        python = python or sys.executable
        if self.proxy:
            return [python, "-m", "labapp.proxy", self.name, "--port", str(port)]
        return self._fill(python, port=port, app=app or wsgi_target())

    def server_argv(self, socket: str, python: str | None = None) -> list[str]:
        """Return a proxied variant's app-server command, listening on the Unix socket ``socket``.

        :param socket: path of the Unix socket the proxy connects to.
        :param python: the interpreter whose environment holds the servers (default: this one).
        :raises VariantError: if this variant is not proxied.
        """
        if not self.proxy:
            raise VariantError(f"{self.name}: not a proxied variant (no 'proxy' key)")
        return self._fill(python or sys.executable, socket=socket)

    def _fill(self, python: str, **extra: Any) -> list[str]:
        values = {
            "workers": self.workers,
            "threads": self.threads,
            "connections": self.connections or 0,
            "python": python,
            "bin": str(Path(python).parent),
            "app": wsgi_target(),
            **({_HEADER_PLACEHOLDER: self.headers.max_bytes} if self.headers else {}),
            **dict(self.settings),
            **extra,
        }
        return [part.format(**values) for part in self.command]

    def environment(self) -> dict[str, str]:
        """Return the ``SERVERLAB_*`` variables ``/lab/info`` reports for this variant."""
        return {
            "SERVERLAB_VARIANT": self.name,
            "SERVERLAB_SERVER": self.server,
            "SERVERLAB_MODEL": self.model,
            "SERVERLAB_WORKERS": str(self.workers),
            "SERVERLAB_THREADS": str(self.threads),
            "SERVERLAB_KEEP_ALIVE": "1" if self.keep_alive else "0",
        }

    def record(self) -> dict[str, Any]:
        """Return the effective configuration as a JSON-ready dict (for results files)."""
        data = asdict(self)
        del data["host_port"]
        data["command"] = list(self.command)
        data["settings"] = dict(self.settings)
        data["slots"] = self.slots
        return data


def slots_of(model: str, workers: int, threads: int, connections: int | None) -> int | None:
    """Requests a variant of these settings can serve at once: :attr:`Variant.slots`, for a
    configuration read back from a results file as well as for a declared variant.

    :param model: the worker model (:class:`serverlab.terms.WorkerModel`).
    :param workers: worker processes.
    :param threads: threads per worker (``0``: one thread per connection).
    :param connections: greenlets per gevent worker, or the bound on threads per connection; ``None``: unset.
    :return: workers × threads, × connections for gevent (or a bounded thread per connection);
        ``None`` for an unbounded thread per connection.
    """
    if model == WorkerModel.GEVENT:
        return workers * (connections or 1)
    if threads == 0:
        return workers * connections if connections else None
    return workers * threads


def _check(path: Path, data: Mapping[str, Any]) -> None:
    for key, kind in _REQUIRED.items():
        if key not in data:
            raise VariantError(f"{path}: missing key {key!r} (required: {', '.join(_REQUIRED)})")
        if not isinstance(data[key], kind) or (kind is int and isinstance(data[key], bool)):
            raise VariantError(f"{path}: key {key!r} must be a {kind.__name__}, got {data[key]!r}")
    for key in data:
        if key not in _REQUIRED and key not in _OPTIONAL:
            raise VariantError(f"{path}: unknown key {key!r} (valid: {', '.join([*_REQUIRED, *_OPTIONAL])})")
    for key, kind in _OPTIONAL.items():
        if key not in ("connections", "host_port") and key in data and (not isinstance(data[key], kind) or (kind is int and isinstance(data[key], bool))):
            raise VariantError(f"{path}: key {key!r} must be a {'table' if kind is dict else kind.__name__}, got {data[key]!r}")
    port = data.get("host_port")
    if port is not None and (isinstance(port, bool) or not isinstance(port, int) or port not in HOST_PORTS):
        raise VariantError(f"{path}: key 'host_port' must be an integer in {HOST_PORTS.start}..{HOST_PORTS.stop - 1}, got {port!r}")
    if data["server"] not in SERVERS:
        raise VariantError(f"{path}: key 'server' is {data['server']!r}; valid: {', '.join(SERVERS)}")
    if data["model"] not in MODELS:
        raise VariantError(f"{path}: key 'model' is {data['model']!r}; valid: {', '.join(MODELS)}")
    if data["workers"] < 1 or data["threads"] < 0:
        raise VariantError(f"{path}: workers must be >= 1 and threads >= 0, got {data['workers']} and {data['threads']}")
    connections = data.get("connections")
    if connections is not None and (isinstance(connections, bool) or not isinstance(connections, int) or connections < 1):
        raise VariantError(f"{path}: key 'connections' must be an integer >= 1, got {connections!r}")
    if data["model"] == WorkerModel.GEVENT and connections is None:
        raise VariantError(f"{path}: a gevent variant needs 'connections' (greenlets per worker)")
    if not data["command"] or not all(isinstance(part, str) for part in data["command"]):
        raise VariantError(f"{path}: key 'command' must be a non-empty list of strings")
    settings = data.get("settings", {})
    for key, value in settings.items():
        reserved = (*_PLACEHOLDERS, *_PROXY_PLACEHOLDERS, _HEADER_PLACEHOLDER)
        if key in reserved or not key.isidentifier():
            raise VariantError(f"{path}: settings key {key!r} must be an identifier other than {', '.join(reserved)}")
        if not isinstance(value, (int, str, bool)):
            raise VariantError(f"{path}: settings.{key} must be an integer, string or boolean, got {value!r}")
    placeholders = [*_PLACEHOLDERS, *settings]
    if "headers" in data:
        _check_headers(path, data["headers"])
        placeholders.append(_HEADER_PLACEHOLDER)
    _check_proxy(path, data)
    if data.get("proxy"):
        placeholders = [name for name in placeholders if name != "port"] + list(_PROXY_PLACEHOLDERS)
        if not any("{socket}" in part for part in data["command"]):
            raise VariantError(f"{path}: a proxied variant's command must listen on {{socket}} (the proxy's upstream)")
    for part in data["command"]:
        try:
            part.format(**{name: "" for name in placeholders})
        except (KeyError, IndexError, ValueError) as err:
            raise VariantError(f"{path}: command part {part!r} has a bad placeholder ({err}); valid: {', '.join(placeholders)}") from None


def _check_headers(path: Path, table: Mapping[str, Any]) -> None:
    keys = {"max_bytes": int, "scope": str, "over": int, "line_over": int}
    for key in table:
        if key not in keys:
            raise VariantError(f"{path}: unknown key 'headers.{key}' (valid: {', '.join(keys)})")
    for key, kind in keys.items():
        value = table.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise VariantError(f"{path}: key 'headers.{key}' must be a{'n integer' if kind is int else ' string'}, got {value!r}")
    if table["max_bytes"] not in HEADER_BYTES:
        raise VariantError(f"{path}: key 'headers.max_bytes' must be in {HEADER_BYTES.start}..{HEADER_BYTES.stop - 1}, "
                           f"got {table['max_bytes']}")
    if table["scope"] not in HEADER_SCOPES:
        raise VariantError(f"{path}: key 'headers.scope' is {table['scope']!r}; valid: {', '.join(HEADER_SCOPES)}")
    for key in ("over", "line_over"):
        if table[key] not in HEADER_REFUSALS:
            raise VariantError(f"{path}: key 'headers.{key}' is {table[key]}; valid: "
                               f"{', '.join(map(str, HEADER_REFUSALS))} (0: closes without an answer)")


def _check_proxy(path: Path, data: Mapping[str, Any]) -> None:
    proxy = data.get("proxy")
    keys = ("proxy_protocol", "proxy_workers")
    if proxy is None:
        for key in keys:
            if key in data:
                raise VariantError(f"{path}: key {key!r} needs 'proxy' (one of {', '.join(PROXIES)})")
        return
    if proxy not in PROXIES:
        raise VariantError(f"{path}: key 'proxy' is {proxy!r}; valid: {', '.join(PROXIES)}")
    for key in keys:
        if key not in data:
            raise VariantError(f"{path}: a proxied variant needs {key!r}")
    if data["proxy_protocol"] not in PROXY_PROTOCOLS:
        raise VariantError(f"{path}: key 'proxy_protocol' is {data['proxy_protocol']!r}; valid: {', '.join(PROXY_PROTOCOLS)}")
    workers = data["proxy_workers"]
    if isinstance(workers, bool) or not 1 <= workers <= MAX_PROXY_WORKERS:
        raise VariantError(f"{path}: key 'proxy_workers' must be an integer in 1..{MAX_PROXY_WORKERS}, got {workers!r}")


def load_variant(path: Path) -> Variant:
    """Load and validate one declaration file.

    :raises VariantError: if the file is not valid TOML or breaks the schema.
    """
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8-sig"))  # a UTF-8 BOM is accepted
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise VariantError(f"{path}: {err}") from None
    _check(path, data)
    settings = tuple(sorted(data.get("settings", {}).items()))
    headers = HeaderLimit(**data["headers"]) if "headers" in data else None
    return Variant(name=path.stem, **{**data, "command": tuple(data["command"]), "settings": settings, "headers": headers})


def load_variants(directory: Path | None = None) -> dict[str, Variant]:
    """Load every ``*.toml`` declaration in ``directory`` (default :data:`SERVERS_DIR`).

    :return: variants by name, sorted by name.
    :raises VariantError: if the folder has no declarations, any is invalid, or two
        declare the same ``host_port`` (naming both files, the port and a free one).
    """
    directory = directory or SERVERS_DIR
    paths = sorted(directory.glob("*.toml"), key=lambda path: path.stem)  # by name: "granian" before "granian-asgi"
    if not paths:
        raise VariantError(f"{directory}: no server declarations (*.toml) found")
    variants = {path.stem: load_variant(path) for path in paths}
    owners: dict[int, Path] = {}
    for path in paths:
        port = variants[path.stem].host_port
        if port is not None and port in owners:
            raise VariantError(f"{path}: host_port {port} is already declared by {owners[port]}; "
                               f"each variant needs its own (next free: {next_free_host_port(variants.values())})")
        if port is not None:
            owners[port] = path
    return variants


def next_free_host_port(variants: Iterable[Variant], start: int = 8001) -> int:
    """The lowest host port from ``start`` (default 8001, the first variant's) that no variant declares.

    :param variants: the declarations already taken into account.
    :param start: the first candidate port (1024..65535).
    :raises VariantError: if every port from ``start`` to 65535 is taken.
    """
    taken = {variant.host_port for variant in variants}
    for port in range(start, HOST_PORTS.stop):
        if port not in taken:
            return port
    raise VariantError(f"no free host port in {start}..{HOST_PORTS.stop - 1}")


def get_variant(name: str, directory: Path | None = None) -> Variant:
    """Return the variant called ``name``.

    :raises VariantError: naming the valid variants, if there is none by that name.
    """
    variants = load_variants(directory)
    if name not in variants:
        raise VariantError(f"unknown server variant {name!r}; valid: {', '.join(variants)}")
    return variants[name]


def env_counts(environ: Mapping[str, str] | None = None) -> tuple[int | None, int | None]:
    """Read ``SERVERLAB_WORKERS`` / ``SERVERLAB_THREADS`` overrides (empty means unset).

    :raises VariantError: if a value is not an integer.
    """
    environ = os.environ if environ is None else environ
    counts: list[int | None] = []
    for var in ("SERVERLAB_WORKERS", "SERVERLAB_THREADS"):
        raw = environ.get(var, "").strip()
        try:
            counts.append(int(raw) if raw else None)
        except ValueError:
            raise VariantError(f"{var}={raw!r} is not an integer") from None
    return counts[0], counts[1]
