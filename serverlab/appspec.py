"""The user's own app: the ``[app]`` table of an experiment, or ``serverlab run --app PATH``.

Example::

    [app]
    path = "../examples/flaskr"          # the project folder (relative to the experiment file)
    wsgi = "flaskr:create_app()"         # module:attribute or module:factory(); found when left out
    requirements = "requirements.txt"    # the default when that file exists
    env = { SECRET_KEY = "lab" }         # environment variables for the app
    setup = ["flask --app flaskr init-db"]   # run in the container before the server starts
    writable = ["instance"]              # put on the container's tmpfs (the root filesystem stays read-only)

A folder with a ``pyproject.toml`` is installed as a package (its dependencies with
it), as ``pip install PATH`` would. Every check here runs before anything starts:
the folder exists, a WSGI target is given or found (:func:`find_wsgi`), and no
environment variable points the app at a service the lab does not start
(:func:`check_services`). Whether the target imports is checked in the app's image
(:mod:`serverlab.appimage`).
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping, Protocol, TypeVar
from urllib.parse import urlsplit

from labapp.appshim import TargetError, parse_target
from serverlab import LabError
from serverlab.requestmix import DEFAULT_REQUEST, RequestSpec, load_requests, request_workloads



class ServesApps(Protocol):
    """What :func:`with_app` and :func:`apply_cli_app` read of an experiment
    (:class:`serverlab.experiment.Experiment`, a dataclass they :func:`~dataclasses.replace`).

    Typed by its shape so that this module need not import :mod:`serverlab.experiment`,
    which imports it.
    """

    @property
    def name(self) -> str:
        """The experiment's name (its file's stem)."""

    @property
    def path(self) -> str:
        """The experiment file's path (``""`` when built in code)."""

    @property
    def app(self) -> AppSpec | None:
        """The app it serves (``None``: the lab's own)."""

    @property
    def requests(self) -> tuple[RequestSpec, ...]:
        """Its declared ``[[requests]]``."""

    def variants(self, declared: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
        """The experiment's variants by name (see :meth:`serverlab.experiment.Experiment.variants`)."""


#: An experiment type (:class:`serverlab.experiment.Experiment`): what goes in comes back, changed.
ExperimentT = TypeVar("ExperimentT", bound=ServesApps)

#: Where the app's folder is copied in its image (and put on ``PYTHONPATH``).
CONTAINER_APP_DIR = "/srv/userapp"
#: Folders never copied into the image nor hashed.
SKIPPED_DIRS = {".git", ".hg", "__pycache__", ".venv", "venv", ".tox", ".pytest_cache", ".mypy_cache", "node_modules",
                "build", "dist", ".eggs"}
#: Files never copied nor hashed.
SKIPPED_SUFFIXES = (".pyc", ".pyo")
#: An app folder larger than this is refused (bytes): it would all be copied into an image.
MAX_APP_BYTES = 200 * 2**20
#: ... or with more files than this.
MAX_APP_FILES = 10_000
#: URL schemes of values that need no other service (a file in the app's own container).
LOCAL_SCHEMES = ("sqlite", "file")
#: Setup commands at most per app.
MAX_SETUP = 20
_KEYS = {"path", "wsgi", "requirements", "env", "setup", "writable"}
_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_URL = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")


class AppError(LabError):
    """The app cannot be served as given: a missing folder, no WSGI target, a bad key,
    or a service it needs that the lab does not start. The message says which and how to fix it."""


@dataclass(frozen=True)
class AppSpec:
    """A user's app, validated.

    :param path: the project folder (absolute).
    :param wsgi: ``module:attribute`` or ``module:factory()``.
    :param requirements: the requirements file (absolute) or ``None``.
    :param package: the folder has a ``pyproject.toml`` and is installed as a package.
    :param env: ``(name, value)`` environment variables for the app.
    :param setup: shell command lines run in the container before the server starts.
    :param writable: absolute paths in the container put on its tmpfs.
    :param digest: 16 hex digits over the app's files and requirements (:func:`app_digest`).
    """

    path: str
    wsgi: str
    requirements: str | None = None
    package: bool = False
    env: tuple[tuple[str, str], ...] = ()
    setup: tuple[str, ...] = ()
    writable: tuple[str, ...] = ()
    digest: str = ""

    def environment(self) -> dict[str, str]:
        """The variables a server container gets: the app's own plus the launcher's (:mod:`labapp.appshim`)."""
        import json

        from labapp.appshim import APP_DIR_ENV, APP_ENV, SETUP_ENV

        return {**dict(self.env), APP_ENV: self.wsgi, APP_DIR_ENV: CONTAINER_APP_DIR, SETUP_ENV: json.dumps(list(self.setup))}


def app_files(root: Path, skipped: tuple[str, ...] = ()) -> list[Path]:
    """The app's files, relative to ``root``, sorted; caches, VCS folders and ``skipped`` folders left out.

    :param skipped: relative folder paths left out too (the writable ones: they are the app's runtime data).
    :raises AppError: if the folder holds more than :data:`MAX_APP_FILES` files or :data:`MAX_APP_BYTES` bytes.
    """
    files: list[Path] = []
    total = 0
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root)
        dirnames[:] = sorted(d for d in dirnames if d not in SKIPPED_DIRS and not d.endswith(".egg-info")
                             and str(rel_dir / d) not in skipped)
        for name in filenames:
            path = Path(dirpath) / name
            if name.endswith(SKIPPED_SUFFIXES) or not path.is_file():
                continue
            files.append(rel_dir / name)
            total += path.stat().st_size
            if len(files) > MAX_APP_FILES or total > MAX_APP_BYTES:
                raise AppError(f"{root}: more than {MAX_APP_FILES} files or {MAX_APP_BYTES // 2**20} MiB; "
                               "point --app at the project folder itself (not a parent) or move data out of it")
    return sorted(files)


