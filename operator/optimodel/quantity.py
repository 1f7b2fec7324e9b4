"""Kubernetes resource quantities (`12Mi`, `1.5G`, `500k`) as byte counts. Pure: stdlib only.

Users write sizes in a manifest the way they write memory limits, so gates accept the same syntax.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_SUFFIXES: dict[str, int] = {
    "": 1,
    "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
}
_PATTERN = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)\s*([KMGTPE]i|[kMGTPE])?\s*$")
QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?([KMGTPE]i|[kMGTPE])?$"


def parse_bytes(value: int | float | str) -> int:
    """Return the number of bytes a quantity stands for, rounded up to a whole byte."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a size")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"{value!r} is negative")
        return int(Decimal(str(value)).to_integral_value(rounding="ROUND_CEILING"))
    match = _PATTERN.match(value)
    if not match:
        raise ValueError(f"{value!r} is not a Kubernetes quantity such as 12Mi, 500k or 1048576")
    number, suffix = match.group(1), match.group(2) or ""
    try:
        amount = Decimal(number) * _SUFFIXES[suffix]
    except InvalidOperation as error:
        raise ValueError(f"{value!r} is not a number") from error
    return int(amount.to_integral_value(rounding="ROUND_CEILING"))


def format_bytes(size: int | float) -> str:
    """Human figure in decimal units, the way the before/after table prints sizes."""
    for unit, factor in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if size >= factor:
            return f"{size / factor:.1f} {unit}"
    return f"{int(size)} B"
