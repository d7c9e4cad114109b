"""Checking a results row's fields against their annotations, as JSON gives them back.

A results file can be edited by hand or corrupted; a field of the wrong JSON type
(``"requests": "1000"``) must be refused where the file is read, naming the field,
and not fail later inside a report as "'<' not supported between instances of 'str' and 'int'".
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

#: What a field's annotation allows from JSON: its base type's accepted Python types.
_JSON_KINDS: dict[str, tuple[type, ...]] = {
    "str": (str,), "int": (int,), "float": (int, float), "bool": (bool,), "dict": (dict,),
}
_KIND_NAMES = {"str": "a string", "int": "an integer", "float": "a number", "bool": "true or false",
               "dict": "an object"}


def check_field_types(obj: Any) -> None:
    """Check each plain field of a results dataclass (str, int, float, bool, dict, optional or
    not; a ``dict[str, float]``'s values too, numbers or null) against its annotation.

    :param obj: a dataclass instance whose annotations are strings (``from __future__ import annotations``).
    :raises ValueError: naming the field, the expected JSON type and the value found, so a
        hand-edited or corrupted file is refused where it is read, not deep in a report
        ("'<' not supported between instances of 'str' and 'int'").
    """
    for item in fields(obj):
        annotation = str(item.type).replace(" ", "")
        optional = annotation.endswith("|None")
        base = annotation.removesuffix("|None")
        kind = base.split("[", 1)[0]
        if kind not in _JSON_KINDS:
            continue
        value = getattr(obj, item.name)
        if value is None and optional:
            continue
        numeric = kind in ("int", "float")
        if not isinstance(value, _JSON_KINDS[kind]) or (numeric and isinstance(value, bool)):
            raise ValueError(f"field {item.name!r} must be {_KIND_NAMES[kind]}"
                             f"{' or null' if optional else ''}, got {value!r:.60}")
        if base == "dict[str,float]":
            for key, number in value.items():
                if number is not None and (isinstance(number, bool) or not isinstance(number, (int, float))):
                    raise ValueError(f"field {item.name!r} must map names to numbers, "
                                     f"got {key!r}: {number!r:.60}")
