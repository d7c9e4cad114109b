"""Every public function and class of ``labapp`` and ``serverlab`` has a docstring.

Modules are discovered on disk (``pkgutil``), not listed, so modules added later are
covered too; every discovered module must import. ``__main__`` modules are skipped:
importing one would run its command.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import os
import pkgutil

import pytest

import labapp
import serverlab

PACKAGES = (labapp, serverlab)


def discover(package) -> list[str]:
    """Names of the package and all its submodules, found without importing them."""
    names = [package.__name__]

    def walk(paths, prefix):
        for info in pkgutil.iter_modules(paths, prefix):
            if info.name.rsplit(".", 1)[-1] == "__main__":
                continue
            names.append(info.name)
            if info.ispkg:
                walk([os.path.join(path, info.name.rsplit(".", 1)[-1]) for path in paths], info.name + ".")

    walk(list(package.__path__), package.__name__ + ".")
    return sorted(names)


MODULES = [name for package in PACKAGES for name in discover(package)]


def has_docstring(obj) -> bool:
    doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else obj.__doc__
    if not doc or not doc.strip():
        return False
    # @dataclass and NamedTuple invent a "Name(field, ...)" docstring for undocumented classes.
    if inspect.isclass(obj) and (dataclasses.is_dataclass(obj) or hasattr(obj, "_fields")):
        return not doc.startswith(f"{obj.__name__}(")
    return True


def public_definitions(module) -> dict[str, object]:
    """Public functions and classes defined in ``module`` itself (not imported into it)."""
    return {
        name: obj
        for name, obj in vars(module).items()
        if not name.startswith("_")
        and (inspect.isfunction(obj) or inspect.isclass(obj))
        and getattr(obj, "__module__", None) == module.__name__
    }


def test_discovery_finds_the_known_modules():
    assert {"labapp", "labapp.workloads", "labapp.variants", "labapp.serve", "labapp.devserver", "labapp.healthcheck", "labapp.wsgi"} <= set(MODULES)
    assert {"serverlab", "serverlab.results"} <= set(MODULES)


def test_has_docstring_sees_through_invented_docstrings():
    @dataclasses.dataclass
    class Undocumented:
        x: int

    @dataclasses.dataclass
    class Documented:
        """Documented."""

        x: int

    class Base:
        """Base."""

    class Child(Base):
        pass

    assert not has_docstring(Undocumented)
    assert has_docstring(Documented)
    assert not has_docstring(Child)  # a docstring is not inherited for this purpose


@pytest.mark.parametrize("module_name", MODULES)
def test_public_api_is_documented(module_name):
    module = importlib.import_module(module_name)
    missing = sorted(name for name, obj in public_definitions(module).items() if not has_docstring(obj))
    assert missing == [], f"{module_name}: public definitions without a docstring: {', '.join(missing)}"
