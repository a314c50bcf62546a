"""The dashboard's layout: the header line, then topology, jobs next to RPC statistics, and the
event log, sized so that the whole fits the terminal (no line wraps, so every part's height is
known without rendering it)."""

from __future__ import annotations

from collections.abc import Iterable

from rich import box
from rich.console import Group, RenderableType
from rich.constrain import Constrain
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from minicluster.console.events_view import (
    DEFAULT_EVENT_LIMIT,
    _event_rows_needed,
    _tail,
    render_events,
)
from minicluster.console.format import (
    as_data,
    as_mappings,
    clean,
    format_clock,
)
from minicluster.console.job_keys import _Digest, _digest
from minicluster.console.jobs_view import DEFAULT_MAX_JOBS, _jobs_table
from minicluster.console.rpc_view import DEFAULT_MAX_METHODS, _rpc_table
from minicluster.console.topology_view import (
    DEFAULT_MAX_JOB_MASTERS,
    DEFAULT_MAX_TASK_EXECUTORS,
    _task_executor_rows_needed,
    _topology,
)
from minicluster.console.view_parts import _BORDER_STYLE, Data, Viewable, _ByWidth

MAX_WIDTH = 100
"""The dashboard never draws wider than this, whatever the terminal."""


def render_header(status: Data | None, time: object = None) -> RenderableType:
    """One line: ``minicluster  scenario NAME  step 3/12 ...`` and, on the right, the clock."""
    status = status or {}
    left = Text(no_wrap=True, overflow="ellipsis")
    left.append("minicluster", style="bold")
    scenario = clean(status.get("scenario"))
    if scenario:
        left.append("  ")
        left.append(scenario, style="bold")
    step = clean(status.get("step"))
    if step:
        left.append("  step ", style="dim")
        left.append(step, style="bold cyan")
    clock = Text(no_wrap=True, justify="right")
    if time is not None:
        clock.append("t ", style="dim")
        clock.append(format_clock(time), style="bold")
    notes = []
    if clean(status.get("clock")):
        notes.append(f"{clean(status.get('clock'))} clock")
    if clean(status.get("speed")):
        notes.append(f"speed {clean(status.get('speed'))}")
    detailed = clock.copy()
    if notes:
        detailed.append(f"  {', '.join(notes)}" if clock else ", ".join(notes), style="dim")

    def line(right: Text) -> Table:
        grid = Table.grid(expand=True, padding=(0, 0, 0, 2))
        grid.add_column(ratio=1, no_wrap=True, overflow="ellipsis")
        grid.add_column(no_wrap=True, justify="right")
        grid.add_row(left, right)
        return grid

    # on a narrow terminal the step matters more than the clock's kind and speed
    return _ByWidth(line(detailed), line(clock), left.cell_len + detailed.cell_len + 2)


def _fit(
    height: int,
    base: int,
    te_count: int,
    event_count: int,
    te_limit: int,
    event_limit: int,
) -> tuple[int, int]:
    """Choose how many TaskExecutor rows and events to show so that everything fits ``height``
    lines: a few of each first, then TaskExecutors up to the default, events up to their
    default, then more TaskExecutors, then more events."""
    budget = height - base

    def used(te: int, ev: int) -> int:
        return _task_executor_rows_needed(te_count, te) + _event_rows_needed(event_count, ev)

    te, ev = 0, 0
    half_te, half_ev = min(te_count, te_limit, 8), min(event_count, event_limit, 8)
    targets = [
        (min(te_count, 3), 0),
        (min(te_count, 3), min(event_count, 3)),
        (half_te, half_ev),
        (min(te_count, te_limit), half_ev),
        (min(te_count, te_limit), min(event_count, event_limit)),
        (te_count, min(event_count, event_limit)),
        (te_count, min(event_count, max(event_limit, 40))),
    ]
    for target_te, target_ev in targets:
        while te < target_te and used(te + 1, ev) <= budget:
            te += 1
        while ev < target_ev and used(te, ev + 1) <= budget:
            ev += 1
    return te, max(ev, 1 if event_count else 0)


def _middle(
    snapshot: Data, digest: _Digest, rpc_stats: Data | None, squeeze: int
) -> tuple[RenderableType, int]:
    """Jobs next to RPC statistics, both panels as tall as the taller content.

    Squeezed (short terminals): the RPC table lists no more methods than the jobs table has
    rows (at least three, or at least one when squeezed hard)."""
    jobs_table, jobs_lines = _jobs_table(snapshot, DEFAULT_MAX_JOBS, digest.keys)
    methods = DEFAULT_MAX_METHODS
    if squeeze:
        methods = max(3 if squeeze == 1 else 1, min(methods, jobs_lines - 3))
    rpc_body, rpc_lines = _rpc_table(rpc_stats, methods)
    lines = max(jobs_lines, rpc_lines) + 2
    middle = Table.grid(expand=True)
    middle.add_column(ratio=55)
    middle.add_column(ratio=45)
    middle.add_row(
        Panel(
            jobs_table,
            title="[bold]Jobs[/]",
            title_align="left",
            border_style=_BORDER_STYLE,
            box=box.ROUNDED,
            padding=(0, 1),
            height=lines,
        ),
        Panel(
            rpc_body,
            title="[bold]RPC[/]",
            title_align="left",
            border_style=_BORDER_STYLE,
            box=box.ROUNDED,
            padding=(0, 1),
            height=lines,
        ),
    )
    return middle, lines


