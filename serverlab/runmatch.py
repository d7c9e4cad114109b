"""Whether results of different runs may be put together: the metadata that shapes the figures must agree.

Merging results files into one report, or comparing two runs (``serverlab compare``),
only makes sense when the runs measured the same thing under the same conditions, as
pyperf's ``add_run`` refuses runs whose metadata disagree. Three things decide it:

* ``image`` — the image the servers ran (the header's ``metadata["image"]``; compared
  when both runs recorded one);
* ``budget`` — the servers' CPUs, memory and cpuset, the generator's cpuset and processes
  (:attr:`serverlab.results.RunHeader.budget`);
* ``variants`` — each variant both runs measured: its server, model, workers, threads,
  connections, slots, keep-alive, command, settings, proxy and request-head limits
  (:class:`serverlab.records.VariantRecord`; its description does not count).

:func:`check_agree` refuses a disagreement, naming the key and both values, unless the
comparison was asked to compare exactly that (``serverlab compare --compare budget``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Iterable, Sequence

from serverlab import LabError
from serverlab.records import VariantRecord
from serverlab.results import RunHeader

#: What ``serverlab compare --compare`` may be asked to compare; everything else must agree.
COMPARABLE = ("image", "budget", "variants")
#: The budget's fields that shape the figures (``loadgen_auto`` only says how the processes were chosen).
BUDGET_KEYS = ("server_cpus", "server_memory", "server_cpuset", "loadgen_cpuset", "loadgen_processes")
#: A variant record's fields that shape the figures (all but its name and description).
VARIANT_KEYS = tuple(f.name for f in fields(VariantRecord) if f.name not in ("name", "description"))


class RunsDisagree(LabError):
    """Results of different runs disagree on metadata that matters (see :func:`check_agree`)."""


@dataclass(frozen=True)
class Disagreement:
    """One piece of metadata two runs disagree on.

    :param what: which of :data:`COMPARABLE` it belongs to.
    :param key: what differs, e.g. ``"budget.server_cpus"``, ``"image"``, ``"variant gunicorn-sync: workers"``.
    :param old: the first run's value; :param new: the second run's value.
    """

    what: str
    key: str
    old: object
    new: object

    def text(self) -> str:
        """E.g. ``"budget.server_cpus: 1.0 then 0.5"``."""
        return f"{self.key}: {self.old!r} then {self.new!r}"


def disagreements(old: RunHeader, new: RunHeader) -> list[Disagreement]:
    """Everything in :data:`COMPARABLE` on which ``old`` and ``new`` disagree, in that order.

    :param old: the first run's header; :param new: the second's.
    :return: one :class:`Disagreement` per differing key (image when both recorded one, budget fields
        when both recorded a budget, fields of each variant both recorded).
    """
    found: list[Disagreement] = []
    a_image, b_image = old.metadata.get("image"), new.metadata.get("image")
    if a_image is not None and b_image is not None and a_image != b_image:
        found.append(Disagreement("image", "image", a_image, b_image))
    if old.budget is not None and new.budget is not None:
        for key in BUDGET_KEYS:
            a, b = getattr(old.budget, key), getattr(new.budget, key)
            if a != b:
                found.append(Disagreement("budget", f"budget.{key}", a, b))
    for name in (n for n in old.variants if n in new.variants):
        for key in VARIANT_KEYS:
            a, b = getattr(old.variants[name], key), getattr(new.variants[name], key)
            if a != b:
                found.append(Disagreement("variants", f"variant {name}: {key}", a, b))
    return found


def compared_keys(values: Iterable[str]) -> tuple[str, ...]:
    """The ``--compare`` values, checked.

    :raises RunsDisagree: naming a value that is not one of :data:`COMPARABLE`, and the valid ones.
    """
    chosen = tuple(dict.fromkeys(values))
    bad = [value for value in chosen if value not in COMPARABLE]
    if bad:
        raise RunsDisagree(f"--compare {bad[0]!r} is not something runs can be compared on; valid: "
                           f"{', '.join(COMPARABLE)}")
    return chosen


def check_agree(old: RunHeader, new: RunHeader, names: Sequence[str], compare: Iterable[str] = ()) -> list[Disagreement]:
    """Refuse to put ``old`` and ``new`` together when they disagree on anything not in ``compare``.

    :param names: how to name the two runs in the error (e.g. their paths).
    :param compare: what the comparison is about (values of :data:`COMPARABLE`); those may differ.
    :return: the disagreements ``compare`` allowed (for the comparison's notes).
    :raises RunsDisagree: naming each disagreeing key with both values, and the ``--compare``
        value that would allow it.
    """
    allowed = compared_keys(compare)
    found = disagreements(old, new)
    refused = [d for d in found if d.what not in allowed]
    if refused:
        whats = list(dict.fromkeys(d.what for d in refused))
        raise RunsDisagree(
            f"{names[0]} and {names[1]} disagree on what shapes the figures: "
            + "; ".join(d.text() for d in refused)
            + f". Their figures would not be comparable; to compare exactly that, pass "
            + " ".join(f"--compare {w}" for w in whats) + " to serverlab compare")
    return found
