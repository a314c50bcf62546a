"""A virtual clock paced in real time, for a person watching a run.

trio's MockClock either jumps straight to the next deadline (autojump: as fast as the run goes)
or runs at a fixed rate, in which case timers fire a little after their deadlines and the run's
trace depends on how busy the machine was. `PacedClock` does what a discrete-event simulator
shown to a person does: time stands still while anything can run, and when everything waits it
jumps to the next deadline exactly, after waiting (deadline - now) / rate seconds of real time.
So a paced run is the autojump run, slowed down: the same seed writes the same trace at any
speed, and nothing in the cluster has to tick for the pacing to hold.
"""

from __future__ import annotations

import math
import time

import trio

# when nothing at all is scheduled, trio still wakes up now and then (it polls for I/O)
_IDLE_SLEEP = 3600.0


class PacedClock(trio.abc.Clock):
    def __init__(self, rate: float) -> None:
        if not (math.isfinite(rate) and rate > 0):
            raise ValueError(f"a clock rate must be a positive finite number, not {rate}")
        self._rate = rate
        self._now = 0.0
        self._target: float | None = None  # the deadline the run is waiting for
        self._target_at = 0.0  # when (real time) the clock reaches it

    def start_clock(self) -> None:
        pass

    def current_time(self) -> float:
        # time moves only in deadline_to_sleep_time, when nothing can run: a task that reads
        # the clock while others still run at this instant always sees this instant
        return self._now

    def deadline_to_sleep_time(self, deadline: float) -> float:
        """trio asks only when no task can run. The first time for a deadline, wait its share
        of real time (wait_all_tasks_blocked waiters are woken in that wait, as they are
        before an autojump); once that has passed, jump exactly to the deadline."""
        now = self._now
        if deadline <= now:
            return 0.0
        if math.isinf(deadline):
            self._target = None
            return _IDLE_SLEEP
        real = time.perf_counter()
        if self._target != deadline:
            self._target = deadline
            self._target_at = real + (deadline - now) / self._rate
        if real >= self._target_at:
            self._now, self._target = deadline, None
            return 0.0
        return self._target_at - real
