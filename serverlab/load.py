"""One cell's load: the mode, the level, and the users and in-flight bound derived from them.

A load level means users in the closed model, a target rate (RPS) in the open model and a
request count in requests mode; what Locust is then given (``-u``, the open model's cap of
requests in flight per process) follows from it. :class:`Load` derives all of it once:
the experiment builds one per level (:meth:`serverlab.experiment.Experiment.load`), the
runner records its ``users`` in the cell, :class:`serverlab.loadgen.LoadPlan` turns it into
Locust's command line and hands it to every Locust process as :data:`LOAD_ENV` (the
locustfile's open-model users read their cap from it), and the web UI's lab backend reads
it back from there (:func:`serverlab.backends.lab.parse_locust_args`).

No Locust import here: the locustfile, the orchestrator and the tests share it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping

from serverlab.terms import Mode

#: Environment variable holding a Locust process's :class:`Load` as JSON (:meth:`Load.to_json`).
LOAD_ENV = "SERVERLAB_LOAD"
#: Users (open: requests in flight at most) when an experiment of that mode names none.
DEFAULT_USERS = {Mode.OPEN: 100, Mode.REQUESTS: 10}


@dataclass(frozen=True)
class Load:
    """The load one cell offers; build it with :meth:`of` (which derives ``users``).

    :param mode: the load model (:class:`~serverlab.terms.Mode`).
    :param level: users (closed), target RPS (open) or request count (requests).
    :param users: concurrent users: the level (closed), the experiment's users (requests),
        requests in flight at most across all processes (open).
    :param processes: Locust processes sharing the load (``--processes``; 1: a single process).
    """

    mode: Mode
    level: int
    users: int
    processes: int = 1

    @classmethod
    def of(cls, mode: Mode | str, level: int, users: int | None = None, processes: int = 1) -> Load:
        """The load of ``level`` in ``mode``: closed mode's users are the level itself; the other
        modes take ``users`` (default :data:`DEFAULT_USERS`).

        :raises ValueError: for an unknown mode, or a level, users or processes below 1.
        """
        mode = Mode(mode)
        if mode == Mode.CLOSED:
            users = level
        elif users is None:
            users = DEFAULT_USERS[mode]
        for name, value in (("level", level), ("users", users), ("processes", processes)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"load {name} must be an integer of at least 1, got {value!r}")
        return cls(mode, level, users, processes)

    @property
    def locust_users(self) -> int:
        """The ``-u`` Locust gets: the users (closed, requests), one per process (open: each
        process's user keeps its share of the schedule)."""
        return self.processes if self.mode == Mode.OPEN else self.users

    @property
    def max_in_flight(self) -> int:
        """Requests in flight at most, across all processes: the users (a closed-model user has one
        outstanding request; an open-model schedule is capped at ``users``)."""
        return self.users

    @property
    def max_in_flight_per_process(self) -> int:
        """Each process's share of :attr:`max_in_flight` (``users // processes``, at least 1): the
        open model's cap on one process's requests in flight."""
        return max(1, self.users // self.processes)

    @property
    def open_rate(self) -> float:
        """Target requests per second across all processes (open model), else ``0.0``."""
        return float(self.level) if self.mode == Mode.OPEN else 0.0

    @property
    def max_requests(self) -> int:
        """Responses after which the run ends (requests mode), else ``0``."""
        return self.level if self.mode == Mode.REQUESTS else 0

    def to_dict(self) -> dict[str, Any]:
        """``{"mode", "level", "users", "processes"}`` (JSON-ready)."""
        return {"mode": self.mode.value, "level": self.level, "users": self.users, "processes": self.processes}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Load:
        """The load :meth:`to_dict` wrote.

        :raises ValueError: for a missing key or a value :meth:`of` refuses.
        """
        try:
            return cls.of(data["mode"], data["level"], data["users"], data.get("processes", 1))
        except KeyError as err:
            raise ValueError(f"a load needs mode, level and users; {err.args[0]!r} is missing") from None

    def to_json(self) -> str:
        """:meth:`to_dict` as compact JSON (the value of :data:`LOAD_ENV`)."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Load:
        """The load of a :data:`LOAD_ENV` value.

        :raises ValueError: when it is not JSON of a load.
        """
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{LOAD_ENV} is not JSON: {err.msg}") from None
        if not isinstance(data, dict):
            raise ValueError(f"{LOAD_ENV} must be a JSON object, got {text[:80]!r}")
        return cls.from_dict(data)
