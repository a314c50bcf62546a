"""A trace as a sequence of messages between participants: window, selection, folding, bound.

Pure data in, pure data out: `build_sequence` takes records and returns a `Sequence` that a
renderer (mermaid.py) turns into text.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from .participants import UNKNOWN_SENDER, Participant, make_participants, order_key
from .records import TraceRecord

DEFAULT_MAX_MESSAGES = 400
"""Messages (a folded heartbeat run counts as one) drawn before the rest is left out: past a few
hundred a sequence diagram is too long to read, and Mermaid refuses very long texts."""

MAX_MESSAGES = 5_000


class WindowError(ValueError):
    """A time window that selects nothing by construction (start after end, negative)."""


@dataclass(frozen=True)
class Window:
    """Seconds of cluster time, both ends included; None is open."""

    start: float | None = None
    end: float | None = None

    def __post_init__(self) -> None:
        for name, value in (("start", self.start), ("end", self.end)):
            if value is not None and (not math.isfinite(value) or value < 0):
                raise WindowError(f"the window's {name} must be a time from 0 on, got {value!r}")
        if self.start is not None and self.end is not None and self.start > self.end:
            raise WindowError(
                f"the window starts at {self.start:g} s, after its end at {self.end:g} s"
            )

    def contains(self, time: float) -> bool:
        return (self.start is None or time >= self.start) and (self.end is None or time <= self.end)


ALL_TIME = Window()
"""The window of the whole trace."""


@dataclass(frozen=True)
class Message:
    record: TraceRecord
    sender: str
    receiver: str


@dataclass
class HeartbeatRun:
    """Consecutive heartbeat messages drawn as one note."""

    first: float
    last: float
    count: int = 0
    failed: int = 0  # dropped, rejected or an error
    endpoints: set[str] = field(default_factory=set)


Item = Message | HeartbeatRun


@dataclass
class Sequence:
    participants: list[Participant]
    items: list[Item]
    selected: int  # messages in the window and the selection
    left_out: int  # of them, not drawn because of the bound
    max_messages: int


def job_names(records: Iterable[TraceRecord]) -> dict[str, str]:
    """Job id (hex) -> name, from the submit_job lines."""
    names: dict[str, str] = {}
    for record in records:
        job, name = record.detail.get("job"), record.detail.get("job_name")
        if isinstance(job, str) and isinstance(name, str):
            names.setdefault(job, name)
    return names


def endpoints_of(records: Iterable[TraceRecord]) -> dict[str, int]:
    """Every endpoint id of the records -> the index of its first message."""
    seen: dict[str, int] = {}
    for index, record in enumerate(records):
        for endpoint in (record.sender or UNKNOWN_SENDER, record.receiver):
            seen.setdefault(endpoint, index)
    return seen


def select(
    records: Iterable[TraceRecord],
    window: Window = ALL_TIME,
    only: Collection[str] | None = None,
) -> list[TraceRecord]:
    """The records in the window whose both ends are in `only` (all when None)."""
    return [
        r
        for r in records
        if window.contains(r.time)
        and (only is None or ((r.sender or UNKNOWN_SENDER) in only and r.receiver in only))
    ]


def build_sequence(
    records: list[TraceRecord],
    window: Window = ALL_TIME,
    only: Collection[str] | None = None,
    max_messages: int = DEFAULT_MAX_MESSAGES,
) -> Sequence:
    """The messages of the window and selection in trace order, heartbeat runs folded, at most
    `max_messages` items."""
    if not 1 <= max_messages <= MAX_MESSAGES:
        raise ValueError(f"the message limit is from 1 to {MAX_MESSAGES:,}, got {max_messages}")
    chosen = select(records, window, only)
    items: list[Item] = []
    drawn = 0
    for record in chosen:
        sender = record.sender or UNKNOWN_SENDER
        last = items[-1] if items else None
        if record.is_heartbeat and isinstance(last, HeartbeatRun):
            run = last
        elif len(items) >= max_messages:
            break
        elif record.is_heartbeat:
            run = HeartbeatRun(record.time, record.time)
            items.append(run)
        else:
            items.append(Message(record, sender, record.receiver))
            drawn += 1
            continue
        run.last = record.time
        run.count += 1
        run.failed += not record.ok
        run.endpoints |= {sender, record.receiver}
        drawn += 1
    first_seen = endpoints_of(records)
    shown: set[str] = set()
    for item in items:
        if isinstance(item, Message):
            shown |= {item.sender, item.receiver}
        else:
            shown |= item.endpoints
    ordered = sorted(shown, key=lambda e: order_key(e, first_seen))
    return Sequence(
        make_participants(ordered, job_names(records)),
        items,
        selected=len(chosen),
        left_out=len(chosen) - drawn,
        max_messages=max_messages,
    )
