"""Shared fixtures: the lab's Flask app and its test client (the Flask testing pattern)."""

from __future__ import annotations

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
