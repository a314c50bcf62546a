"""The plain event log: one timestamped line per event, for pipes, CI logs and ``--no-live``.

Lines carry no control codes (no colour, no cursor movement) and keep ids in full, so that a log
can be grepped for the job id that ``submit-job`` printed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from minicluster.console.format import (
    as_data,
    as_float,
    as_int,
    as_mappings,
    clean,
    format_duration,
    format_latency,
    format_rate,
    shorten_ids,
)
from minicluster.console.view_parts import Viewable

__all__ = [
    "format_event_line",
    "format_status_line",
    "format_summary",
    "format_timestamp",
]


def format_timestamp(time: object) -> str:
    """``[   3.250]``: seconds since the cluster started, to the millisecond, right-aligned."""
    value = as_float(time)
    if value is None or value != value:
        return "[" + " " * 8 + "]"
    return f"[{value:8.3f}]"


def format_event_line(event: Mapping[str, Any], *, short_ids: bool = False) -> str:
    """One event as a single plain line, for example::

        [   3.250] rpc taskexecutor-te-1 -> resourcemanager: register_task_executor ok
        [   7.000] fencing jobmaster-3f2a1b2c -> resourcemanager: offer_slots error:FencingToken…
        [   9.500] failover resourcemanager: new leader 5e1f9c3a

    Ids are kept whole (a log can be searched for the id ``submit-job`` printed) unless
    ``short_ids``: then every UUID or long hex id is cut to its first eight characters, which
    keeps lines naming a JobMaster under 100 columns.
    """

    def text(key: str) -> str:
        value = clean(event.get(key))
        return shorten_ids(value) if short_ids else value

    kind = clean(event.get("kind")) or "event"
    sender = text("sender")
    receiver = text("receiver")
    method = clean(event.get("method"))
    outcome = clean(event.get("outcome"))
    message = text("message")

    parts = [format_timestamp(event.get("time")), kind]
    if sender and receiver:
        parts.append(f"{sender} -> {receiver}:")
    elif sender or receiver:
        parts.append(f"{sender or receiver}:")
    if method:
        parts.append(method)
    if outcome:
        parts.append(outcome)
    if message:
        parts.append(f"- {message}" if method or outcome else message)
    return " ".join(parts)


def format_status_line(status: Mapping[str, Any], time: object = None) -> str:
    """The scenario header as a plain line: ``[  12.500] step 3/12 kill_task_executor te-1``."""
    parts = [format_timestamp(time)]
    scenario = clean(status.get("scenario"))
    step = clean(status.get("step"))
    if scenario:
        parts.append(f"scenario {scenario}")
    if step:
        parts.append(f"step {step}")
    clock = clean(status.get("clock"))
    if clock:
        parts.append(f"({clock} clock)")
    return " ".join(parts)


def format_summary(
    snapshot: Viewable,
    rpc_stats: Viewable | None = None,
    status: Mapping[str, Any] | None = None,
) -> list[str]:
    """A short plain summary of a cluster, one timestamped line each.

    ::

        [  42.000] cluster: 3 task executors (2 registered, 1 lost), 6 slots (2 free, 4 active)
        [  42.000] job etl 3f2a1b2c...: FINISHED, 8/8 tasks, 1 restart, 12.5s
        [  42.000] rpc: 1200 calls, 523/s, 2 fencing rejections; p99 offer_slots 1.0ms
    """
    snapshot = as_data(snapshot)
    rpc_stats = as_data(rpc_stats) if rpc_stats is not None else None
    stamp = format_timestamp(snapshot.get("time"))
    lines: list[str] = []
    if status:
        lines.append(format_status_line(status, snapshot.get("time")))

    executors = as_mappings(snapshot.get("task_executors"))
    states: dict[str, int] = {}
    slots: dict[str, int] = {}
    for executor in executors:
        state = clean(executor.get("state")) or "unknown"
        states[state] = states.get(state, 0) + 1
        for slot in as_mappings(executor.get("slots")):
            slot_state = (clean(slot.get("state")) or "unknown").lower()
            slots[slot_state] = slots.get(slot_state, 0) + 1
        counts = executor.get("slot_counts")  # a large cluster's summed-up slots
        if isinstance(counts, Mapping):
            for name, count in counts.items():
                slot_state = (clean(name) or "unknown").lower()
                slots[slot_state] = slots.get(slot_state, 0) + as_int(count)
    state_text = ", ".join(f"{count} {name}" for name, count in states.items())
    slot_text = ", ".join(f"{count} {name}" for name, count in slots.items())
    line = f"{stamp} cluster: {len(executors)} task executors"
    if state_text:
        line += f" ({state_text})"
    line += f", {sum(slots.values())} slots"
    if slot_text:
        line += f" ({slot_text})"
    lines.append(line)

    for job in as_mappings(snapshot.get("jobs")):
        name = clean(job.get("name")) or "job"
        restarts = as_int(job.get("restarts"))
        text = (
            f"{stamp} job {name} {clean(job.get('job_id'))}: {clean(job.get('status')) or '?'}, "
            f"{as_int(job.get('tasks_finished'))}/{as_int(job.get('tasks_total'))} tasks, "
            f"{restarts} restart{'' if restarts == 1 else 's'}"
        )
        pending = as_int(job.get("slots_pending"))
        if pending:
            text += f", waiting for {pending} slot{'' if pending == 1 else 's'}"
        if job.get("duration") is not None:
            text += f", {format_duration(job.get('duration'))}"
        lines.append(text)

    if rpc_stats:
        calls = as_int(rpc_stats.get("total_calls"))
        text = (
            f"{stamp} rpc: {calls} calls, {format_rate(rpc_stats.get('calls_per_second'))}/s, "
            f"{as_int(rpc_stats.get('fencing_rejections'))} fencing rejections"
        )
        by_method = rpc_stats.get("by_method")
        if isinstance(by_method, Mapping) and by_method:
            slowest = max(
                (
                    (as_float(stats.get("p99")) or 0.0, clean(name))
                    for name, stats in by_method.items()
                    if isinstance(stats, Mapping)
                ),
                default=None,
            )
            if slowest is not None:
                text += f"; slowest p99 {slowest[1]} {format_latency(slowest[0])}"
        lines.append(text)
    return lines
