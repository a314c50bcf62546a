"""The slot-exclusive, fencing and job-finished checks of InvariantChecker: at one TaskExecutor,
at one JobMaster, at a fenced endpoint, and when a job turns FINISHED."""

from __future__ import annotations

import uuid

from minicluster.cluster import ExecutionState
from minicluster.cluster.jobmaster import JobMaster
from minicluster.cluster.model import SlotID
from minicluster.cluster.taskexecutor import TaskExecutor
from minicluster.rpc import FencedRpcEndpoint, RpcEndpoint
from minicluster.simulate.checker_state import (
    _EPSILON,
    CheckerState,
    _short,
    _Started,
)


def _created(jm: JobMaster, vertex: str, subtask: int, execution_id: uuid.UUID) -> bool:
    """Whether the JobMaster made this execution (its current attempt of the subtask)."""
    execution = jm.executions.get((vertex, subtask))
    return execution is not None and execution.execution_id == execution_id


class SlotChecks(CheckerState):
    """Checks that a slot runs only its allocation's tasks, that endpoints act only for
    their leader, and that a FINISHED job ran every subtask exactly once."""

    # slot-exclusive and fencing, at one TaskExecutor
    def check_task_executor(self, te: TaskExecutor, now: float) -> None:
        tasks = te.tasks
        rid = te.resource_id
        in_slots = 0
        seen = self.states_seen
        for slot in te.slots:
            seen.add(slot.state)
            for execution_id in slot.tasks:
                in_slots += 1
                task = tasks.get(execution_id)
                if task is None:
                    self.violation(
                        "slot-exclusive",
                        f"slot {rid}/{slot.index} lists task {_short(execution_id)} that "
                        f"TaskExecutor {rid} does not run",
                        key=f"{rid}/{slot.index}/{execution_id}",
                    )
                elif task.tdd.allocation_id != slot.allocation_id or task.tdd.job_id != slot.job_id:
                    tdd = task.tdd
                    self.violation(
                        "slot-exclusive",
                        f"slot {rid}/{slot.index} is held by allocation "
                        f"{_short(slot.allocation_id)} of {self.job_name(slot.job_id)} but runs "
                        f"{tdd.vertex}[{tdd.subtask}] of {self.job_name(tdd.job_id)} under "
                        f"allocation {_short(tdd.allocation_id)}",
                        key=f"{rid}/{slot.index}/{execution_id}",
                    )
        if in_slots != len(tasks):
            placed = {e for slot in te.slots for e in slot.tasks}
            for execution_id, task in tasks.items():
                if execution_id not in placed:
                    tdd = task.tdd
                    self.violation(
                        "slot-exclusive",
                        f"TaskExecutor {rid} runs {tdd.vertex}[{tdd.subtask}] of "
                        f"{self.job_name(tdd.job_id)} in no slot (allocation "
                        f"{_short(tdd.allocation_id)})",
                        key=f"{rid}/none/{execution_id}",
                    )
        known = self._te_tasks.get(te)
        if known is None:
            known = self._te_tasks[te] = set()
        if len(tasks) != len(known) or not known.issuperset(tasks):
            for execution_id in tasks.keys() - known:
                self._task_deployed(te, execution_id, now)
            self._te_tasks[te] = set(tasks)
        allocations = [slot.allocation_id for slot in te.slots]
        before = self._te_allocations.get(te)
        if before != allocations:
            for index, allocation_id in enumerate(allocations):
                if allocation_id is not None and (before is None or before[index] != allocation_id):
                    self._slot_allocated(te, index, allocation_id)
            self._te_allocations[te] = allocations

    def _task_deployed(self, te: TaskExecutor, execution_id: uuid.UUID, now: float) -> None:
        tdd = te.tasks[execution_id].tdd
        self._started[execution_id] = _Started(
            te.resource_id, now, tdd.vertex, tdd.subtask, tdd.attempt, tdd.duration
        )
        # which JobMaster deployed it: the one that created the execution
        candidates = self._jms.get(tdd.job_id.hex)
        if not candidates:
            self._job_master(tdd.job_id.hex)
            candidates = self._jms.get(tdd.job_id.hex) or []
        creator = next(
            (
                jm
                for jm in reversed(candidates)
                if _created(jm, tdd.vertex, tdd.subtask, execution_id)
            ),
            None,
        )
        if creator is None and len(candidates) == 1:
            creator = candidates[0]  # an execution of an earlier attempt of the only leader
        if creator is None:
            return
        connection = te.jobs.get(tdd.job_id)
        followed = connection.token if connection is not None else None
        if followed != creator.fencing_token:
            self.violation(
                "fencing",
                f"TaskExecutor {te.resource_id} accepted {tdd.vertex}[{tdd.subtask}] of "
                f"{self.job_name(tdd.job_id)} from the JobMaster with token "
                f"{_short(creator.fencing_token)} while it follows the JobMaster leader "
                f"{_short(followed)}",
                key=f"task:{execution_id}",
            )

    def _slot_allocated(self, te: TaskExecutor, index: int, allocation_id: uuid.UUID) -> None:
        slot_id = SlotID(te.resource_id, index)
        for rm in reversed(self._rms):
            slot = rm.slots.get(slot_id)
            if slot is not None and slot.allocation_id == allocation_id:
                if rm.fencing_token != te.rm_token:
                    self.violation(
                        "fencing",
                        f"TaskExecutor {te.resource_id} accepted allocation "
                        f"{_short(allocation_id)} of slot {slot_id} from the ResourceManager "
                        f"with token {_short(rm.fencing_token)} while it follows the leader "
                        f"{_short(te.rm_token)}",
                        key=f"allocation:{allocation_id}",
                    )
                return

    # slot-exclusive and job-finished bookkeeping, at one JobMaster
    def check_job_master(self, jm: JobMaster, now: float) -> None:
        idle_at = self._idle_region_at.get(jm)
        if idle_at is None:
            idle_at = self._idle_region_at[jm] = {}
        pending = {r.region for r in self.job_view(jm).pending_requests}
        if len(pending) < len(jm.topology.regions):
            for region in jm.topology.regions:
                if region.index not in pending:
                    idle_at[region.index] = now
        pool = jm.pool
        if len(pool) > 1:
            holders: dict[tuple[str, int], uuid.UUID] = {}
            for allocation_id, slot in pool.items():
                where = (slot.task_executor, slot.slot_index)
                other = holders.get(where)
                if other is not None:
                    self.violation(
                        "slot-exclusive",
                        f"the JobMaster of {jm.name} holds slot {where[0]}/{where[1]} under two "
                        f"allocations, {_short(other)} and {_short(allocation_id)}",
                        key=f"pool:{jm.job_id}:{where}",
                    )
                holders[where] = allocation_id
        # restarts and finishes are what can add a finished execution
        signature = (jm.restarts, jm.state_counts[ExecutionState.FINISHED])
        if self._signature.get(jm) != signature:
            self._signature[jm] = signature
            finished = self._finished.get(jm)
            if finished is None:
                finished = self._finished[jm] = {}
            for execution in jm.executions.values():
                if execution.state is not ExecutionState.FINISHED:
                    continue
                execution_id = execution.execution_id
                key = (execution.attempt, execution.vertex, execution.subtask)
                earlier = finished.get(key)
                if earlier is None and execution_id is not None:
                    finished[key] = execution_id
                    self._finished_at.setdefault(execution_id, now)
                elif earlier is not None and earlier != execution_id:
                    self.violation(
                        "job-finished",
                        f"{execution.vertex}[{execution.subtask}] of {jm.name} finished twice "
                        f"in attempt {execution.attempt} (executions {_short(earlier)} and "
                        f"{_short(execution_id)})",
                        key=f"twice:{jm.job_id}:{key}",
                    )

    def check_finished_job(self, jm: JobMaster, now: float) -> None:
        """When a job turns FINISHED: every subtask finished exactly once in its current
        attempt (attempts are per execution: a region restart gives its subtasks new ones),
        after running on a TaskExecutor for its whole duration."""
        self.check_job_master(jm, now)
        expected = {(v.name, s) for v in jm.job.vertices for s in range(v.parallelism)}
        problems: list[str] = []
        if set(jm.executions) != expected:
            problems.append(f"its executions are {sorted(jm.executions)}, not {sorted(expected)}")
        durations = {v.name: v.task_duration for v in jm.job.vertices}
        finished = self._finished.get(jm, {})
        for (vertex, subtask), execution in sorted(jm.executions.items()):
            name = f"{vertex}[{subtask}]"
            if execution.state is not ExecutionState.FINISHED:
                problems.append(f"{name} is {execution.state.value}")
                continue
            attempt = execution.attempt
            execution_id = execution.execution_id
            if execution_id is None or finished.get((attempt, vertex, subtask)) != execution_id:
                problems.append(f"{name} has no single finished execution in attempt {attempt}")
                continue
            started = self._started.get(execution_id)
            if started is None:
                problems.append(f"{name} finished without running on any TaskExecutor")
                continue
            if (started.vertex, started.subtask, started.attempt) != (vertex, subtask, attempt):
                problems.append(
                    f"{name}: the TaskExecutor ran {started.vertex}[{started.subtask}] of "
                    f"attempt {started.attempt} under the execution id of attempt {attempt}"
                )
            ran = self._finished_at.get(execution_id, now) - started.at
            if ran + _EPSILON < durations.get(vertex, 0.0):
                problems.append(
                    f"{name} finished {ran:.3f} s after its deployment to "
                    f"{started.task_executor}, before its duration of {durations[vertex]:g} s"
                )
        if problems:
            self.violation(
                "job-finished",
                f"{jm.name} is FINISHED but not every subtask finished exactly once in its "
                "current attempt: " + "; ".join(problems[:4]),
                "\n".join(problems),
                key=f"finished:{jm.job_id}:{jm.fencing_token}",
            )

    # fencing at fenced endpoints
    def check_fenced_receiver(self, endpoint_id: str) -> None:
        """An ok call at a fenced endpoint passed its token check, so it carried the
        endpoint's token: that token must be the published leader's (or leadership revoked
        with no successor yet)."""
        endpoint: RpcEndpoint | None = None
        for service in self.cluster.services:
            endpoint = service.lookup_endpoint(endpoint_id)
            if endpoint is not None:
                break
        if not isinstance(endpoint, FencedRpcEndpoint):
            return
        leader = self.cluster.ha.leader(endpoint_id)
        if leader is not None and leader[1] != endpoint.fencing_token:
            self.violation(
                "fencing",
                f"{endpoint_id} acted on a call carrying token {_short(endpoint.fencing_token)} "
                f"while {_short(leader[1])} is the leader's",
                key=f"fenced:{endpoint_id}:{endpoint.fencing_token}",
            )
