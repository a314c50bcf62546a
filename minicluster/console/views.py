"""Rich views of a running cluster: topology, jobs, event log, RPC statistics, and a dashboard.

Every function here is pure: it takes plain data (dicts and lists, see the shapes below) and
returns a rich renderable; nothing is printed and nothing is kept. Unknown keys are ignored and
missing optional keys are shown as ``-``. Ids and fencing tokens are shortened to their first
eight characters. No line is wider than :data:`MAX_WIDTH` columns when the dashboard is drawn,
and no value ever wraps: long text is cut with an ellipsis.

Shapes::

    snapshot = {
        "time": 12.5,
        "dispatcher": {"address": "local://svc/dispatcher", "token": "uuid"},
        "resource_manager": {"address": "...", "token": "uuid"},
        "job_masters": [{"job_id": "hex", "name": "etl", "address": "...", "token": "uuid"}],
        "task_executors": [{"id": "te-1", "address": "...", "state": "registered",
                            "heartbeat_age": 1.2,
                            "slots": [{"index": 0, "state": "ACTIVE", "job_id": "hex",
                                       "job_name": "etl"}]}],
        "jobs": [{"job_id": "hex", "name": "etl", "status": "RUNNING", "tasks_total": 8,
                  "tasks_finished": 3, "restarts": 1, "duration": 12.5}],
        "heartbeat_timeout": 5.0,   # optional: colours heartbeat ages that come close to it
    }
    event = {"time": 3.25, "kind": "rpc", "sender": "...", "receiver": "...",
             "method": "...", "outcome": "ok", "message": "..."}
    rpc_stats = {"calls_per_second": 523.0, "total_calls": 1200, "fencing_rejections": 2,
                 "by_method": {"offer_slots": {"calls": 10, "p50": 0.0002, "p99": 0.001}}}
    status = {"scenario": "name", "step": "3/12 kill_task_executor te-1",
              "clock": "virtual", "speed": "max"}

Slots are drawn as one cell each: ``·`` (green) free, a lower-case letter on yellow for a slot
allocated to a job, an upper-case letter on cyan for a slot whose task is running (active). The
letter names the job (its first initial not taken by an earlier job); a legend maps letters to
job names, and the case tells the state, so the view stays readable without colour.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.constrain import Constrain
from rich.measure import Measurement
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from minicluster.console.format import (
    as_float,
    as_int,
    as_mappings,
    clean,
    format_age,
    format_clock,
    format_duration,
    format_latency,
    format_rate,
    short_id,
    short_token,
    shorten_ids,
)

__all__ = [
    "DEFAULT_EVENT_LIMIT",
    "DEFAULT_MAX_TASK_EXECUTORS",
    "MAX_SLOTS_SHOWN",
    "MAX_WIDTH",
    "SLOT_STYLES",
    "assign_job_keys",
    "is_fencing_rejection",
    "render_dashboard",
    "render_events",
    "render_header",
    "render_jobs",
    "render_rpc_stats",
    "render_topology",
]

MAX_WIDTH = 100
"""The dashboard never draws wider than this, whatever the terminal."""
DEFAULT_MAX_TASK_EXECUTORS = 12
DEFAULT_EVENT_LIMIT = 12
DEFAULT_MAX_JOBS = 8
DEFAULT_MAX_JOB_MASTERS = 4
DEFAULT_MAX_METHODS = 6
MAX_SLOTS_SHOWN = 24
"""At most this many slot cells per TaskExecutor row; the rest is counted (``+8``)."""

FREE_GLYPH = "·"
SLOT_STYLES: dict[str, str] = {
    "FREE": "green",
    "ALLOCATED": "black on yellow",
    "ACTIVE": "bold black on cyan",
    "UNKNOWN": "dim",
}

TE_STATES: dict[str, tuple[str, str]] = {
    "registered": ("● registered", "green"),
    "registering": ("◌ registering", "yellow"),
    "lost": ("✖ lost", "bold red"),
    "killed": ("✖ killed", "bold red"),
    "stopped": ("○ stopped", "dim"),
}
_TE_STATE_WIDTH = 13

JOB_STATUS_STYLES: dict[str, str] = {
    "CREATED": "bright_blue",
    "RUNNING": "cyan",
    "FAILING": "bold yellow",
    "RESTARTING": "bold yellow",
    "FINISHED": "bold green",
    "FAILED": "bold red",
    "CANCELLING": "magenta",
    "CANCELED": "magenta",
}
_TERMINAL_STATUSES = frozenset({"FINISHED", "FAILED", "CANCELED"})

EVENT_KIND_STYLES: dict[str, str] = {
    "rpc": "bright_blue",
    "tell": "cyan",
    "state": "green",
    "failover": "bold magenta",
    "fencing": "bold white on red",
    "heartbeat": "yellow",
    "step": "bold cyan",
    "info": "dim",
}
FENCING_ROW_STYLE = "bold red"
_BORDER_STYLE = "bright_black"

Data = Mapping[str, Any]


# --------------------------------------------------------------------------------------------
# job keys: one letter per job, shared by the slot cells, the legend and the jobs table


def _job_id(value: object) -> str:
    return clean(value)


def _fast(value: object) -> str:
    """:func:`clean`, with a shortcut for the common case of a printable string."""
    if type(value) is str and value.isprintable():
        return value
    return clean(value)


@dataclass
class _Digest:
    """What the views need from the whole snapshot, gathered in one pass over every slot, so
    that thousands of TaskExecutors cost one loop per frame, not one per panel."""

    executors: list[Data]
    keys: dict[str, str]
    names: dict[str, str]
    te_states: dict[str, int]
    slot_states: dict[str, int]


def _digest(snapshot: Data) -> _Digest:
    names: dict[str, str] = {}
    for job in as_mappings(snapshot.get("jobs")):
        job_id = _job_id(job.get("job_id"))
        if job_id:
            names.setdefault(job_id, clean(job.get("name")))
    listed = dict(names)
    for master in as_mappings(snapshot.get("job_masters")):
        job_id = _job_id(master.get("job_id"))
        if job_id and not names.get(job_id):
            names[job_id] = clean(master.get("name"))

    executors = as_mappings(snapshot.get("task_executors"))
    te_states: dict[str, int] = {}
    slot_states = {"FREE": 0, "ALLOCATED": 0, "ACTIVE": 0}
    holding: dict[str, str] = {}  # job id -> slot's job name, in order of appearance
    for executor in executors:
        state = _fast(executor.get("state")).lower() or "unknown"
        te_states[state] = te_states.get(state, 0) + 1
        slots = executor.get("slots")
        if not isinstance(slots, list | tuple):
            slots = as_mappings(slots)
        counts = executor.get("slot_counts")  # a large cluster's summed-up slots
        if isinstance(counts, Mapping):
            for name, count in counts.items():
                key = clean(name).upper()
                slot_states[key] = slot_states.get(key, 0) + as_int(count)
        for slot in slots:
            if not isinstance(slot, Mapping):
                continue
            slot_state = slot.get("state")
            key = slot_state.upper() if type(slot_state) is str else clean(slot_state).upper()
            slot_states[key] = slot_states.get(key, 0) + 1
            raw = slot.get("job_id")
            if raw is None:
                continue
            held_id = raw if type(raw) is str else clean(raw)
            if held_id and held_id not in holding:
                holding[held_id] = _fast(slot.get("job_name"))
    held = holding
    for job_id, name in holding.items():
        if not names.get(job_id):
            names[job_id] = name

    ordered = list(listed) + [job_id for job_id in held if job_id not in listed]
    candidates = ordered if len(ordered) <= 26 else [j for j in ordered if j in held]
    keys: dict[str, str] = {}
    used: set[str] = set()
    for job_id in candidates:
        letters = [c for c in names.get(job_id, "").upper() if "A" <= c <= "Z"]
        letters += [chr(code) for code in range(ord("A"), ord("Z") + 1)]
        key = next((c for c in letters if c not in used), "*")
        if key != "*":
            used.add(key)
        keys[job_id] = key
    return _Digest(executors, keys, names, te_states, slot_states)


def assign_job_keys(snapshot: Data) -> dict[str, str]:
    """One upper-case letter per job id: the job name's first initial that is still free.

    Jobs are taken in the order of ``snapshot["jobs"]`` (then jobs only seen in slots), so a
    job keeps its letter while jobs are added. With more than 26 jobs only the jobs holding
    slots get letters; any job beyond that is ``*``.
    """
    return _digest(snapshot).keys


# --------------------------------------------------------------------------------------------
# slot cells


@dataclass(frozen=True)
class _Cell:
    glyph: str
    style: str


def _slot_cell(slot: Data, keys: Mapping[str, str]) -> _Cell:
    state = clean(slot.get("state")).upper()
    if state == "FREE":
        return _Cell(FREE_GLYPH, SLOT_STYLES["FREE"])
    job_id = _job_id(slot.get("job_id"))
    key = keys.get(job_id, "*") if job_id else "?"
    if state == "ALLOCATED":
        return _Cell(key.lower(), SLOT_STYLES["ALLOCATED"])
    if state == "ACTIVE":
        return _Cell(key.upper(), SLOT_STYLES["ACTIVE"])
    return _Cell("?", SLOT_STYLES["UNKNOWN"])


class SlotStrip:
    """A TaskExecutor's slots as a row of one-character cells, as many as fit.

    Cells are separated by a space. At most ``limit`` cells are drawn, and fewer when the
    column is narrower; the slots left out are counted at the end (``+8``).
    """

    def __init__(self, cells: Sequence[_Cell], limit: int = MAX_SLOTS_SHOWN) -> None:
        self.cells = list(cells)
        self.limit = limit

    def _text(self, max_width: int) -> Text:
        total = len(self.cells)
        shown = min(total, self.limit)

        def width(count: int) -> int:
            rest = total - count
            cells = max(0, 2 * count - 1)
            return cells + (len(f" +{rest}") if rest else 0)

        while shown > 0 and width(shown) > max_width:
            shown -= 1
        text = Text(no_wrap=True, overflow="crop")
        for position, cell in enumerate(self.cells[:shown]):
            if position:
                text.append(" ")
            text.append(cell.glyph, style=cell.style)
        rest = total - shown
        if rest:
            text.append(f" +{rest}" if shown else f"+{rest}", style="dim")
        if total == 0:
            text.append("no slots", style="dim")
        return text

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self._text(options.max_width)

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        full = self._text(10_000).cell_len
        return Measurement(min(full, 8), full)


# --------------------------------------------------------------------------------------------
# topology


def _component_row(table: Table, label: str, component: object) -> None:
    if not isinstance(component, Mapping) or not component:
        table.add_row(Text(label, style="bold"), Text("no leader", style="dim"), Text("-"))
        return
    address = shorten_ids(clean(component.get("address"))) or "-"
    table.add_row(
        Text(label, style="bold"),
        Text(address),
        Text(short_token(component.get("token")), style="magenta"),
    )


def _te_state(executor: Data) -> tuple[str, str]:
    state = clean(executor.get("state")).lower()
    return TE_STATES.get(state, (state or "-", ""))


def _age_style(age: float | None, timeout: float | None, state: str) -> str:
    if state in ("lost", "killed", "stopped"):
        return "dim"
    if age is None or timeout is None or timeout <= 0:
        return ""
    if age >= timeout:
        return "bold red"
    if age >= timeout / 2:
        return "yellow"
    return ""


def _task_executor_rows_needed(count: int, limit: int) -> int:
    """Lines the TaskExecutor table body takes: the rows shown plus the "and N more" line."""
    if count == 0:
        return 1
    shown = min(count, max(0, limit))
    return shown + (1 if shown < count else 0)


def render_topology(
    snapshot: Data,
    *,
    max_task_executors: int = DEFAULT_MAX_TASK_EXECUTORS,
    max_job_masters: int = DEFAULT_MAX_JOB_MASTERS,
    compact: bool = False,
) -> RenderableType:
    """Dispatcher, ResourceManager and JobMasters with address and short fencing token; one row
    per TaskExecutor (at most ``max_task_executors``, the rest summed up) with its state,
    heartbeat age and slot cells; totals and a legend. ``compact`` saves the blank line
    between the components and the TaskExecutors."""
    return _topology(snapshot, _digest(snapshot), max_task_executors, max_job_masters, compact)


def _topology(
    snapshot: Data,
    digest: _Digest,
    max_task_executors: int,
    max_job_masters: int,
    compact: bool,
) -> RenderableType:
    keys, names = digest.keys, digest.names

    components = Table(
        box=None, expand=True, pad_edge=False, padding=(0, 1, 0, 0), header_style="bold dim"
    )
    components.add_column("component", no_wrap=True, max_width=26, overflow="ellipsis")
    components.add_column("address", no_wrap=True, overflow="ellipsis", ratio=1)
    components.add_column("token", no_wrap=True, width=8)
    _component_row(components, "Dispatcher", snapshot.get("dispatcher"))
    _component_row(components, "ResourceManager", snapshot.get("resource_manager"))
    masters = as_mappings(snapshot.get("job_masters"))
    for master in masters[: max(0, max_job_masters)]:
        job_id = _job_id(master.get("job_id"))
        name = clean(master.get("name")) or names.get(job_id) or short_id(job_id)
        _component_row(components, f"JobMaster {name}", master)
    if len(masters) > max_job_masters:
        components.add_row(
            Text(f"… and {len(masters) - max_job_masters} more JobMasters", style="dim"), "", ""
        )

    executors = digest.executors
    timeout = as_float(snapshot.get("heartbeat_timeout"))
    shown = executors[: max(0, max_task_executors)]
    id_width = max([12, *(len(clean(e.get("id"))) for e in shown)])
    id_width = min(id_width, 16)

    tes = Table(
        box=None, expand=True, pad_edge=False, padding=(0, 1, 0, 0), header_style="bold dim"
    )
    tes.add_column("TaskExecutor", no_wrap=True, width=id_width, overflow="ellipsis")
    tes.add_column("state", no_wrap=True, width=_TE_STATE_WIDTH, overflow="ellipsis")
    tes.add_column("heartbeat", no_wrap=True, width=9, justify="right")
    tes.add_column("free", no_wrap=True, min_width=5, justify="right")
    tes.add_column("slots", no_wrap=True, ratio=1)
    for executor in shown:
        label, style = _te_state(executor)
        state = clean(executor.get("state")).lower()
        slots = as_mappings(executor.get("slots"))
        cells = [_slot_cell(slot, keys) for slot in slots]
        free = sum(1 for cell in cells if cell.glyph == FREE_GLYPH)
        age = as_float(executor.get("heartbeat_age"))
        tes.add_row(
            Text(clean(executor.get("id")) or "?", style="dim" if state == "stopped" else ""),
            Text(label, style=style),
            Text(format_age(age), style=_age_style(age, timeout, state)),
            Text(f"{free}/{len(slots)}"),
            SlotStrip(cells),
        )

    parts: list[RenderableType] = [components] if compact else [components, Text("")]
    if executors:
        parts.append(tes)
    else:
        parts.append(Text("no TaskExecutors", style="dim"))
    hidden = len(executors) - len(shown)
    if hidden:
        counts = dict(digest.te_states)  # the states of the hidden ones: all minus the shown
        for executor in shown:
            state = _fast(executor.get("state")).lower() or "unknown"
            counts[state] -= 1
        notes = [
            (f"{n} {state}", state) for state, n in counts.items() if n and state != "registered"
        ]
        more = Text(no_wrap=True, overflow="ellipsis")
        more.append(f"… and {hidden} more", style="dim")
        if notes:
            more.append(" (")
            for position, (note, state) in enumerate(notes):
                if position:
                    more.append(", ")
                more.append(note, style=TE_STATES.get(state, ("", ""))[1])
            more.append(")")
        parts.append(more)

    if executors:
        parts.append(_totals_line(digest))
    parts.append(_legend_line(digest))
    return Panel(
        Group(*parts),
        title="[bold]Topology[/]",
        title_align="left",
        border_style=_BORDER_STYLE,
        box=box.ROUNDED,
        padding=(0, 1),
    )


def _totals_line(digest: _Digest) -> Text:
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append(f"{len(digest.executors)} TaskExecutors", style="bold")
    if digest.te_states:
        text.append(": ")
        for position, (state, count) in enumerate(digest.te_states.items()):
            if position:
                text.append(", ")
            text.append(f"{count} {state}", style=TE_STATES.get(state, ("", ""))[1])
    return text


def _legend_line(digest: _Digest) -> Text:
    """``50 slots: · 13 free  a 11 allocated  A 26 active   jobs: E etl  W wordcount``."""
    slots = digest.slot_states
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append(f"{sum(slots.values())} slots", style="bold")
    text.append(": ")
    text.append(FREE_GLYPH, style=SLOT_STYLES["FREE"])
    text.append(f" {slots['FREE']} free  ")
    text.append("a", style=SLOT_STYLES["ALLOCATED"])
    text.append(f" {slots['ALLOCATED']} allocated  ")
    text.append("A", style=SLOT_STYLES["ACTIVE"])
    text.append(f" {slots['ACTIVE']} active")
    if digest.keys:
        text.append("   jobs: ", style="bold")
        for position, (job_id, key) in enumerate(digest.keys.items()):
            if position:
                text.append("  ")
            text.append(key, style="bold")
            text.append(f" {digest.names.get(job_id) or short_id(job_id)}")
    else:
        text.append("   (letter = job)", style="dim")
    return text


# --------------------------------------------------------------------------------------------
# jobs


def _progress_bar(done: int, total: int, width: int, style: str) -> Text:
    fraction = 0.0 if total <= 0 else min(1.0, max(0.0, done / total))
    filled = round(fraction * width)
    if done < total and filled == width:
        filled = width - 1
    text = Text(no_wrap=True)
    text.append("█" * filled, style=style or "cyan")
    text.append("░" * (width - filled), style="bright_black")
    return text


def _jobs_to_show(jobs: Sequence[Data], limit: int) -> tuple[list[Data], int]:
    """All jobs when they fit; else the unfinished ones first, then the latest finished ones,
    in their original order."""
    if len(jobs) <= limit:
        return list(jobs), 0
    active = [i for i, j in enumerate(jobs) if clean(j.get("status")) not in _TERMINAL_STATUSES]
    keep = set(active[:limit])
    finished = [i for i in range(len(jobs)) if i not in set(active)]
    for index in reversed(finished):
        if len(keep) >= limit:
            break
        keep.add(index)
    return [jobs[i] for i in sorted(keep)], len(jobs) - len(keep)


class _ByWidth:
    """Draws ``wide`` when it has at least ``min_width`` columns, else ``narrow``."""

    def __init__(self, wide: RenderableType, narrow: RenderableType, min_width: int) -> None:
        self.wide, self.narrow, self.min_width = wide, narrow, min_width

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self.wide if options.max_width >= self.min_width else self.narrow

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        chosen = self.wide if options.max_width >= self.min_width else self.narrow
        return Measurement.get(console, options, chosen)


def _jobs_table(snapshot: Data, limit: int, keys: Mapping[str, str]) -> tuple[RenderableType, int]:
    """The jobs table, and its height. Narrower than 50 columns it leaves out the duration
    and calls restarts "rst"."""
    wide, rows = _jobs_rows(snapshot, limit, keys, narrow=False)
    narrow, _ = _jobs_rows(snapshot, limit, keys, narrow=True)
    return _ByWidth(wide, narrow, 50), rows


def _jobs_rows(
    snapshot: Data, limit: int, keys: Mapping[str, str], narrow: bool
) -> tuple[Table, int]:
    jobs, hidden = _jobs_to_show(as_mappings(snapshot.get("jobs")), max(0, limit))
    table = Table(
        box=None, expand=True, pad_edge=False, padding=(0, 1, 0, 0), header_style="bold dim"
    )
    table.add_column("job", no_wrap=True, overflow="ellipsis", ratio=1, min_width=6)
    table.add_column("status", no_wrap=True, width=10)
    table.add_column("tasks", no_wrap=True, min_width=13)
    if narrow:
        table.add_column("rst", no_wrap=True, justify="right", min_width=3)
    else:
        table.add_column("restarts", no_wrap=True, justify="right", min_width=8)
        table.add_column("time", no_wrap=True, justify="right", min_width=5)
    blanks = [""] * (len(table.columns) - 1)
    for job in jobs:
        job_id = _job_id(job.get("job_id"))
        status = clean(job.get("status")).upper() or "-"
        style = JOB_STATUS_STYLES.get(status, "")
        done, total = as_int(job.get("tasks_finished")), as_int(job.get("tasks_total"))
        name = Text(no_wrap=True, overflow="ellipsis")
        if job_id in keys:
            name.append(keys[job_id], style="bold")
            name.append(" ")
        name.append(clean(job.get("name")) or short_id(job_id))
        progress = _progress_bar(done, total, 6, style)
        progress.append(f" {done}/{total}")
        pending = as_int(job.get("slots_pending"))
        if pending:
            progress.append(f" wait {pending}", style="yellow")
        restarts = as_int(job.get("restarts"))
        cells: list[RenderableType] = [
            name,
            Text(status, style=style),
            progress,
            Text(str(restarts), style="yellow" if restarts else "dim"),
        ]
        if not narrow:
            cells.append(Text(format_duration(job.get("duration"))))
        table.add_row(*cells)
    rows = len(jobs)
    if not jobs and not hidden:
        table.add_row(Text("no jobs", style="dim"), *blanks)
        rows = 1
    if hidden:
        table.add_row(Text(f"… and {hidden} more", style="dim"), *blanks)
        rows += 1
    return table, rows + 1


def render_jobs(
    snapshot: Data, *, limit: int = DEFAULT_MAX_JOBS, height: int | None = None
) -> RenderableType:
    """Jobs with their letter (as in the slot cells), status, a progress bar of tasks finished
    out of total (``3/8``), restarts and duration. ``height`` fixes the panel's height."""
    table, _ = _jobs_table(snapshot, limit, _digest(snapshot).keys)
    return Panel(
        table,
        title="[bold]Jobs[/]",
        title_align="left",
        border_style=_BORDER_STYLE,
        box=box.ROUNDED,
        padding=(0, 1),
        height=height,
    )