_SQUEEZES = (0, 1, 2)
"""Layouts for shorter terminals: 0 normal; 1 two JobMasters, no blank line, fewer RPC
methods; 2 one JobMaster and as few RPC methods as jobs."""


def _topology_lines(
    executors: int, masters: int, te_rows: int, max_job_masters: int, compact: bool
) -> int:
    """How many lines :func:`render_topology` draws (every row is one line: nothing wraps)."""
    components = 3 + min(masters, max(0, max_job_masters)) + (masters > max_job_masters)
    executor_lines = _task_executor_rows_needed(executors, te_rows) + (2 if executors else 0)
    return 2 + components + (0 if compact else 1) + executor_lines + 1


def _events_lines(events: int, limit: int) -> int:
    """How many lines :func:`render_events` draws."""
    return 3 + _event_rows_needed(events, limit)


def render_dashboard(
    snapshot: Viewable,
    events: Iterable[Viewable],
    rpc_stats: Viewable | None,
    status: Data | None = None,
    *,
    height: int | None = None,
    width: int = MAX_WIDTH,
    max_task_executors: int | None = None,
    event_limit: int | None = None,
) -> RenderableType:
    """Header, topology, jobs next to RPC statistics, and the event log, at most ``width``
    (never more than 100) columns wide.

    With ``height`` (the terminal's lines) the number of TaskExecutor rows and events shown
    is chosen so that the whole dashboard fits: past the defaults on tall terminals, and on
    short ones with fewer JobMasters and RPC methods listed so that a few TaskExecutors and
    events remain visible. Without it, ``max_task_executors`` (12) and ``event_limit`` (12).
    """
    snapshot = as_data(snapshot)
    rpc_stats = as_data(rpc_stats) if rpc_stats is not None else None
    width = max(20, min(width, MAX_WIDTH))
    te_limit = DEFAULT_MAX_TASK_EXECUTORS if max_task_executors is None else max_task_executors
    ev_limit = DEFAULT_EVENT_LIMIT if event_limit is None else event_limit
    event_list = _tail(events, max(ev_limit, 40) if height is not None else ev_limit)
    digest = _digest(snapshot)
    te_count, event_count = len(digest.executors), len(event_list)
    masters = len(as_mappings(snapshot.get("job_masters")))
    header = render_header(status, snapshot.get("time"))
    middles = [_middle(snapshot, digest, rpc_stats, squeeze) for squeeze in _SQUEEZES]

    def max_job_masters(squeeze: int) -> int:
        return (DEFAULT_MAX_JOB_MASTERS, 2, 1)[squeeze]

    def compose(te_rows: int, ev_rows: int, squeeze: int = 0) -> RenderableType:
        return Constrain(
            Group(
                header,
                _topology(snapshot, digest, te_rows, max_job_masters(squeeze), squeeze > 0),
                middles[squeeze][0],
                render_events(event_list, limit=ev_rows),
            ),
            width=width,
        )

    if height is None:
        return compose(te_limit, ev_limit)

    def fit(squeeze: int) -> tuple[int, int]:
        # every part has a known height (nothing wraps), so no trial rendering is needed
        base = (
            1
            + _topology_lines(te_count, masters, 0, max_job_masters(squeeze), squeeze > 0)
            - _task_executor_rows_needed(te_count, 0)
            + middles[squeeze][1]
            + _events_lines(event_count, 0)
            - _event_rows_needed(event_count, 0)
        )
        return _fit(height, base, te_count, event_count, te_limit, ev_limit)

    # the least squeezed layout that shows 8 TaskExecutors and 8 events (or all there are),
    # else the one that shows the most of them
    best: tuple[int, int, int] | None = None
    for squeeze in _SQUEEZES:
        te_rows, ev_rows = fit(squeeze)
        if te_rows >= min(te_count, 8) and ev_rows >= min(event_count, 8):
            return compose(te_rows, ev_rows, squeeze)
        if best is None or te_rows + ev_rows > best[0] + best[1]:
            best = (te_rows, ev_rows, squeeze)
    assert best is not None
    return compose(*best)
