"""serverlab.terms: the lab's vocabulary, defined once and importable without the rest of serverlab."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from serverlab import terms
from serverlab.terms import HDR, LEVEL_NAMES, WORKLOADS, Mode
from serverlab.workloadspec import Bound, Character, WorkloadParameterError, WorkloadSpec


def test_terms_import_nothing_heavy():
    """The app and the locustfile import it: no serverlab module besides the package and
    serverlab.workloadspec, no third-party module."""
    code = ("import json, sys; before = set(sys.modules); import serverlab.terms; "
            "print(json.dumps(sorted({m.split('.')[0] for m in set(sys.modules) - before})))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    loaded = set(json.loads(result.stdout))
    assert "serverlab" in loaded
    third_party = {"numpy", "scipy", "hdrh", "flask", "locust", "gevent", "matplotlib", "psutil", "jinja2"}
    assert not loaded & third_party


def test_enums_are_their_strings():
    assert Mode.CLOSED == "closed" and f"{Mode.OPEN}" == "open" and json.dumps(Mode.REQUESTS) == '"requests"'
    assert [m.level_key for m in Mode] == ["users", "rates", "requests"]
    assert [m.level_unit for m in Mode] == ["users", "target RPS", "requests"]
    # one table of level names: the runner's messages and the report's labels say the same
    assert all(m.level_unit == LEVEL_NAMES[m].unit for m in Mode)
    assert Mode("open").level_range == (1, 100_000)
    assert {c.value for c in Character} == {"overhead", "cpu", "io", "mixed"}


def test_hdr_settings_clamp_to_the_range():
    assert (HDR.lowest_us, HDR.highest_us, HDR.significant_digits) == (1, 120_000_000, 3)
    assert HDR.clamp(0) == 1 and HDR.clamp(5) == 5 and HDR.clamp(10**12) == 120_000_000


def test_user_class_and_options_are_derived_from_the_names():
    assert [w.user_class for w in WORKLOADS.values()] == ["HelloUser", "JsonUser", "CpuUser", "IoUser", "MixedUser",
                                                          "IoAsyncUser"]
    assert WORKLOADS["io-async"].locust_options == {"ms": "--io-async-ms"}
    assert WorkloadSpec.option_dest("--io-async-ms") == "io_async_ms"
    assert WORKLOADS["mixed"].locust_options == {"n": "--mixed-n", "ms": "--mixed-ms"}
    options = argparse.Namespace(mixed_n=7, mixed_ms=3, cpu_n=9)
    assert WORKLOADS["mixed"].option_values(options) == {"n": 7, "ms": 3}
    assert WORKLOADS["hello"].option_values(options) == {}


def test_specs_are_frozen_and_hashable():
    spec = WORKLOADS["cpu"]
    with pytest.raises(AttributeError):
        spec.path = "/other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        spec.bounds["x"] = Bound("x", 1, 1, 2, "things")  # type: ignore[index]
    assert len({*WORKLOADS.values()}) == len(WORKLOADS)


@pytest.mark.parametrize(("kwargs", "fragment"), [
    ({"name": "Square", "path": "/square"}, "lower-case"),
    ({"name": "sq_uare", "path": "/square"}, "lower-case"),
    ({"name": "square-", "path": "/square"}, "words joined by single hyphens"),
    ({"name": "sq--uare", "path": "/square"}, "words joined by single hyphens"),
    ({"name": "-square", "path": "/square"}, "lower-case"),
    ({"name": "square", "path": "square"}, "must start with '/'"),
    ({"name": "square", "path": "/square", "parameters": (Bound("N", 1, 1, 2, "numbers"),)}, "parameter name 'N'"),
    ({"name": "square", "path": "/square", "parameters": (Bound("n", 0, 1, 2, "numbers"),)}, "default 0 of 'n'"),
])
def test_a_malformed_spec_is_refused_when_declared(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        WorkloadSpec(**kwargs)


def test_parameter_errors_are_value_errors_naming_the_range():
    with pytest.raises(WorkloadParameterError, match=r"'n' = 0; allowed: integer 1..20000 Fibonacci numbers"):
        WORKLOADS["cpu"].params({"n": 0})
    assert issubclass(WorkloadParameterError, ValueError)
    assert terms.percentile_key(99.9) == "p99.9" and terms.percentile_key(50.0) == "p50"
