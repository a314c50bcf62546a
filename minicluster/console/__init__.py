"""The cluster console: rich live views in a terminal, plain timestamped lines elsewhere.

``views`` draws plain snapshot data (dicts) as rich renderables, ``plain`` formats the same data
as lines without control codes, and ``live`` wraps a refreshing rich Live display.
"""

from minicluster.console.live import LiveConsole, is_interactive, make_console
from minicluster.console.plain import format_event_line, format_summary
from minicluster.console.views import (
    render_dashboard,
    render_events,
    render_jobs,
    render_rpc_stats,
    render_topology,
)

__all__ = [
    "LiveConsole",
    "format_event_line",
    "format_summary",
    "is_interactive",
    "make_console",
    "render_dashboard",
    "render_events",
    "render_jobs",
    "render_rpc_stats",
    "render_topology",
]
