"""The workloads the lab serves: pure functions, bounded by design.

Every parameter a request can set has an allowed range here, so that no single
request can burn minutes of CPU or allocate unbounded memory.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Bound:
    """An inclusive integer range for one request parameter.

    :param name: the query/JSON parameter name, e.g. ``"n"``.
    :param default: the value used when the parameter is absent.
    :param low: the smallest allowed value.
    :param high: the largest allowed value.
    :param unit: what the number counts, shown in error messages.
    """

    name: str
    default: int
    low: int
    high: int
    unit: str

    def describe(self) -> str:
        """Return ``"<low>..<high> <unit>"`` for error messages."""
        return f"{self.low}..{self.high} {self.unit}"


#: ``/cpu?n=``: how many Fibonacci numbers to compute. The default, 1000, is the
#: workload quoted by Flask threading articles; the upper bound
#: (20 000 numbers) takes ~55 ms of one core (measured on the 2-core dev machine).
CPU_N = Bound("n", 1000, 1, 20_000, "Fibonacci numbers")
#: ``/io?ms=``: how long to sleep, in milliseconds (a stand-in for a database call).
IO_MS = Bound("ms", 50, 0, 10_000, "milliseconds")
#: ``/mixed``: the CPU part (Fibonacci numbers) and the waiting part (milliseconds).
MIXED_N = Bound("n", 500, 1, 20_000, "Fibonacci numbers")
MIXED_MS = Bound("ms", 20, 0, 10_000, "milliseconds")
#: ``POST /background``: how long the background job runs, in milliseconds.
BACKGROUND_MS = Bound("ms", 1000, 0, 60_000, "milliseconds")


def fibonacci_digest(n: int) -> dict[str, object]:
    """Compute the first ``n`` Fibonacci numbers (F(0)=0, F(1)=1, ...) and digest them.

    The numbers themselves grow to ~0.7·n bits each, so only a SHA-256 over their
    big-endian bytes and the last number's bit length are returned (bounded output).

    :param n: how many numbers, ``>= 1``.
    :return: ``{"n": n, "last_bits": int, "sha256": hex str}``.
    :raises ValueError: if ``n < 1``.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    digest = hashlib.sha256()
    a, b = 0, 1
    for _ in range(n):
        digest.update(a.to_bytes((a.bit_length() + 7) // 8 or 1, "big"))
        a, b = b, a + b
    # After the loop ``a`` is F(n); the last number produced is F(n-1).
    last = b - a
    return {"n": n, "last_bits": last.bit_length(), "sha256": digest.hexdigest()}


def sleep_ms(ms: int) -> float:
    """Sleep ``ms`` milliseconds (yields to gevent when it is monkey-patched).

    :return: the measured sleep in milliseconds.
    """
    start = time.perf_counter()
    time.sleep(ms / 1000.0)
    return (time.perf_counter() - start) * 1000.0
