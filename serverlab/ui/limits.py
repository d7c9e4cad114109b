"""What the web UI accepts: the bounds of every request that starts load, and their checks.

Pure functions (no Flask, no Locust), so the same rules serve Locust's own ``POST /swarm``
(:func:`check_swarm_form`), the Compare tab's start endpoint (:func:`check_compare_body`)
and the unit tests. A refusal is a :class:`UIRefused` carrying the HTTP status to answer
(always 4xx) and a message naming the field, the bad value and the valid range or choices.

Units: users and counts are whole numbers, rates in users per second, durations in seconds.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from serverlab import LabError
from serverlab.terms import DEFAULT_WORKLOAD, WORKLOADS
from serverlab.uiruns import MIN_RANKABLE_SECONDS

#: Most concurrent users one test (or one Compare row) may start. One Locust process drives a
#: few hundred users usefully; 1000 across workers is well past what the lab's budget measures.
MAX_USERS = 1000
#: Fastest ramp-up accepted (users started per second).
MAX_SPAWN_RATE = 1000.0
#: Longest ``run_time`` accepted (seconds): a day.
MAX_RUN_TIME_S = 24 * 3600
#: Shortest measured window per server in a comparison (seconds): the runs' own limit, "too
#: short to rank" (:data:`serverlab.uiruns.MIN_RANKABLE_SECONDS`).
MIN_COMPARE_SECONDS = MIN_RANKABLE_SECONDS
#: Longest measured window per server in a comparison (seconds).
MAX_COMPARE_SECONDS = 300.0
#: Longest discarded warm-up per server in a comparison (seconds).
MAX_WARMUP_S = 60.0
#: Longest text accepted in any one field (characters): a URL, a number, a name.
MAX_FIELD_CHARS = 200

#: Fields of ``POST /swarm`` that Locust itself reads (its start form sends the first five).
LOCUST_SWARM_FIELDS = ("user_count", "spawn_rate", "host", "run_time", "profile", "user_classes", "shape_class")

_DIGITS = re.compile(r"\d{1,12}")
_TIMESPAN = re.compile(r"(?:(\d{1,6})h)?\s*(?:(\d{1,6})m)?\s*(?:(\d{1,8})s)?")


class UIRefused(LabError):
    """A web UI request refused before anything starts.

    :param message: what was wrong, naming the field, the value and what is valid.
    :param status: the HTTP status to answer (400 bad value, 403 cross-origin or foreign
        host, 409 busy, 415 wrong body type).
    """

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _shown(value: Any) -> str:
    text = repr(value) if not isinstance(value, float) else f"{value:g}"
    return text if len(text) <= 60 else text[:57] + "..."


def whole_number(value: Any, name: str, low: int, high: int) -> int:
    """Return ``value`` as an ``int`` within ``low..high``.

    :param value: a JSON ``int`` (not a ``bool``, not a float such as 8.9 or 1e400) or a
        form's string of decimal digits.
    :param name: the field, for the message.
    :raises UIRefused: (400) naming the field, the value and the range.
    """
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
        number = int(value.strip())
    if number is None or not low <= number <= high:
        raise UIRefused(f"{name} must be a whole number from {low} to {high}; got {_shown(value)}")
    return number


def bounded_number(value: Any, name: str, low: float, high: float, *, low_open: bool = False,
                   unit: str = "") -> float:
    """Return ``value`` as a finite ``float`` within ``low..high`` (``low`` excluded when ``low_open``).

    :param value: a JSON number (not a ``bool``) or a form's decimal string; ``nan``,
        ``inf`` and overflowing literals such as ``1e400`` are refused.
    :param name: the field, for the message.
    :param unit: appended to the range in the message (e.g. ``"s"``).
    :raises UIRefused: (400) naming the field, the value and the range.
    """
    number: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value) if not isinstance(value, int) or abs(value) < 2**63 else math.inf
    elif isinstance(value, str) and 0 < len(value) <= 32:
        try:
            number = float(value)
        except ValueError:
            number = None
    ok = number is not None and math.isfinite(number) and (low < number if low_open else low <= number) \
        and number <= high
    if not ok:
        lower = f"above {low:g}" if low_open else f"from {low:g}"
        raise UIRefused(f"{name} must be a number {lower} to {high:g}{(' ' + unit) if unit else ''}; "
                        f"got {_shown(value)}")
    return float(number)  # type: ignore[arg-type]


def run_time_seconds(text: str) -> int | None:
    """Parse Locust's ``run_time`` (``"20"``, ``"90s"``, ``"3m"``, ``"1h20m"``); ``None`` when empty.

    :raises UIRefused: (400) when it is not a timespan or is longer than :data:`MAX_RUN_TIME_S`.
    """
    text = text.strip()
    if not text:
        return None
    if _DIGITS.fullmatch(text):
        seconds = int(text)
    else:
        match = _TIMESPAN.fullmatch(text)
        if not match or not any(match.groups()):
            raise UIRefused(f"run_time must be a timespan such as 20, 20s, 3m or 1h20m; got {_shown(text)}")
        hours, minutes, secs = (int(g or 0) for g in match.groups())
        seconds = hours * 3600 + minutes * 60 + secs
    if not 1 <= seconds <= MAX_RUN_TIME_S:
        raise UIRefused(f"run_time must be from 1 s to {MAX_RUN_TIME_S // 3600} h; got {_shown(text)}")
    return seconds


@dataclass(frozen=True)
class Targets:
    """The hosts the UI may load: the lab's servers, plus hosts the user opted in by name.

    :param urls: server variant name -> its URL (e.g. ``"gunicorn-sync" -> "http://gunicorn-sync:8000"``).
    :param extra: further URLs allowed, given by the user when starting the lab
        (``SERVERLAB_ALLOW_HOSTS`` / ``--allow-host``), never through the UI itself.
    """

    urls: Mapping[str, str]
    extra: tuple[str, ...] = ()

    def resolve(self, host: str) -> str:
        """Return the canonical Host value for a Host field's text: a lab server's name, or an opted-in URL.

        :param host: a server name (``gunicorn-gthread``) or URL (``http://gunicorn-gthread:8000``,
            a trailing ``/`` is ignored).
        :raises UIRefused: (403) for any other host, naming the servers and how to opt in.
        """
        text = host.strip().rstrip("/")
        if text in self.urls:
            return text
        for name, url in self.urls.items():
            if url.rstrip("/") == text:
                return name
        for url in self.extra:
            if url.rstrip("/") == text:
                return url
        names = ", ".join(self.urls)
        raise UIRefused(
            f"host {_shown(host)} is not one of the lab's servers; type a server's name, one of: {names} "
            f"(or its URL, e.g. {next(iter(self.urls.values()), '')}). To load another host, name it when starting the "
            f"lab: SERVERLAB_ALLOW_HOSTS={text or 'http://HOST:PORT'}", status=403)

    def name_of(self, host: str) -> str:
        """The server name behind a Host value (a name or a lab URL), or ``host`` itself for an opted-in host."""
        if host in self.urls:
            return host
        for name, known in self.urls.items():
            if known.rstrip("/") == host.rstrip("/"):
                return name
        return host

    def url_of(self, host: str) -> str:
        """The URL a Host value loads: a server name's URL, or ``host`` itself."""
        return self.urls.get(host, host)


