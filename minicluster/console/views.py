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

Each panel has its own module: ``topology_view`` (leaders, TaskExecutors and their slot cells),
``jobs_view``, ``rpc_view``, ``events_view`` and ``dashboard`` (the header and the layout that
fits them to the terminal), over ``job_keys`` (the per-frame digest of a snapshot) and
``view_parts`` (what the panels share). This module gathers their public names (those outside
``__all__`` re-exported as such).
"""

from __future__ import annotations

from minicluster.console.dashboard import MAX_WIDTH, render_dashboard, render_header
from minicluster.console.events_view import (
    DEFAULT_EVENT_LIMIT,
    is_fencing_rejection,
    render_events,
)
from minicluster.console.events_view import EVENT_KIND_STYLES as EVENT_KIND_STYLES
from minicluster.console.events_view import FENCING_ROW_STYLE as FENCING_ROW_STYLE
from minicluster.console.job_keys import assign_job_keys
from minicluster.console.jobs_view import DEFAULT_MAX_JOBS as DEFAULT_MAX_JOBS
from minicluster.console.jobs_view import JOB_STATUS_STYLES as JOB_STATUS_STYLES
from minicluster.console.jobs_view import render_jobs
from minicluster.console.rpc_view import DEFAULT_MAX_METHODS as DEFAULT_MAX_METHODS
from minicluster.console.rpc_view import render_rpc_stats
from minicluster.console.topology_view import DEFAULT_MAX_JOB_MASTERS as DEFAULT_MAX_JOB_MASTERS
from minicluster.console.topology_view import (
    DEFAULT_MAX_TASK_EXECUTORS,
    MAX_SLOTS_SHOWN,
    SLOT_STYLES,
    render_topology,
)
from minicluster.console.topology_view import FREE_GLYPH as FREE_GLYPH
from minicluster.console.topology_view import TE_STATES as TE_STATES
from minicluster.console.topology_view import SlotStrip as SlotStrip
from minicluster.console.view_parts import Data as Data

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
