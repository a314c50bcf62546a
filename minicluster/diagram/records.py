"""Trace records: one line of a `--trace` file, read and checked once at the boundary.

A trace line is a JSON object with time, sender, receiver, method, kind (ask or tell) and
outcome (ok, ``error: <name>``, ``rejected: stale fencing token`` or dropped); a message about
a job, task or slot has a few keys more (docs/diagrams.md). Everything after this module works
on `TraceRecord`s and trusts them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_LINE_LENGTH = 65_536
"""Characters of one trace line: a longer one is not a trace record."""

MAX_NAME_LENGTH = 1_000
"""Characters of a sender, receiver, method or outcome."""

_DETAIL_TYPES: dict[str, type] = {
    "job": str,
    "job_name": str,
    "slots": int,
    "slot": str,
    "allocation": str,
    "execution": str,
    "vertex": str,
    "subtask": int,
    "attempt": int,
    "state": str,
}


class TraceRecordError(ValueError):
    """What is wrong with a line; `line` is its number (1-based) when it came from a file."""

    def __init__(self, reason: str, line: int | None = None) -> None:
        self.reason = reason
        self.line = line
        where = f"line {line} is not a trace record: " if line is not None else ""
        super().__init__(f"{where}{reason}")


@dataclass(frozen=True)
class TraceRecord:
    """One RPC message as the trace saw it, when its receiver handled (or never got) it."""

    time: float
    sender: str | None
    receiver: str
    method: str
    kind: str  # ask or tell
    outcome: str
    detail: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"

    @property
    def dropped(self) -> bool:
        return self.outcome == "dropped"

    @property
    def fencing_rejected(self) -> bool:
        return self.outcome.startswith("rejected")

    @property
    def is_heartbeat(self) -> bool:
        return self.method.startswith("heartbeat_")


def _text(record: Mapping[str, Any], key: str, *, optional: bool = False) -> str | None:
    value = record.get(key)
    if value is None and optional and key in record:
        return None
    if not isinstance(value, str) or not value:
        null = " or null" if optional else ""
        raise TraceRecordError(f"{key!r} must be a non-empty string{null}")
    if len(value) > MAX_NAME_LENGTH:
        raise TraceRecordError(f"{key!r} has more than {MAX_NAME_LENGTH:,} characters")
    return value


def parse_record(record: object) -> TraceRecord:
    """A decoded JSON value as a TraceRecord, or TraceRecordError saying what is missing."""
    if not isinstance(record, dict):
        raise TraceRecordError("expected a JSON object")
    time = record.get("time")
    if isinstance(time, bool) or not isinstance(time, int | float) or not math.isfinite(time):
        raise TraceRecordError("'time' must be a number of seconds")
    if time < 0:
        raise TraceRecordError("'time' must not be negative")
    kind = record.get("kind")
    if kind not in ("ask", "tell"):
        raise TraceRecordError("'kind' must be ask or tell")
    sender = _text(record, "sender", optional=True)
    receiver = _text(record, "receiver")
    method = _text(record, "method")
    outcome = _text(record, "outcome")
    assert receiver is not None and method is not None and outcome is not None
    detail: dict[str, Any] = {}
    for key, kind_of in _DETAIL_TYPES.items():
        value = record.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, kind_of):
            raise TraceRecordError(f"{key!r} must be a {'number' if kind_of is int else 'string'}")
        if isinstance(value, str) and len(value) > MAX_NAME_LENGTH:
            raise TraceRecordError(f"{key!r} has more than {MAX_NAME_LENGTH:,} characters")
        detail[key] = value
    return TraceRecord(float(time), sender, receiver, method, str(kind), outcome, detail)


def parse_line(line: str) -> TraceRecord:
    """One line of a trace file as a TraceRecord."""
    if len(line) > MAX_LINE_LENGTH:
        raise TraceRecordError(f"longer than {MAX_LINE_LENGTH:,} characters")
    try:
        value = json.loads(line)
    except (ValueError, RecursionError):
        raise TraceRecordError("not valid JSON") from None
    return parse_record(value)


def parse_lines(lines: Iterable[str]) -> list[TraceRecord]:
    """Every non-blank line as a record; the first bad one raises with its line number."""
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(parse_line(line))
        except TraceRecordError as exc:
            raise TraceRecordError(exc.reason, number) from None
    return records
