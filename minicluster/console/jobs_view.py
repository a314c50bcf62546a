"""The jobs panel: each job with its letter (as in the slot cells), status, a progress bar of
its tasks, restarts and duration; unfinished jobs are kept in view when not all fit."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rich import box
from rich.console import RenderableType
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
    snapshot: Viewable, *, limit: int = DEFAULT_MAX_JOBS, height: int | None = None
) -> RenderableType:
    """Jobs with their letter (as in the slot cells), status, a progress bar of tasks finished
    out of total (``3/8``), restarts and duration. ``height`` fixes the panel's height."""
    snapshot = as_data(snapshot)
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
