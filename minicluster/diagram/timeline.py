"""Which job's task ran in which TaskExecutor slot, when: a timeline built from a trace and
drawn as SVG.

The trace says it in its ids: ``request_slot`` ties an allocation to a slot (``te-1/0``),
``submit_task`` starts a task attempt in an allocation, ``update_task_execution_state`` with a
final state (FINISHED, FAILED, CANCELED) ends it, and so does a ``free_slot`` of its allocation.
A task whose TaskExecutor went silent (messages to it dropped, nothing more from it) ends when
it was last heard from, marked lost; one still going when the trace ends runs to the end.

The SVG is written by hand: rectangles, lines and text, no library and nothing to load, so the
page that embeds it works offline and the picture is the same on every machine.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field
from xml.sax.saxutils import escape as xml_escape

from minicluster.cluster.components import task_executor_of

from .participants import role_of
from .records import TraceRecord
from .sequence import ALL_TIME, Window, job_names

FINAL_STATES = ("FINISHED", "FAILED", "CANCELED")
MAX_LANES = 200
MAX_RUNS = 5_000

# one colour per job, in the order jobs first ran (Okabe-Ito, readable for colour-blind eyes)
PALETTE = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#CC79A7",
    "#56B4E9",
    "#D55E00",
    "#F0E442",
    "#999999",
)


@dataclass
class TaskRun:
    """One task attempt in one slot, from deployment to its end."""

    slot: str  # te-1/0 (te-1/? when the trace never said which slot)
    job: str
    vertex: str
    subtask: int
    attempt: int
    start: float
    end: float | None = None
    ended_as: str = "running"  # FINISHED, FAILED, CANCELED, freed, lost or running
    execution: str = ""
    allocation: str = ""
    track: int = 0  # which of the slot's concurrent tasks (slot sharing) it is

    @property
    def label(self) -> str:
        retry = f" #{self.attempt}" if self.attempt else ""
        return f"{self.vertex}[{self.subtask}]{retry}"


@dataclass
class Timeline:
    start: float
    end: float
    lanes: list[str]  # slot ids, TaskExecutor by TaskExecutor
    runs: list[TaskRun]
    jobs: dict[str, str] = field(default_factory=dict)  # job hex -> name shown
    tracks: dict[str, int] = field(default_factory=dict)  # slot -> most tasks at once
    left_out_lanes: int = 0
    left_out_runs: int = 0


def _slot_key(slot: str) -> tuple[object, ...]:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", slot))


def _task_executor_of(slot: str) -> str:
    return slot.rsplit("/", 1)[0]


def build_timeline(
    records: list[TraceRecord],
    window: Window = ALL_TIME,
    only: Collection[str] | None = None,
) -> Timeline:
    """Task runs per slot from the whole trace, then cut to the window; `only` keeps the
    slots of the TaskExecutors it names (all of them when it names none)."""
    slots: set[str] = set()
    allocations: dict[str, str] = {}  # allocation hex -> slot
    runs: list[TaskRun] = []
    open_by_execution: dict[str, TaskRun] = {}
    last_heard: dict[str, float] = {}  # TaskExecutor id -> last time a message of it arrived
    silent: set[str] = set()  # TaskExecutors whose messages are dropped since last heard
    for record in records:
        detail = record.detail
        sender = record.sender or ""
        if role_of(sender) == "taskexecutor" and not record.dropped:
            resource_id = task_executor_of(sender) or ""
            last_heard[resource_id] = record.time
            silent.discard(resource_id)
            count = detail.get("slots")
            if record.method == "register_task_executor" and isinstance(count, int):
                slots.update(f"{resource_id}/{i}" for i in range(min(count, MAX_LANES)))
        if role_of(record.receiver) == "taskexecutor" and record.dropped:
            silent.add(task_executor_of(record.receiver) or "")
        slot, allocation = detail.get("slot"), detail.get("allocation")
        if isinstance(slot, str) and record.ok:
            slots.add(slot)
            if isinstance(allocation, str):
                allocations[allocation] = slot
        if not record.ok:
            continue
        if record.method == "submit_task" and isinstance(allocation, str):
            resource_id = task_executor_of(record.receiver) or ""
            run = TaskRun(
                allocations.get(allocation, f"{resource_id}/?"),
                str(detail.get("job", "")),
                str(detail.get("vertex", "?")),
                int(detail.get("subtask", 0)),
                int(detail.get("attempt", 0)),
                record.time,
                execution=str(detail.get("execution", "")),
                allocation=allocation,
            )
            slots.add(run.slot)
            runs.append(run)
            open_by_execution[run.execution] = run
        elif record.method == "update_task_execution_state":
            state = detail.get("state")
            run_or_none = open_by_execution.get(str(detail.get("execution")))
            if run_or_none is not None and state in FINAL_STATES:
                run_or_none.end, run_or_none.ended_as = record.time, str(state)
                del open_by_execution[run_or_none.execution]
        elif record.method == "free_slot" and isinstance(allocation, str):
            for run in [r for r in open_by_execution.values() if r.allocation == allocation]:
                run.end, run.ended_as = record.time, "freed"
                del open_by_execution[run.execution]
    trace_end = records[-1].time if records else 0.0
    for run in open_by_execution.values():
        resource_id = _task_executor_of(run.slot)
        if resource_id in silent and last_heard.get(resource_id, run.start) >= run.start:
            run.end, run.ended_as = last_heard[resource_id], "lost"
    start = window.start if window.start is not None else 0.0
    end = window.end if window.end is not None else trace_end
    wanted = None
    if only is not None:
        named = {task_executor_of(e) or "" for e in only if role_of(e) == "taskexecutor"}
        wanted = named or None
    lanes = sorted(
        (s for s in slots if wanted is None or _task_executor_of(s) in wanted), key=_slot_key
    )
    shown_lanes = set(lanes[:MAX_LANES])
    kept = [
        r
        for r in runs
        if r.slot in shown_lanes
        and r.start <= end
        and (r.end if r.end is not None else end) >= start
    ]
    names = job_names(records)
    jobs: dict[str, str] = {}
    for run in kept:
        jobs.setdefault(run.job, names.get(run.job, run.job[:8]))
    kept = kept[:MAX_RUNS]
    return Timeline(
        start,
        max(end, start),
        lanes[:MAX_LANES],
        kept,
        jobs,
        _assign_tracks(kept),
        left_out_lanes=max(0, len(lanes) - MAX_LANES),
        left_out_runs=max(0, len(kept) - MAX_RUNS),
    )


def _assign_tracks(runs: list[TaskRun]) -> dict[str, int]:
    """Give each run the first track of its slot that is free when it starts (slot sharing
    puts a job's subtasks of different vertices into one slot at once); the tracks per slot."""
    ends: dict[str, list[float]] = {}
    for run in sorted(runs, key=lambda r: (r.slot, r.start)):
        tracks = ends.setdefault(run.slot, [])
        end = run.end if run.end is not None else float("inf")
        for index, busy_until in enumerate(tracks):
            if busy_until <= run.start:
                run.track, tracks[index] = index, end
                break
        else:
            run.track = len(tracks)
            tracks.append(end)
    return {slot: len(tracks) for slot, tracks in ends.items()}


# --- SVG ---------------------------------------------------------------------------------

BAR_HEIGHT = 16  # one track: tasks that share a slot at the same time take one each
LANE_PADDING = 6
LABEL_WIDTH = 110
PLOT_WIDTH = 880
TOP = 34
FONT = "font-family='sans-serif'"


def _ticks(start: float, end: float) -> list[float]:
    span = end - start
    if span <= 0:
        return [start]
    step = 10 ** int(f"{span:e}".split("e")[1])
    for factor in (0.1, 0.2, 0.5, 1.0):
        if span / (step * factor) <= 10:
            step *= factor
            break
    first = -(-start // step) * step
    ticks: list[float] = []
    t = first
    while t <= end + 1e-9 and len(ticks) < 20:
        ticks.append(round(t, 9))
        t += step
    return ticks


def _text(x: float, y: float, text: str, extra: str = "", size: int = 11) -> str:
    return (
        f"<text x='{x:.1f}' y='{y:.1f}' {FONT} font-size='{size}'{extra}>{xml_escape(text)}</text>"
    )


def render_svg(timeline: Timeline, title: str = "Slots over time") -> str:
    """The timeline as one standalone SVG document: a lane per slot (taller when tasks share
    the slot at once), a bar per task run in its job's colour, a red edge for FAILED, white
    hatching for CANCELED, freed or lost, a time axis and a legend of jobs."""
    lanes = timeline.lanes
    colours = {job: PALETTE[i % len(PALETTE)] for i, job in enumerate(timeline.jobs)}
    span = timeline.end - timeline.start or 1.0
    width = LABEL_WIDTH + PLOT_WIDTH + 20
    tops: dict[str, float] = {}
    y = float(TOP)
    for lane in lanes:
        tops[lane] = y
        y += LANE_PADDING + BAR_HEIGHT * timeline.tracks.get(lane, 1)
    bottom = max(y, TOP + LANE_PADDING + BAR_HEIGHT)
    legend_rows = 1 + (len(timeline.jobs) + 3) // 4
    height = bottom + 30 + 18 * legend_rows

    def x_of(t: float) -> float:
        clipped = min(max(t, timeline.start), timeline.end)
        return LABEL_WIDTH + (clipped - timeline.start) / span * PLOT_WIDTH

    out = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height:.0f}' "
        f"viewBox='0 0 {width} {height:.0f}' role='img'>",
        f"<title>{xml_escape(title)}</title>",
        "<defs><pattern id='ended' width='6' height='6' patternUnits='userSpaceOnUse' "
        "patternTransform='rotate(45)'><line x1='0' y1='0' x2='0' y2='6' stroke='#ffffff' "
        "stroke-width='2' stroke-opacity='0.75'/></pattern></defs>",
        f"<rect width='{width}' height='{height:.0f}' fill='#ffffff'/>",
        _text(8, 18, title, " font-weight='bold'", size=13),
    ]
    for tick in _ticks(timeline.start, timeline.end):
        x = x_of(tick)
        out.append(
            f"<line x1='{x:.1f}' y1='{TOP - 4}' x2='{x:.1f}' y2='{bottom:.1f}' stroke='#e4e4e4'/>"
        )
        out.append(_text(x, bottom + 14, f"{tick:g} s", " text-anchor='middle'"))
    previous_te = None
    for lane in lanes:
        top = tops[lane]
        te = _task_executor_of(lane)
        if previous_te is not None and te != previous_te:
            out.append(
                f"<line x1='0' y1='{top:.1f}' x2='{width}' y2='{top:.1f}' stroke='#bbbbbb'/>"
            )
        previous_te = te
        out.append(_text(6, top + 15, f"slot {lane}"))
    if not lanes:
        out.append(_text(LABEL_WIDTH, TOP + 15, "no TaskExecutor slot in the trace"))
    for run in timeline.runs:
        top = tops[run.slot] + LANE_PADDING / 2 + run.track * BAR_HEIGHT
        x0 = x_of(run.start)
        x1 = x_of(run.end if run.end is not None else timeline.end)
        w = max(x1 - x0, 1.5)
        h = BAR_HEIGHT - 2
        colour = colours.get(run.job, "#777777")
        stroke = (
            " stroke='#d00000' stroke-width='2'"
            if run.ended_as == "FAILED"
            else " stroke='#ffffff' stroke-width='1'"  # back-to-back runs stay apart
        )
        job = timeline.jobs.get(run.job, run.job)
        if run.end is not None:
            tip = f"{job}: {run.label} in slot {run.slot}, {run.start:g} s - {run.end:g} s, "
            tip += run.ended_as
        else:
            tip = f"{job}: {run.label} in slot {run.slot} from {run.start:g} s, still running"
        out.append(
            f"<g><title>{xml_escape(tip)}</title>"
            f"<rect x='{x0:.1f}' y='{top:.1f}' width='{w:.1f}' height='{h}' rx='3' "
            f"fill='{colour}'{stroke}/>"
        )
        if run.ended_as in ("CANCELED", "freed", "lost"):
            out.append(
                f"<rect x='{x0:.1f}' y='{top:.1f}' width='{w:.1f}' height='{h}' rx='3' "
                "fill='url(#ended)'/>"
            )
        if w > 7 * len(run.label) + 8:
            out.append(_text(x0 + 4, top + 11, run.label, " fill='#ffffff'", size=10))
        out.append("</g>")
    y = bottom + 34
    for i, (job, name) in enumerate(timeline.jobs.items()):
        x = 8 + (i % 4) * 250
        row_y = y + (i // 4) * 18
        out.append(
            f"<rect x='{x}' y='{row_y - 10:.1f}' width='12' height='12' fill='{colours[job]}'/>"
        )
        out.append(_text(x + 18, row_y, f"{name} ({job[:8]})"))
    notes = []
    if timeline.left_out_lanes:
        notes.append(f"{timeline.left_out_lanes:,} more slot(s) left out")
    if timeline.left_out_runs:
        notes.append(f"{timeline.left_out_runs:,} more task run(s) left out")
    notes.append("hatched: canceled, freed or lost; red edge: failed")
    out.append(_text(8, y + 18 * (legend_rows - 1), "; ".join(notes)))
    out.append("</svg>")
    return "\n".join(out) + "\n"
