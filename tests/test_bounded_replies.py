"""No field a user sends can make a reply for someone else too big: jobs that may run at once
and ended jobs kept are bounded, a job's task list and the topology's slot lists are cut with
a count beside them."""

from __future__ import annotations

import uuid

import pytest
import trio
import trio.testing

from minicluster.cluster import ClusterConfig, JobGraph, JobStatus, JobVertex, MiniCluster
from minicluster.cluster import dispatcher as dispatcher_module
from minicluster.cluster import snapshot as snapshot_module
from minicluster.cluster.model import JobStateError
from minicluster.console.plain import format_summary

FAST = dict(heartbeat_interval=1.0, heartbeat_timeout=5.0)


def job(name: str, parallelism: int = 1, duration: float = 100.0) -> JobGraph:
    return JobGraph(uuid.uuid4(), name, [JobVertex("map", parallelism, duration)])


async def test_submissions_beyond_the_active_job_limit_are_refused_and_not_stored(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dispatcher_module, "MAX_ACTIVE_JOBS", 3)
    async with MiniCluster(1, 2, config=ClusterConfig(seed=50, **FAST)) as cluster:
        for i in range(3):
            await cluster.submit_job(job(f"j{i}"))
        with pytest.raises(JobStateError, match="at most 3 run at once"):
            await cluster.submit_job(job("one-too-many"))
        assert len(cluster.store.jobs) == 3
        assert "one-too-many" not in cluster.store.by_name


async def test_the_oldest_ended_jobs_are_forgotten_beyond_the_archive_limit(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dispatcher_module, "MAX_ARCHIVED_JOBS", 2)
    async with MiniCluster(1, 2, config=ClusterConfig(seed=51, **FAST)) as cluster:
        ids = []
        for i in range(4):
            job_id = await cluster.submit_job(job(f"j{i}", duration=0.5))
            assert await cluster.wait_for_job(job_id, 10) is JobStatus.FINISHED
            ids.append(job_id)
        listed = await cluster.dispatcher_gateway().list_jobs()
        assert [j["name"] for j in listed] == ["j2", "j3"]


async def test_a_job_with_more_tasks_than_listed_says_how_many_there_are(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dispatcher_module, "MAX_LISTED_TASKS", 5)
    async with MiniCluster(1, 2, config=ClusterConfig(seed=52, **FAST)) as cluster:
        job_id = await cluster.submit_job(job("wide", parallelism=12))
        details = await cluster.dispatcher_gateway().request_job(job_id)
        assert len(details["tasks"]) == 5
        assert details["tasks_total"] == 12 and details["tasks_listed"] == 5


async def test_the_topology_sums_up_slots_past_its_listing_limit_and_counts_stay_true(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(snapshot_module, "MAX_LISTED_SLOTS", 4)
    async with MiniCluster(3, 2, config=ClusterConfig(seed=53, **FAST)) as cluster:
        await trio.sleep(1)
        snapshot = cluster.snapshot()
        rows = snapshot.task_executors
        assert [len(r.slots) for r in rows] == [2, 2, 0]
        assert rows[2].slots_total == 2 and dict(rows[2].slot_counts) == {"FREE": 2}
        assert snapshot.task_executors_total == 3
        assert "6 slots (6 free)" in format_summary(snapshot)[0]
