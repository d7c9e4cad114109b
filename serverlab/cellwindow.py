"""Whether a measured window can be trusted: cut short, requests left unanswered, a server hung after the load.

The runner fails a cell for any of these (:class:`serverlab.runner.Runner`): its figures
would cover less than the planned period, or a server that stopped answering.
"""

from __future__ import annotations

import urllib.request

from serverlab.backends import RunningServer
from serverlab.loadgen import LoadOutcome
from serverlab.terms import Mode

#: A measured window (warm-up end to last response) shorter than planned by more than
#: this share, or by more than :data:`SHORT_WINDOW_SLACK_S` if that is larger, fails the
#: cell: the server stopped answering (hung, stopped, overloaded) before the end, so the
#: figures cover less than the planned period. A healthy window comes out within a few
#: hundredths of a second of the plan (up to ~0.4 s short on a busy machine); a hung server
#: cut an 8 s window to 5 s, and Locust's early timers (fixed in the locustfile) cut 3 s to 0.4 s.
SHORT_WINDOW_TOLERANCE = 0.10
#: The absolute floor of the shortfall allowed (seconds): covers Locust's start-up skew on 1-3 s cells.
SHORT_WINDOW_SLACK_S = 0.5
#: After the load, the server must answer ``/healthz`` within this many seconds, or the
#: cell fails as hung. Long enough to drain a full backlog (64 queued 50 ms requests on a
#: single-threaded server take 3.2 s); a hung server is thus named at most this long
#: after Locust's own end (its run time plus its 5 s stop timeout).
HUNG_AFTER_S = 10.0


def hung_after_load(server: RunningServer) -> str | None:
    """``None`` if the server answers ``/healthz`` within :data:`HUNG_AFTER_S` after the load, else why not."""
    if not server.url_for_host:
        return None
    try:
        with urllib.request.urlopen(server.url_for_host + "/healthz", timeout=HUNG_AFTER_S) as response:
            if response.status == 200:
                return None
            return f"server hung: /healthz answered {response.status} after the load"
    except OSError as err:
        return (f"server hung: it did not answer /healthz within {HUNG_AFTER_S:g} s after the load "
                f"({getattr(err, 'reason', err)}; stopped, deadlocked or overloaded)")


def window_problems(outcome: LoadOutcome, mode: Mode | str, duration_s: float) -> list[str]:
    """Why a measured window is not trustworthy: cut short (beyond :data:`SHORT_WINDOW_TOLERANCE` of
    the planned ``duration_s`` seconds, or :data:`SHORT_WINDOW_SLACK_S`), or requests left unanswered
    (closed and requests modes).

    :return: one sentence per problem; empty when the window can be trusted.
    """
    problems = []
    allowed = max(duration_s * SHORT_WINDOW_TOLERANCE, SHORT_WINDOW_SLACK_S)
    if mode != Mode.REQUESTS and duration_s - outcome.duration_s > allowed:
        silent_tail = outcome.window_end - outcome.window[1]
        why = (f"the server stopped answering {silent_tail:.1f} s before Locust stopped" if silent_tail > allowed
               else "Locust's run ended early (its timers were late or it was starved of CPU)")
        problems.append(f"measured window {outcome.duration_s:.2f} s of {duration_s:g} s planned "
                        f"(shorter by more than {allowed:.2g} s): {why}")
    if outcome.unanswered and mode != Mode.OPEN:
        problems.append(f"{outcome.unanswered} request(s) sent but never answered when Locust stopped")
    return problems
