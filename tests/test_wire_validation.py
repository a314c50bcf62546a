"""What arrives over the wire is checked where it enters: a malformed job, a mistyped argument
or an absurd number is refused with one sentence, changes nothing, and the cluster keeps serving
everyone (real TCP, a cluster on 127.0.0.1)."""

from __future__ import annotations

import math
import uuid
from typing import Any

import pytest
import trio

from minicluster.client import connect_cluster
from minicluster.cluster import ClusterConfig, JobGraph, JobStatus, JobVertex, MiniCluster
from minicluster.cluster.model import (
    ExecutionState,
    RestartStrategy,
    SlotID,
    TaskExecutionState,
)
from minicluster.limits import MAX_PARALLELISM
from minicluster.rpc import RpcError, open_rpc_service
from minicluster.rpc.typecheck import compile_checker

CONFIG = dict(heartbeat_interval=0.5, heartbeat_timeout=3.0, rpc_timeout=5.0)


def vertex(**fields: Any) -> JobVertex:
    v = JobVertex("map", 2, 0.05)
    for key, value in fields.items():
        setattr(v, key, value)
    return v


def graph(name: Any = "job", job_id: Any = None, **vertex_fields: Any) -> JobGraph:
    return JobGraph(job_id or uuid.uuid4(), name, [vertex(**vertex_fields)])


HOSTILE_JOBS = {
    "a NaN task duration": lambda: graph(task_duration=math.nan),
    "an infinite task duration": lambda: graph(task_duration=math.inf),
    "a job id that is text": lambda: graph(job_id="0123"),
    "a job id that is a number": lambda: graph(job_id=12345),
    "a parallelism of 100,000,000": lambda: graph(parallelism=100_000_000),
    "a parallelism of 10**12": lambda: graph(parallelism=10**12),
    "a parallelism of 2**64": lambda: graph(parallelism=2**64),
    "a parallelism of 1.5": lambda: graph(parallelism=1.5),
    "a parallelism of NaN": lambda: graph(parallelism=math.nan),
    "a list as the name": lambda: graph(name=["a", "b"]),
    "a 6 MiB name": lambda: graph(name="x" * (6 * 1024 * 1024)),
    "a negative restart delay": lambda: JobGraph(
        uuid.uuid4(), "j", [vertex()], restart=RestartStrategy(3, -1.0)
    ),
    "a failing subtask out of range": lambda: graph(fail_subtasks=[7]),
}


@pytest.mark.parametrize("case", list(HOSTILE_JOBS), ids=list(HOSTILE_JOBS))
async def test_a_hostile_submission_is_refused_and_changes_nothing(case: str) -> None:
    with trio.fail_after(30):
        async with (
            MiniCluster(2, 2, host="127.0.0.1", config=ClusterConfig(**CONFIG)) as cluster,
            connect_cluster(cluster.address, timeout=5) as client,
        ):
            hostile = HOSTILE_JOBS[case]()
            with pytest.raises(RpcError) as refused:
                await client.call(lambda d: d.submit_job(hostile))
            assert "\n" not in str(refused.value).strip()
            assert len(str(refused.value)) < 400
            # nothing was created, everyone is still served
            assert cluster.store.jobs == {}
            assert await client.call(lambda d: d.list_jobs()) == []
            await client.topology()
            good = JobGraph(uuid.uuid4(), "good", [JobVertex("map", 2, 0.05)])
            job_id = await client.call(lambda d: d.submit_job(good))
            assert await cluster.wait_for_job(job_id, 10) is JobStatus.FINISHED
            assert cluster.registered_task_executors() == 2


async def test_a_mistyped_argument_is_refused_before_the_endpoint_sees_it() -> None:
    with trio.fail_after(30):
        async with (
            MiniCluster(1, 2, host="127.0.0.1", config=ClusterConfig(**CONFIG)) as cluster,
            connect_cluster(cluster.address, timeout=5) as client,
        ):
            with pytest.raises(RpcError, match="argument job_id: expected UUID, got str"):
                await client.call(lambda d: d.cancel_job("not-a-uuid"))  # type: ignore[arg-type]
            with pytest.raises(RpcError, match="argument job_id: expected UUID, got int"):
                await client.call(lambda d: d.request_job(42))  # type: ignore[arg-type]
            assert await client.call(lambda d: d.list_jobs()) == []


