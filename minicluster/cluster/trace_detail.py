"""The ids a traced message carries, for the trace file: which job, task and slot it is about.

A trace line names sender, receiver and method; these few keys more (read from the message's
own arguments) are what a timeline of slots needs: `request_slot` ties an allocation to a slot,
`submit_task` a task attempt to an allocation, `update_task_execution_state` and `cancel_task`
its state to the attempt, `free_slot` ends an allocation. Other messages carry none, so the
common path costs one dictionary lookup.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any

from .model import JobGraph, SlotID, TaskDeploymentDescriptor, TaskExecutionState

Detail = dict[str, Any]


def _arg(args: Sequence[Any], index: int, kind: type) -> Any:
    """The positional argument at `index` if it has the expected type, else None: the tracer
    also sees messages the handler refused for their arguments."""
    if len(args) > index and isinstance(args[index], kind):
        return args[index]
    return None


def _submit_job(args: Sequence[Any]) -> Detail | None:
    graph = _arg(args, 0, JobGraph)
    if graph is None:
        return None
    return {"job": graph.job_id.hex, "job_name": graph.name}


def _register_task_executor(args: Sequence[Any]) -> Detail | None:
    registration = args[0] if args else None
    slots = getattr(registration, "slots", None)
    return {"slots": slots} if isinstance(slots, int) else None


def _request_slot(args: Sequence[Any]) -> Detail | None:
    slot_id = _arg(args, 0, SlotID)
    job_id = _arg(args, 1, uuid.UUID)
    allocation_id = _arg(args, 2, uuid.UUID)
    if slot_id is None or job_id is None or allocation_id is None:
        return None
    return {"slot": str(slot_id), "job": job_id.hex, "allocation": allocation_id.hex}


def _submit_task(args: Sequence[Any]) -> Detail | None:
    tdd = _arg(args, 0, TaskDeploymentDescriptor)
    if tdd is None:
        return None
    return {
        "job": tdd.job_id.hex,
        "execution": tdd.execution_id.hex,
        "vertex": tdd.vertex,
        "subtask": tdd.subtask,
        "attempt": tdd.attempt,
        "allocation": tdd.allocation_id.hex,
    }


def _update_task_execution_state(args: Sequence[Any]) -> Detail | None:
    update = _arg(args, 0, TaskExecutionState)
    if update is None:
        return None
    return {
        "job": update.job_id.hex,
        "execution": update.execution_id.hex,
        "state": update.state.value,
    }


def _cancel_task(args: Sequence[Any]) -> Detail | None:
    execution_id = _arg(args, 0, uuid.UUID)
    return {"execution": execution_id.hex} if execution_id is not None else None


def _free_slot(args: Sequence[Any]) -> Detail | None:
    allocation_id = _arg(args, 0, uuid.UUID)
    return {"allocation": allocation_id.hex} if allocation_id is not None else None


def _notify_slot_available(args: Sequence[Any]) -> Detail | None:
    slot_id = _arg(args, 2, SlotID)
    allocation_id = _arg(args, 3, uuid.UUID)
    if slot_id is None or allocation_id is None:
        return None
    return {"slot": str(slot_id), "allocation": allocation_id.hex}


_EXTRACTORS: dict[str, Callable[[Sequence[Any]], Detail | None]] = {
    "submit_job": _submit_job,
    "register_task_executor": _register_task_executor,
    "request_slot": _request_slot,
    "submit_task": _submit_task,
    "update_task_execution_state": _update_task_execution_state,
    "cancel_task": _cancel_task,
    "free_slot": _free_slot,
    "notify_slot_available": _notify_slot_available,
}

DETAIL_KEYS = (
    "job",
    "job_name",
    "slots",
    "slot",
    "allocation",
    "execution",
    "vertex",
    "subtask",
    "attempt",
    "state",
)
"""Every key a detail may have: none of them is a key of the trace line itself."""


def message_detail(method: str, args: Sequence[Any]) -> Detail | None:
    """The ids of a message worth a trace line's extra keys, or None."""
    extract = _EXTRACTORS.get(method)
    return extract(args) if extract is not None else None
