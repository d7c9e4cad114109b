"""The workloads: the Fibonacci digest checked against an independent implementation, the bounds."""

from __future__ import annotations

import hashlib

import pytest

from labapp import workloads
from labapp.workloads import BACKGROUND_MS, CPU_N, IO_MS, MIXED_MS, MIXED_N, Bound, fibonacci_digest

#: sha256(b"\x00"): the digest of the single number F(0) = 0, encoded as one zero byte.
SHA256_OF_ZERO_BYTE = "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
#: F(99), a well-known value, to check ``last_bits`` independently of any loop.
F99 = 218922995834555169026


def fibonacci(count: int) -> list[int]:
    """The first ``count`` Fibonacci numbers from the definition F(0)=0, F(1)=1, F(k)=F(k-1)+F(k-2)."""
    numbers = [0, 1][:count]
    while len(numbers) < count:
        numbers.append(numbers[-1] + numbers[-2])
    return numbers


def minimal_big_endian(number: int) -> bytes:
    """Big-endian bytes without leading zero bytes; zero is one zero byte (via hex, not to_bytes)."""
    text = format(number, "x")
    return bytes.fromhex(text.rjust(len(text) + len(text) % 2, "0"))


def expected_digest(count: int) -> dict[str, object]:
    numbers = fibonacci(count)
    return {
        "n": count,
        "last_bits": numbers[-1].bit_length(),
        "sha256": hashlib.sha256(b"".join(minimal_big_endian(x) for x in numbers)).hexdigest(),
    }


def test_reference_encoding():
    # Checks of the test's own helpers, so the comparisons below mean something.
    assert fibonacci(10) == [0, 1, 1, 2, 3, 5, 8, 13, 21, 34]
    assert fibonacci(100)[99] == F99
    assert minimal_big_endian(0) == b"\x00"
    assert minimal_big_endian(1) == b"\x01"
    assert minimal_big_endian(255) == b"\xff"
    assert minimal_big_endian(256) == b"\x01\x00"
    assert minimal_big_endian(2**64) == b"\x01" + b"\x00" * 8


def test_single_number():
    assert fibonacci_digest(1) == {"n": 1, "last_bits": 0, "sha256": SHA256_OF_ZERO_BYTE}


def test_two_numbers():
    assert fibonacci_digest(2) == {"n": 2, "last_bits": 1, "sha256": hashlib.sha256(b"\x00\x01").hexdigest()}


def test_ten_numbers():
    # 0 1 1 2 3 5 8 13 21 34: each fits one byte.
    digest = fibonacci_digest(10)
    assert digest["sha256"] == hashlib.sha256(bytes([0, 1, 1, 2, 3, 5, 8, 13, 21, 34])).hexdigest()
    assert digest["last_bits"] == 6  # 34 = 0b100010


def test_hundred_numbers_last_bits():
    assert fibonacci_digest(100)["last_bits"] == F99.bit_length() == 68


@pytest.mark.parametrize("n", [1, 2, 3, 13, 14, 100, 500, 1000, 4321])
def test_matches_independent_implementation(n):
    assert fibonacci_digest(n) == expected_digest(n)


def test_upper_bound_is_computable():
    digest = fibonacci_digest(CPU_N.high)
    assert digest["n"] == CPU_N.high
    # F(k) has about k*log2(phi) ~ 0.694*k bits.
    assert 0.69 * (CPU_N.high - 1) < digest["last_bits"] < 0.70 * (CPU_N.high - 1)


def test_output_is_bounded():
    digest = fibonacci_digest(CPU_N.high)
    assert set(digest) == {"n", "last_bits", "sha256"}
    assert len(digest["sha256"]) == 64


@pytest.mark.parametrize("n", [0, -1, -1000])
def test_n_below_one_is_refused(n):
    with pytest.raises(ValueError, match=str(n)):
        fibonacci_digest(n)


def test_bound_describe():
    assert Bound("n", 5, 1, 10, "things").describe() == "1..10 things"
    assert CPU_N.describe() == "1..20000 Fibonacci numbers"
    assert IO_MS.describe() == "0..10000 milliseconds"
    assert BACKGROUND_MS.describe() == "0..60000 milliseconds"


def test_bound_is_frozen():
    with pytest.raises(AttributeError):
        CPU_N.high = 10**9  # type: ignore[misc]


@pytest.mark.parametrize("bound", [CPU_N, IO_MS, MIXED_N, MIXED_MS, BACKGROUND_MS], ids=lambda b: f"{b.name}-{b.high}")
def test_bounds_are_sane(bound):
    assert bound.low <= bound.default <= bound.high
    assert bound.low >= 0
    assert bound.name in ("n", "ms")


def test_documented_defaults():
    assert CPU_N.default == 1000
    assert (MIXED_N.default, MIXED_MS.default) == (500, 20)
    assert IO_MS.default == 50
    assert BACKGROUND_MS.default == 1000


def test_sleep_ms_measures_the_sleep():
    assert 0 <= workloads.sleep_ms(0) < 100
    slept = workloads.sleep_ms(15)
    assert 14 <= slept < 2000
