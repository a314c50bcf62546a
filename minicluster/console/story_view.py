"""The "What happened" panel: the events that tell a run's story (failures, fencing rejections,
leader changes, restarts, losses, joins) with their reasons in full, wrapped rather than cut.

It reads the snapshot's ``notable_events``, which the cluster keeps apart from routine traffic,
so a fencing rejection stays on screen however many messages follow it. When not all of them
fit, joins and routine job transitions give way first, then the oldest of the rest.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass

from rich import box
from rich.console import Console, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from minicluster.console.format import as_float, as_mappings, clean, shorten_ids
from minicluster.console.view_parts import _BORDER_STYLE, Data

_TIME_WIDTH = 8
_KIND_WIDTH = 12
_ALARMING_STATUS = re.compile(r"-> (FAILED|FAILING|RESTARTING|CANCELING|CANCELLING)\b")
_SETBACK = re.compile(r"disconnect|refused|failed|gives up|timed out|lost", re.IGNORECASE)

KIND_STYLES: dict[str, str] = {
    "fencing": "bold white on red",
    "failure": "bold red",
    "heartbeat": "bold yellow",
    "partition": "bold yellow",
    "failover": "bold magenta",
    "job": "cyan",
    "state": "cyan",
    "registration": "green",
    "slots": "bold red",
}


@dataclass
class Entry:
    """One line of the story (before wrapping): events saying the same thing at the same
    instant are one entry, counted (``(2 times)``)."""

    time: float | None
    kind: str
    text: str
    severity: int  # 2: a failure, rejection or leader change; 1: a join, a job's progress
    count: int = 1


def _severity(kind: str, message: str) -> int:
    if kind in ("job",):
        return 2 if _ALARMING_STATUS.search(message) else 1
    if kind == "state":
        return 2 if "killed" in message or "failed" in message else 1
    if kind == "registration":
        return 2 if _SETBACK.search(message) else 1
    return 2


def story_entries(snapshot: Data) -> list[Entry]:
    """The snapshot's notable events as entries, oldest first. A TaskExecutor's own note of
    its registration is left out: the ResourceManager's says the same."""
    entries: list[Entry] = []
    by_key: dict[tuple[float | None, str], Entry] = {}
    for event in as_mappings(snapshot.get("notable_events")):
        kind = clean(event.get("kind")).lower() or "event"
        message = shorten_ids(clean(event.get("message")))
        sender = shorten_ids(clean(event.get("sender")))
        if kind == "registration" and message.startswith("registered at the ResourceManager"):
            continue
        if kind == "fencing":
            receiver = shorten_ids(clean(event.get("receiver")))
            text = f"{sender} -> {receiver}: {clean(event.get('method'))} "
            text += clean(event.get("outcome")) or "rejected"
            if message:
                text += f" ({message})"
            key_text = text
        else:
            text = f"{sender}: {message}" if sender else message
            key_text = f"{kind}|{message}"
        time = as_float(event.get("time"))
        key = (time, key_text)
        same = by_key.get(key)
        if same is not None:
            same.count += 1
            continue
        if kind != "fencing":
            # the same news from another component at the same instant: one entry naming both
            twin = next(
                (
                    e
                    for e in reversed(entries[-4:])
                    if e.time == time and e.kind == kind and e.text.endswith(f": {message}")
                ),
                None,
            )
            if twin is not None and sender and message:
                head = twin.text[: -len(f": {message}")]
                if sender not in head.split(", "):
                    twin.text = f"{head}, {sender}: {message}"
                by_key[key] = twin
                continue
        entry = Entry(time, kind, text, _severity(kind, message))
        by_key[key] = entry
        entries.append(entry)
    return entries


_MEASURE: list[Console] = []


def _measuring_console() -> Console:
    """A console that only measures wrapped text (never prints), made once."""
    if not _MEASURE:
        _MEASURE.append(Console(file=io.StringIO(), width=200, color_system=None))
    return _MEASURE[0]


def _entry_text(entry: Entry) -> Text:
    text = Text(entry.text)
    if entry.count > 1:
        text.append(f" ({entry.count} times)", style="bold")
    return text


def _lines_of(entry: Entry, text_width: int) -> int:
    return len(_entry_text(entry).wrap(_measuring_console(), max(8, text_width)))


def text_width(panel_width: int) -> int:
    """Columns left for an entry's text in a panel that wide (borders, padding, time, kind)."""
    return panel_width - 4 - _TIME_WIDTH - _KIND_WIDTH - 2


def choose(entries: Sequence[Entry], width: int, budget: int) -> tuple[list[Entry], int]:
    """The entries to show within ``budget`` lines of text, in time order, and the lines they
    take: the latest failures, rejections and leader changes first, then the latest joins and
    job progress, each as many as fit."""
    inner = text_width(width)
    sizes = [_lines_of(entry, inner) for entry in entries]
    keep: set[int] = set()
    used = 0
    for severity in (2, 1):
        for index in range(len(entries) - 1, -1, -1):
            if entries[index].severity != severity:
                continue
            if used + sizes[index] > budget:
                if severity == 2:
                    continue  # a shorter, older one may still fit
                break
            keep.add(index)
            used += sizes[index]
    return [entries[i] for i in sorted(keep)], used


def lines_needed(entries: Sequence[Entry], width: int) -> int:
    """The panel's height when every entry is shown."""
    inner = text_width(width)
    return 2 + max(1, sum(_lines_of(entry, inner) for entry in entries))


def render_story(
    entries: Sequence[Entry], width: int, height: int, fencing_rejections: int = 0
) -> RenderableType:
    """The panel, ``height`` lines tall (borders included), with what fits of ``entries``."""
    shown, _ = choose(entries, width, max(1, height - 2))
    table = Table.grid(expand=True, padding=(0, 1, 0, 0))
    table.add_column(justify="right", width=_TIME_WIDTH - 1, no_wrap=True)
    table.add_column(width=_KIND_WIDTH, no_wrap=True, overflow="ellipsis")
    table.add_column(ratio=1, overflow="fold")
    for entry in shown:
        style = KIND_STYLES.get(entry.kind, "")
        time = "-" if entry.time is None else f"{entry.time:.3f}"
        table.add_row(
            Text(time, style="dim"),
            Text(entry.kind, style=style),
            _entry_text(entry),
            style="" if entry.severity == 2 else "dim",
        )
    if not entries:
        table.add_row("", "", Text("nothing yet: no failures, leader changes or joins", "dim"))
    title = "[bold]What happened[/]"
    if fencing_rejections:
        title += f" [bold white on red] {fencing_rejections} fencing rejections [/]"
    left_out = len(entries) - len(shown)
    subtitle = f"[dim]{left_out} earlier not shown[/]" if left_out else None
    return Panel(
        table,
        title=title,
        title_align="left",
        subtitle=subtitle,
        subtitle_align="right",
        border_style=_BORDER_STYLE,
        box=box.ROUNDED,
        padding=(0, 1),
        height=height,
    )
