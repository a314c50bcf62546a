"""The live dashboard: a rich Live display redrawn a few times a second, in a terminal only.

The caller decides between the live view and the plain log::

    console, live_enabled = make_console(no_live=args.no_live)
    if live_enabled:
        with LiveConsole(console) as live:
            ...
            live.update(snapshot, events, rpc_stats, status)   # cheap; call as often as you like
    else:
        for event in new_events:
            console.print(format_event_line(event))            # plain, no control codes
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import IO, Any

from rich.console import Console, RenderableType
from rich.live import Live
from rich.text import Text

from minicluster.console.view_parts import Viewable
from minicluster.console.views import render_dashboard

__all__ = ["LiveConsole", "is_interactive", "make_console"]

_EVENTS_KEPT = 64
"""update() keeps a copy of this many of the latest events (enough for a tall terminal)."""


def _ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def is_interactive(console: Console) -> bool:
    """Whether ``console`` writes to a real, capable terminal that a live display may redraw.

    False for pipes and files, dumb terminals (``TERM=dumb``), Jupyter, CI (``CI`` set) and
    ``TTY_INTERACTIVE=0``, and also when colour is merely forced (``FORCE_COLOR``,
    ``TTY_COMPATIBLE``) on something that is not a tty. ``TTY_INTERACTIVE=1`` forces it on.
    """
    if os.environ.get("TTY_INTERACTIVE") == "1":
        return True
    if not console.is_interactive or not console.is_terminal or console.is_dumb_terminal:
        return False
    if console.is_jupyter or _ci():
        return False
    isatty = getattr(console.file, "isatty", None)
    try:
        return bool(isatty()) if isatty is not None else False
    except ValueError:  # closed file
        return False


def make_console(
    no_live: bool, *, stderr: bool = False, file: IO[str] | None = None
) -> tuple[Console, bool]:
    """The console to draw on, and whether the live view is to be used.

    The live view is used only when ``no_live`` is false and the output is an interactive
    terminal (:func:`is_interactive`). Otherwise the console returned prints plain text: no
    colour, no markup or highlighting, no emoji, no hard wrapping, no control codes at all.
    """
    probe = Console(stderr=stderr, file=file)
    if not no_live and is_interactive(probe):
        return Console(stderr=stderr, file=file, highlight=False), True
    plain = Console(
        stderr=stderr,
        file=file,
        color_system=None,
        force_terminal=False,
        force_interactive=False,
        force_jupyter=False,
        no_color=True,
        highlight=False,
        markup=False,
        emoji=False,
        soft_wrap=True,
    )
    return plain, False


class LiveConsole:
    """A dashboard redrawn at most ``refresh_per_second`` times a second (4 by default).

    ``update()`` only stores the latest data (the event tail is copied; the snapshot and the
    statistics are kept as given, so pass fresh ones rather than mutating them later). A
    background thread redraws the dashboard, fitted to the terminal's height, when the data
    changed or the terminal was resized, and leaves the screen alone otherwise. Lines printed on
    the console meanwhile appear above the dashboard. Use it as a context manager or with
    ``start()`` and ``stop()``; the last frame stays on screen unless ``transient``.
    """

    def __init__(
        self,
        console: Console | None = None,
        *,
        refresh_per_second: float = 4.0,
        screen: bool = False,
        transient: bool = False,
        redirect_stdout: bool = True,
        redirect_stderr: bool = True,
    ) -> None:
        if refresh_per_second <= 0:
            raise ValueError("refresh_per_second must be positive")
        self.console = console if console is not None else Console(highlight=False)
        self.refresh_per_second = refresh_per_second
        self._lock = threading.Lock()
        self._snapshot: Viewable = {}
        self._events: list[Viewable] = []
        self._rpc_stats: Viewable | None = None
        self._status: Mapping[str, Any] | None = None
        self._version = 0
        self._leave: int | None = None  # lines left below the final frame, once stopping
        self._drawn: tuple[int, int, int] | None = None
        self._renderable: RenderableType = Text("")
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._live = Live(
            console=self.console,
            screen=screen,
            transient=transient,
            auto_refresh=False,
            redirect_stdout=redirect_stdout,
            redirect_stderr=redirect_stderr,
            vertical_overflow="crop",
            get_renderable=self._get_renderable,
        )

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Show the dashboard and start redrawing it."""
        if self._live.is_started:
            return
        self._live.start(refresh=True)
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._run, name="minicluster-live-console", daemon=True
        )
        self._thread.start()

    def stop(self, *, leave_lines: int | None = None) -> None:
        """Stop redrawing, after drawing the latest data one last time. The last frame stays
        on screen (nothing is cleared). With ``leave_lines`` it is the final frame of a run:
        that many lines shorter, so that the summary printed below it fits on the screen with
        it, and without the jobs and the routine traffic that the summary reports."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if leave_lines is not None:
            with self._lock:
                self._leave = max(0, leave_lines)
                self._version += 1
        if self._live.is_started:
            self._live.stop()  # redraws once more, with the latest data

    def __enter__(self) -> LiveConsole:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def is_started(self) -> bool:
        return self._live.is_started

    # -- data --------------------------------------------------------------------------------

    def update(
        self,
        snapshot: Viewable,
        events: Iterable[Viewable],
        rpc_stats: Viewable | None,
        status: Mapping[str, Any] | None = None,
    ) -> None:
        """Show this data from the next redraw on. Cheap: nothing is rendered here."""
        if isinstance(events, list | tuple):
            tail = list(events[-_EVENTS_KEPT:])
        else:
            tail = list(events)[-_EVENTS_KEPT:]
        with self._lock:
            self._snapshot = snapshot
            self._events = tail
            self._rpc_stats = rpc_stats
            self._status = status
            self._version += 1

    def refresh(self) -> None:
        """Redraw now rather than at the next tick."""
        if self._live.is_started:
            self._live.refresh()

    def render(self) -> RenderableType:
        """The dashboard for the latest data, fitted to the console's current size."""
        with self._lock:
            snapshot, events = self._snapshot, self._events
            rpc_stats, status, leave = self._rpc_stats, self._status, self._leave
        size = self.console.size
        try:
            return render_dashboard(
                snapshot,
                events,
                rpc_stats,
                status,
                width=size.width,
                height=max(size.height - 1 - (leave or 0), 10),
                final=leave is not None,
            )
        except Exception as error:  # a bad snapshot must never kill the display thread
            return Text(f"cannot draw the dashboard: {type(error).__name__}: {error}", "red")

    # -- drawing -----------------------------------------------------------------------------

    def _key(self) -> tuple[int, int, int]:
        size = self.console.size
        return (self._version, size.width, size.height)

    def _get_renderable(self) -> RenderableType:
        key = self._key()
        if key != self._drawn:
            self._renderable = self.render()
            self._drawn = key
        return self._renderable

    def _run(self) -> None:
        interval = 1.0 / self.refresh_per_second
        while not self._stopping.wait(interval):
            if self._key() != self._drawn and self._live.is_started:
                self._live.refresh()
