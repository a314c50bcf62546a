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

import trio


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
