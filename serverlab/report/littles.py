"""Little's law, row by row: the throughput a variant's slots predict for an I/O workload.

A closed-model row of an I/O workload (:class:`~serverlab.workloadspec.Character` ``io``: it waits
``ms`` milliseconds and does almost no CPU work) on a variant that holds ``slots`` requests
at once (its recorded ``slots``: workers × threads, greenlets, or the adapter's threads) has
``min(users, slots)`` requests in service, each for the wait. Little's law (L = λW, Little
1961) then predicts ``λ = min(users, slots) / wait``. A measured RPS within
:data:`LITTLE_TOLERANCE` of it says the slots explain the figure; below it something else
bounded the cell (the CPU budget, the load generator, per-request overhead); above it the
variant served more requests at once than its declared slots.

Every report shows :func:`littles_table` under each I/O workload and the verdicts end with
:func:`littles_sentence`; :func:`async_sentence` compares an ``<name>-async`` workload with
its sync twin (``io-async`` with ``io``) on each variant. Units: RPS, waits in ms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from serverlab.report.formatting import format_estimate, format_rps, level_text, slots_text
from serverlab.report.rows import Row
from serverlab.terms import MS_PER_S, WORKLOADS, BottleneckClass, Mode, WorkerModel
from serverlab.workloadspec import Character

if TYPE_CHECKING:  # model imports answers, which imports verdicts, which imports this module
    from serverlab.report.model import Table

#: Largest relative distance of the measured RPS from Little's law's prediction that still
#: counts as explained by the slots (0.10 = 10%, as the known-answer tests accept).
LITTLE_TOLERANCE = 0.10
#: The suffix that names a workload's async twin (``io-async`` is ``io`` as an ``async def`` view).
ASYNC_SUFFIX = "-async"


@dataclass(frozen=True)
class LittlesLaw:
    """One row's prediction and what was measured.

    :param row: the row (closed mode, an I/O workload, ``slots`` recorded).
    :param slots: requests the variant can serve at once.
    :param wait_ms: the workload's wait per request (milliseconds).
    :param predicted_rps: ``min(users, slots) / wait`` (RPS).
    :param ratio: measured median RPS ÷ predicted.
    """

    row: Row
    slots: int
    wait_ms: int
    predicted_rps: float
    ratio: float

    @property
    def within(self) -> bool:
        """Whether the measured RPS is within :data:`LITTLE_TOLERANCE` of the prediction, every
        request answered (a row with failed requests counts errors in its RPS: never within)."""
        return not self.row.failures and abs(self.ratio - 1.0) <= LITTLE_TOLERANCE

    @property
    def bound(self) -> str:
        """What bounded the cell, in words: the slots, or what else (from its bottleneck class)."""
        active = min(self.row.users, self.slots)
        if self.row.failures:
            return f"nothing: {self.row.failure_ratio:.0%} of its requests failed, so its RPS counts errors"
        if self.within:
            return "slots" if self.slots < self.row.users else "users (every user's request in service)"
        if self.ratio > 1:
            return "more requests in service than its slots"
        kind = self.row.bottleneck_class
        if kind == BottleneckClass.SERVER_BOUND:
            return "the CPU budget"
        if kind == BottleneckClass.GENERATOR_BOUND:
            return "the load generator"
        if kind == BottleneckClass.INTERFERENCE:
            return "other programs on the lab's CPUs"
        return f"per-request overhead or queueing beyond the wait ({active} in service)"


def littles_law(row: Row) -> LittlesLaw | None:
    """Little's law for one row, or ``None`` where it does not apply.

    It applies to closed-mode rows with a measured RPS, of an I/O workload with an ``ms``
    parameter above 0, on a variant with a bounded number of slots
    (:attr:`serverlab.records.VariantRecord.slots`).

    :param row: a row from :func:`serverlab.report.rows.aggregate`.
    :return: the prediction and the measured/predicted ratio.
    """
    spec = WORKLOADS.get(row.workload)
    slots_shown = slots_text(row.declared)  # the recorded slots (derived for results from before they were recorded)
    wait_ms = row.workload_params.get("ms")
    if (spec is None or spec.character != Character.IO or row.mode != Mode.CLOSED or row.rps is None
            or not slots_shown.isdigit() or int(slots_shown) < 1
            or not isinstance(wait_ms, int) or isinstance(wait_ms, bool) or wait_ms <= 0):
        return None
    slots = int(slots_shown)
    predicted = min(row.users, slots) * MS_PER_S / wait_ms
    return LittlesLaw(row, slots, wait_ms, predicted, row.rps.median / predicted)


def littles_table(rows: Sequence[Row]) -> Table | None:
    """Little's law for each row of one (workload, mode) section, ``None`` where it applies to none.

    :param rows: the section's rows.
    :return: a table: variant, level, slots, wait, predicted RPS, measured RPS, ratio, what bounded it.
    """
    from serverlab.report.model import Table  # here: see the TYPE_CHECKING import

    laws = [law for law in map(littles_law, rows) if law is not None]
    if not laws:
        return None
    table = Table(["variant", "users", "slots", "wait (ms)", "Little's law RPS", "measured RPS", "measured/predicted",
                   "bounded by"], [], title="Little's law: throughput = requests in service / wait",
                  intro=[f"Predicted RPS = min(users, slots) / wait. Within {LITTLE_TOLERANCE:.0%} the slots explain "
                         f"the figure; a row further off names what else bounded it."])
    for law in sorted(laws, key=lambda item: (item.row.variant, item.row.level)):
        table.rows.append([law.row.variant, str(law.row.users), str(law.slots), str(law.wait_ms),
                           format_rps(law.predicted_rps), format_estimate(law.row.rps), f"{law.ratio:.2f}",
                           law.bound])
        if not law.within:
            table.failed_rows.add(len(table.rows) - 1)
    return table


def littles_sentence(rows: Sequence[Row]) -> str:
    """Little's law over one workload's rows, for its verdict; ``""`` where it applies to none.

    :param rows: one workload's rows in one mode.
    :return: e.g. ``"Little's law (RPS = min(users, slots) / 50 ms wait): all 12 rows within 10%."``
        or the rows off it, each with its prediction and what bounded it.
    """
    laws = [law for law in map(littles_law, rows) if law is not None]
    if not laws:
        return ""
    waits = sorted({law.wait_ms for law in laws})
    head = f"Little's law (RPS = min(users, slots) / {'/'.join(map(str, waits))} ms wait)"
    off = [law for law in laws if not law.within]
    if not off:
        return f"{head}: all {len(laws)} rows within {LITTLE_TOLERANCE:.0%}, so the slots explain every figure."
    parts = [f"{law.row.variant} at {level_text(law.row.mode, law.row.level)} did {format_rps(law.row.rps.median)} "  # type: ignore[union-attr]
             f"vs {format_rps(law.predicted_rps)} predicted ({law.slots} slots; {law.ratio:.2f}×, bounded by {law.bound})"
             for law in off]
    return (f"{head}: {len(laws) - len(off)} of {len(laws)} rows within {LITTLE_TOLERANCE:.0%}; off it: "
            + "; ".join(parts) + ".")


def async_sentence(workload: str, rows: Sequence[Row]) -> str:
    """An async workload against its sync twin on each variant, at the highest level both ran.

    :param workload: a workload name ending in :data:`ASYNC_SUFFIX` (others give ``""``).
    :param rows: rows of every workload (the twin's are looked up among them).
    :return: e.g. ``"Async vs sync (io-async vs io, ...): gunicorn-gthread at 128 users 0.99× (158 vs 160 RPS; slots: 8); ..."``,
        ``""`` when the twin was not measured on any of the same variants and levels.
    """
    if not workload.endswith(ASYNC_SUFFIX):
        return ""
    twin = workload[: -len(ASYNC_SUFFIX)]
    measured = {(r.variant, r.mode, r.level, r.workload): r for r in rows if r.rps is not None and r.rps.median > 0}
    pairs: dict[str, tuple[Row, Row]] = {}
    for (variant, mode, level, name), row in measured.items():
        sync = measured.get((variant, mode, level, twin))
        if name != workload or sync is None:
            continue
        if variant not in pairs or level > pairs[variant][0].level:
            pairs[variant] = (row, sync)
    if not pairs:
        return ""
    parts, differ, failing = [], [], []
    for variant, (async_row, sync_row) in sorted(pairs.items()):
        if async_row.failures or sync_row.failures:
            bad = async_row if async_row.failures else sync_row
            failing.append(f"{variant} ({bad.failure_ratio:.0%} of its {bad.workload} requests failed at "
                           f"{level_text(bad.mode, bad.level)})")
            continue
        ratio = async_row.rps.median / sync_row.rps.median  # type: ignore[union-attr]
        parts.append(f"{variant} at {level_text(async_row.mode, async_row.level)} {ratio:.2f}× "
                     f"({format_rps(async_row.rps.median)} vs {format_rps(sync_row.rps.median)} RPS; "  # type: ignore[union-attr]
                     f"slots: {slots_text(async_row.declared)})")
        if abs(ratio - 1.0) > LITTLE_TOLERANCE:
            differ.append(variant)
    failed = f"requests failed (errors, not answers; see the warnings): {'; '.join(failing)}."
    if not parts:
        return f"Async vs sync ({workload} vs {twin}): not comparable on any variant, {failed}"
    text = f"Async vs sync ({workload} vs {twin}, the same wait awaited instead of slept): " + "; ".join(parts) + "."
    if failing:
        text += f" Not comparable, {failed}"
    asgi = sorted({v for v, (row, _) in pairs.items() if row.declared.model == WorkerModel.ASGI})
    if asgi:
        text += (f" Under ASGI ({', '.join(asgi)}) the slots are the adapter's thread pool, not the server's event "
                 f"loop: asgiref's WsgiToAsgi runs the WSGI app, async views included, on its threads.")
    doc = ("Flask runs an async view in an event loop inside the worker thread that took the request, so each request "
           "still ties up one worker (Flask's documentation, \"Using async and await\")")
    if not differ:
        where = "every variant whose requests were all answered" if failing else "every variant"
        return text + f" The async view did what the sync view did on {where}, within {LITTLE_TOLERANCE:.0%}: {doc}."
    return (text + f" They differ by more than {LITTLE_TOLERANCE:.0%} on {', '.join(differ)}, so there the measurements "
            f"do not follow Flask's documentation, which expects no gain ({doc}); Little's law's table says what bounded "
            f"each row.")
