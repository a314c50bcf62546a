"""The jobs panel: each job with its letter (as in the slot cells), status, a progress bar of
its tasks, restarts and duration; unfinished jobs are kept in view when not all fit."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rich import box
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from minicluster.console.format import (
    as_data,
    as_int,
    as_mappings,
    clean,
    format_duration,
    short_id,
)
from minicluster.console.job_keys import _digest, _job_id
from minicluster.console.view_parts import _BORDER_STYLE, Data, Viewable, _ByWidth

DEFAULT_MAX_JOBS = 8

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


_BAR_PARTS = (
    # (task states, glyph, style): what the bar draws, left to right
    (("FINISHED",), "█", "green"),
    (("RUNNING",), "▓", "cyan"),
    (("DEPLOYING", "INITIALIZING"), "▒", "blue"),
)


def _task_counts(job: Data) -> tuple[int, int, int, int]:
    """Finished, running, deploying (with initializing) and all tasks of a job."""
    states = job.get("task_states")
    counts = states if isinstance(states, Mapping) else {}
    finished = as_int(counts.get("FINISHED", job.get("tasks_finished")))
    running = as_int(counts.get("RUNNING"))
    deploying = as_int(counts.get("DEPLOYING")) + as_int(counts.get("INITIALIZING"))
    return finished, running, deploying, as_int(job.get("tasks_total"))


def _progress_bar(job: Data, width: int) -> Text:
    """Finished tasks ``█``, running ``▓``, deploying ``▒``, the rest ``░``: a job whose tasks
    all run shows a full bar of ``▓``, not an empty one."""
    finished, running, deploying, total = _task_counts(job)
    text = Text(no_wrap=True)
    drawn = 0
    for count, (_, glyph, style) in zip((finished, running, deploying), _BAR_PARTS, strict=True):
        cells = 0 if total <= 0 else min(width - drawn, round(count / total * width))
        if count and not cells and drawn < width:
            cells = 1  # one task running out of a thousand still shows
        text.append(glyph * cells, style=style)
        drawn += cells
    text.append("░" * (width - drawn), style="bright_black")
    return text


def _task_summary(job: Data, narrow: bool) -> Text:
    """``2 done 4 running 1 deploying /6``, the parts with no task left out."""
    finished, running, deploying, total = _task_counts(job)
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append(f"{finished}/{total}" if narrow else f"{finished}/{total} done")
    if running:
        text.append(f" {running} running" if not narrow else f" {running} run", style="cyan")
    if deploying:
        text.append(f" {deploying} deploying" if not narrow else f" {deploying} dep", "blue")
    return text


def pending_note(job: Data, free_slots: int | None) -> str:
    """Why a job waits: ``waiting for 2 slots (none free)``; "" when it waits for none. (Free
    slots may be on their way to it already: only "none free" is worth saying.)"""
    pending = as_int(job.get("slots_pending"))
    if pending <= 0 or clean(job.get("status")).upper() in _TERMINAL_STATUSES:
        return ""
    note = f"waiting for {pending} slot{'' if pending == 1 else 's'}"
    if free_slots == 0:
        note += " (none free)"
    return note


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


def _jobs_table(
    snapshot: Data, limit: int, keys: Mapping[str, str], free_slots: int | None = None
) -> tuple[RenderableType, int]:
    """The jobs table, and its height. Narrower than 60 columns it leaves out the duration
    and calls restarts "rst". A job waiting for slots has a line below saying for how many."""
    wide, rows = _jobs_rows(snapshot, limit, keys, False, free_slots)
    narrow, _ = _jobs_rows(snapshot, limit, keys, True, free_slots)
    return _ByWidth(wide, narrow, 60), rows


def _new_table(narrow: bool, header: bool) -> Table:
    """The jobs table's columns; every segment of the panel has the same, so they align."""
    table = Table(
        box=None,
        expand=True,
        pad_edge=False,
        padding=(0, 1, 0, 0),
        header_style="bold dim",
        show_header=header,
    )
    table.add_column("job", no_wrap=True, overflow="ellipsis", ratio=1, min_width=8)
    table.add_column("status", no_wrap=True, width=10)
    table.add_column("tasks", no_wrap=True, overflow="ellipsis", ratio=3, min_width=16)
    if narrow:
        table.add_column("rst", no_wrap=True, justify="right", width=3)
    else:
        table.add_column("restarts", no_wrap=True, justify="right", width=8)
        table.add_column("time", no_wrap=True, justify="right", width=6)
    return table


def _jobs_rows(
    snapshot: Data, limit: int, keys: Mapping[str, str], narrow: bool, free_slots: int | None
) -> tuple[RenderableType, int]:
    """The rows of the jobs, in segments of one table each: a job waiting for slots has a
    line of the panel's whole width below its row, saying for how many."""
    jobs, hidden = _jobs_to_show(as_mappings(snapshot.get("jobs")), max(0, limit))
    table = _new_table(narrow, header=True)
    parts: list[RenderableType] = [table]
    blanks = [""] * (len(table.columns) - 1)
    rows = 0
    for job in jobs:
        job_id = _job_id(job.get("job_id"))
        status = clean(job.get("status")).upper() or "-"
        style = JOB_STATUS_STYLES.get(status, "")
        name = Text(no_wrap=True, overflow="ellipsis")
        if job_id in keys:
            name.append(keys[job_id], style="bold")
            name.append(" ")
        name.append(clean(job.get("name")) or short_id(job_id))
        progress = _progress_bar(job, 6 if narrow else 8)
        progress.append(" ")
        progress.append_text(_task_summary(job, narrow))
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
        rows += 1
        note = pending_note(job, free_slots)
        if note:
            parts.append(
                Text(f"  ↳ {note}", style="bold yellow", no_wrap=True, overflow="ellipsis")
            )
            table = _new_table(narrow, header=False)
            parts.append(table)
            rows += 1
    if not jobs and not hidden:
        table.add_row(Text("no jobs", style="dim"), *blanks)
        rows = 1
    if hidden:
        table.add_row(Text(f"… and {hidden} more", style="dim"), *blanks)
        rows += 1
    return Group(*parts), rows + 1


def render_jobs(
    snapshot: Viewable, *, limit: int = DEFAULT_MAX_JOBS, height: int | None = None
) -> RenderableType:
    """Jobs with their letter (as in the slot cells), status, a bar of their tasks (finished,
    running, deploying: ``2/6 done 4 running``), restarts and duration; below a job waiting
    for slots, how many it waits for. ``height`` fixes the panel's height."""
    snapshot = as_data(snapshot)
    digest = _digest(snapshot)
    free = digest.slot_states.get("FREE", 0) if digest.executors else None
    table, _ = _jobs_table(snapshot, limit, digest.keys, free)
    return Panel(
        table,
        title="[bold]Jobs[/]",
        title_align="left",
        border_style=_BORDER_STYLE,
        box=box.ROUNDED,
        padding=(0, 1),
        height=height,
    )