@dataclass(frozen=True)
class SwarmForm:
    """A ``POST /swarm`` form that passed every check, normalized.

    :param fields: the form to hand to Locust: field -> list of values, with ``host`` set
        to the canonical Host value (the server's name, or an opted-in URL).
    :param users: concurrent users (1..:data:`MAX_USERS`).
    :param spawn_rate: users started per second.
    :param server: the chosen server's name (or the opted-in URL): what the header shows.
    :param url: the URL the users load.
    :param workload: the workload name (``hello``, ``cpu``, ...).
    """

    fields: dict[str, list[str]]
    users: int
    spawn_rate: float
    server: str
    url: str
    workload: str


def _one(form: Mapping[str, Sequence[str]], key: str) -> str | None:
    values = form.get(key) or []
    if len(values) > 1:
        raise UIRefused(f"field {key} was sent {len(values)} times; send it once")
    if values and len(values[0]) > MAX_FIELD_CHARS:
        raise UIRefused(f"field {key} is longer than {MAX_FIELD_CHARS} characters")
    return values[0] if values else None


def workload_option_fields() -> dict[str, tuple[str, str]]:
    """Form field -> ``(workload, parameter)`` for every workload parameter option (``cpu_n`` -> ``("cpu", "n")``)."""
    out = {}
    for spec in WORKLOADS.values():
        for param, option in spec.locust_options.items():
            out[spec.option_dest(option)] = (spec.name, param)
    return out