async def test_a_hostile_tell_to_a_task_executor_is_dropped_and_it_stays_registered() -> None:
    """One wire call once killed every TaskExecutor; now a malformed state update or slot id
    never reaches an endpoint."""
    with trio.fail_after(30):
        async with MiniCluster(1, 2, host="127.0.0.1", config=ClusterConfig(**CONFIG)) as cluster:
            await cluster.wait_until(lambda: cluster.registered_task_executors() == 1, 10)
            te = cluster.task_executors["te-1"]
            async with open_rpc_service() as client:
                from minicluster.cluster.gateways import TaskExecutorGateway

                gateway = await client.connect(te.address, TaskExecutorGateway)
                gateway.disconnect_job_manager(uuid.uuid4(), ["not", "text"])  # type: ignore[arg-type]
                with pytest.raises(RpcError):
                    await gateway.request_slot(
                        SlotID("te-1", 10**9), uuid.uuid4(), uuid.uuid4(), "x", uuid.uuid4()
                    )
                await trio.sleep(1.5)
            assert te.is_running
            assert cluster.registered_task_executors() == 1


def test_values_are_checked_against_their_annotations() -> None:
    assert compile_checker(float)(math.nan) == "expected a finite number, got nan"
    assert compile_checker(float)(3) is None
    assert compile_checker(int)(True) == "expected an integer, got bool"
    assert compile_checker(list[uuid.UUID])([uuid.uuid4(), "x"]) == "item 1: expected UUID, got str"
    assert compile_checker(str | None)(None) is None
    assert (
        compile_checker(dict[str, int])({"a": 1.5}) == "entry 'a': expected an integer, got float"
    )
    assert compile_checker(ExecutionState)("RUNNING") == "expected ExecutionState, got str"
    state = TaskExecutionState(uuid.uuid4(), uuid.uuid4(), ExecutionState.FAILED, "x" * 70_000)
    with pytest.raises(ValueError, match="at most 65,536 characters"):
        state.validate()
    assert MAX_PARALLELISM == 32_768


async def test_a_declaration_of_more_slots_than_any_job_has_tasks_is_refused() -> None:
    from minicluster.cluster.gateways import ResourceManagerGateway
    from minicluster.cluster.model import ClusterError

    with trio.fail_after(30):
        async with MiniCluster(1, 2, config=ClusterConfig(**CONFIG)) as cluster:
            job_id = await cluster.submit_job(graph(task_duration=30.0))
            await cluster.wait_until(lambda: job_id in cluster.resource_manager.job_masters, 5)
            jm = cluster.store.jobs[job_id].job_master
            assert jm is not None
            rm = cluster.resource_manager
            gateway = cluster.rm_service.local_gateway(rm, ResourceManagerGateway, rm.fencing_token)
            with pytest.raises(ClusterError, match="0 to 100,000 slots"):
                await gateway.declare_required_resources(jm.fencing_token, job_id, 10**30)
            assert rm.requirements[job_id].slots == 2


def test_the_exact_type_shortcut_of_argument_checks_refuses_what_the_checkers_refuse() -> None:
    from minicluster.rpc.typecheck import ArgumentsChecker

    def method(self: Any, count: int, ratio: float, name: str, state: ExecutionState) -> None:
        """A gateway method's shape: every parameter has a shortcut."""

    checker = ArgumentsChecker(method)
    ok = [3, 2, "x", ExecutionState.RUNNING]
    assert checker.problem(ok, {}) is None
    assert checker.problem([3, 0.5, "x", ExecutionState.RUNNING], {}) is None
    assert checker.problem([True, 2, "x", ExecutionState.RUNNING], {}) == (
        "argument count: expected an integer, got bool"
    )
    assert checker.problem([3, math.inf, "x", ExecutionState.RUNNING], {}) == (
        "argument ratio: expected a finite number, got inf"
    )
    assert checker.problem([3, 2, b"x", ExecutionState.RUNNING], {}) == (
        "argument name: expected text, got bytes"
    )
    assert checker.problem([3, 2, "x", "RUNNING"], {}) == (
        "argument state: expected ExecutionState, got str"
    )
    assert checker.problem([3, 2], {"name": 5}) == "argument name: expected text, got int"
