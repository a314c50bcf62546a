"""Durations as scenario files write them: ``500ms``, ``3s``, ``2m``, ``1h``, ``1.5s`` or a plain
number of seconds."""

from __future__ import annotations

import datetime
import math
import re

__all__ = ["describe_value", "format_duration", "parse_duration"]

_EXAMPLES = "a duration such as 500ms, 3s, 2m or 1h"

_UNITS: dict[str, float] = {
    "ms": 0.001,
    "millis": 0.001,
    "millisecond": 0.001,
    "milliseconds": 0.001,
    "s": 1.0,
    "sec": 1.0,
    "secs": 1.0,
    "second": 1.0,
    "seconds": 1.0,
    "m": 60.0,
    "min": 60.0,
    "mins": 60.0,
    "minute": 60.0,
    "minutes": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
    "hours": 3600.0,
}

_PATTERN = re.compile(r"(?P<number>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*(?P<unit>[^\s0-9.]*)")


def describe_value(value: object) -> str:
    """How an error message shows a value someone wrote: ``'four'``, ``7``, ``true``, ``a list``."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        if not value.strip():
            return "an empty string" if not value else f"only whitespace ({value!r})"
        return repr(value if len(value) <= 60 else value[:57] + "...")
    if isinstance(value, int):
        text = str(value) if value.bit_length() < 200 else "a huge integer"
        return text
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "a map"
    if isinstance(value, (datetime.date, datetime.datetime)):
        return f"the date {value.isoformat()}"
    return f"a value of type {type(value).__name__}"


def parse_duration(value: object) -> float:
    """Seconds from ``"500ms"``, ``"3s"``, ``"2m"``, ``"1h"``, ``"1.5s"``, ``3`` or ``"3"``.

    Raises ValueError, with a message that completes ``"<where>: "``, for anything else: negative,
    empty, infinite, an unknown unit, a boolean or a value that is not text or a number.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"expected {_EXAMPLES}, got {describe_value(value)}")
    if isinstance(value, (int, float)):
        try:
            seconds = float(value)
        except OverflowError:
            raise ValueError(f"expected {_EXAMPLES}, got a number too large to use") from None
        if math.isnan(seconds):
            raise ValueError(f"expected {_EXAMPLES}, got {describe_value(value)}")
        if seconds < 0:
            raise ValueError(f"a duration cannot be negative, got {describe_value(value)}")
        if math.isinf(seconds):
            raise ValueError(f"a duration must be finite, got {describe_value(value)}")
        return seconds
    text = value.strip()
    if not text:
        raise ValueError(f"expected {_EXAMPLES}, got {describe_value(value)}")
    if text.startswith("-"):
        raise ValueError(f"a duration cannot be negative, got {describe_value(value)}")
    match = _PATTERN.fullmatch(text.removeprefix("+"))
    if match is None:
        raise ValueError(f"expected {_EXAMPLES}, got {describe_value(value)}")
    unit = match["unit"].lower() or "s"
    if unit not in _UNITS:
        raise ValueError(
            f"unknown duration unit {match['unit']!r} in {describe_value(value)}; use ms, s, m or h"
        )
    seconds = float(match["number"]) * _UNITS[unit]
    if math.isinf(seconds):
        raise ValueError(f"a duration must be finite, got {describe_value(value)}")
    return seconds


def format_duration(seconds: float) -> str:
    """How a scenario file would write ``seconds``: ``500ms``, ``3s``, ``2m``, ``1.5s``."""
    if seconds != 0 and seconds < 1:
        millis = seconds * 1000
        return f"{millis:g}ms"
    if seconds >= 60 and seconds % 3600 == 0:
        return f"{seconds / 3600:g}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g}m"
    return f"{seconds:g}s"
