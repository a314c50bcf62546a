"""The topology panel: the leaders (Dispatcher, ResourceManager, JobMasters) with their fencing
tokens, one row per TaskExecutor with its state, heartbeat age and slot cells, then totals and
the legend of the job letters."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.measure import Measurement
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from minicluster.console.format import (
    as_data,
    as_float,
    as_mappings,
    clean,
    format_age,
    short_id,
    short_token,
    shorten_ids,
)
from minicluster.console.job_keys import _Digest, _digest, _fast, _job_id
from minicluster.console.view_parts import _BORDER_STYLE, Data, Viewable

DEFAULT_MAX_TASK_EXECUTORS = 12
DEFAULT_MAX_JOB_MASTERS = 4
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
    "reconnecting": ("◌ reconnecting", "yellow"),
    "lost": ("✖ lost", "bold red"),
    "killed": ("✖ killed", "bold red"),
    "stopped": ("○ stopped", "dim"),
}
_TE_STATE_WIDTH = 14


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


def _executors_to_show(executors: Sequence[Data], limit: int) -> list[Data]:
    """All when they fit; else those not registered first (a killed or lost TaskExecutor is
    what a person looks for), then the others, in their order."""
    if len(executors) <= limit:
        return list(executors)
    troubled = [i for i, e in enumerate(executors) if _fast(e.get("state")) != "registered"]
    keep = set(troubled[:limit])
    for index in range(len(executors)):
        if len(keep) >= limit:
            break
        keep.add(index)
    return [executors[i] for i in sorted(keep)]


def _task_executor_rows_needed(count: int, limit: int) -> int:
    """Lines the TaskExecutor table body takes: the rows shown plus the "and N more" line."""
    if count == 0:
        return 1
    shown = min(count, max(0, limit))
    return shown + (1 if shown < count else 0)


def render_topology(
    snapshot: Viewable,
    *,
    max_task_executors: int = DEFAULT_MAX_TASK_EXECUTORS,
    max_job_masters: int = DEFAULT_MAX_JOB_MASTERS,
    compact: bool = False,
) -> RenderableType:
    """Dispatcher, ResourceManager and JobMasters with address and short fencing token; one row
    per TaskExecutor (at most ``max_task_executors``, the rest summed up) with its state,
    heartbeat age and slot cells; totals and a legend. When not all TaskExecutors fit, those
    not registered (killed, lost, reconnecting...) are listed first. ``compact`` saves the
    components' header, the blank line below them and the legend (the jobs panel names the
    letters too)."""
    snapshot = as_data(snapshot)
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
        box=None,
        expand=True,
        pad_edge=False,
        padding=(0, 1, 0, 0),
        header_style="bold dim",
        show_header=not compact,
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
    shown = _executors_to_show(executors, max(0, max_task_executors))
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
    if not compact or not executors:
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