def app_digest(root: Path, requirements: Path | None, skipped: tuple[str, ...] = ()) -> str:
    """16 hex digits of SHA-256 over every file's relative path and bytes, plus the requirements file's."""
    sha = hashlib.sha256()
    for rel in app_files(root, skipped):
        sha.update(str(rel).encode() + b"\0" + (root / rel).read_bytes() + b"\0")
    if requirements is not None:
        sha.update(b"requirements\0" + requirements.read_bytes())
    return sha.hexdigest()[:16]


_ATTRIBUTE = re.compile(r"^(app|application)\s*(:[^=]*)?=", re.MULTILINE)
_FACTORY = re.compile(r"^def (create_app|make_app)\(", re.MULTILINE)


def _module_target(module: str, source: str) -> str | None:
    attribute = _ATTRIBUTE.search(source)
    if attribute:
        return f"{module}:{attribute.group(1)}"
    factory = _FACTORY.search(source)
    return f"{module}:{factory.group(1)}()" if factory else None


def find_wsgi(root: Path) -> str:
    """Find the app's WSGI target without importing it, as ``flask run`` looks for one.

    In order: ``wsgi.py``, then ``app.py``, then each package (a folder with
    ``__init__.py``) and module at the top level; the first that defines ``app`` or
    ``application`` at module level, or a ``create_app``/``make_app`` factory, wins.

    :raises AppError: if none does, or two packages or modules do (naming them).
    """
    def read(path: Path) -> str:
        try:
            return path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    for name in ("wsgi", "app"):
        if (root / f"{name}.py").is_file():
            found = _module_target(name, read(root / f"{name}.py"))
            if found:
                return found
    candidates = []
    for entry in sorted(root.iterdir()):
        if entry.is_dir() and (entry / "__init__.py").is_file() and entry.name.isidentifier():
            found = _module_target(entry.name, read(entry / "__init__.py"))
        elif entry.suffix == ".py" and entry.stem.isidentifier() and entry.stem not in ("setup", "conftest", "wsgi", "app"):
            found = _module_target(entry.stem, read(entry))
        else:
            continue
        if found:
            candidates.append(found)
    if len(candidates) == 1:
        return candidates[0]
    if candidates:
        raise AppError(f"{root}: more than one WSGI app found ({', '.join(candidates)}); name one with "
                       "--wsgi or the [app] table's wsgi key")
    raise AppError(f"{root}: no WSGI app found (looked for wsgi.py, app.py and top-level packages or modules "
                   "defining app or application, or a create_app()/make_app() factory); name it with "
                   "--wsgi module:attribute (or module:factory()) or the [app] table's wsgi key")


