"""Event lines to stdout that never block the cluster.

A cluster process that writes its event log with plain blocking writes stops dead when nobody
reads the pipe (a full pipe blocks the write, and with it trio's whole loop, signals included).
Here lines go into a bounded queue and one task writes them with non-blocking writes; when the
reader falls behind, the oldest lines are dropped and the drop is said in the log.
"""

from __future__ import annotations

import os
import sys
from collections import deque
from datetime import datetime
from typing import Any

import trio

from minicluster.console import format_event_line
from minicluster.console.plain import format_timestamp


def wall_clock_line(event: dict[str, Any]) -> str:
    """An event line stamped with the local wall-clock time, for a process on the real clock
    (`start`, `task-executor`): its log lines up with other logs, where seconds since the
    process started would not. Virtual-clock runs keep cluster time."""
    rest = format_event_line({**event, "time": None}).removeprefix(format_timestamp(None))
    return f"[{now_stamp()}]{rest}"


def now_stamp() -> str:
    """``2025-05-01 14:03:07.251``: local time to the millisecond."""
    return datetime.now().isoformat(sep=" ", timespec="milliseconds")


class LinePrinter:
    def __init__(self, limit: int = 10_000) -> None:
        self._lines: deque[str] = deque()
        self._limit = limit
        self._dropped = 0
        self._wake = trio.Event()

    def put(self, line: str) -> None:
        if len(self._lines) >= self._limit:
            self._lines.popleft()
            self._dropped += 1
        self._lines.append(line)
        self._wake.set()

    async def run(self) -> None:
        sys.stdout.flush()
        stream = trio.lowlevel.FdStream(os.dup(sys.stdout.fileno()))
        try:
            while True:
                await self._wake.wait()
                self._wake = trio.Event()
                while self._lines:
                    batch = list(self._lines)
                    self._lines.clear()
                    if self._dropped:
                        batch.insert(0, f"... {self._dropped} lines dropped: stdout is not read")
                        self._dropped = 0
                    await stream.send_all(("\n".join(batch) + "\n").encode())
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the reader went away: nothing more to say
        finally:
            with trio.CancelScope(shield=True):
                await stream.aclose()
