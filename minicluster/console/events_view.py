"""The event log panel: the latest RPC messages, failovers, heartbeat timeouts and fencing
rejections, oldest first, each coloured by kind and outcome (fencing rejections in red)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from rich import box
from rich.console import RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from minicluster.console.format import (
    as_float,
    as_mappings,
    clean,
    shorten_ids,
)
from minicluster.console.view_parts import _BORDER_STYLE, Data, Viewable

DEFAULT_EVENT_LIMIT = 12

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


def _tail(events: Iterable[Viewable], limit: int) -> list[Data]:
    if limit <= 0:
        return []
    if isinstance(events, Sequence):
        return as_mappings(events[-limit:])
    return as_mappings(events)[-limit:]


def _event_rows_needed(count: int, limit: int) -> int:
    return max(1, min(count, max(0, limit)))


def render_events(events: Iterable[Viewable], limit: int = DEFAULT_EVENT_LIMIT) -> RenderableType:
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
