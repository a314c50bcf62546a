"""The dashboard's layout: the header line, the topology, the jobs, the "What happened" panel,
then routine traffic (the event log, RPC statistics), sized so that the whole fits the terminal.

Every part's height is known without rendering it (nothing wraps but the story's entries,
which are measured), so the layout is chosen by counting lines. What matters stays: every
TaskExecutor (those in trouble first), every job and why it waits, the story's failures with
their full reasons; routine panels shrink and go first. From 120 columns on the view has two
columns: the cluster (topology, jobs, event log) on the left, the story and RPC statistics on
the right."""

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
    as_int,
    as_mappings,
    clean,
    format_clock,
)
from minicluster.console.job_keys import _digest
from minicluster.console.jobs_view import DEFAULT_MAX_JOBS, _jobs_table
from minicluster.console.rpc_view import DEFAULT_MAX_METHODS, _rpc_table
from minicluster.console.story_view import lines_needed, render_story, story_entries
from minicluster.console.topology_view import (
    DEFAULT_MAX_JOB_MASTERS,
    DEFAULT_MAX_TASK_EXECUTORS,
    _task_executor_rows_needed,
    _topology,
)
from minicluster.console.view_parts import _BORDER_STYLE, Data, Viewable, _ByWidth

MAX_WIDTH = 160
"""The dashboard never draws wider than this, whatever the terminal."""
TWO_COLUMNS = 120
"""From this width on, the story and the RPC statistics stand right of the cluster."""


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


def _topology_lines(
    executors: int, masters: int, te_rows: int, max_job_masters: int, compact: bool
) -> int:
    """How many lines :func:`render_topology` draws (every row is one line: nothing wraps)."""
    shown_masters = min(masters, max(0, max_job_masters)) + (masters > max_job_masters)
    components = (0 if compact else 1) + 2 + shown_masters
    executor_lines = _task_executor_rows_needed(executors, te_rows) + (2 if executors else 0)
    legend = 0 if compact and executors else 1
    return 2 + components + (0 if compact else 1) + executor_lines + legend


def _events_lines(events: int, limit: int) -> int:
    """How many lines :func:`render_events` draws."""
    return 3 + _event_rows_needed(events, limit)


_COMPACTIONS = (
    (False, DEFAULT_MAX_JOB_MASTERS),
    (True, DEFAULT_MAX_JOB_MASTERS),
    (True, 2),
    (True, 1),
)
"""Topology layouts, roomiest first: (compact, JobMasters listed)."""

_STORY_MIN = 5
"""Lines of story (besides its borders) kept even on a short terminal, when there are any."""


class _Frame:
    """What one frame draws, read once from the snapshot."""

    def __init__(
        self,
        snapshot: Data,
        events: list[Data],
        rpc_stats: Data | None,
        status: Data | None,
        final: bool,
    ) -> None:
        self.snapshot = snapshot
        self.events = events
        self.rpc_stats = rpc_stats
        self.final = final
        self.digest = _digest(snapshot)
        self.te_count = len(self.digest.executors)
        self.masters = len(as_mappings(snapshot.get("job_masters")))
        self.header = render_header(status, snapshot.get("time"))
        free = self.digest.slot_states.get("FREE", 0) if self.digest.executors else None
        self.jobs_table, jobs_rows = _jobs_table(snapshot, DEFAULT_MAX_JOBS, self.digest.keys, free)
        self.jobs_lines = jobs_rows + 2
        self.entries = story_entries(snapshot)
        self.fenced = as_int((rpc_stats or {}).get("fencing_rejections"))

    def topology(self, te_rows: int, compact: bool, max_job_masters: int) -> RenderableType:
        return _topology(self.snapshot, self.digest, te_rows, max_job_masters, compact)

    def topology_lines(self, te_rows: int, compact: bool, max_job_masters: int) -> int:
        return _topology_lines(self.te_count, self.masters, te_rows, max_job_masters, compact)

    def jobs(self) -> RenderableType:
        return _panel(self.jobs_table, "Jobs", self.jobs_lines)

    def story(self, width: int, height: int) -> RenderableType:
        return render_story(self.entries, width, height, self.fenced)

    def story_need(self, width: int) -> int:
        return lines_needed(self.entries, width)

    def rpc(self, methods: int) -> tuple[RenderableType, int]:
        body, lines = _rpc_table(self.rpc_stats, methods)
        return _panel(body, "RPC", lines + 2), lines + 2


def _panel(body: RenderableType, title: str, height: int) -> Panel:
    return Panel(
        body,
        title=f"[bold]{title}[/]",
        title_align="left",
        border_style=_BORDER_STYLE,
        box=box.ROUNDED,
        padding=(0, 1),
        height=height,
    )


def _cluster_column(
    frame: _Frame, width: int, height: int, te_limit: int, story_lines: int
) -> tuple[list[RenderableType], int]:
    """Topology and jobs within ``height`` lines, leaving ``story_lines`` for what follows:
    the roomiest topology layout that lists every TaskExecutor (up to ``te_limit``), else
    the most compact one with as many as fit. Returns the parts and the lines they take."""
    wanted = min(frame.te_count, te_limit)
    budget = height - frame.jobs_lines - story_lines
    choice = _COMPACTIONS[-1]
    for compact, masters in _COMPACTIONS:
        if frame.topology_lines(wanted, compact, masters) <= budget:
            choice = (compact, masters)
            break
    compact, masters = choice
    te_rows = wanted
    while te_rows > 0 and frame.topology_lines(te_rows, compact, masters) > budget:
        te_rows -= 1
    if te_rows == 0 and frame.te_count:
        te_rows = 1  # at least one row, else nothing but "… and N more"
    used = frame.topology_lines(te_rows, compact, masters) + frame.jobs_lines
    return [frame.topology(te_rows, compact, masters), frame.jobs()], used


