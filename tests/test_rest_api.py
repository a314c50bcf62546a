"""Flink's REST API over an in-process cluster: the answers have Flink 2.3's shapes and field
names (compared with answers captured from Flink 2.3.0 in tests/data/flink-rest/), cancelling
goes through the Dispatcher, and bad requests get Flink's error form with the right status and
change nothing. The app is called through httpx's ASGI transport on trio's mock clock."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import trio
import trio.testing

from minicluster.cluster import ClusterConfig, JobGraph, JobStatus, JobVertex, MiniCluster
from minicluster.cluster.model import JobEdge
from minicluster.rest import RestApp
from minicluster.rest.app import MAX_BODY, MAX_QUERY
from minicluster.rest.ids import vertex_id

REFERENCE = Path(__file__).parent / "data" / "flink-rest"
FAST = {"heartbeat_interval": 1.0, "heartbeat_timeout": 5.0}


def reference(name: str) -> Any:
    return json.loads((REFERENCE / name).read_text())


def gang_job(name: str = "gang", parallelism: int = 2, duration: float = 30.0) -> JobGraph:
    return JobGraph(
        uuid.uuid4(),
        name,
        [JobVertex("Source: sleeper", parallelism, duration), JobVertex("Sink: discard", 2, 30)],
        [JobEdge("Source: sleeper", "Sink: discard")],
    )


@asynccontextmanager
async def rest_app(
    config: ClusterConfig | None = None,
) -> AsyncIterator[tuple[MiniCluster, httpx.AsyncClient, RestApp]]:
    config = config or ClusterConfig(seed=7, **FAST)
    async with MiniCluster(2, 2, config=config) as cluster:
        app = RestApp(cluster, "127.0.0.1", 8081)
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://rest") as client:
            yield cluster, client, app


@asynccontextmanager
async def rest_client() -> AsyncIterator[tuple[MiniCluster, httpx.AsyncClient]]:
    async with rest_app() as (cluster, client, _):
        yield cluster, client


async def running(cluster: MiniCluster, graph: JobGraph) -> uuid.UUID:
    job_id = await cluster.submit_job(graph)
    assert await cluster.wait_until(
        lambda: cluster.job_status(job_id) is JobStatus.RUNNING, timeout=10
    )
    await trio.sleep(1)  # its tasks deployed
    return job_id


def same_keys(ours: Any, flinks: Any, where: str = "") -> None:
    """Every object has exactly Flink's field names, recursively (lists: their first item)."""
    if isinstance(flinks, dict):
        assert isinstance(ours, dict), where
        assert sorted(ours) == sorted(flinks), where
        for key, value in flinks.items():
            if value not in ({}, []):
                same_keys(ours[key], value, f"{where}.{key}")
    elif isinstance(flinks, list) and flinks:
        assert isinstance(ours, list) and ours, where
        same_keys(ours[0], flinks[0], f"{where}[0]")


