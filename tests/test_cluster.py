"""The cluster runtime, on a virtual clock: Flink's protocols end to end."""

from __future__ import annotations

import itertools
import uuid

import pytest
import trio
import trio.testing

from minicluster.cluster import (
    ClusterConfig,
    DuplicateJobSubmissionError,
    JobEdge,
    JobGraph,
    JobNotFoundError,
    JobStateError,
    JobStatus,
    JobVertex,
    MiniCluster,
    RestartStrategy,
)
from minicluster.cluster.gateways import TaskExecutorGateway
from minicluster.cluster.model import SlotID, SlotOccupiedError
from minicluster.cluster.taskexecutor import SlotAllocationError

FAST = dict(heartbeat_interval=1.0, heartbeat_timeout=5.0)


def job(
    name: str = "etl",
    parallelism: int = 2,
    duration: float = 3.0,
    job_id: int = 1,
    restart: RestartStrategy | None = None,
    **vertex: object,
) -> JobGraph:
    return JobGraph(
        uuid.UUID(int=job_id),
        name,
        [JobVertex("map", parallelism, duration, **vertex)],  # type: ignore[arg-type]
        restart=restart or RestartStrategy(3, 1.0),
    )


def flow(cluster: MiniCluster) -> list[tuple[str, str, str]]:
    """The RPC messages of the cluster as (sender, receiver, method), heartbeats left out."""
    return [
        (e.sender or "", e.receiver or "", e.method or "")
        for e in cluster.events.recent
        if e.kind in ("rpc", "tell") and e.method and "heartbeat" not in e.method
    ]


@pytest.mark.parametrize("rpc", ["shared", "dedicated"])
async def test_happy_path_follows_flinks_message_sequence(rpc: str) -> None:
    clock_ok = trio.fail_after(30)
    with clock_ok:
        async with MiniCluster(1, 2, rpc=rpc, config=ClusterConfig(seed=3, **FAST)) as cluster:
            await cluster.wait_until(lambda: cluster.registered_task_executors() == 1, 10)
            job_id = await cluster.submit_job(job(parallelism=2, duration=0.2))
            assert await cluster.wait_for_job(job_id, 20) is JobStatus.FINISHED
            await cluster.wait_until(lambda: cluster.free_slots() == 2, 5)
            await cluster.wait_until(
                lambda: (
                    sum(e.method == "notify_slot_available" for e in cluster.events.recent) == 2
                    and any(e.method == "free_inactive_slots" for e in cluster.events.recent)
                ),
                5,
            )
    jm = f"jobmaster-{uuid.UUID(int=1).hex}"
    te = "taskexecutor-te-1"
    rm = "resourcemanager"
    messages = flow(cluster)
    expected = [
        (te, rm, "register_task_executor"),
        (te, rm, "send_slot_report"),
        ("client", "dispatcher", "submit_job"),
        (jm, rm, "register_job_master"),
        (jm, rm, "declare_required_resources"),
        (rm, te, "request_slot"),
        (te, jm, "register_task_manager"),
        (te, jm, "offer_slots"),
        (jm, te, "submit_task"),
        (te, jm, "update_task_execution_state"),  # INITIALIZING, then RUNNING
        (jm, te, "free_slot"),
        (te, rm, "notify_slot_available"),
    ]
    positions = []
    for message in expected:
        assert message in messages, f"{message} never sent; sent: {messages}"
        positions.append(messages.index(message))
    assert positions == sorted(positions), messages
    # the goodbyes go to two endpoints; each logs when it handles them
    assert messages.index((jm, te, "disconnect_job_manager")) > messages.index(
        (jm, te, "free_slot")
    )
    # Flink's order at the end: freeSlot, disconnectJobManager (to both), then the TaskExecutor's
    # notifySlotAvailable; the ResourceManager also tells TaskExecutors to free inactive slots
    assert messages.index((jm, rm, "disconnect_job_manager")) < messages.index(
        (te, rm, "notify_slot_available")
    ), messages
    assert (rm, te, "free_inactive_slots") in messages
    assert messages.count((jm, te, "submit_task")) == 2
    assert messages.count((rm, te, "request_slot")) == 2


