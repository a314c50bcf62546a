"""A virtual clock paced in real time, for a person watching a run.

trio's MockClock either jumps straight to the next deadline as soon as every task waits
(autojump: as fast as the run goes) or runs at a fixed rate, in which case timers fire a little
after their deadlines and the run's trace depends on how busy the machine was. `paced_clock`
is the autojump clock with a pause before each jump: when trio would jump to the next deadline
it first lets (deadline - now) / speed seconds of real time pass. Jumps happen exactly when and
where the autojump clock makes them (only when every task waits, after wait_all_tasks_blocked
waiters), so a paced run is the flat-out run slowed down: same seed, same trace, at any speed.

The pause is taken in slices of at most `_SLICE` seconds: between slices trio goes back to its
loop, so signals (Ctrl-C) and I/O are still served. MockClock cannot be subclassed; the clock's
`_autojump`, the hook trio's run loop calls to jump it, is replaced on the one instance. That
hook is private to trio, like the deterministic-scheduling flag a seeded run uses: should trio
change it, the pacing is lost, not the run.
"""

from __future__ import annotations

import math
import time

import trio
import trio.testing

_SLICE = 0.05  # seconds of real time the run loop may be held at once


def paced_clock(speed: float) -> trio.testing.MockClock:
    """An autojump MockClock that waits (gap / speed) real seconds before each jump."""
    if not (math.isfinite(speed) and speed > 0):
        raise ValueError(f"a pace must be a positive finite number, not {speed}")
    clock = trio.testing.MockClock(autojump_threshold=0)
    pending: list[float] = []  # [deadline, real time when the clock may jump to it]

    def autojump() -> None:
        jump = trio.lowlevel.current_statistics().seconds_to_next_deadline
        if not 0 < jump < math.inf:
            return
        target = clock.current_time() + jump
        real = time.perf_counter()
        if not pending or pending[0] != target:
            pending[:] = [target, real + jump / speed]
        remaining = pending[1] - real
        if remaining > 0:
            time.sleep(min(remaining, _SLICE))
            if time.perf_counter() < pending[1]:
                return  # not yet: trio's loop comes back here once it has looked around
        pending.clear()
        clock.jump(jump)

    clock._autojump = autojump  # type: ignore[method-assign]
    return clock
