"""Small, dependency-free formatting helpers shared by the live views and the plain log.

Everything here turns loosely typed values (strings, enums, UUIDs, numbers, None) into short,
printable text. Nothing here emits control codes.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "as_float",
    "as_int",
    "as_mappings",
    "clean",
    "format_age",
    "format_clock",
    "format_duration",
    "format_latency",
    "format_rate",
    "short_id",
    "short_token",
    "shorten_ids",
]

SHORT = 8
"""How many leading characters of a fencing token or id are shown."""

# C0 controls, DEL, C1 controls and the Unicode line/paragraph separators.
_WHITESPACE_CONTROLS = "\t\n\r\x0b\x0c\x85\u2028\u2029"
_CONTROL_TABLE: dict[int, str] = {
    code: f"\\x{code:02x}" for code in [*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0)]
}
_CONTROL_TABLE.update({ord(ch): " " for ch in _WHITESPACE_CONTROLS})

_UUID_OR_HEX = re.compile(
    r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"
    r"|\b[0-9a-fA-F]{16,}\b"
)


def clean(value: object) -> str:
    """Printable text for any value: enums by value, None as "", control characters escaped.

    Line breaks and tabs become spaces so that one value never spans two lines; any other
    control character (ESC included) is shown as a visible ``\\xNN`` escape.
    """
    if value is None:
        return ""
    if isinstance(value, enum.Enum):
        value = value.value
    return str(value).translate(_CONTROL_TABLE)


def short_token(token: object, length: int = SHORT) -> str:
    """The first characters of a fencing token (or any id); "-" when there is none."""
    text = clean(token)
    return text[:length] if text else "-"


def short_id(value: object, length: int = SHORT) -> str:
    """Same as :func:`short_token`, for job ids."""
    return short_token(value, length)


def shorten_ids(text: str, length: int = SHORT) -> str:
    """Replace every UUID or long hex id inside ``text`` by its first characters.

    ``jobmaster-3f2a1b2c4d5e6f708192a3b4c5d6e7f8`` becomes ``jobmaster-3f2a1b2c``.
    """
    return _UUID_OR_HEX.sub(lambda match: match.group(0)[:length], text)


def as_float(value: object) -> float | None:
    """A float, or None for anything that is not a number."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(str(value))
    except ValueError:
        return None


def as_int(value: object, default: int = 0) -> int:
    """An int, or ``default`` for anything that is not a number."""
    number = as_float(value)
    if number is None or number != number:  # NaN
        return default
    try:
        return int(number)
    except OverflowError:
        return default


def as_data(value: object) -> Mapping[str, Any]:
    """The JSON form the views draw: a typed snapshot (a ClusterSnapshot, its statistics,
    an event) through its ``as_dict()``, converted once where it enters a view; a mapping as
    it is; anything else as nothing."""
    to_dict = getattr(value, "as_dict", None)
    if callable(to_dict):
        data = to_dict()
        return data if isinstance(data, Mapping) else {}
    return value if isinstance(value, Mapping) else {}


def as_mappings(value: object) -> list[Mapping[str, Any]]:
    """The mappings in a list-like value; anything else is skipped."""
    if not isinstance(value, Iterable) or isinstance(value, str | bytes | Mapping):
        return []
    return [
        as_data(item) for item in value if isinstance(item, Mapping) or hasattr(item, "as_dict")
    ]


def format_age(seconds: object) -> str:
    """A heartbeat age: ``1.2s``, ``45.0s``, ``2m05s``; ``-`` when unknown."""
    return format_duration(seconds)


def format_duration(seconds: object) -> str:
    """A duration: ``0.4s``, ``12.5s``, ``2m05s``, ``1h02m``; ``-`` when unknown."""
    value = as_float(seconds)
    if value is None or value != value or value < 0:
        return "-"
    if value < 60:
        return f"{value:.1f}s"
    if value < 3600:
        minutes, secs = divmod(int(value), 60)
        return f"{minutes}m{secs:02d}s"
    hours, rest = divmod(int(value), 3600)
    return f"{hours}h{rest // 60:02d}m"


def format_clock(seconds: object) -> str:
    """A point in (virtual or real) cluster time, to the millisecond: ``12.500s``."""
    value = as_float(seconds)
    if value is None or value != value:
        return "-"
    return f"{value:.3f}s"


def format_latency(seconds: object) -> str:
    """A latency: ``180µs``, ``1.2ms``, ``2.50s``; ``-`` when unknown."""
    value = as_float(seconds)
    if value is None or value != value or value < 0:
        return "-"
    if value < 1e-3:
        return f"{value * 1e6:.0f}µs"
    if value < 1.0:
        return f"{value * 1e3:.1f}ms"
    return f"{value:.2f}s"


def format_rate(per_second: object) -> str:
    """A rate: ``523``, ``12.5``, ``0.25``, ``12.3k``; ``-`` when unknown."""
    value = as_float(per_second)
    if value is None or value != value or value < 0:
        return "-"
    if value >= 10_000:
        return f"{value / 1000:.1f}k"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 1:
        return f"{value:.1f}"
    return f"{value:.2f}"
