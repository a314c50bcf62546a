"""The state every family of invariant checks shares, and the helpers they use: the base class
of the check mixins (slot_checks, scheduling_checks, liveness_checks) and of InvariantChecker,
which fills that state. Kept apart so that each family of checks can be read alone, against
the state it reads and updates."""

from __future__ import annotations

import enum
import itertools
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import trio

from minicluster.cluster import ClusterConfig, ExecutionState, MiniCluster
from minicluster.cluster.jobmaster import BULK_TIMEOUT, NOT_ENOUGH_RESOURCES, JobMaster
from minicluster.cluster.model import SlotState
from minicluster.cluster.resourcemanager import ResourceManager
from minicluster.cluster.snapshot import JobSnapshot
from minicluster.cluster.taskexecutor import TaskExecutor
from minicluster.rpc.reply import Reply

_EPSILON = 1e-6
# a JobMaster with more executions than this has its regions scanned only when its task
# counts, restarts or slots changed (a replayed scale scenario has thousands per job)
_FULL_SCAN_LIMIT = 200
# how long a ResourceManager's tell may take to arrive after a new leader took over
_TELL_GRACE = 1.0
_WAITING = frozenset({ExecutionState.CREATED, ExecutionState.SCHEDULED})
_IN_SLOT = frozenset(
    {ExecutionState.DEPLOYING, ExecutionState.INITIALIZING, ExecutionState.RUNNING}
)
_DEPLOYED = _IN_SLOT | {ExecutionState.FINISHED}
_BULK_TIMEOUT_PREFIX = "NoResourceAvailableException: " + BULK_TIMEOUT.split("{")[0]
_NOT_ENOUGH_PREFIX = "NoResourceAvailableException: " + NOT_ENOUGH_RESOURCES


_REPLY_WAIT_CODE = Reply.wait.__code__


def _short(value: uuid.UUID | None) -> str:
    return value.hex[:8] if value is not None else "none"


@dataclass
class _Started:
    task_executor: str
    at: float
    vertex: str
    subtask: int
    attempt: int
    duration: float


class CheckerState:
    """The state InvariantChecker keeps between events (its __init__ fills it; the comments
    there say what each holds), reporting, and the lookups every family of checks uses."""

    cluster: MiniCluster
    config: ClusterConfig
    violations: list[tuple[float, str, str, str]]
    _report: Callable[[str, str, str], None] | None
    _reported: set[str]
    events: int
    errors: int
    exercised: set[str]
    states_seen: set[enum.Enum]
    _te_tasks: dict[TaskExecutor, set[uuid.UUID]]
    _te_allocations: dict[TaskExecutor, list[uuid.UUID | None]]
    _started: dict[uuid.UUID, _Started]
    _jms: dict[str, list[JobMaster]]
    _records: dict[str, Any]
    _finished: dict[JobMaster, dict[tuple[int, str, int], uuid.UUID]]
    _finished_at: dict[uuid.UUID, float]
    _signature: dict[JobMaster, tuple[int, int]]
    _region_signature: dict[JobMaster, tuple[Any, ...]]
    _idle_region_at: dict[JobMaster, dict[int, float]]
    _unfulfillable: dict[JobMaster, dict[int, tuple[object, float]]]
    last_failure: dict[str, str]
    job_ended_at: float | None
    _rms: list[ResourceManager]
    _rm_tenures: list[tuple[float, float | None]]
    _rm_registered: set[str]
    _lost_since: dict[str, float]
    _asks: list[tuple[float, int, Reply]]
    _ask_numbers: itertools.count[int]
    _hooked: set[int]
    _job_views: dict[JobMaster, JobSnapshot]

    # --- reporting ----------------------------------------------------------------------

    def violation(self, invariant: str, description: str, detail: str = "", key: str = "") -> None:
        key = f"{invariant}:{key or description}"
        if key in self._reported:
            return
        self._reported.add(key)
        self.violations.append((self.cluster.events.now(), invariant, description, detail))
        if self._report is not None:
            self._report(invariant, description, detail)

    def job_name(self, job_id: uuid.UUID | None) -> str:
        if job_id is None:
            return "no job"
        record = self.cluster.store.jobs.get(job_id)
        return record.graph.name if record is not None else f"job {job_id.hex[:8]}"

    def job_view(self, jm: JobMaster) -> JobSnapshot:
        """The JobMaster's snapshot without its executions, taken once per event: several
        checks read it, and nothing changes while the checker looks."""
        view = self._job_views.get(jm)
        if view is None:
            view = self._job_views[jm] = jm.job_snapshot(executions=False)
        return view

    def _job_master(self, job_hex: str) -> JobMaster | None:
        """The JobMaster of the job: the current one, or the last one seen if it has ended."""
        record = self._records.get(job_hex)
        if record is None:
            for job_id, candidate in self.cluster.store.jobs.items():
                if job_id.hex == job_hex:
                    record = self._records[job_hex] = candidate
                    break
            else:
                return None
        seen = self._jms.get(job_hex)
        if seen is None:
            seen = self._jms[job_hex] = []
        jm = record.job_master
        if jm is not None and (not seen or seen[-1] is not jm):
            seen.append(jm)
        return seen[-1] if seen else None


def _region_attempts(jm: JobMaster) -> list[int]:
    """The attempt of each pipelined region (that of its first subtask)."""
    return [jm.executions[region.vertices[0]].attempt for region in jm.topology.regions]


def _te_slot_view(slot: Any) -> tuple[str, uuid.UUID | None, uuid.UUID | None]:
    if slot.state is SlotState.FREE:
        return ("FREE", None, None)
    return ("ALLOCATED", slot.job_id, slot.allocation_id)


def _slot_text(
    state: str, job_id: uuid.UUID | None, allocation_id: uuid.UUID | None, checker: Any
) -> str:
    if state == "FREE" and job_id is None:
        return "FREE"
    owner = checker.job_name(job_id) if job_id is not None else "no job"
    return f"{state} for {owner} (allocation {_short(allocation_id)})"


def _waiting_asks() -> Iterator[tuple[Reply, str, float | None]]:
    """Every task of this trio run that waits in ``Reply.wait`` for an unsettled reply: the
    reply, what the ask was, and its timeout."""
    root = trio.lowlevel.current_root_task()
    stack = [root] if root is not None else []
    while stack:
        task = stack.pop()
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
        awaitable: Any = task.coro
        for _ in range(200):
            if awaitable is None:
                break
            frame = getattr(awaitable, "cr_frame", None) or getattr(awaitable, "gi_frame", None)
            if frame is not None and frame.f_code is _REPLY_WAIT_CODE:
                local = frame.f_locals
                reply = local.get("self")
                if isinstance(reply, Reply) and not reply.done:
                    describe = local.get("describe")
                    text = describe() if callable(describe) else "an ask"
                    yield reply, str(text), local.get("timeout")
                break
            awaitable = getattr(awaitable, "cr_await", None) or getattr(
                awaitable, "gi_yieldfrom", None
            )