# --------------------------------------------------------------------------------------------
# RPC statistics


def _rpc_table(rpc_stats: Data | None, limit: int) -> tuple[RenderableType, int]:
    stats: Data = rpc_stats or {}
    summary = Text(no_wrap=True, overflow="ellipsis")
    summary.append(format_rate(stats.get("calls_per_second")), style="bold")
    summary.append(" calls/s  ")
    summary.append(str(as_int(stats.get("total_calls"))), style="bold")
    summary.append(" calls  ")
    rejections = as_int(stats.get("fencing_rejections"))
    summary.append(f"{rejections} fenced", style="bold white on red" if rejections else "dim")

    by_method_raw = stats.get("by_method")
    by_method: list[tuple[str, Data]] = []
    if isinstance(by_method_raw, Mapping):
        by_method = [
            (clean(name), value)
            for name, value in by_method_raw.items()
            if isinstance(value, Mapping)
        ]
    by_method.sort(key=lambda item: (-as_int(item[1].get("calls")), item[0]))
    with_rate = any(value.get("calls_per_second") is not None for _, value in by_method)

    table = Table(
        box=None, expand=True, pad_edge=False, padding=(0, 1, 0, 0), header_style="bold dim"
    )
    table.add_column("method", no_wrap=True, overflow="ellipsis", ratio=1, min_width=8)
    table.add_column("calls", no_wrap=True, justify="right", min_width=5)
    if with_rate:
        table.add_column("/s", no_wrap=True, justify="right", min_width=4)
    table.add_column("p50", no_wrap=True, justify="right", min_width=6)
    table.add_column("p99", no_wrap=True, justify="right", min_width=6)
    shown = by_method[: max(0, limit)]
    for name, value in shown:
        row = [Text(name), Text(str(as_int(value.get("calls"))))]
        if with_rate:
            row.append(Text(format_rate(value.get("calls_per_second"))))
        p99 = as_float(value.get("p99"))
        row += [
            Text(format_latency(value.get("p50"))),
            Text(format_latency(p99), style="yellow" if p99 is not None and p99 >= 0.1 else ""),
        ]
        table.add_row(*row)
    rows = len(shown)
    blanks = [""] * (len(table.columns) - 1)
    if not by_method:
        table.add_row(Text("no calls yet", style="dim"), *blanks)
        rows = 1
    elif len(by_method) > len(shown):
        table.add_row(Text(f"… and {len(by_method) - len(shown)} more", style="dim"), *blanks)
        rows += 1
    return Group(summary, table), rows + 2


