"""Rate-limited log lines: a peer that sends 20,000 bad messages gets a few lines and a count.

Problems met per message (a tell that fails, a client said goodbye to) are logged through a
`LogLimiter`: the first `burst` lines of one kind (one logger, one format string) in a window
go out as they are; the others are only counted, and the first line of that kind after the
window, or `flush` (when the service closes), reports them:
"... 19,995 more like this in 10 s, the last: tell calc.nope failed: ...".
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import trio

DEFAULT_BURST = 5
DEFAULT_WINDOW = 10.0


def _now() -> float:
    """trio's clock inside a run (a virtual clock in tests), the monotonic clock outside."""
    try:
        return trio.current_time()
    except RuntimeError:
        return time.monotonic()


class _Kind:
    __slots__ = ("last", "level", "logged", "started", "suppressed")

    def __init__(self, started: float) -> None:
        self.started = started
        self.logged = 0
        self.suppressed = 0
        self.level = logging.WARNING
        self.last: tuple[object, ...] = ()


class LogLimiter:
    """At most `burst` lines per kind per `window` seconds; the rest are counted and reported."""

    def __init__(
        self,
        burst: int = DEFAULT_BURST,
        window: float = DEFAULT_WINDOW,
        clock: Callable[[], float] = _now,
    ) -> None:
        self.burst = burst
        self.window = window
        self._clock = clock
        self._kinds: dict[tuple[str, str], _Kind] = {}

    def warning(self, logger: logging.Logger, msg: str, *args: object) -> None:
        self._log(logger, logging.WARNING, msg, args)

    def log(self, logger: logging.Logger, level: int, msg: str, *args: object) -> None:
        self._log(logger, level, msg, args)

    def _log(self, logger: logging.Logger, level: int, msg: str, args: tuple[object, ...]) -> None:
        if not logger.isEnabledFor(level):
            return
        now = self._clock()
        key = (logger.name, msg)
        kind = self._kinds.get(key)
        if kind is None:
            kind = self._kinds[key] = _Kind(now)
        elif now - kind.started >= self.window:
            self._report(logger, msg, kind, now)
            kind.started, kind.logged = now, 0
        if kind.logged < self.burst:
            kind.logged += 1
            logger.log(level, msg, *args, stacklevel=3)  # where the caller logged
        else:
            kind.suppressed += 1
            kind.level = level
            kind.last = args

    def flush(self) -> None:
        """Report what was held back now (the service is closing)."""
        now = self._clock()
        for (name, msg), kind in self._kinds.items():
            self._report(logging.getLogger(name), msg, kind, now)
        self._kinds.clear()

    @staticmethod
    def _report(logger: logging.Logger, msg: str, kind: _Kind, now: float) -> None:
        if kind.suppressed:
            logger.log(
                kind.level,
                "... %s more like this in %.0f s, the last: " + msg,
                f"{kind.suppressed:,}",
                now - kind.started,
                *kind.last,
            )
            kind.suppressed = 0