def check_swarm_form(form: Mapping[str, Sequence[str]], targets: Targets, current_host: str,
                     current_workload: str = DEFAULT_WORKLOAD, running: bool = False,
                     other_fields: Iterable[str] = ()) -> SwarmForm:
    """Check a ``POST /swarm`` form (Locust's start form, or any client) against the lab's limits.

    :param form: field -> its values, as ``request.form.to_dict(flat=False)`` gives them.
    :param targets: the hosts the UI may load.
    :param current_host: the Host value loaded now or next (used when ``host`` is absent or
        empty, as in Locust's *Edit* dialog, which has no Host field).
    :param current_workload: the workload loaded now or next (a running test keeps it).
    :param running: a test is running (an *Edit*: the workload cannot change).
    :param other_fields: further custom-argument fields the form may carry, unchecked here.
    :return: the normalized form.
    :raises UIRefused: (400/403) naming the first bad field: unknown fields, users outside
        1..:data:`MAX_USERS` or not whole, a spawn rate not above 0 or above :data:`MAX_SPAWN_RATE`,
        a host that is not a lab server (nor opted in), a workload or parameter out of bounds.
    """
    params = workload_option_fields()
    allowed = set(LOCUST_SWARM_FIELDS) | {"workload"} | set(params) | set(other_fields)
    unknown = sorted(key for key in form if key not in allowed)
    if unknown:
        raise UIRefused(f"POST /swarm takes the fields {', '.join(sorted(allowed))}; "
                        f"unknown: {', '.join(_shown(k) for k in unknown[:5])}")
    fields = {key: list(values) for key, values in form.items()}
    users_text = _one(form, "user_count")
    rate_text = _one(form, "spawn_rate")
    if users_text is None or rate_text is None:
        missing = [k for k, v in (("user_count", users_text), ("spawn_rate", rate_text)) if v is None]
        raise UIRefused(f"POST /swarm needs {' and '.join(missing)} (users 1..{MAX_USERS}, "
                        f"spawn rate above 0 to {MAX_SPAWN_RATE:g} per s)")
    users = whole_number(users_text, "users (user_count)", 1, MAX_USERS)
    rate = bounded_number(rate_text, "ramp up (spawn_rate, users per s)", 0, MAX_SPAWN_RATE, low_open=True)
    host = _one(form, "host")
    chosen = current_host if host is None or not host.strip() else targets.resolve(host)
    fields["host"] = [chosen]
    fields["user_count"], fields["spawn_rate"] = [str(users)], [repr(rate)]
    run_time = _one(form, "run_time")
    if run_time is not None:
        run_time_seconds(run_time)
    workload = _one(form, "workload")
    if workload is not None:
        if workload not in WORKLOADS:
            raise UIRefused(f"workload must be one of {', '.join(WORKLOADS)}; got {_shown(workload)}")
        if running and workload != current_workload:
            raise UIRefused(f"a running test keeps its workload ({current_workload}); "
                            f"stop it, then start a new test with {workload}")
    workload = workload or current_workload
    for key, (name, param) in params.items():
        value = _one(form, key)
        if value is not None:
            bound = WORKLOADS[name].bounds[param]
            whole_number(value, f"{key} ({WORKLOADS[name].path}?{param}=)", bound.low, bound.high)
    classes = form.get("user_classes") or []
    if classes:
        raise UIRefused("user_classes is not used by the lab: pick the workload in Custom parameters")
    return SwarmForm(fields=fields, users=users, spawn_rate=rate, server=targets.name_of(chosen),
                     url=targets.url_of(chosen),
                     workload=workload)