async def test_a_region_too_big_for_the_slots_waits_until_a_task_executor_joins(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """One pipelined region (an all-to-all edge) needs all its slots at once: with 2 of the 4
    it needs, no task deploys, the job is RUNNING with every task SCHEDULED, as in Flink."""
    async with MiniCluster(1, 2, config=ClusterConfig(seed=1, **FAST)) as cluster:
        graph = JobGraph(
            uuid.UUID(int=1),
            "gang",
            [JobVertex("source", 4, 2.0), JobVertex("sink", 4, 2.0)],
            [JobEdge("source", "sink")],
        )
        job_id = await cluster.submit_job(graph)
        await trio.sleep(20)
        assert cluster.job_status(job_id) is JobStatus.RUNNING
        details = cluster.store.jobs[job_id].job_master.job_snapshot()  # type: ignore[union-attr]
        assert dict(details.task_states) == {"SCHEDULED": 8}
        assert details.slots_pending == 2
        assert any("not enough slots" in e.message for e in cluster.events.recent)
        await cluster.add_task_executor("te-9", 2)
        assert await cluster.wait_for_job(job_id, 30) is JobStatus.FINISHED


async def test_a_crashed_task_executor_is_detected_by_heartbeat_and_the_job_restarts_elsewhere(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with MiniCluster(3, 2, config=ClusterConfig(seed=2, **FAST)) as cluster:
        await trio.sleep(1)
        job_id = await cluster.submit_job(job(parallelism=2, duration=10.0))
        await trio.sleep(2)
        victim = next(
            te.resource_id
            for te in cluster.task_executors.values()
            if any(s.job_id is not None for s in te.slots)
        )
        killed_at = trio.current_time()
        await cluster.kill_task_executor(victim)
        assert await cluster.wait_for_job(job_id, 120) is JobStatus.FINISHED
        lost = [
            e for e in cluster.events.recent if "heartbeat" in e.message and victim in e.message
        ]
        assert lost, "the loss was not detected by a heartbeat timeout"
        # not before the timeout: Flink's monitors count it from the last heartbeat answer
        answers = [
            e.time
            for e in cluster.events.recent
            if e.method == "heartbeat_from_task_manager" and e.sender == f"taskexecutor-{victim}"
        ]
        assert answers and answers[-1] + cluster.events.start <= killed_at
        assert lost[0].time - answers[-1] >= 5.0
        details = cluster.dispatcher.job_snapshot(cluster.store.jobs[job_id])
        assert details.restarts >= 1
        assert all(t.task_executor != victim for t in details.tasks)


async def test_a_job_fails_once_its_restarts_are_used_up(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with MiniCluster(1, 2, config=ClusterConfig(seed=4, **FAST)) as cluster:
        failing = job(
            parallelism=1,
            duration=5.0,
            restart=RestartStrategy(2, 1.0),
            fail_subtasks=[0],
            fail_after=1.0,
            fail_attempts=10,
        )
        job_id = await cluster.submit_job(failing)
        assert await cluster.wait_for_job(job_id, 60) is JobStatus.FAILED
        statuses = [
            e.message for e in cluster.events.recent if e.kind == "job" and "->" in e.message
        ]
        assert statuses == [
            "job etl CREATED -> RUNNING",
            "job etl RUNNING -> RESTARTING",
            "job etl RESTARTING -> RUNNING",
            "job etl RUNNING -> RESTARTING",
            "job etl RESTARTING -> RUNNING",
            "job etl RUNNING -> FAILING",
            "job etl FAILING -> FAILED",
        ]
        await trio.sleep(1)
        assert cluster.free_slots() == 2


async def test_resource_manager_failover_gives_a_new_token_and_the_job_still_finishes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = ClusterConfig(seed=5, leader_notification_delay=0.5, **FAST)
    async with MiniCluster(2, 2, config=config) as cluster:
        job_id = await cluster.submit_job(job(parallelism=3, duration=6.0))
        await trio.sleep(2)
        old_token = cluster.resource_manager.fencing_token
        te = cluster.task_executors["te-1"]
        stale_gateway = te.rm_gateway
        new_token = await cluster.failover("resource_manager")
        assert new_token != old_token
        # a TaskExecutor that has not heard of the new leader yet still uses the old token
        assert stale_gateway is not None
        with pytest.raises(Exception, match="fenced with token"):
            await stale_gateway.request_overview()
        assert cluster.events.fencing_rejections >= 1
        assert await cluster.wait_for_job(job_id, 60) is JobStatus.FINISHED
        await cluster.wait_until(lambda: cluster.registered_task_executors() == 2, 30)
        assert te.rm_token == new_token
        assert any(e.kind == "fencing" for e in cluster.events.recent)


async def test_dispatcher_refuses_a_duplicate_submission_and_unknown_jobs(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with MiniCluster(1, 2, config=ClusterConfig(seed=6, **FAST)) as cluster:
        await cluster.submit_job(job(duration=1.0))
        with pytest.raises(DuplicateJobSubmissionError):
            await cluster.submit_job(job(duration=1.0))
        gateway = cluster.dispatcher_gateway()
        with pytest.raises(JobNotFoundError):
            await gateway.request_job_status(uuid.UUID(int=99))
        with pytest.raises(JobNotFoundError):
            await gateway.cancel_job(uuid.UUID(int=99))


async def test_cancel_follows_flinks_semantics(autojump_clock: trio.testing.MockClock) -> None:
    async with MiniCluster(2, 2, config=ClusterConfig(seed=7, **FAST)) as cluster:
        running = await cluster.submit_job(job(job_id=1, duration=100.0))
        await trio.sleep(2)
        await cluster.cancel_job(running)
        assert await cluster.wait_for_job(running, 10) is JobStatus.CANCELED
        assert await cluster.cancel_job(running) == "CANCELED"  # again: fine
        finished = await cluster.submit_job(job(name="quick", job_id=2, duration=1.0))
        assert await cluster.wait_for_job(finished, 30) is JobStatus.FINISHED
        with pytest.raises(JobStateError, match="FINISHED"):
            await cluster.cancel_job(finished)
        details = await cluster.dispatcher_gateway().request_job(finished)
        assert details["status"] == "FINISHED"  # finished jobs stay queryable


async def test_a_task_executor_refuses_slot_requests_before_it_registered(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = ClusterConfig(seed=8, **FAST)
    async with MiniCluster(0, 2, config=config) as cluster:
        cluster.partition("te-1", "resource_manager", 1000)
        te = await cluster.add_task_executor("te-1", 2)
        await trio.sleep(1)
        gateway = await cluster.rm_service.connect(te.address, TaskExecutorGateway)
        with pytest.raises(SlotAllocationError, match="not registered"):
            await gateway.request_slot(
                SlotID("te-1", 0),
                uuid.UUID(int=1),
                uuid.UUID(int=2),
                "local://x/jobmaster",
                cluster.resource_manager.fencing_token,
            )


async def test_a_slot_request_for_a_slot_of_another_allocation_is_refused(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with MiniCluster(1, 1, config=ClusterConfig(seed=9, **FAST)) as cluster:
        await cluster.wait_until(lambda: cluster.registered_task_executors() == 1, 10)
        job_id = await cluster.submit_job(job(parallelism=1, duration=100.0))
        await trio.sleep(2)
        te = cluster.task_executors["te-1"]
        gateway = await cluster.rm_service.connect(te.address, TaskExecutorGateway)
        with pytest.raises(SlotOccupiedError, match="held by allocation"):
            await gateway.request_slot(
                SlotID("te-1", 0),
                uuid.UUID(int=77),
                uuid.UUID(int=78),
                "local://x/jobmaster",
                cluster.resource_manager.fencing_token,
            )
        assert cluster.job_status(job_id) is JobStatus.RUNNING


async def test_a_timed_out_slot_offer_is_offered_again(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = ClusterConfig(seed=10, offer_timeout=2.0, heartbeat_interval=1.0, heartbeat_timeout=30)
    async with MiniCluster(1, 1, config=config) as cluster:
        await cluster.wait_until(lambda: cluster.registered_task_executors() == 1, 10)
        job_id = await cluster.submit_job(job(parallelism=1, duration=1.0))
        jm = "job_master:etl"
        cluster.partition("te-1", jm, 0.0)  # placeholder so the name is known
        # drop the first offer: partition the TaskExecutor from the JobMaster for a moment
        original = cluster._allows
        dropped: list[str] = []

        def drop_first_offer(sender: str | None, receiver: str, method: str) -> bool:
            if method == "offer_slots" and not dropped:
                dropped.append(method)
                return False
            return original(sender, receiver, method)

        cluster._shared.message_filter = drop_first_offer
        assert await cluster.wait_for_job(job_id, 60) is JobStatus.FINISHED
        assert dropped == ["offer_slots"]
        assert any("re-offering" in e.message for e in cluster.events.recent)


async def test_registration_retries_back_off_as_flink_does(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = ClusterConfig(seed=11, **FAST)
    async with MiniCluster(0, 2, config=config) as cluster:
        cluster.partition("te-1", "resource_manager", 3.0)
        await cluster.add_task_executor("te-1", 2)
        await cluster.wait_until(lambda: cluster.registered_task_executors() == 1, 60)
    attempts = [
        e.time
        for e in cluster.events.recent
        if e.kind == "dropped" and e.method == "register_task_executor"
    ]
    gaps = [round(b - a, 3) for a, b in itertools.pairwise(attempts)]
    # timeouts of 0.1, 0.2, 0.4, 0.8, 1.6 s: each attempt starts when the previous timed out
    assert gaps[:4] == [0.1, 0.2, 0.4, 0.8]


async def test_a_partition_longer_than_the_heartbeat_timeout_loses_the_task_executor_then_heals(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with MiniCluster(2, 2, config=ClusterConfig(seed=12, **FAST)) as cluster:
        await cluster.wait_until(lambda: cluster.registered_task_executors() == 2, 10)
        cluster.partition("te-1", "resource_manager", 8.0)
        await trio.sleep(7)
        assert "te-1" not in cluster.resource_manager.task_executors
        await trio.sleep(15)
        assert cluster.registered_task_executors() == 2  # healed: it registered again
        job_id = await cluster.submit_job(job(parallelism=4, duration=1.0))
        assert await cluster.wait_for_job(job_id, 30) is JobStatus.FINISHED


async def _seeded_run() -> list[tuple[float, str, str | None, str | None, str | None]]:
    config = ClusterConfig(seed=42, **FAST)
    async with MiniCluster(3, 2, config=config) as cluster:
        job_id = await cluster.submit_job(job(parallelism=4, duration=3.0))
        await trio.sleep(1.5)
        await cluster.kill_task_executor("te-2")
        await cluster.wait_for_job(job_id, 120)
    return [(e.time, e.kind, e.sender, e.receiver, e.method) for e in cluster.events.recent]


async def test_the_same_seed_gives_the_same_event_stream(
    autojump_clock: trio.testing.MockClock,
) -> None:
    first = await _seeded_run()
    second = await _seeded_run()
    assert len(first) > 50
    assert first == second


async def test_nothing_is_left_running_after_the_cluster_exits(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with MiniCluster(2, 2, config=ClusterConfig(seed=13, **FAST)) as cluster:
        await cluster.submit_job(job(duration=1000.0))
        await trio.sleep(3)
        endpoints = [*cluster.task_executors.values(), cluster.resource_manager, cluster.dispatcher]
    assert all(e.state.value == "terminated" for e in endpoints)
    task = trio.lowlevel.current_task()
    assert all(not n.child_tasks for n in task.child_nurseries)
