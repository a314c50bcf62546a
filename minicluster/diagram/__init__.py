"""Diagrams of a trace: Mermaid sequence diagrams, a slot timeline (SVG) and an HTML page.

Sans-IO: records in, text out (assets.py reads the Mermaid build found on the machine; nothing
else reads or writes). `records` checks trace lines at the boundary; `participants` names
components;
`sequence` selects and folds messages; `mermaid` writes the diagram; `timeline` finds and draws
which task ran in which slot; `page` puts both into one offline page.
"""

from __future__ import annotations

from .mermaid import escape, render_mermaid
from .page import render_page
from .participants import Participant, SelectionError, select_components
from .records import TraceRecord, TraceRecordError, parse_line, parse_lines, parse_record
from .sequence import (
    DEFAULT_MAX_MESSAGES,
    MAX_MESSAGES,
    HeartbeatRun,
    Message,
    Sequence,
    Window,
    WindowError,
    build_sequence,
    endpoints_of,
    job_names,
)
from .timeline import TaskRun, Timeline, build_timeline, render_svg

__all__ = [
    "DEFAULT_MAX_MESSAGES",
    "MAX_MESSAGES",
    "HeartbeatRun",
    "Message",
    "Participant",
    "SelectionError",
    "Sequence",
    "TaskRun",
    "Timeline",
    "TraceRecord",
    "TraceRecordError",
    "Window",
    "WindowError",
    "build_sequence",
    "build_timeline",
    "endpoints_of",
    "escape",
    "job_names",
    "parse_line",
    "parse_lines",
    "parse_record",
    "render_mermaid",
    "render_page",
    "render_svg",
    "select_components",
]
