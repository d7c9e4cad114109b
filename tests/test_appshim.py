"""The launcher shim every server's ``{app}`` names (issue 19): WSGI targets as Gunicorn
and Flask accept them, the health check answered in front of the app, setup commands,
the import check, and every declaration serving its app through the placeholder."""

from __future__ import annotations

import json
import sys

import pytest
from werkzeug.test import Client

from labapp import appshim
from labapp.variants import load_variants

FACTORY_APP = """\
from flask import Flask

CALLS = []


def create_app(name="factory"):
    CALLS.append(name)
    app = Flask(name)

    @app.get("/hello")
    def hello():
        return "hi from " + name

    return app
"""


@pytest.fixture
def factory_module(tmp_path, monkeypatch):
    """A module ``factoryapp`` with a ``create_app(name)`` factory, importable (fresh per test)."""
    (tmp_path / "factoryapp.py").write_text(FACTORY_APP)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "factoryapp", raising=False)
    return tmp_path


# -- the launcher shim -------------------------------------------------------------------


@pytest.mark.parametrize("target, parsed", [
    ("wsgi:app", ("wsgi", "app", None, {})),
    ("flaskr:create_app()", ("flaskr", "create_app", (), {})),
    ("pkg.mod:make_app('prod', debug=False)", ("pkg.mod", "make_app", ("prod",), {"debug": False})),
    ("myapp", ("myapp", "app", None, {})),
])
def test_parse_target_accepts_what_gunicorn_and_flask_accept(target, parsed):
    assert appshim.parse_target(target) == parsed


@pytest.mark.parametrize("target, says", [
    ("", "not a module name"),
    ("my-app:app", "not a module name"),
    ("m:create_app(os.environ)", "literals"),
    ("m:a.b", "one attribute"),
    ("m:app(", "not an attribute name or a call"),
])
def test_parse_target_refuses_with_the_target_named(target, says):
    with pytest.raises(appshim.TargetError, match=says):
        appshim.parse_target(target)


def test_resolve_calls_the_factory_once_and_the_middleware_answers_healthz_only(factory_module):
    app = appshim.load_app({appshim.APP_ENV: "factoryapp:create_app('blog')"})
    assert sys.modules["factoryapp"].CALLS == ["blog"]
    client = Client(app)
    health = client.get("/healthz")
    assert (health.status_code, health.data) == (200, b"ok")
    assert client.get("/hello").data == b"hi from blog"  # everything else is the app's
    assert client.get("/nothing-here").status_code == 404


def test_the_userapp_module_resolves_the_app_at_import(factory_module, monkeypatch):
    import importlib

    monkeypatch.delenv(appshim.APP_ENV, raising=False)
    monkeypatch.delitem(sys.modules, "labapp.userapp", raising=False)
    unset = importlib.import_module("labapp.userapp")  # a tool importing it: no app, a 500 saying why
    answer = Client(unset.app).get("/")
    assert answer.status_code == 500 and b"SERVERLAB_APP is not set" in answer.data
    monkeypatch.setenv(appshim.APP_ENV, "factoryapp:create_app()")
    monkeypatch.delitem(sys.modules, "labapp.userapp")
    userapp = importlib.import_module("labapp.userapp")  # a server importing it: the app, once, at import
    assert isinstance(vars(userapp)["app"], appshim.HealthMiddleware)  # in the module's dict, as uWSGI reads it
    assert sys.modules["factoryapp"].CALLS == ["factory"]
    monkeypatch.delitem(sys.modules, "labapp.userapp")


def test_wsgi_target_is_the_demo_unless_an_app_is_named():
    assert appshim.wsgi_target({}) == appshim.DEFAULT_TARGET == "labapp.wsgi:app"
    assert appshim.wsgi_target({appshim.APP_ENV: "flaskr:create_app()"}) == appshim.SHIM_TARGET


def test_check_names_the_import_errors_last_line_and_a_missing_variable(tmp_path, monkeypatch):
    (tmp_path / "broken.py").write_text("import no_such_module_here\napp = None\n")
    (tmp_path / "needsdb.py").write_text("import os\nURL = os.environ['DATABASE_URL']\napp = None\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert appshim.check({appshim.APP_ENV: "broken:app"}) == (
        "broken:app: does not import: ModuleNotFoundError: No module named 'no_such_module_here'")
    said = appshim.check({appshim.APP_ENV: "needsdb:app"})
    assert "environment variable DATABASE_URL" in said and "does not start" in said
    (tmp_path / "fine.py").write_text("app = None\n")
    assert "module fine has no attribute 'nope' (it has: app)" in appshim.check({appshim.APP_ENV: "fine:nope"})
    assert "is a NoneType, not a WSGI callable" in appshim.check({appshim.APP_ENV: "fine:app"})


def test_setup_commands_run_in_the_app_folder_and_a_failure_carries_their_output(tmp_path):
    env = {appshim.APP_DIR_ENV: str(tmp_path), appshim.SETUP_ENV: json.dumps(["echo made > marker"])}
    assert appshim.run_setup(env) is None
    assert (tmp_path / "marker").read_text() == "made\n"
    env[appshim.SETUP_ENV] = json.dumps(["true", "echo 'no table post' >&2; exit 7"])
    error = appshim.run_setup(env)
    assert "exit status 7" in error and "no table post" in error and "exit 7" in error


# -- every declaration serves {app} ------------------------------------------------------


def test_every_declaration_names_its_app_through_the_placeholder(monkeypatch):
    variants = load_variants()
    # no declaration hard-codes the demo app: a user's app could not replace it
    assert not any("labapp.wsgi:app" in part for v in variants.values() for part in v.command)
    variants = {name: v for name, v in variants.items() if v.serves_app}
    assert len(variants) >= 13  # the WSGI variants of issue 19's time
    monkeypatch.delenv(appshim.APP_ENV, raising=False)
    for variant in variants.values():
        argv = variant.server_argv("/tmp/s.sock") if variant.proxy else variant.argv()
        assert "labapp.wsgi:app" in " ".join(argv), variant.name
    monkeypatch.setenv(appshim.APP_ENV, "flaskr:create_app()")
    for variant in variants.values():
        argv = variant.server_argv("/tmp/s.sock") if variant.proxy else variant.argv()
        assert "labapp.userapp:app" in " ".join(argv), variant.name