def render_rpc_stats(
    rpc_stats: Data | None, *, limit: int = DEFAULT_MAX_METHODS, height: int | None = None
) -> RenderableType:
    """Calls per second, total calls and fencing rejections; per method (busiest first, at
    most ``limit``) the calls and the p50/p99 latency."""
    body, _ = _rpc_table(rpc_stats, limit)
    return Panel(
        body,
        title="[bold]RPC[/]",
        title_align="left",
        border_style=_BORDER_STYLE,
        box=box.ROUNDED,
        padding=(0, 1),
        height=height,
    )


# --------------------------------------------------------------------------------------------
# events


def is_fencing_rejection(event: Data) -> bool:
    """A call turned away for a missing or stale fencing token."""
    return clean(event.get("kind")).lower() == "fencing" or "FencingTokenError" in clean(
        event.get("outcome")
    )


def _is_heartbeat_timeout(event: Data) -> bool:
    if clean(event.get("kind")).lower() != "heartbeat":
        return False
    text = f"{clean(event.get('outcome'))} {clean(event.get('message'))}".lower()
    return "timeout" in text or "timed out" in text or "lost" in text


_OUTCOME_WIDTH = 12


def _outcome_text(outcome: str) -> Text:
    """``ok`` in green, ``dropped`` in yellow, an error as its red type name without the
    ``error:`` prefix and the ``Error`` suffix (``error:FencingTokenError`` reads
    ``FencingToken``), so that it fits the column; the plain log keeps it whole."""
    shown = outcome
    if outcome.lower().startswith("error:"):
        shown = outcome[len("error:") :].strip()
        if shown.endswith("Error") and len(shown) > len("Error"):
            shown = shown[: -len("Error")]
    return Text(shown, style=_outcome_style(outcome))


