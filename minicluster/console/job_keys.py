"""Job keys: one letter per job, shared by the slot cells, the legend and the jobs table.

The snapshot is read once per frame (`_digest`), gathering what every panel needs from every
slot, so that thousands of TaskExecutors cost one loop, not one per panel.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from minicluster.console.format import (
    as_int,
    as_mappings,
    clean,
)
from minicluster.console.view_parts import Data


def _job_id(value: object) -> str:
    return clean(value)


def _fast(value: object) -> str:
    """:func:`clean`, with a shortcut for the common case of a printable string."""
    if type(value) is str and value.isprintable():
        return value
    return clean(value)


@dataclass
class _Digest:
    """What the views need from the whole snapshot, gathered in one pass over every slot, so
    that thousands of TaskExecutors cost one loop per frame, not one per panel."""

    executors: list[Data]
    keys: dict[str, str]
    names: dict[str, str]
    te_states: dict[str, int]
    slot_states: dict[str, int]


def _digest(snapshot: Data) -> _Digest:
    names: dict[str, str] = {}
    for job in as_mappings(snapshot.get("jobs")):
        job_id = _job_id(job.get("job_id"))
        if job_id:
            names.setdefault(job_id, clean(job.get("name")))
    listed = dict(names)
    for master in as_mappings(snapshot.get("job_masters")):
        job_id = _job_id(master.get("job_id"))
        if job_id and not names.get(job_id):
            names[job_id] = clean(master.get("name"))

    executors = as_mappings(snapshot.get("task_executors"))
    te_states: dict[str, int] = {}
    slot_states = {"FREE": 0, "ALLOCATED": 0, "ACTIVE": 0}
    holding: dict[str, str] = {}  # job id -> slot's job name, in order of appearance
    for executor in executors:
        state = _fast(executor.get("state")).lower() or "unknown"
        te_states[state] = te_states.get(state, 0) + 1
        slots = executor.get("slots")
        if not isinstance(slots, list | tuple):
            slots = as_mappings(slots)
        counts = executor.get("slot_counts")  # a large cluster's summed-up slots
        if isinstance(counts, Mapping):
            for name, count in counts.items():
                key = clean(name).upper()
                slot_states[key] = slot_states.get(key, 0) + as_int(count)
        for slot in slots:
            if not isinstance(slot, Mapping):
                continue
            slot_state = slot.get("state")
            key = slot_state.upper() if type(slot_state) is str else clean(slot_state).upper()
            slot_states[key] = slot_states.get(key, 0) + 1
            raw = slot.get("job_id")
            if raw is None:
                continue
            held_id = raw if type(raw) is str else clean(raw)
            if held_id and held_id not in holding:
                holding[held_id] = _fast(slot.get("job_name"))
    held = holding
    for job_id, name in holding.items():
        if not names.get(job_id):
            names[job_id] = name

    ordered = list(listed) + [job_id for job_id in held if job_id not in listed]
    candidates = ordered if len(ordered) <= 26 else [j for j in ordered if j in held]
    keys: dict[str, str] = {}
    used: set[str] = set()
    for job_id in candidates:
        letters = [c for c in names.get(job_id, "").upper() if "A" <= c <= "Z"]
        letters += [chr(code) for code in range(ord("A"), ord("Z") + 1)]
        key = next((c for c in letters if c not in used), "*")
        if key != "*":
            used.add(key)
        keys[job_id] = key
    return _Digest(executors, keys, names, te_states, slot_states)


def assign_job_keys(snapshot: Data) -> dict[str, str]:
    """One upper-case letter per job id: the job name's first initial that is still free.

    Jobs are taken in the order of ``snapshot["jobs"]`` (then jobs only seen in slots), so a
    job keeps its letter while jobs are added. With more than 26 jobs only the jobs holding
    slots get letters; any job beyond that is ``*``.
    """
    return _digest(snapshot).keys
