"""Runs scheduled for later (`RpcEndpoint.schedule_run_async`): one heap and one task for every
endpoint of a service.

Heartbeats, timeouts and retries schedule thousands of runs over a long simulated run. A task
per run would cost a task each; a task per endpoint still wakes every endpoint's task when
their deadlines meet (they do: heartbeats of every component start together), with a cancel
scope firing for each. Here one task sleeps until the earliest deadline of the whole service and
hands every run that is due to its endpoint, in deadline order (the order of scheduling among
equal deadlines). A cancelled run at the head is dropped at once, so the task does not wake
for it: resetting a timeout (cancel, schedule anew) costs no wake-up.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from typing import Any, Protocol

import trio


class Target(Protocol):
    """Who a due run is handed to (an `RpcEndpoint`): named by shape so that this module needs
    nothing of the endpoint module."""

    def fire_scheduled(self, fn: Callable[[], Any]) -> None: ...


class ScheduledRun:
    """What `RpcEndpoint.schedule_run_async` returns: `cancel()` drops the run."""

    __slots__ = ("_runs", "cancel_called", "fn")

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn = fn
        self.cancel_called = False
        self._runs: ScheduledRuns | None = None

    def cancel(self) -> None:
        if not self.cancel_called:
            self.cancel_called = True
            if self._runs is not None:
                self._runs.dropped()


class ScheduledRuns:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Target, ScheduledRun]] = []
        self._seq = 0
        self._scope: trio.CancelScope | None = None

    def add(self, deadline: float, target: Target, run: ScheduledRun) -> None:
        self._seq += 1
        run._runs = self
        heapq.heappush(self._heap, (deadline, self._seq, target, run))
        scope = self._scope
        if scope is not None and deadline < scope.deadline:
            scope.deadline = deadline

    def dropped(self) -> None:
        """A run was cancelled: if it was the earliest, sleep until the next one instead."""
        heap = self._heap
        if heap and heap[0][3].cancel_called:
            while heap and heap[0][3].cancel_called:
                heapq.heappop(heap)
            if self._scope is not None:
                self._scope.deadline = heap[0][0] if heap else math.inf

    @property
    def pending(self) -> int:
        return sum(1 for entry in self._heap if not entry[3].cancel_called)

    async def run(self) -> None:
        heap = self._heap
        while True:
            with trio.CancelScope(deadline=heap[0][0] if heap else math.inf) as scope:
                self._scope = scope
                await trio.sleep_forever()
            self._scope = None
            now = trio.current_time()
            while heap and heap[0][0] <= now:
                _, _, target, run = heapq.heappop(heap)
                if not run.cancel_called:
                    run._runs = None  # it ran: a late cancel() changes nothing
                    target.fire_scheduled(run.fn)
            while heap and heap[0][3].cancel_called:
                heapq.heappop(heap)
