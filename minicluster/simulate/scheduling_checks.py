"""The region-whole, slot-reuse, restart-accounting and slot-request-timeout checks of
InvariantChecker, at one JobMaster after it handled a call."""

from __future__ import annotations

import trio

from minicluster.cluster import ExecutionState, JobStatus
from minicluster.cluster.jobmaster import JobMaster
from minicluster.cluster.snapshot import PendingRequestSnapshot
from minicluster.simulate.checker_state import (
    _BULK_TIMEOUT_PREFIX,
    _DEPLOYED,
    _EPSILON,
    _FULL_SCAN_LIMIT,
    _IN_SLOT,
    _NOT_ENOUGH_PREFIX,
    _TELL_GRACE,
    _WAITING,
    CheckerState,
    _region_attempts,
)


class SchedulingChecks(CheckerState):
    """Checks how a JobMaster schedules: whole regions, reused and released slots,
    counted restarts, and failures for want of slots only when they are due."""

    # region-whole, slot-reuse, restart-accounting and slot-request-timeout, at one JobMaster
    def check_scheduling(self, jm: JobMaster, now: float) -> None:
        """After the JobMaster handled a call (between calls its state is whole): regions are
        deployed whole into their groups' slots, free slots serve waiting regions and idle
        ones go back, every failure is accounted for, and no region waits for slots that
        cannot come beyond the slot request timeout."""
        status = jm.status
        if status.is_globally_terminal:
            return
        live = status is JobStatus.RUNNING or status is JobStatus.RESTARTING
        pool = jm.pool
        if jm.restarts > jm.job.restart.attempts:
            self.violation(
                "restart-accounting",
                f"{jm.name} counts {jm.restarts} restarts, more than the "
                f"{jm.job.restart.attempts} its fixed-delay strategy allows",
                key=f"budget:{jm.job_id}:{jm.fencing_token}",
            )
        # the JobMaster's pending requests and restarts, through its public snapshot (without
        # the executions: cheap at every call, whatever the job's size)
        snapshot = self.job_view(jm)
        signature = (
            jm.restarts,
            len(pool),
            len(snapshot.pending_requests),
            len(snapshot.restarting_regions),
            *jm.state_counts.values(),
        )
        if len(jm.executions) <= _FULL_SCAN_LIMIT or self._region_signature.get(jm) != signature:
            self._region_signature[jm] = signature
            self._check_regions(jm, live, set(snapshot.restarting_regions))
        if not live:
            return
        free = [slot for slot in pool.values() if slot.group is None]
        if free and snapshot.pending_requests and snapshot.slots_pending:
            self.violation(
                "slot-reuse",
                f"the JobMaster of {jm.name} keeps {len(free)} free slot(s) in its pool while "
                f"waiting regions lack {jm.pending_slots}",
                key=f"unused:{jm.job_id}:{jm.fencing_token}",
            )
        if free and len(pool) > jm.required:
            idle = self.config.slot_idle_timeout
            clock = trio.current_time()
            for slot in free:
                if clock - slot.free_since > 2 * idle + _EPSILON:
                    self.violation(
                        "slot-reuse",
                        f"the JobMaster of {jm.name} holds {len(pool)} slot(s) for a demand of "
                        f"{jm.required}, and slot {slot.task_executor}/{slot.slot_index} has "
                        f"been idle for {clock - slot.free_since:.3f} s (slot idle timeout "
                        f"{idle:g} s)",
                        key=f"hoard:{jm.job_id}:{slot.allocation_id}:{slot.free_since}",
                    )
        self._check_waiting_bulks(jm, snapshot.pending_requests, now)

    def _check_regions(self, jm: JobMaster, live: bool, restarting: set[int]) -> None:
        pool = jm.pool
        applied = highest = 0
        for region in jm.topology.regions:
            executions = [jm.executions[v] for v in region.vertices]
            attempt = executions[0].attempt
            applied += attempt
            highest = max(highest, attempt)
            where = f"region {region.index} of {jm.name}"
            names = ", ".join(f"{e.vertex}[{e.subtask}]#{e.attempt}" for e in executions[:6])
            if any(e.attempt != attempt for e in executions):
                self.violation(
                    "region-whole",
                    f"{where} runs its subtasks in different attempts ({names})",
                    key=f"attempts:{jm.job_id}:{jm.fencing_token}:{region.index}",
                )
            waiting = [e for e in executions if e.state in _WAITING]
            deployed = [e for e in executions if e.state in _DEPLOYED]
            if waiting and deployed:
                self.violation(
                    "region-whole",
                    f"{where} is deployed in part: {deployed[0].vertex}[{deployed[0].subtask}] "
                    f"is {deployed[0].state.value} while {waiting[0].vertex}"
                    f"[{waiting[0].subtask}] is {waiting[0].state.value}",
                    key=f"partial:{jm.job_id}:{jm.fencing_token}:{region.index}:{attempt}",
                )
            seen = self.states_seen
            for execution in executions:
                seen.add(execution.state)
                if execution.state in _IN_SLOT:
                    slot = pool.get(execution.allocation_id) if execution.allocation_id else None
                    if (
                        slot is None
                        or slot.group != execution.subtask
                        or slot.task_executor != execution.task_executor
                    ):
                        held = (
                            "no slot of the pool"
                            if slot is None
                            else f"a slot of group {slot.group} on {slot.task_executor}"
                        )
                        self.violation(
                            "region-whole",
                            f"{execution.vertex}[{execution.subtask}] of {jm.name} is "
                            f"{execution.state.value} in {held}, not in the slot of its slot "
                            f"sharing group {execution.subtask}",
                            key=f"slot:{jm.job_id}:{execution.execution_id}",
                        )
                elif (
                    live
                    and execution.state in (ExecutionState.FAILED, ExecutionState.CANCELED)
                    and region.index not in restarting
                ):
                    self.violation(
                        "restart-accounting",
                        f"{execution.vertex}[{execution.subtask}] of {jm.name} is "
                        f"{execution.state.value} in a {jm.status.value} job, and its region "
                        f"{region.index} waits for no restart",
                        key=f"dropped:{jm.job_id}:{execution.execution_id or id(execution)}",
                    )
        restarted = highest if jm.job.failover_strategy == "full" else applied
        if restarted > jm.restarts:
            self.violation(
                "restart-accounting",
                f"{jm.name} restarted its regions {restarted} time(s) (region attempts "
                f"{_region_attempts(jm)}) but counts {jm.restarts} restart(s)",
                key=f"uncounted:{jm.job_id}:{jm.fencing_token}:{restarted}",
            )

    def _check_waiting_bulks(
        self, jm: JobMaster, requests: tuple[PendingRequestSnapshot, ...], now: float
    ) -> None:
        """A region that the whole pool could not serve must fail within twice the slot
        request timeout (the JobMaster checks once per timeout)."""
        seen = self._unfulfillable.get(jm)
        if seen is None:
            seen = self._unfulfillable[jm] = {}
        pending = {request.region: request for request in requests}
        for index in [i for i in seen if i not in pending]:
            del seen[index]
        held = len(jm.pool)
        bound = 2 * self.config.slot_request_timeout
        for index, bulk in pending.items():
            if bulk.slots <= held:
                seen.pop(index, None)
                continue
            since = seen.get(index)
            if since is None or since[0] != bulk.request:
                seen[index] = (bulk.request, now)
            elif now - since[1] > bound + _EPSILON:
                self.violation(
                    "slot-request-timeout",
                    f"region {index} of {jm.name} has waited {now - since[1]:.3f} s for "
                    f"{bulk.slots} slot(s) with {held} in the pool, beyond twice the slot "
                    f"request timeout of {self.config.slot_request_timeout:g} s",
                    key=f"waits:{jm.job_id}:{bulk.request}",
                )

    def check_no_resource_failure(self, jm: JobMaster, message: str, now: float) -> None:
        """A region failed for want of slots: by its bulk's timeout, only after waiting that
        long with more slots than the pool holds; by the ResourceManager's word, only once a
        ResourceManager leader was past its start-up period."""
        timeout = self.config.slot_request_timeout
        if message.startswith(_NOT_ENOUGH_PREFIX):
            grown = any(
                (end if end is not None else now) - start >= timeout - _EPSILON
                and (end is None or end >= now - _TELL_GRACE)
                for start, end in self._rm_tenures
            )
            if not grown:
                start = self._rm_tenures[-1][0]
                self.violation(
                    "slot-request-timeout",
                    f"{jm.name} failed a region with NoResourceAvailableException on the word of "
                    f"a ResourceManager leader {now - start:.3f} s old, within its start-up "
                    f"period of {timeout:g} s",
                    key=f"startup:{jm.job_id}:{now}",
                )
            return
        if not message.startswith(_BULK_TIMEOUT_PREFIX):
            return
        restarting = set(self.job_view(jm).restarting_regions)
        idle_at = self._idle_region_at.get(jm, {})
        for execution in jm.executions.values():
            if execution.state is not ExecutionState.FAILED or execution.region in restarting:
                continue  # not the execution failing now
            region = jm.topology.regions[execution.region]
            began = idle_at.get(region.index, jm.started_at)
            if now - began + _EPSILON < timeout:
                self.violation(
                    "slot-request-timeout",
                    f"region {region.index} of {jm.name} failed with NoResourceAvailableException "
                    f"{now - began:.3f} s after it began waiting for slots, before the slot "
                    f"request timeout of {timeout:g} s",
                    key=f"early:{jm.job_id}:{execution.execution_id or id(execution)}",
                )
            elif region.slots <= len(jm.pool):
                self.violation(
                    "slot-request-timeout",
                    f"region {region.index} of {jm.name} failed for its slot request timeout "
                    f"although the pool holds {len(jm.pool)} slot(s) for its {region.slots}",
                    key=f"fulfillable:{jm.job_id}:{execution.execution_id or id(execution)}",
                )

    def check_failed_job(self, jm: JobMaster) -> None:
        """A JobMaster fails its job only when the restart strategy allows no more restarts."""
        if jm.restarts < jm.job.restart.attempts:
            self.violation(
                "restart-accounting",
                f"{jm.name} is FAILED after {jm.restarts} of the {jm.job.restart.attempts} "
                "restarts its fixed-delay strategy allows",
                key=f"failed:{jm.job_id}:{jm.fencing_token}",
            )
