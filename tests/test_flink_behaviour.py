"""Behaviours measured on a real Flink 2.3 cluster, reproduced on a virtual clock: slot reuse,
pipelined regions, region failover and its restart counting, the slot-request timeout, task
states, heartbeat payloads and Flink's registration rules."""

from __future__ import annotations

import uuid

import pytest
import trio
import trio.testing

from minicluster.cluster import (
    ClusterConfig,
    JobEdge,
    JobGraph,
    JobStatus,
    JobVertex,
    MiniCluster,
    RestartStrategy,
)
from minicluster.cluster.gateways import JobMasterGateway, ResourceManagerGateway
from minicluster.cluster.jobmaster import JobMaster
from minicluster.cluster.model import (
    AllocatedSlotReport,
    ExecutionState,
    RegistrationResponse,
    SlotID,
    SlotState,
    TaskDeploymentDescriptor,
    TaskExecutorRegistration,
    TaskSubmissionError,
)
from minicluster.cluster.resourcemanager import ResourceManager

FAST = dict(heartbeat_interval=1.0, heartbeat_timeout=5.0)


def sleep_job(
    name: str = "sleep",
    parallelism: int = 4,
    duration: float = 3.0,
    job_id: int = 1,
    attempts: int = 3,
    gang: bool = False,
    failover: str = "region",
) -> JobGraph:
    """The shape of the real-Flink SleepJob: P independent subtasks, or with `gang` a sink
    behind an all-to-all edge, which makes the job one pipelined region."""
    vertices = [JobVertex("sleeper", parallelism, duration)]
    edges = []
    if gang:
        vertices.append(JobVertex("sink", parallelism, duration))
        edges.append(JobEdge("sleeper", "sink"))
    return JobGraph(
        uuid.UUID(int=job_id),
        name,
        vertices,
        edges,
        restart=RestartStrategy(attempts, 1.0),
        failover_strategy=failover,
    )


def fail_first_call(monkeypatch: pytest.MonkeyPatch, cls: type, name: str) -> list[int]:
    """Make the first call of an endpoint method fail (patched on the class: an endpoint binds
    its handlers when it is built); returns the list of calls made, for the test to count."""
    real = getattr(cls, name)
    calls: list[int] = []

    async def fail_once(self: object, *args: object) -> None:
        calls.append(len(calls))
        if len(calls) == 1:
            raise RuntimeError("not now")
        await real(self, *args)

    monkeypatch.setattr(cls, name, fail_once)
    return calls


def job_master(cluster: MiniCluster, job_id: uuid.UUID) -> JobMaster:
    jm = cluster.store.jobs[job_id].job_master
    assert jm is not None
    return jm


def status_changes(cluster: MiniCluster, name: str) -> list[str]:
    prefix = f"job {name} "
    return [
        e.message[len(prefix) :]
        for e in cluster.events.recent
        if e.kind == "job" and e.message.startswith(prefix)
    ]


# --- slot reuse -------------------------------------------------------------------------


