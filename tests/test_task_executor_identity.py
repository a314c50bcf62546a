"""One TaskExecutor id, one TaskExecutor: a second live process under a taken id is refused with
a clear reason (the two no longer evict each other), while a restart under the old id, a retry
and a resumed process are taken back."""

from __future__ import annotations

import uuid

import trio
import trio.testing

from minicluster.cluster import ClusterConfig, MiniCluster
from minicluster.cluster.gateways import ResourceManagerGateway
from minicluster.cluster.model import TaskExecutorRegistration

FAST = dict(heartbeat_interval=1.0, heartbeat_timeout=5.0)


async def test_a_second_live_task_executor_under_a_taken_id_is_rejected(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with MiniCluster(2, 2, config=ClusterConfig(seed=41, **FAST)) as cluster:
        await trio.sleep(1)
        rm = cluster.resource_manager
        first = rm.task_executors["te-1"]
        gateway = cluster.rm_service.local_gateway(rm, ResourceManagerGateway, rm.fencing_token)
        # another process (te-2's endpoint stands in for it) claims the id te-1
        impostor = TaskExecutorRegistration(
            "te-1", cluster.task_executors["te-2"].address, 2, uuid.uuid4()
        )
        response = await gateway.register_task_executor(impostor)
        assert not response.success and response.rejected
        assert "taken by a running TaskExecutor" in response.reason
        assert rm.task_executors["te-1"] is first  # the first one keeps its registration
        await trio.sleep(10)
        assert cluster.registered_task_executors() == 2
        assert not any("lost TaskExecutor" in e.message for e in cluster.events.recent)


async def test_a_restart_under_the_old_id_replaces_a_crashed_task_executor(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with MiniCluster(2, 2, config=ClusterConfig(seed=42, **FAST)) as cluster:
        await trio.sleep(1)
        rm = cluster.resource_manager
        await cluster.kill_task_executor("te-1")  # it answers nothing any more
        gateway = cluster.rm_service.local_gateway(rm, ResourceManagerGateway, rm.fencing_token)
        successor = TaskExecutorRegistration(
            "te-1", cluster.task_executors["te-2"].address, 2, uuid.uuid4()
        )
        response = await gateway.register_task_executor(successor)
        assert response.success
        assert rm.task_executors["te-1"].instance_id == response.instance_id


async def test_a_retry_of_the_same_session_is_not_mistaken_for_a_second_process(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with MiniCluster(1, 2, config=ClusterConfig(seed=43, **FAST)) as cluster:
        await trio.sleep(1)
        rm = cluster.resource_manager
        te = cluster.task_executors["te-1"]
        gateway = cluster.rm_service.local_gateway(rm, ResourceManagerGateway, rm.fencing_token)
        again = TaskExecutorRegistration("te-1", te.address, 2, te.session_id)
        response = await gateway.register_task_executor(again)
        assert response.success


async def test_a_task_executor_with_the_most_slots_stays_registered_over_tcp() -> None:
    """1,024 slots (the limit): its slot report travels with every heartbeat answer, over TCP,
    and it is never lost for being slow to answer."""
    config = ClusterConfig(heartbeat_interval=0.2, heartbeat_timeout=1.0)
    with trio.fail_after(30):
        async with MiniCluster([("big", 1024)], rpc="dedicated", config=config) as cluster:
            await cluster.wait_until(lambda: cluster.registered_task_executors() == 1, 10)
            await trio.sleep(3)  # fifteen heartbeats
            assert cluster.registered_task_executors() == 1
            assert cluster.resource_manager.resource_overview().slots_free == 1024
            assert not any("lost TaskExecutor" in e.message for e in cluster.events.recent)
