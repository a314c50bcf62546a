"""The cluster's typed snapshot: immutable, round-trips the wire with every field checked, built
through the gateways, read remotely by clients, and never part of the cluster's trace."""

from __future__ import annotations

import dataclasses
import io
import uuid
from pathlib import Path

import pytest
import trio
import trio.testing

from minicluster.client import connect_cluster
from minicluster.cluster import ClusterConfig, JobGraph, JobStatus, JobVertex, MiniCluster
from minicluster.cluster.context import Event
from minicluster.cluster.snapshot import SNAPSHOT_QUERIES, ClusterSnapshot, JobSnapshot
from minicluster.rpc import ProtocolError
from minicluster.rpc.serialization import dumps, loads, roundtrip
from minicluster.scenario import load_scenario
from minicluster.scenario.runner import run_scenario

SCENARIOS = Path(__file__).parent.parent / "scenarios"
FAST = {"heartbeat_interval": 1.0, "heartbeat_timeout": 5.0}


def job(name: str = "etl", parallelism: int = 2, duration: float = 30.0) -> JobGraph:
    return JobGraph(uuid.uuid4(), name, [JobVertex("map", parallelism, duration)])


async def test_snapshot_is_immutable(autojump_clock: trio.testing.MockClock) -> None:
    async with MiniCluster(2, 2, config=ClusterConfig(seed=1, **FAST)) as cluster:
        await cluster.submit_job(job())
        await trio.sleep(3)
        snapshot = cluster.snapshot()
        with pytest.raises(dataclasses.FrozenInstanceError):
            snapshot.time = 0.0  # type: ignore[misc]
        with pytest.raises(dataclasses.FrozenInstanceError):
            snapshot.jobs[0].restarts = 9  # type: ignore[misc]
        assert isinstance(snapshot.task_executors, tuple)
        assert isinstance(snapshot.task_executors[0].slots, tuple)
        assert not hasattr(snapshot, "__dict__")  # slotted


async def test_job_snapshot_round_trips_the_wire(autojump_clock: trio.testing.MockClock) -> None:
    async with MiniCluster(2, 2, config=ClusterConfig(seed=2, **FAST)) as cluster:
        job_id = await cluster.submit_job(job(parallelism=4))
        await trio.sleep(3)
        record = cluster.store.jobs[job_id]
        snapshot = cluster.dispatcher.job_snapshot(record)
        assert snapshot.tasks and snapshot.slot_assignments and snapshot.live_executions
        assert roundtrip(snapshot) == snapshot
        assert JobSnapshot.from_wire(snapshot.to_wire()) == snapshot
        whole = cluster.snapshot()
        assert roundtrip(whole) == whole


def test_a_snapshot_from_the_wire_with_a_field_of_the_wrong_type_is_refused() -> None:
    good = JobSnapshot(uuid.uuid4(), "etl", JobStatus.RUNNING, 2)
    wire = good.to_wire()
    assert JobSnapshot.from_wire(wire) == good
    for field, value in (("restarts", "three"), ("status", "SLEEPING"), ("tasks", 5)):
        with pytest.raises(ValueError, match=field):
            JobSnapshot.from_wire({**wire, field: value})
    missing = {k: v for k, v in wire.items() if k != "name"}
    with pytest.raises(ValueError, match="name is missing"):
        JobSnapshot.from_wire(missing)
    tampered = dumps(good).replace(b"etl", b"\xff\xfe\xfd")
    with pytest.raises(ProtocolError):
        loads(tampered)


def test_the_json_form_keeps_the_field_names_views_and_output_use() -> None:
    snapshot = JobSnapshot(uuid.UUID(int=1), "etl", JobStatus.RUNNING, 2, slots_pending=1)
    assert list(snapshot.summary_dict()) == [
        "job_id",
        "name",
        "status",
        "parallelism",
        "start_time",
        "duration",
        "tasks_total",
        "tasks_finished",
        "restarts",
        "slots_pending",
    ]
    assert snapshot.as_dict()["status"] == "RUNNING"
    assert snapshot.as_dict()["job_id"] == uuid.UUID(int=1).hex


async def test_the_dispatcher_gathers_the_cluster_snapshot_through_the_gateways(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with MiniCluster(2, 2, config=ClusterConfig(seed=3, **FAST)) as cluster:
        job_id = await cluster.submit_job(job(parallelism=3))
        await trio.sleep(3)
        asked = await cluster.dispatcher_gateway("observer").request_cluster_snapshot()
        read = cluster.snapshot()
        assert isinstance(asked, ClusterSnapshot)
        assert [j.job_id for j in asked.jobs] == [job_id]
        assert asked.jobs[0].status is JobStatus.RUNNING
        assert asked.overview.task_executors == 2 and asked.free_slots == 1
        assert asked.dispatcher.token == cluster.dispatcher.fencing_token
        assert asked.job_masters[0].job_name == "etl"
        assert asked.as_dict()["task_executors"] == read.as_dict()["task_executors"]


async def test_inspect_reads_the_cluster_snapshot_over_tcp() -> None:
    with trio.fail_after(20):
        async with MiniCluster(2, 2, host="127.0.0.1", config=ClusterConfig(seed=4)) as cluster:
            job_id = await cluster.submit_job(job("remote", parallelism=2))
            async with connect_cluster(cluster.address, timeout=5) as client:
                with trio.fail_after(10):
                    while True:
                        snapshot = await client.cluster_snapshot()
                        if snapshot.jobs and snapshot.jobs[0].status is JobStatus.RUNNING:
                            break
                        await trio.sleep(0.05)
                assert isinstance(snapshot, ClusterSnapshot)
                assert snapshot.jobs[0].name == "remote"
                assert {te.id for te in snapshot.task_executors} == {"te-1", "te-2"}
                assert snapshot.rpc is not None and snapshot.rpc.total_calls > 0
                details = await client.job_snapshot(job_id)
                assert isinstance(details, JobSnapshot)
                assert len(details.tasks) == 2


async def test_snapshot_queries_are_not_traced(autojump_clock: trio.testing.MockClock) -> None:
    """Views and conditions ask for snapshots all the time: none of it is an event (so not in
    the trace file), a counted call or a latency sample, and it wakes no waiting condition."""
    async with MiniCluster(2, 2, config=ClusterConfig(seed=6, **FAST)) as cluster:
        await cluster.submit_job(job(parallelism=3))
        await trio.sleep(3)
        events: list[Event] = []
        woken: list[bool] = []
        cluster.events.subscribers.append(events.append)
        cluster.events.watchers.append(lambda: woken.append(True))
        calls = cluster.events.rpc_calls
        gateway = cluster.dispatcher_gateway("observer")
        for _ in range(3):
            await gateway.request_cluster_snapshot()
            await gateway.request_job_snapshot(cluster.snapshot().jobs[0].job_id)
        assert [e for e in events if e.method in SNAPSHOT_QUERIES] == []
        assert cluster.events.rpc_calls == calls + len([e for e in events if e.method])
        assert not SNAPSHOT_QUERIES & set(cluster.events.by_method)
        assert not SNAPSHOT_QUERIES & set(cluster.events.latencies)
        assert len(woken) == len(events)


def test_a_scenario_trace_holds_no_snapshot_query() -> None:
    scenario = load_scenario(SCENARIOS / "taskexecutor-crash.yaml")
    trace = io.StringIO()
    result = run_scenario(scenario, seed=5, trace=trace)
    assert result.passed, result.failure
    assert trace.getvalue().count("\n") > 100
    for query in SNAPSHOT_QUERIES:
        assert query not in trace.getvalue()