async def test_cluster_endpoints_answer_with_flinks_field_names(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with rest_client() as (cluster, client):
        await running(cluster, gang_job())
        overview = (await client.get("/v1/overview")).json()
        same_keys(overview, reference("overview.json"))
        assert overview["taskmanagers"] == 2
        assert overview["slots-total"] == 4
        assert overview["jobs-running"] == 1
        managers = (await client.get("/taskmanagers")).json()
        same_keys(managers, reference("taskmanagers.json"))
        assert [tm["id"] for tm in managers["taskmanagers"]] == ["te-1", "te-2"]
        assert sum(tm["freeSlots"] for tm in managers["taskmanagers"]) == 2
        details = (await client.get("/v1/taskmanagers/te-1")).json()
        assert details["id"] == "te-1" and "allocatedSlots" in details
        keys = {row["key"]: row["value"] for row in (await client.get("/jobmanager/config")).json()}
        assert keys["heartbeat.interval"] == "1000" and keys["heartbeat.timeout"] == "5000"
        assert keys["rest.port"] == "8081"
        config = (await client.get("/config")).json()
        assert config["features"]["web-cancel"] is True


async def test_jobs_endpoints_answer_with_flinks_shapes_and_32_hex_ids(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with rest_client() as (cluster, client):
        job_id = await running(cluster, gang_job())
        listed = (await client.get("/v1/jobs")).json()
        assert listed == {"jobs": [{"id": job_id.hex, "status": "RUNNING"}]}
        overview = (await client.get("/v1/jobs/overview")).json()
        same_keys(overview, reference("jobs_overview.json"))
        row = overview["jobs"][0]
        assert (row["jid"], row["state"], row["end-time"]) == (job_id.hex, "RUNNING", -1)
        assert row["tasks"]["total"] == 4 and row["tasks"]["running"] == 4

        details = (await client.get(f"/jobs/{job_id.hex}")).json()
        same_keys(details, reference("jobs_id.json"))
        source, sink = details["vertices"]
        assert source["id"] == vertex_id(job_id, "Source: sleeper")
        assert (source["name"], source["parallelism"], source["status"]) == (
            "Source: sleeper",
            2,
            "RUNNING",
        )
        assert source["tasks"]["RUNNING"] == 2
        # the plan's edge: the sink reads the source
        plan = {node["id"]: node for node in details["plan"]["nodes"]}
        assert plan[sink["id"]]["inputs"][0]["id"] == source["id"]

        times = await client.get(f"/jobs/{job_id.hex}/vertices/{source['id']}/subtasktimes")
        same_keys(times.json(), reference("jobs_id_vertices_vid_subtasktimes.json"))
        assert [s["subtask"] for s in times.json()["subtasks"]] == [0, 1]
        # the ids are stable: the same on every request
        again = (await client.get(f"/v1/jobs/{job_id.hex.upper()}")).json()
        assert [v["id"] for v in again["vertices"]] == [source["id"], sink["id"]]


async def test_a_failed_task_shows_in_the_jobs_exception_history(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with rest_client() as (cluster, client):
        job_id = await running(cluster, gang_job())
        quiet = (await client.get(f"/jobs/{job_id.hex}/exceptions")).json()
        assert quiet == {"exceptionHistory": {"entries": [], "truncated": False}}
        await cluster.fail_task(job_id, 0, "Source: sleeper")
        await trio.sleep(0.1)
        failed_by = (await client.get(f"/jobs/{job_id.hex}")).json()["now"]
        await trio.sleep(5)
        history = (await client.get(f"/jobs/{job_id.hex}/exceptions")).json()
        same_keys(history, reference("jobs_id_exceptions.json"))
        [entry] = history["exceptionHistory"]["entries"]
        # stamped when it happened (the JobMaster's failure event), not when asked
        assert failed_by - 1000 <= entry["timestamp"] <= failed_by
        assert "Source: sleeper" in entry["stacktrace"]


async def test_patch_mode_cancel_answers_202_and_cancels_the_job_through_the_dispatcher(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with rest_client() as (cluster, client):
        job_id = await running(cluster, gang_job())
        response = await client.patch(f"/v1/jobs/{job_id.hex}?mode=cancel", content=b"{}")
        assert (response.status_code, response.json()) == (202, {})
        assert await cluster.wait_until(
            lambda: cluster.job_status(job_id) is JobStatus.CANCELED, timeout=10
        )
        # cancelling a cancelled job is fine (as in Flink); a finished one is a conflict
        again = await client.patch(f"/jobs/{job_id.hex}")
        assert again.status_code == 202


async def test_bad_requests_get_flinks_error_form_and_status(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with rest_client() as (cluster, client):
        job_id = await running(cluster, gang_job())
        unknown = uuid.uuid4().hex
        cases = [
            ("GET", "/nosuch", 404),
            ("GET", "/v1/jobs/overview/extra", 404),
            ("GET", f"/jobs/{unknown}", 404),
            ("GET", f"/jobs/{unknown}/exceptions", 404),
            ("GET", "/jobs/not-a-job-id", 400),
            ("GET", f"/jobs/{job_id.hex}/vertices/xyz/subtasktimes", 400),
            ("GET", f"/jobs/{job_id.hex}/vertices/{unknown}/subtasktimes", 404),
            ("GET", "/taskmanagers/te-9", 404),
            ("GET", "/taskmanagers/%3Cscript%3E", 400),
            ("PATCH", f"/jobs/{unknown}", 404),
            ("DELETE", f"/jobs/{job_id.hex}", 405),
            ("POST", "/overview", 405),
            ("GET", "/minicluster/snapshot?after=soon", 400),
            ("GET", "/overview?" + "x=1&" * (MAX_QUERY // 4 + 1), 414),
            ("GET", "/overview?" + "x=1&" * 20, 400),
            ("GET", "/" + "a" * 5000, 414),
        ]
        for method, path, status in cases:
            response = await client.request(method, path)
            assert response.status_code == status, (method, path, response.text)
            errors = response.json()["errors"]
            assert len(errors) == 1 and errors[0], (method, path)
        assert (await client.request("POST", "/overview")).headers["allow"] == "GET"
        too_big = await client.patch(f"/jobs/{job_id.hex}", content=b"x" * (MAX_BODY + 1))
        assert too_big.status_code == 413

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: read and counted
            for _ in range(3):
                yield b"x" * (MAX_BODY // 2)

        chunked = await client.patch(f"/jobs/{job_id.hex}", content=chunks())
        assert chunked.status_code == 413
        assert cluster.job_status(job_id) is JobStatus.RUNNING


async def test_a_refused_cancel_changes_nothing(autojump_clock: trio.testing.MockClock) -> None:
    async with rest_client() as (cluster, client):
        job_id = await running(cluster, gang_job())
        response = await client.patch(f"/jobs/{job_id.hex}?mode=stop")
        assert response.status_code == 400
        [error] = response.json()["errors"]
        assert error == "mode is 'cancel' (the only one there is), got 'stop'"
        await trio.sleep(5)
        assert cluster.job_status(job_id) is JobStatus.RUNNING


async def test_cancelling_a_finished_job_is_a_conflict(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with rest_client() as (cluster, client):
        job_id = await cluster.submit_job(gang_job(duration=1.0))
        assert await cluster.wait_for_job(job_id, timeout=60) is JobStatus.FINISHED
        response = await client.patch(f"/jobs/{job_id.hex}?mode=cancel")
        assert response.status_code == 409
        assert cluster.job_status(job_id) is JobStatus.FINISHED
        row = (await client.get("/jobs/overview")).json()["jobs"][0]
        assert row["state"] == "FINISHED" and row["end-time"] > row["start-time"]


async def test_the_dashboards_long_poll_answers_when_the_cluster_changes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Flink's default heartbeat interval (10 s): nothing else changes the cluster meanwhile
    async with rest_app(ClusterConfig(seed=8)) as (cluster, client, app):
        app.watch()
        await trio.sleep(2)  # registrations done: a quiet cluster
        first = (await client.get("/minicluster/snapshot")).json()
        assert [te["id"] for te in first["task_executors"]] == ["te-1", "te-2"]
        version = first["version"]
        async with trio.open_nursery() as nursery:
            answers: list[dict[str, Any]] = []

            async def poll() -> None:
                answers.append((await client.get(f"/minicluster/snapshot?after={version}")).json())

            nursery.start_soon(poll)
            await trio.sleep(0.1)
            await cluster.submit_job(gang_job("late"))
        began = trio.current_time()
        [answer] = answers
        assert [job["name"] for job in answer["jobs"]] == ["late"]
        assert answer["version"] > version
        # with nothing new, a poll waits at most a second
        quiet = (await client.get(f"/minicluster/snapshot?after={10**12}")).json()
        assert trio.current_time() - began <= 1.5
        assert quiet["dashboard_polls"] == 2
        app.unwatch()
