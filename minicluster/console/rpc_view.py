"""The RPC statistics panel: calls per second, total calls, fencing rejections, and per method
(busiest first) the calls and the p50/p99 latency."""

from __future__ import annotations

from collections.abc import Mapping

from rich import box
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from minicluster.console.format import (
    as_data,
    as_float,
    as_int,
    clean,
    format_latency,
    format_rate,
)
from minicluster.console.view_parts import _BORDER_STYLE, Data, Viewable

DEFAULT_MAX_METHODS = 6


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
    rpc_stats: Viewable | None, *, limit: int = DEFAULT_MAX_METHODS, height: int | None = None
) -> RenderableType:
    """Calls per second, total calls and fencing rejections; per method (busiest first, at
    most ``limit``) the calls and the p50/p99 latency."""
    body, _ = _rpc_table(as_data(rpc_stats) if rpc_stats is not None else None, limit)
    return Panel(
        body,
        title="[bold]RPC[/]",
        title_align="left",
        border_style=_BORDER_STYLE,
        box=box.ROUNDED,
        padding=(0, 1),
        height=height,
    )