def _outcome_style(outcome: str) -> str:
    lowered = outcome.lower()
    if lowered in ("ok", "done", "success"):
        return "green"
    if lowered.startswith(("error", "fail", "exception")):
        return "bold red"
    if lowered in ("dropped", "timeout", "timed out", "lost") or "timeout" in lowered:
        return "yellow"
    return ""


def _tail(events: Iterable[Data], limit: int) -> list[Data]:
    if limit <= 0:
        return []
    if isinstance(events, Sequence):
        return [e for e in events[-limit:] if isinstance(e, Mapping)]
    items = [e for e in events if isinstance(e, Mapping)]
    return items[-limit:]


def _event_rows_needed(count: int, limit: int) -> int:
    return max(1, min(count, max(0, limit)))


def render_events(events: Iterable[Data], limit: int = DEFAULT_EVENT_LIMIT) -> RenderableType:
    """The last ``limit`` events, oldest first (in the order they happened): RPC messages
    (sender -> receiver: method, outcome), failovers, heartbeat timeouts and fencing
    rejections, the latter highlighted in red."""
    table = Table(
        box=None, expand=True, pad_edge=False, padding=(0, 1, 0, 0), header_style="bold dim"
    )
    table.add_column("time", no_wrap=True, justify="right", min_width=8)
    table.add_column("kind", no_wrap=True, width=9, overflow="ellipsis")
    table.add_column("what", no_wrap=True, overflow="ellipsis", ratio=1)
    table.add_column("outcome", no_wrap=True, overflow="ellipsis", width=_OUTCOME_WIDTH)
    tail = _tail(events, limit)
    for event in tail:
        kind = clean(event.get("kind")).lower() or "event"
        sender = shorten_ids(clean(event.get("sender")))
        receiver = shorten_ids(clean(event.get("receiver")))
        method = clean(event.get("method"))
        outcome = clean(event.get("outcome"))
        message = shorten_ids(clean(event.get("message")))
        fencing = is_fencing_rejection(event)

        what = Text(no_wrap=True, overflow="ellipsis")
        if sender and receiver:
            what.append(sender)
            what.append(" -> ", style="dim")
            what.append(receiver)
            what.append(": " if method or message else "")
        elif sender or receiver:
            what.append(sender or receiver)
            what.append(": " if method or message else "")
        if method:
            what.append(method, style="bold")
        if message:
            what.append(f"  {message}" if method else message, style="" if not method else "dim")

        row_style = ""
        if fencing:
            row_style = FENCING_ROW_STYLE
        elif _is_heartbeat_timeout(event):
            row_style = "yellow"
        elif kind == "failover":
            row_style = "magenta"
        elif kind == "step":
            row_style = "cyan"
        kind_style = EVENT_KIND_STYLES["fencing"] if fencing else EVENT_KIND_STYLES.get(kind, "")
        time = as_float(event.get("time"))
        table.add_row(
            Text("-" if time is None else f"{time:.3f}", style="dim"),
            Text(kind, style=kind_style),
            what,
            _outcome_text(outcome),
            style=row_style,
        )
    if not tail:
        table.add_row("", "", Text("no events yet", style="dim"), "")
    return Panel(
        table,
        title="[bold]Events[/]",
        title_align="left",
        border_style=_BORDER_STYLE,
        box=box.ROUNDED,
        padding=(0, 1),
    )


# --------------------------------------------------------------------------------------------
# dashboard


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
    snapshot: Data,
    events: Iterable[Data],
    rpc_stats: Data | None,
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