def check_services(env: Mapping[str, str], where: str) -> None:
    """Refuse environment values that point the app at a network service (a database, a cache ...).

    The lab starts the server variants only, one container each: nothing else listens
    there, and containers reach nothing outside the lab's network.

    :raises AppError: naming the variable, its value, the service's host and what to do instead.
    """
    for name, value in env.items():
        match = _URL.match(value)
        if not match or match.group(1).lower().split("+")[0] in LOCAL_SCHEMES:
            continue
        host = urlsplit(value).hostname or "?"
        raise AppError(f"{where}: environment variable {name} = {value!r} points the app at a "
                       f"{match.group(1)} service on host {host!r}, which the lab does not start (it runs only the "
                       "server variants, one container each, with no other service reachable); point "
                       f"{name} at something inside the app's own container, e.g. SQLite on a writable path "
                       f"(sqlite:///{CONTAINER_APP_DIR}/instance/app.db with writable = [\"instance\"])")


def _writable(where: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise AppError(f"{where}: key 'writable' = {value!r} is invalid; expected a list of paths in the app folder")
    paths = []
    for item in value:
        rel = Path(item)
        if rel.is_absolute() or ".." in rel.parts or str(rel) in ("", "."):
            raise AppError(f"{where}: writable path {item!r} must be a folder inside the app folder, relative "
                           f"to it (e.g. \"instance\"); it becomes {CONTAINER_APP_DIR}/<path> on the container's tmpfs")
        paths.append(str(rel))
    return tuple(paths)


def load_app(table: Mapping[str, Any], base: Path, where: str) -> AppSpec:
    """Validate an ``[app]`` table (or the CLI's ``--app``/``--wsgi``, given as one).

    :param table: ``path`` (required), ``wsgi``, ``requirements``, ``env``, ``setup``, ``writable``.
    :param base: the folder relative paths are relative to (the experiment file's, or the working folder).
    :param where: the file or option named in errors.
    :raises AppError: for an unknown key, a folder that does not exist, no WSGI target
        given or found, a bad target, a missing requirements file, a bad variable name or
        a service the lab does not start.
    """
    for key in table:
        if key not in _KEYS:
            raise AppError(f"{where}: unknown key 'app.{key}'; valid: {', '.join(sorted(_KEYS))}")
    raw = table.get("path")
    if not isinstance(raw, str) or not raw:
        raise AppError(f"{where}: the app needs a 'path' (its project folder)")
    root = (base / raw).resolve()
    if not root.is_dir():
        raise AppError(f"{where}: app path {raw!r} does not exist or is not a folder ({root})")
    wsgi = table.get("wsgi") or find_wsgi(root)
    try:
        parse_target(wsgi) if isinstance(wsgi, str) else parse_target("")
    except TargetError as err:
        raise AppError(f"{where}: {err}") from None
    requirements = table.get("requirements")
    if requirements is None:
        requirements_path = root / "requirements.txt" if (root / "requirements.txt").is_file() else None
    elif isinstance(requirements, str) and (root / requirements).is_file():
        requirements_path = (root / requirements).resolve()
    else:
        raise AppError(f"{where}: requirements file {requirements!r} does not exist in {root}")
    env = table.get("env", {})
    if not isinstance(env, dict) or not all(isinstance(k, str) and _VARIABLE.fullmatch(k) and not k.startswith("SERVERLAB_")
                                            and isinstance(v, (str, int, float, bool)) for k, v in env.items()):
        raise AppError(f"{where}: key 'app.env' must be a table of variable names (not SERVERLAB_*) to strings, got {env!r:.120}")
    env = {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in env.items()}
    check_services(env, where)
    setup = table.get("setup", [])
    if isinstance(setup, str):
        setup = [setup]
    if not isinstance(setup, list) or len(setup) > MAX_SETUP or not all(isinstance(c, str) and c.strip() for c in setup):
        raise AppError(f"{where}: key 'app.setup' must be a list of at most {MAX_SETUP} command lines, got {setup!r:.120}")
    writable = _writable(where, table.get("writable", []))
    return AppSpec(path=str(root), wsgi=wsgi, requirements=str(requirements_path) if requirements_path else None,
                   package=(root / "pyproject.toml").is_file(), env=tuple(sorted(env.items())), setup=tuple(setup),
                   writable=tuple(f"{CONTAINER_APP_DIR}/{p}" for p in writable),
                   digest=app_digest(root, requirements_path, writable))


def load_app_keys(data: Mapping[str, Any], path: Path) -> tuple[AppSpec | None, tuple[RequestSpec, ...], dict[str, Any]]:
    """Take an experiment file's ``[app]`` table and ``[[requests]]`` tables out of its parsed ``data``.

    ``requests`` is also the key of the requests mode's load levels (a list of counts):
    a list of tables is declared requests, anything else is left for the levels.

    :return: ``(app or None, declared requests, data without them)``.
    :raises LabError: (:class:`AppError` or :class:`~serverlab.requestmix.RequestError`) for
        a bad ``[app]`` table or request, ``workloads`` beside ``[[requests]]``, or
        ``[[requests]]`` in requests mode.
    """
    rest = dict(data)
    requests: tuple[RequestSpec, ...] = ()
    value = data.get("requests")
    if isinstance(value, list) and value and all(isinstance(entry, dict) for entry in value):
        if "workloads" in data:
            raise AppError(f"{path}: key 'workloads' cannot be combined with [[requests]]: the requests' mix, "
                           "and each request alone, are the workloads")
        if data.get("mode") == "requests":
            raise AppError(f"{path}: mode 'requests' counts requests with a 'requests = [N, ...]' list; with "
                           "[[requests]] tables use mode 'closed' or 'open'")
        requests = load_requests(str(path), rest.pop("requests"))
    table = rest.pop("app", None)
    if table is not None and not isinstance(table, dict):
        raise AppError(f"{path}: key 'app' = {table!r:.80} is invalid; expected a table: [app] with path, wsgi, "
                       "requirements, env, setup, writable")
    return (load_app(table, path.parent, str(path)) if table is not None else None), requests, rest


def with_app(experiment: ExperimentT, app: AppSpec | None, requests: tuple[RequestSpec, ...],
             declared: Mapping[str, Any] | None = None) -> ExperimentT:
    """``experiment`` serving ``app`` and loaded with ``requests`` (:data:`~serverlab.requestmix.DEFAULT_REQUEST`,
    ``GET /``, when an app has none): its workloads become the requests' (the demo's are dropped).

    :param declared: the declared variants by name (default: ``servers/*.toml``).
    :raises AppError: if a variant's command has no ``{app}`` placeholder (it could not serve the app).
    """
    if app is not None:
        unable = [name for name, variant in experiment.variants(declared).items() if not variant.serves_app]
        if unable:
            raise AppError(f"{experiment.path or experiment.name}: server variant(s) {', '.join(unable)} cannot serve "
                           "your app (their command has no {app} placeholder); leave them out of 'servers'")
        requests = requests or (DEFAULT_REQUEST,)
    if not requests:
        return replace(experiment, app=app)  # type: ignore[type-var]
    workloads = tuple(request_workloads(requests))
    return replace(experiment, app=app, requests=requests, workloads=workloads,  # type: ignore[type-var]
                   params={name: {} for name in workloads})


def apply_cli_app(experiment: ExperimentT, path: str | None, wsgi: str | None,
                  cwd: Path | None = None) -> ExperimentT:
    """``serverlab run EXPERIMENT --app PATH [--wsgi TARGET]``: serve the app at ``path``.

    The experiment's own ``[app]`` table, if it has one, keeps its ``env``, ``setup`` and
    ``writable``; ``--wsgi`` alone changes the target of the experiment's ``[app]``.

    :param cwd: the folder ``path`` is relative to (default: the working folder).
    :raises AppError: for ``--wsgi`` without an app, or any refusal of :func:`load_app`.
    """
    base = experiment.app
    if path is None and base is None:
        raise AppError("--wsgi names the app's WSGI target: it needs --app PATH (or an [app] table in the experiment)")
    table: dict[str, Any] = {"path": path or base.path}  # type: ignore[union-attr]
    if base is not None:
        table.update(env=dict(base.env), setup=list(base.setup),
                     writable=[p[len(CONTAINER_APP_DIR) + 1:] for p in base.writable])
        if path is None:
            table["wsgi"] = base.wsgi
    if wsgi:
        table["wsgi"] = wsgi
    app = load_app(table, cwd or Path.cwd(), "--app" if path else str(experiment.path))
    return with_app(experiment, app, experiment.requests)
