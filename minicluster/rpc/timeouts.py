"""Ask timeouts without a cancel scope per call.

A cancel scope per ask cost about a quarter of the remote call path in profiles. Instead every
pending ask is put on a queue per timeout value (deadlines in a queue are therefore in order)
and one task per service sleeps until the earliest deadline and expires what is due. Answered
asks are dropped from the queue heads lazily.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from typing import Protocol

import trio


class Expiring(Protocol):
    """A pending ask as the timeouts see it (a `Reply`): named by shape, so that this module
    needs nothing from the modules that use it."""

    _done: bool

    def expire(self) -> None: ...


class Timeouts:
    def __init__(self) -> None:
        self._queues: dict[float, deque[tuple[float, Expiring]]] = {}
        self._next = math.inf
        self._scope: trio.CancelScope | None = None
        self._now: Callable[[], float] | None = None

    def add(self, reply: Expiring, timeout: float) -> None:
        now = self._now
        if now is None:  # the clock's own method: cheaper than trio.current_time()
            now = self._now = trio.lowlevel.current_clock().current_time
        deadline = now() + timeout
        queue = self._queues.get(timeout)
        if queue is None:
            queue = self._queues[timeout] = deque()
        else:
            while queue and queue[0][1]._done:
                queue.popleft()
        queue.append((deadline, reply))
        if deadline < self._next:
            self._next = deadline
            if self._scope is not None:
                self._scope.deadline = deadline

    @property
    def pending(self) -> int:
        return sum(len(q) for q in self._queues.values())

    async def run(self) -> None:
        while True:
            with trio.CancelScope(deadline=self._next) as scope:
                self._scope = scope
                await trio.sleep_forever()
            self._scope = None
            self._expire(trio.current_time())

    def _expire(self, now: float) -> None:
        upcoming = math.inf
        for timeout, queue in list(self._queues.items()):
            while queue:
                deadline, reply = queue[0]
                if reply._done:
                    queue.popleft()
                elif deadline <= now:
                    queue.popleft()
                    reply.expire()
                else:
                    upcoming = min(upcoming, deadline)
                    break
            if not queue:
                del self._queues[timeout]
        self._next = upcoming