def _routine(frame: _Frame, lines: int, ev_limit: int, with_rpc: bool) -> list[RenderableType]:
    """Routine traffic in ``lines``: the event log (at least three rows, else none), and the
    RPC statistics when asked for and there is room for both."""
    parts: list[RenderableType] = []
    count = len(frame.events)
    rpc_parts: list[RenderableType] = []
    if with_rpc:
        rpc, rpc_lines = frame.rpc(DEFAULT_MAX_METHODS)
        if lines - rpc_lines >= _events_lines(count, min(count, 3)) or lines >= rpc_lines + 6:
            rpc_parts.append(rpc)
            lines -= rpc_lines
    rows = min(count, ev_limit, max(0, lines - 3))
    if rows >= min(count, 3) and lines >= 4:
        parts.append(render_events(frame.events, limit=max(rows, 1)))
    return parts + rpc_parts


def render_dashboard(
    snapshot: Viewable,
    events: Iterable[Viewable],
    rpc_stats: Viewable | None,
    status: Data | None = None,
    *,
    height: int | None = None,
    width: int = 100,
    max_task_executors: int | None = None,
    event_limit: int | None = None,
    final: bool = False,
) -> RenderableType:
    """Header, topology, jobs, what happened, and routine traffic (event log, RPC statistics),
    at most ``width`` (never more than 160) columns wide; from 120 columns on in two columns.

    With ``height`` (the terminal's lines) the parts are sized to fit: every TaskExecutor and
    job first (as many as fit, the troubled ones first), then the story with its full
    reasons, and in what is left the event log and the RPC statistics. Without it, at most
    ``max_task_executors`` (12) TaskExecutors and ``event_limit`` (12) events. ``final``: the
    run is over and a summary of the jobs and messages follows, so the frame leaves out the
    jobs and the routine traffic.
    """
    snapshot = as_data(snapshot)
    rpc_data = as_data(rpc_stats) if rpc_stats is not None else None
    width = max(20, min(width, MAX_WIDTH))
    te_limit = DEFAULT_MAX_TASK_EXECUTORS if max_task_executors is None else max_task_executors
    ev_limit = DEFAULT_EVENT_LIMIT if event_limit is None else event_limit
    event_list = _tail(events, max(ev_limit, 40) if height is not None else ev_limit)
    frame = _Frame(snapshot, event_list, rpc_data, status, final)
    two = width >= TWO_COLUMNS
    left_width = width // 2 if two else width
    right_width = width - left_width if two else width

    if height is None:
        story_height = frame.story_need(right_width)
        left, _ = _cluster_column(frame, left_width, 10_000, te_limit, 0)
        routine = _routine(frame, 10_000, ev_limit, True)
        story = frame.story(right_width, story_height)
        if two:
            return Constrain(
                Group(frame.header, _side_by_side(left, [story, *routine], left_width, width)),
                width=width,
            )
        return Constrain(Group(frame.header, *left, story, *routine), width=width)

    body = max(1, height - 1)  # below the header
    # a final frame leaves out the jobs (the summary below it lists them): room for the rest
    spare = frame.jobs_lines if final else 0
    if two:
        left, used = _cluster_column(frame, left_width, body + spare, frame.te_count, 0)
        if final:
            left, used = left[:1], used - spare
        else:
            left += _routine(frame, body - used, ev_limit, False)
        story_height = min(frame.story_need(right_width), body)
        _, rpc_lines = frame.rpc(DEFAULT_MAX_METHODS)
        if not final and body - story_height < rpc_lines and body - rpc_lines >= 8:
            story_height = body - rpc_lines
        right: list[RenderableType] = [frame.story(right_width, story_height)]
        if not final:
            right += _routine_rpc(frame, body - story_height)
        return Constrain(
            Group(frame.header, _side_by_side(left, right, left_width, width)), width=width
        )

    story_need = frame.story_need(width)
    story_min = min(story_need, _STORY_MIN + 2)
    left, used = _cluster_column(frame, width, body + spare, frame.te_count, story_min)
    if final:
        left, used = left[:1], used - spare
    story_height = max(3, min(story_need, body - used))
    parts = [frame.header, *left, frame.story(width, story_height)]
    if not final:
        parts += _routine(frame, body - used - story_height, ev_limit, True)
    return Constrain(Group(*parts), width=width)


def _routine_rpc(frame: _Frame, lines: int) -> list[RenderableType]:
    """The RPC statistics in ``lines``, with fewer methods when short; none below five."""
    for methods in (DEFAULT_MAX_METHODS, 3, 1):
        rpc, rpc_lines = frame.rpc(methods)
        if rpc_lines <= lines:
            return [rpc]
    return []


def _side_by_side(
    left: list[RenderableType], right: list[RenderableType], left_width: int, width: int
) -> Table:
    grid = Table.grid()
    grid.add_column(width=left_width)
    grid.add_column(width=width - left_width)
    grid.add_row(Group(*left), Group(*right))
    return grid
