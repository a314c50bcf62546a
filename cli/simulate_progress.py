"""The progress of a long `minicluster simulate` sweep, on stderr: runs/s, events/s, cluster
hours simulated, violations and the time left.

On a terminal, one line kept up to date in place (rich, refreshed at most four times a second
from the run callbacks: no thread of its own); otherwise a plain line every
PLAIN_EVERY seconds, so that a log of a long sweep shows it is alive. Never in --json mode (the
command does not make one). The report itself stays on stdout.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import IO

from rich.console import Console
from rich.live import Live
from rich.text import Text

from minicluster.simulate import RunResult

PLAIN_EVERY = 10.0  # wall seconds between two plain progress lines
_LIVE_EVERY = 0.25  # wall seconds between two refreshes of the live line


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class SweepProgress:
    """Counts the runs as they arrive (``run_done``) and shows where the sweep stands."""

    def __init__(
        self,
        runs: int,
        time_limit: float | None = None,
        *,
        stream: IO[str] | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.total = runs
        self.time_limit = time_limit
        self.stream = stream if stream is not None else sys.stderr
        self.clock = clock
        self.started = clock()
        self.runs = self.events = self.violations = 0
        self.cluster_seconds = 0.0
        isatty = getattr(self.stream, "isatty", None)
        self.interactive = bool(isatty()) if isatty is not None else False
        self._live: Live | None = None
        self._shown_at = self.started

    def __enter__(self) -> SweepProgress:
        if self.interactive:
            console = Console(file=self.stream, highlight=False)
            self._live = Live(
                Text(""), console=console, auto_refresh=False, transient=True, redirect_stdout=True
            )
            self._live.__enter__()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.__exit__(kind, exc, tb)
            self._live = None

    def line(self) -> str:
        """``120/1000 runs, 85.3 runs/s, ...``: what the display shows."""
        wall = max(self.clock() - self.started, 1e-9)
        rate = self.runs / wall
        left = (self.total - self.runs) / rate if rate > 0 else None
        if self.time_limit is not None:
            budget = max(0.0, self.time_limit - wall)
            left = budget if left is None else min(left, budget)
        eta = _duration(left) if left is not None else "?"
        return (
            f"{self.runs}/{self.total} runs, {rate:.1f} runs/s, "
            f"{self.events / wall:,.0f} events/s, {self.cluster_seconds / 3600:.1f} cluster h, "
            f"{self.violations} violation(s), ETA {eta}"
        )

    def run_done(self, result: RunResult) -> None:
        self.runs += 1
        self.events += result.events
        self.cluster_seconds += result.virtual_time
        self.violations += len(result.violations)
        now = self.clock()
        if self._live is not None:
            if now - self._shown_at >= _LIVE_EVERY or self.runs == self.total:
                self._shown_at = now
                self._live.update(Text(self.line()), refresh=True)
        elif now - self._shown_at >= PLAIN_EVERY:
            self._shown_at = now
            self.stream.write(self.line() + "\n")
            self.stream.flush()
