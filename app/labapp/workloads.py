"""The workloads the lab serves: pure functions, bounded by design.

Every parameter a request can set has an allowed range, so that no single request can
burn minutes of CPU or allocate unbounded memory. The ranges of the measured workloads
are declared once, in :data:`serverlab.terms.WORKLOADS`, and read here.
"""

from __future__ import annotations

import asyncio
import hashlib
import time

from serverlab.terms import WORKLOADS
from serverlab.workloadspec import Bound


#: ``/cpu?n=``: how many Fibonacci numbers to compute (bounds from :data:`serverlab.terms.WORKLOADS`).
CPU_N = WORKLOADS["cpu"].bounds["n"]
#: ``/io?ms=``: how long to sleep, in milliseconds (a stand-in for a database call).
IO_MS = WORKLOADS["io"].bounds["ms"]
#: ``/io-async?ms=``: how long the async view awaits ``asyncio.sleep``, in milliseconds.
IO_ASYNC_MS = WORKLOADS["io-async"].bounds["ms"]
#: ``/mixed``: the CPU part (Fibonacci numbers) and the waiting part (milliseconds).
MIXED_N = WORKLOADS["mixed"].bounds["n"]
MIXED_MS = WORKLOADS["mixed"].bounds["ms"]
#: ``POST /background``: how long the background job runs, in milliseconds (not a workload
#: the lab measures, so not in :data:`serverlab.terms.WORKLOADS`).
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


async def sleep_ms_async(ms: int) -> float:
    """Await ``asyncio.sleep`` for ``ms`` milliseconds (the ``io-async`` workload's wait).

    Run by Flask's async view support (``flask[async]``): in an event loop that Flask's
    asgiref starts for the request inside the worker thread that took it, or, under an
    ASGI server with asgiref's ``WsgiToAsgi``, on the server's own event loop while that
    worker thread waits for it.

    :return: the measured sleep in milliseconds.
    """
    start = time.perf_counter()
    await asyncio.sleep(ms / 1000.0)
    return (time.perf_counter() - start) * 1000.0
