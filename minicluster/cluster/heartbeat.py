"""Heartbeats, as Flink's HeartbeatManagerSenderImpl: the sender requests a heartbeat from each
monitored target every interval, and the target answers with a separate call carrying its payload
(`receive_heartbeat`). A target whose answer has not come within the timeout, or whose request
RPC found it unreachable `failure_threshold` times in a row, is declared lost; a request that
gets through resets that count (Flink's heartbeat.rpc-failure-threshold).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import trio

from minicluster.rpc import RecipientUnreachableError, RpcEndpoint
from minicluster.rpc.scheduled import ScheduledRun

OnDone = Callable[[Any, BaseException | None], None]
"""Where a heartbeat request's outcome goes: (result, None) or (None, error)."""


class HeartbeatTimeout:
    """The receiving side of a heartbeat (Flink's HeartbeatMonitorImpl): `on_timeout` runs on
    the owner's main thread once `timeout` seconds pass without a `reset()`.

    Each reset cancels the scheduled run and schedules a new one, as Flink cancels and
    re-schedules its timeout future: that costs a heap entry, not a wake-up, so a peer that
    keeps sending heartbeats never wakes anything, however long the run. (A check every
    interval would wake once per interval and notice a silent peer up to an interval late.)
    """

    __slots__ = ("_on_timeout", "_owner", "_run", "_timeout")

    def __init__(self, owner: RpcEndpoint, timeout: float, on_timeout: Callable[[], None]) -> None:
        self._owner = owner
        self._timeout = timeout
        self._on_timeout = on_timeout
        self._run: ScheduledRun | None = None

    def reset(self) -> None:
        """A heartbeat arrived (or the connection was just made): count from now."""
        if self._run is not None:
            self._run.cancel()
        self._run = self._owner.schedule_run_async(self._fire, self._timeout)

    def stop(self) -> None:
        if self._run is not None:
            self._run.cancel()
            self._run = None

    def _fire(self) -> None:
        self._run = None
        self._on_timeout()


class _Target:
    __slots__ = ("failures", "in_flight", "last", "timeout")

    def __init__(self, now: float, timeout: HeartbeatTimeout) -> None:
        self.last = now
        self.failures = 0
        self.in_flight = False
        self.timeout = timeout


class HeartbeatSender:
    def __init__(
        self,
        owner: RpcEndpoint,
        interval: float,
        timeout: float,
        failure_threshold: int,
        request: Callable[[str, float, OnDone], None],
        on_lost: Callable[[str, str], None],
        on_payload: Callable[[str, Any], None] | None = None,
    ) -> None:
        self._owner = owner
        self._interval = interval
        self._timeout = timeout
        self._threshold = failure_threshold
        self._request = request
        self._on_lost = on_lost
        self._on_payload = on_payload
        self._targets: dict[str, _Target] = {}
        self._started = False

    def start(self) -> None:
        if not self._started:
            self._started = True
            self._owner.schedule_run_async(self._tick, self._interval)

    def monitor(self, target: str) -> None:
        """Watch `target`: lost unless it answers within the timeout (counted from now)."""
        self.unmonitor(target)
        timeout = HeartbeatTimeout(self._owner, self._timeout, lambda: self._timed_out(target))
        self._targets[target] = _Target(trio.current_time(), timeout)
        timeout.reset()

    def unmonitor(self, target: str) -> None:
        state = self._targets.pop(target, None)
        if state is not None:
            state.timeout.stop()

    def _timed_out(self, target: str) -> None:
        if self._targets.pop(target, None) is not None:
            self._on_lost(target, f"heartbeat of {target} timed out after {self._timeout:g} s")

    def receive_heartbeat(self, target: str, payload: Any = None) -> None:
        """The target's answer (on the main thread): it is alive; hand its payload over."""
        state = self._targets.get(target)
        if state is None:
            return
        state.last = trio.current_time()
        state.timeout.reset()
        if self._on_payload is not None:
            self._on_payload(target, payload)

    def last_seen(self, target: str) -> float | None:
        state = self._targets.get(target)
        return state.last if state is not None else None

    def _tick(self) -> None:
        """Request a heartbeat from every target (a timeout of its own notices the silent
        ones: see HeartbeatTimeout)."""
        for target, state in list(self._targets.items()):
            if self._targets.get(target) is not state:
                continue  # lost while this tick ran
            if not state.in_flight:
                state.in_flight = True
                # a request that gets no answer within an interval is given up, so that the
                # next tick asks again (a lost request must not blind us for a whole RPC
                # timeout); no task waits for it (Flink: the request's future)
                self._request(target, self._interval, self._on_done(target, state))
        self._owner.schedule_run_async(self._tick, self._interval)

    def _on_done(self, target: str, state: _Target) -> OnDone:
        owner = self._owner

        def done(result: Any, error: BaseException | None) -> None:
            ok = error is None
            unreachable = isinstance(error, RecipientUnreachableError)
            # timeouts and refusals count as neither: the heartbeat timeout decides
            if owner.in_main_thread():
                self._answered(target, state, ok, unreachable)
            else:
                owner.run_async(lambda: self._answered(target, state, ok, unreachable))

        return done

    def _answered(self, target: str, state: _Target, ok: bool, unreachable: bool) -> None:
        state.in_flight = False
        if self._targets.get(target) is not state:
            return
        if ok:
            state.failures = 0
        elif unreachable:
            state.failures += 1
            if state.failures >= self._threshold:
                self.unmonitor(target)
                self._on_lost(target, f"{target} was unreachable {state.failures} times")