async def test_more_tasks_than_slots_run_in_waves_on_the_freed_slots(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """p=8 x 3 s on one TaskExecutor with 4 slots: Flink runs two waves, FINISHED at ~6.3 s."""
    async with MiniCluster(1, 4, config=ClusterConfig(seed=11, **FAST)) as cluster:
        await trio.sleep(1)
        started = trio.current_time()
        job_id = await cluster.submit_job(sleep_job(parallelism=8, duration=3.0))
        await trio.sleep(1)
        jm = job_master(cluster, job_id)
        assert jm.state_counts[ExecutionState.RUNNING] == 4
        assert jm.state_counts[ExecutionState.SCHEDULED] == 4
        assert jm.job_snapshot().slots_pending == 4
        assert await cluster.wait_for_job(job_id, 30) is JobStatus.FINISHED
        took = trio.current_time() - started
        assert 6.0 <= took < 6.5, took
        assert cluster.store.jobs[job_id].archived.restarts == 0  # type: ignore[index]
        # the second wave reused the first wave's slots: no more than 4 were ever requested
        requests = [e for e in cluster.events.recent if e.method == "request_slot"]
        assert len(requests) == 4
        await cluster.wait_until(lambda: cluster.free_slots() == 4, 5)


async def test_a_second_job_gets_slots_as_the_first_ones_waves_finish(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with MiniCluster(1, 2, config=ClusterConfig(seed=12, **FAST)) as cluster:
        first = await cluster.submit_job(sleep_job("first", 4, 2.0, job_id=1))
        await trio.sleep(0.5)
        second = await cluster.submit_job(sleep_job("second", 2, 2.0, job_id=2))
        assert await cluster.wait_for_job(first, 60) is JobStatus.FINISHED
        assert await cluster.wait_for_job(second, 60) is JobStatus.FINISHED


async def test_slots_the_job_no_longer_needs_go_back_after_the_idle_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Two short subtasks and one long one on 3 slots: once the short ones end, the job needs
    one slot; the two idle ones go back after slot.idle.timeout, while the job still runs."""
    config = ClusterConfig(seed=13, slot_idle_timeout=5.0, **FAST)
    async with MiniCluster(1, 3, config=config) as cluster:
        graph = JobGraph(
            uuid.UUID(int=1),
            "mixed",
            [JobVertex("long", 1, 60.0), JobVertex("short", 3, 1.0)],
        )
        job_id = await cluster.submit_job(graph)
        await trio.sleep(3)
        jm = job_master(cluster, job_id)
        assert len(jm.pool) == 3 and jm.required == 1
        await trio.sleep(6)
        assert len(jm.pool) == 1
        assert cluster.free_slots() == 2
        assert cluster.job_status(job_id) is JobStatus.RUNNING


# --- pipelined regions and failover -----------------------------------------------------


async def test_losing_the_only_task_executor_under_four_regions_exhausts_three_restarts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Flink counts one restart attempt per failed region: 4 regions fail at once, 3 attempts
    are allowed, the job is FAILED."""
    async with MiniCluster(1, 4, config=ClusterConfig(seed=14, **FAST)) as cluster:
        job_id = await cluster.submit_job(sleep_job(parallelism=4, duration=30.0))
        await trio.sleep(2)
        await cluster.kill_task_executor("te-1")
        assert await cluster.wait_for_job(job_id, 30) is JobStatus.FAILED
        archived = cluster.store.jobs[job_id].archived
        assert archived is not None and archived.restarts == 3


async def test_a_one_region_job_restarts_once_as_a_whole(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with MiniCluster(1, 4, config=ClusterConfig(seed=15, **FAST)) as cluster:
        job_id = await cluster.submit_job(sleep_job(parallelism=2, duration=30.0, gang=True))
        await trio.sleep(2)
        await cluster.kill_task_executor("te-1")
        await trio.sleep(10)  # found lost by heartbeat (5 s), restarted after the 1 s delay
        jm = job_master(cluster, job_id)
        assert jm.restarts == 1
        assert cluster.job_status(job_id) is JobStatus.RUNNING
        assert jm.state_counts[ExecutionState.SCHEDULED] == 4
        await cluster.add_task_executor("te-2", 4)
        assert await cluster.wait_for_job(job_id, 60) is JobStatus.FINISHED
        assert status_changes(cluster, "sleep") == [
            "submitted",
            "CREATED -> RUNNING",
            "RUNNING -> RESTARTING",
            "RESTARTING -> RUNNING",
            "RUNNING -> FINISHED",
        ]


async def test_region_failover_restarts_only_the_failed_region(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with MiniCluster(2, 2, config=ClusterConfig(seed=16, **FAST)) as cluster:
        job_id = await cluster.submit_job(sleep_job(parallelism=4, duration=10.0))
        await trio.sleep(2)
        jm = job_master(cluster, job_id)
        before = {key: e.execution_id for key, e in jm.executions.items()}
        await cluster.fail_task(job_id, 1)
        await trio.sleep(2)  # past the 1 s restart delay
        after = {key: e.execution_id for key, e in jm.executions.items()}
        changed = [key for key in before if before[key] != after[key]]
        assert changed == [("sleeper", 1)]
        assert jm.executions[("sleeper", 1)].attempt == 1
        assert jm.restarts == 1
        # as Flink 2.3: RESTARTING while the restart waits, RUNNING again after
        assert "RUNNING -> RESTARTING" in status_changes(cluster, "sleep")
        assert await cluster.wait_for_job(job_id, 60) is JobStatus.FINISHED


async def test_full_failover_restarts_every_task(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with MiniCluster(2, 2, config=ClusterConfig(seed=17, **FAST)) as cluster:
        job_id = await cluster.submit_job(sleep_job(parallelism=4, duration=10.0, failover="full"))
        await trio.sleep(2)
        jm = job_master(cluster, job_id)
        await cluster.fail_task(job_id, 1)
        await trio.sleep(2)
        assert all(e.attempt == 1 for e in jm.executions.values())
        assert jm.restarts == 1
        assert await cluster.wait_for_job(job_id, 60) is JobStatus.FINISHED


async def test_a_task_executor_lost_under_full_failover_costs_one_restart(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The first failure restarts everything; the other tasks are being cancelled already and
    their failures are not counted again."""
    async with MiniCluster(1, 4, config=ClusterConfig(seed=18, **FAST)) as cluster:
        job_id = await cluster.submit_job(sleep_job(parallelism=4, duration=30.0, failover="full"))
        await trio.sleep(2)
        await cluster.kill_task_executor("te-1")
        await trio.sleep(8)
        assert job_master(cluster, job_id).restarts == 1
        assert cluster.job_status(job_id) is JobStatus.RUNNING


async def test_fail_task_fails_a_scheduled_task_too(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with MiniCluster(1, 1, config=ClusterConfig(seed=19, **FAST)) as cluster:
        job_id = await cluster.submit_job(sleep_job(parallelism=2, duration=10.0))
        await trio.sleep(1)
        jm = job_master(cluster, job_id)
        waiting = next(e for e in jm.executions.values() if e.state is ExecutionState.SCHEDULED)
        await cluster.fail_task(job_id, waiting.subtask)
        assert jm.restarts == 1
        assert await cluster.wait_for_job(job_id, 60) is JobStatus.FINISHED


# --- the slot-request timeout -----------------------------------------------------------


async def test_a_region_that_cannot_get_its_slots_fails_after_the_timeout_and_its_restarts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """One region needing 4 slots where 2 exist: at slot.request.timeout it fails with
    NoResourceAvailableException; the ResourceManager, now past its start-up period, fails each
    restart at once; after 3 restarts the job is FAILED."""
    config = ClusterConfig(seed=20, slot_request_timeout=15.0, **FAST)
    async with MiniCluster(1, 2, config=config) as cluster:
        job_id = await cluster.submit_job(sleep_job(parallelism=4, duration=3.0, gang=True))
        await trio.sleep(14)
        assert cluster.job_status(job_id) is JobStatus.RUNNING
        assert job_master(cluster, job_id).job_snapshot().slots_pending == 2
        assert await cluster.wait_for_job(job_id, 30) is JobStatus.FAILED
        failed_at = cluster.events.now()
        assert 15.0 <= failed_at < 15.0 + 3 * 1.5, failed_at
        archived = cluster.store.jobs[job_id].archived
        assert archived is not None and archived.restarts == 3
        assert "Could not acquire the minimum required resources" in (archived.failure_cause or "")


async def test_waves_on_an_old_resource_manager_fail_for_lack_of_resources(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Measured on Flink 2.3 with slot.request.timeout 15 s: p=8 on 4 slots submitted 20 s after
    start FAILED within 0.5 s (the four waiting requests fail at once)."""
    config = ClusterConfig(seed=21, slot_request_timeout=15.0, **FAST)
    async with MiniCluster(1, 4, config=config) as cluster:
        await trio.sleep(20)
        job_id = await cluster.submit_job(sleep_job(parallelism=8, duration=3.0))
        assert await cluster.wait_for_job(job_id, 5) is JobStatus.FAILED
        assert cluster.events.now() < 21.0
        overview = cluster.resource_manager.resource_overview
        assert await cluster.wait_until(lambda: overview().slots_free == 4, 5)
        fits = await cluster.submit_job(sleep_job("fits", parallelism=4, job_id=2))
        assert await cluster.wait_for_job(fits, 10) is JobStatus.FINISHED


async def test_a_bulk_unfulfillable_with_the_pools_slots_times_out_on_the_job_master(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Flink's PhysicalSlotRequestBulkChecker, independent of the ResourceManager's start-up
    period: the ResourceManager failed over (a young one again), the bulk still times out."""
    config = ClusterConfig(seed=22, slot_request_timeout=10.0, **FAST)
    async with MiniCluster(1, 2, config=config) as cluster:
        job_id = await cluster.submit_job(
            sleep_job(parallelism=4, duration=3.0, gang=True, attempts=0)
        )
        await trio.sleep(8)
        await cluster.failover("resource_manager")  # its start-up period starts again
        assert await cluster.wait_for_job(job_id, 30) is JobStatus.FAILED
        archived = cluster.store.jobs[job_id].archived
        assert archived is not None
        assert "Slot request bulk is not fulfillable" in (archived.failure_cause or "")


# --- task states ------------------------------------------------------------------------


async def test_task_executors_report_initializing_then_running(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with MiniCluster(1, 1, config=ClusterConfig(seed=23, **FAST)) as cluster:
        job_id = await cluster.submit_job(sleep_job(parallelism=1, duration=5.0))
        jm = job_master(cluster, job_id)
        seen: list[ExecutionState] = []

        def record(event: object) -> None:
            state = jm.executions[("sleeper", 0)].state
            if not seen or seen[-1] is not state:
                seen.append(state)

        cluster.events.subscribers.append(record)
        assert await cluster.wait_for_job(job_id, 30) is JobStatus.FINISHED
        assert seen == [
            ExecutionState.CREATED,
            ExecutionState.SCHEDULED,
            ExecutionState.DEPLOYING,
            ExecutionState.INITIALIZING,
            ExecutionState.RUNNING,
            ExecutionState.FINISHED,
        ], seen
        updates = [e for e in cluster.events.recent if e.method == "update_task_execution_state"]
        assert len(updates) == 3  # INITIALIZING, RUNNING, FINISHED


# --- heartbeats -------------------------------------------------------------------------


async def test_heartbeats_are_a_request_and_a_separate_answer_with_the_payload(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with MiniCluster(1, 2, config=ClusterConfig(seed=24, **FAST)) as cluster:
        job_id = await cluster.submit_job(sleep_job(parallelism=1, duration=10.0))
        await trio.sleep(4)
        methods = {(e.sender, e.receiver, e.method) for e in cluster.events.recent}
        jm = f"jobmaster-{job_id.hex}"
        te, rm = "taskexecutor-te-1", "resourcemanager"
        for message in [
            (rm, te, "heartbeat_from_resource_manager"),
            (te, rm, "heartbeat_from_task_manager"),
            (rm, jm, "heartbeat_from_resource_manager"),
            (jm, rm, "heartbeat_from_job_manager"),
            (jm, te, "heartbeat_from_job_manager"),
            (te, jm, "heartbeat_from_task_manager"),
        ]:
            assert message in methods, message


async def test_the_resource_manager_reconciles_slot_states_from_heartbeat_slot_reports(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with MiniCluster(1, 2, config=ClusterConfig(seed=25, **FAST)) as cluster:
        await trio.sleep(2)
        rm = cluster.resource_manager
        slot = rm.slots[SlotID("te-1", 0)]
        slot.state, slot.job_id = "ALLOCATED", uuid.UUID(int=77)  # the RM is wrong
        await trio.sleep(2)
        assert (slot.state, slot.job_id) == ("FREE", None)


async def test_a_task_executor_frees_an_active_slot_the_job_masters_report_leaves_out(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with MiniCluster(1, 2, config=ClusterConfig(seed=26, **FAST)) as cluster:
        job_id = await cluster.submit_job(sleep_job(parallelism=1, duration=30.0))
        await trio.sleep(3)
        te = cluster.task_executors["te-1"]
        held = next(s for s in te.slots if s.job_id == job_id)
        assert held.accepted
        await te.heartbeat_from_job_manager(job_id, AllocatedSlotReport(job_id, []))
        assert held.state is SlotState.FREE


# --- connections ------------------------------------------------------------------------


async def test_a_job_master_lost_by_heartbeat_keeps_its_requirements_and_reconnects(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with MiniCluster(1, 2, config=ClusterConfig(seed=27, **FAST)) as cluster:
        job_id = await cluster.submit_job(sleep_job(parallelism=4, duration=20.0))
        await trio.sleep(2)
        name = "job_master:sleep"
        cluster.partition(name, "resource_manager", 8.0)
        await trio.sleep(7)
        rm = cluster.resource_manager
        assert job_id not in rm.job_masters  # lost by heartbeat ...
        assert rm.requirements[job_id].slots == 4  # ... requirements RETAINed
        assert any("lost the JobMaster" in e.message for e in cluster.events.recent)
        assert await cluster.wait_until(lambda: job_id in rm.job_masters, 30)  # registered again
        assert await cluster.wait_for_job(job_id, 120) is JobStatus.FINISHED
        await trio.sleep(1)
        assert job_id not in rm.requirements  # CLEARed at the end


# --- registrations ----------------------------------------------------------------------


async def test_a_slow_earlier_registration_never_overwrites_a_newer_one(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Two registrations of one TaskExecutor in flight (a retry after a timeout): the earlier
    one, slower to connect back, must not replace the newer one the TaskExecutor goes on with."""
    async with MiniCluster(1, 2, config=ClusterConfig(seed=28, **FAST)) as cluster:
        await trio.sleep(1)
        rm = cluster.resource_manager
        te = cluster.task_executors["te-1"]
        connect = rm.rpc_service.connect
        delays = [1.0, 0.0]

        async def slow_first_connect(*args: object, **kwargs: object) -> object:
            await trio.sleep(delays.pop(0) if delays else 0.0)
            return await connect(*args, **kwargs)  # type: ignore[arg-type]

        rm.rpc_service.connect = slow_first_connect  # type: ignore[method-assign]
        gateway = cluster.rm_service.local_gateway(rm, ResourceManagerGateway, rm.fencing_token)
        registration = TaskExecutorRegistration("te-x", te.address, 2, uuid.uuid4())
        responses: list[RegistrationResponse] = []

        async def register(pause: float) -> None:
            await trio.sleep(pause)
            responses.append(await gateway.register_task_executor(registration))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(register, 0.0)
            nursery.start_soon(register, 0.1)
        newer, older = responses  # the newer one answers first
        assert newer.success
        assert not older.success and "newer registration" in older.reason
        assert rm.task_executors["te-x"].instance_id == newer.instance_id


async def test_a_rejected_task_executor_stops_retrying_and_gives_up(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with MiniCluster(0, 2, config=ClusterConfig(seed=29, **FAST)) as cluster:
        te = await cluster.add_task_executor("huge", 5000)
        await trio.sleep(60)
        attempts = [
            e
            for e in cluster.events.recent
            if e.method == "register_task_executor" and e.sender == "taskexecutor-huge"
        ]
        assert len(attempts) == 1
        assert te.fatal_error is not None and "1 to 1024" in te.fatal_error
        assert cluster.te_states["huge"] == "failed"


async def test_a_task_executor_gives_up_after_the_registration_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = ClusterConfig(seed=30, registration_timeout=20.0, **FAST)
    async with MiniCluster(0, 2, config=config) as cluster:
        te = await cluster.add_task_executor("te-1", 2)
        cluster.partition("te-1", "resource_manager", 1000.0)
        await trio.sleep(19)
        assert te.fatal_error is None
        await trio.sleep(2)
        assert te.fatal_error is not None and "within 20 s" in te.fatal_error
        assert cluster.te_states["te-1"] == "failed"


async def test_a_registered_task_executor_has_no_registration_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = ClusterConfig(seed=31, registration_timeout=20.0, **FAST)
    async with MiniCluster(1, 2, config=config) as cluster:
        await trio.sleep(60)
        assert cluster.task_executors["te-1"].fatal_error is None
        assert cluster.registered_task_executors() == 1


async def test_a_failed_slot_report_makes_the_task_executor_register_again(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = fail_first_call(monkeypatch, ResourceManager, "send_slot_report")
    async with MiniCluster(0, 2, config=ClusterConfig(seed=32, **FAST)) as cluster:
        await cluster.add_task_executor("te-1", 2)
        await trio.sleep(15)
        registrations = [e for e in cluster.events.recent if e.method == "register_task_executor"]
        assert len(calls) == 2  # refused once, taken the second time
        assert len(registrations) == 2
        assert cluster.registered_task_executors() == 1


async def test_a_job_master_refuses_a_task_executor_registering_for_another_job(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with MiniCluster(1, 2, config=ClusterConfig(seed=33, **FAST)) as cluster:
        job_id = await cluster.submit_job(sleep_job(parallelism=1, duration=30.0))
        await trio.sleep(1)
        jm = job_master(cluster, job_id)
        gateway = cluster.dispatcher_service.local_gateway(jm, JobMasterGateway, jm.fencing_token)
        response = await gateway.register_task_manager(
            uuid.UUID(int=999), "te-x", cluster.task_executors["te-1"].address, uuid.uuid4()
        )
        assert not response.success and response.rejected
        assert "not responsible" in response.reason
        assert "te-x" not in jm.task_managers


async def test_a_repeated_registration_of_the_same_session_is_acknowledged_and_changes_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with MiniCluster(1, 2, config=ClusterConfig(seed=34, **FAST)) as cluster:
        job_id = await cluster.submit_job(sleep_job(parallelism=2, duration=10.0))
        await trio.sleep(2)
        jm = job_master(cluster, job_id)
        te = cluster.task_executors["te-1"]
        gateway = cluster.dispatcher_service.local_gateway(jm, JobMasterGateway, jm.fencing_token)
        response = await gateway.register_task_manager(job_id, "te-1", te.address, te.session_id)
        assert response.success
        await trio.sleep(1)
        assert jm.restarts == 0
        assert jm.state_counts[ExecutionState.RUNNING] == 2
        assert await cluster.wait_for_job(job_id, 30) is JobStatus.FINISHED


async def test_a_new_session_under_a_known_id_replaces_the_old_one_at_the_job_master(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with MiniCluster(1, 2, config=ClusterConfig(seed=35, **FAST)) as cluster:
        job_id = await cluster.submit_job(sleep_job(parallelism=2, duration=10.0))
        await trio.sleep(2)
        jm = job_master(cluster, job_id)
        te = cluster.task_executors["te-1"]
        gateway = cluster.dispatcher_service.local_gateway(jm, JobMasterGateway, jm.fencing_token)
        response = await gateway.register_task_manager(job_id, "te-1", te.address, uuid.uuid4())
        assert response.success
        assert jm.restarts >= 1  # the old session's tasks are gone


# --- the checks a review deleted --------------------------------------------------------


async def test_the_task_executor_frees_a_slot_whose_offer_the_job_master_rejects(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with MiniCluster(1, 2, config=ClusterConfig(seed=36, **FAST)) as cluster:
        job_id = await cluster.submit_job(sleep_job(parallelism=1, duration=30.0))
        await trio.sleep(2)
        te = cluster.task_executors["te-1"]
        rm = cluster.resource_manager
        spare = next(s for s in te.slots if s.state is SlotState.FREE)
        # the job needs one slot and has it: an extra allocation for it is rejected
        await te.request_slot(
            SlotID("te-1", spare.index),
            job_id,
            uuid.UUID(int=4242),
            job_master(cluster, job_id).address,
            rm.fencing_token,
        )
        await trio.sleep(1)
        assert spare.state is SlotState.FREE and spare.job_id is None


async def test_the_job_master_retries_a_failed_declaration(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = fail_first_call(monkeypatch, ResourceManager, "declare_required_resources")
    async with MiniCluster(1, 2, config=ClusterConfig(seed=37, **FAST)) as cluster:
        job_id = await cluster.submit_job(sleep_job(parallelism=2, duration=1.0))
        assert await cluster.wait_for_job(job_id, 30) is JobStatus.FINISHED
        assert len(calls) >= 2  # refused once, then declared again


async def test_submit_task_with_a_stale_job_master_token_is_refused(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with MiniCluster(1, 2, config=ClusterConfig(seed=38, **FAST)) as cluster:
        job_id = await cluster.submit_job(sleep_job(parallelism=1, duration=30.0))
        await trio.sleep(2)
        te = cluster.task_executors["te-1"]
        held = next(s for s in te.slots if s.job_id == job_id)
        assert held.allocation_id is not None
        tdd = TaskDeploymentDescriptor(
            job_id, uuid.uuid4(), "sleeper", 0, 9, held.allocation_id, 1.0
        )
        with pytest.raises(TaskSubmissionError, match="token"):
            await te.submit_task(tdd, uuid.UUID(int=12345))
        assert tdd.execution_id not in te.tasks


async def test_notify_slot_available_with_a_stale_instance_id_is_ignored(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with MiniCluster(1, 2, config=ClusterConfig(seed=39, **FAST)) as cluster:
        job_id = await cluster.submit_job(sleep_job(parallelism=1, duration=30.0))
        await trio.sleep(2)
        rm = cluster.resource_manager
        slot = next(s for s in rm.slots.values() if s.job_id == job_id)
        assert slot.allocation_id is not None
        allocation_id = slot.allocation_id

        def notify(instance_id: uuid.UUID) -> str:
            # on the ResourceManager's main thread, read in the same turn (a heartbeat's slot
            # report may set the slot back right after)
            rm.notify_slot_available("te-1", instance_id, slot.slot_id, allocation_id)
            return slot.state

        assert await rm.call_async(lambda: notify(uuid.UUID(int=1))) == "ALLOCATED"
        # the same news from the registered instance frees it
        registered = rm.task_executors["te-1"].instance_id
        assert await rm.call_async(lambda: notify(registered)) == "FREE"


# --- heartbeat failure counting ---------------------------------------------------------


async def _heartbeat_outcomes(outcomes: list[str], later: bool = False) -> list[str]:
    """Run a HeartbeatSender (interval 1 s, timeout 100 s, threshold 2) on a live endpoint
    against a target whose heartbeat requests go as `outcomes` says; return its losses.

    The outcome is delivered at once (an answer given inline) or, with `later`, half an
    interval later from another task (an answer from a connection's reader)."""
    from minicluster.cluster.heartbeat import HeartbeatSender, OnDone
    from minicluster.rpc import RecipientUnreachableError

    lost: list[str] = []
    script = list(outcomes)

    async with MiniCluster(0, 1, config=ClusterConfig(seed=40, **FAST)) as cluster:
        owner = cluster.resource_manager
        async with trio.open_nursery() as nursery:

            def request(target: str, timeout: float, on_done: OnDone) -> None:
                outcome = script.pop(0) if script else "ok"
                error = (
                    RecipientUnreachableError(f"{target} is not there")
                    if outcome == "unreachable"
                    else None
                )
                if not later:
                    on_done(None, error)
                    return

                async def deliver() -> None:
                    await trio.sleep(0.5)
                    assert not owner.in_main_thread()
                    on_done(None, error)

                nursery.start_soon(deliver)

            def on_lost(target: str, cause: str) -> None:
                # a loss is handled on the owner's main thread, whoever delivered the outcome
                owner.validate_runs_in_main_thread()
                lost.append(cause)

            sender = HeartbeatSender(owner, 1.0, 100.0, 2, request, on_lost)

            def begin() -> None:
                sender.monitor("x")
                sender.start()

            await owner.call_async(begin)
            await trio.sleep(len(outcomes) + 2.5)
            nursery.cancel_scope.cancel()

    return lost


async def test_a_heartbeat_request_that_gets_through_resets_the_failure_count(
    autojump_clock: trio.testing.MockClock,
) -> None:
    lost = await _heartbeat_outcomes(["unreachable", "ok", "unreachable", "ok", "unreachable"])
    assert lost == []


async def test_one_unreachable_heartbeat_is_tolerated_with_a_threshold_of_two(
    autojump_clock: trio.testing.MockClock,
) -> None:
    assert await _heartbeat_outcomes(["unreachable"]) == []


async def test_two_unreachable_heartbeats_in_a_row_lose_the_target(
    autojump_clock: trio.testing.MockClock,
) -> None:
    lost = await _heartbeat_outcomes(["ok", "unreachable", "unreachable"])
    assert lost == ["x was unreachable 2 times"]


async def test_heartbeat_outcomes_that_arrive_on_another_task_count_the_same(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # the request's outcome arrives later, on a task that is not the owner's main thread
    # (a remote answer, a timeout): it is handed to the main thread and counted the same
    assert await _heartbeat_outcomes(["ok", "unreachable", "unreachable"], later=True) == [
        "x was unreachable 2 times"
    ]
    assert await _heartbeat_outcomes(["unreachable", "ok", "unreachable"], later=True) == []


# --- the receiving side of heartbeats -----------------------------------------------------


def _heartbeat_events(cluster: MiniCluster, needle: str) -> list[float]:
    return [e.time for e in cluster.events.recent if e.kind == "heartbeat" and needle in e.message]


async def test_a_task_executor_notices_a_silent_resource_manager_exactly_at_the_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Flink's HeartbeatMonitorImpl: each heartbeat request re-schedules the timeout, which
    # fires `timeout` seconds after the last one (not at the next periodic check)
    async with MiniCluster(1, 1, config=ClusterConfig(seed=51, **FAST)) as cluster:
        await cluster.wait_until(lambda: cluster.registered_task_executors() == 1, 10)
        await trio.sleep(3.5)
        te = cluster.task_executors["te-1"]
        last = te.rm_last_heartbeat
        cluster.partition("te-1", "resource_manager", 30.0)
        await trio.sleep(20)
        timed_out = _heartbeat_events(cluster, "heartbeat of the ResourceManager timed out")
        assert timed_out and timed_out[0] - cluster.events.start == pytest.approx(
            last - cluster.events.start + 5.0
        )


async def test_heartbeats_keep_every_connection_alive_for_a_long_run(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # each heartbeat resets the receiver's timeout: a healthy cluster running one job for many
    # timeouts loses nobody (TaskExecutor <- ResourceManager, TaskExecutor <- JobMaster,
    # JobMaster <- ResourceManager)
    async with MiniCluster(2, 2, config=ClusterConfig(seed=52, **FAST)) as cluster:
        job_id = await cluster.submit_job(sleep_job(parallelism=4, duration=120.0))
        assert await cluster.wait_for_job(job_id, 200) is JobStatus.FINISHED
        assert _heartbeat_events(cluster, "timed out") == []


async def test_silent_job_masters_and_resource_managers_are_noticed_by_heartbeat(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with MiniCluster(1, 2, config=ClusterConfig(seed=53, **FAST)) as cluster:
        await cluster.submit_job(sleep_job(parallelism=2, duration=60.0))
        await trio.sleep(3)
        cluster.partition("job_master:sleep", "te-1", 20.0)
        cluster.partition("job_master:sleep", "resource_manager", 20.0)
        await trio.sleep(10)
        assert _heartbeat_events(cluster, "heartbeat of jobmaster-")  # at the TaskExecutor
        assert _heartbeat_events(
            cluster, "heartbeat of the ResourceManager timed out; reconnecting"
        )


async def test_a_slot_no_job_master_takes_goes_back_after_the_slot_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = ClusterConfig(seed=54, slot_timeout=4.0, **FAST)
    async with MiniCluster(1, 1, config=config) as cluster:
        await cluster.wait_until(lambda: cluster.registered_task_executors() == 1, 10)
        te = cluster.task_executors["te-1"]
        rm = cluster.resource_manager
        job_id, allocation_id = uuid.uuid4(), uuid.uuid4()
        slot_id = SlotID("te-1", 0)
        # an allocation for a job whose JobMaster never shows up (no leader: no offer)
        await te.call_async(
            lambda: te.request_slot(slot_id, job_id, allocation_id, "nowhere", rm.fencing_token)
        )
        await trio.sleep(3.9)
        assert te.slots[0].allocation_id == allocation_id
        await trio.sleep(0.2)
        assert te.slots[0].allocation_id is None
        assert any("not taken by a JobMaster in time" in e.message for e in cluster.events.recent)