@dataclass(frozen=True)
class CompareRequest:
    """A comparison that passed every check.

    :param servers: server variant names, as ticked (at least one, no repeats).
    :param workload: the workload name.
    :param users: concurrent users per server (closed model), 1..:data:`MAX_USERS`.
    :param seconds: measured seconds per server, :data:`MIN_COMPARE_SECONDS`..:data:`MAX_COMPARE_SECONDS`.
    :param warmup_s: discarded seconds before each measurement, 0..:data:`MAX_WARMUP_S`.
    :param seed: shuffles the server order (``None``: random, recorded).
    """

    servers: tuple[str, ...]
    workload: str
    users: int
    seconds: float
    warmup_s: float
    seed: int | None = None


COMPARE_FIELDS = ("servers", "workload", "users", "seconds", "warmup_s", "seed")


def check_compare_body(body: Any, servers: Sequence[str], workloads: Iterable[str]) -> CompareRequest:
    """Check the Compare tab's start request, a JSON object.

    :param body: the parsed JSON body (``None`` when it was not JSON).
    :param servers: the lab's server names.
    :param workloads: the workload names the UI offers.
    :return: the checked request.
    :raises UIRefused: (400) when the body is not a JSON object, a field is unknown, no server
        is ticked or one is unknown, or users, seconds or warm-up are outside their bounds.
    """
    if not isinstance(body, dict):
        kind = {list: "a JSON array", str: "a JSON string", type(None): "not JSON"}.get(type(body), "not an object")
        raise UIRefused(f"the body must be a JSON object with {', '.join(COMPARE_FIELDS)}; got {kind}")
    unknown = sorted(str(k) for k in body if k not in COMPARE_FIELDS)
    if unknown:
        raise UIRefused(f"unknown fields {', '.join(_shown(k) for k in unknown[:5])}; "
                        f"valid: {', '.join(COMPARE_FIELDS)}")
    chosen = body.get("servers")
    if not isinstance(chosen, list) or not chosen:
        raise UIRefused(f"tick at least one server (servers: a list, some of {', '.join(servers)}); "
                        f"got {_shown(chosen)}")
    bad = [s for s in chosen if not isinstance(s, str) or s not in servers]
    if bad:
        raise UIRefused(f"unknown servers {', '.join(_shown(s) for s in bad[:5])}; valid: {', '.join(servers)}")
    names = list(workloads)
    workload = body.get("workload", DEFAULT_WORKLOAD)
    if workload not in names:
        raise UIRefused(f"workload must be one of {', '.join(names)}; got {_shown(workload)}")
    users = whole_number(body.get("users"), "users", 1, MAX_USERS)
    seconds = bounded_number(body.get("seconds"), "seconds per server", MIN_COMPARE_SECONDS, MAX_COMPARE_SECONDS,
                             unit="s (a shorter window ranked servers wrongly)")
    warmup = bounded_number(body.get("warmup_s", 2), "warm-up (warmup_s)", 0, MAX_WARMUP_S, unit="s")
    seed = body.get("seed")
    if seed not in (None, ""):
        seed = whole_number(seed, "seed", 0, 2**31 - 1)
    else:
        seed = None
    return CompareRequest(servers=tuple(dict.fromkeys(chosen)), workload=workload, users=users, seconds=seconds,
                          warmup_s=warmup, seed=seed)
