"""The client commands: `submit-job`, `list-jobs`, `job-status`, `cancel-job`, `inspect` and
`stop`, each connecting to a running cluster, asking its Dispatcher, and printing the answer.

Registered in cli/main.py with ``cli.add_command``. Only parsing, output and exit codes live
here; the client is minicluster.client.
"""

from __future__ import annotations

import functools
import signal
import sys
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import click
import trio

from minicluster.client import ClusterClient, connect_cluster
from minicluster.cluster import JobGraph, JobStatus, JobVertex
from minicluster.console import LiveConsole, make_console
from minicluster.console.views import render_jobs, render_topology
from minicluster.limits import MAX_PARALLELISM
from minicluster.scenario import load_job_file

from .errors import EXIT_INTERRUPTED, EXIT_USAGE, INTERRUPTED, fail, is_interrupt, reported
from .options import (
    CONTEXT,
    address_option,
    json_option,
    print_json,
    secret_option,
    timeout_option,
    tls_config,
    tls_options,
)
from .params import DURATION, NAME, Count
from .secrets import read_secret

T = TypeVar("T")


@dataclass
class Connection:
    """How a client command reaches the cluster: address, secret, TLS, timeout."""

    address: str
    secret_file: str | None
    timeout: float
    tls_cert: str | None
    tls_key: str | None
    tls_ca: str | None

    def run(self, body: Callable[[ClusterClient], Awaitable[T]]) -> T:
        """Connect, run `body` with the client, and disconnect (a trio run of its own)."""
        secret = read_secret(self.secret_file)
        tls = tls_config(self.tls_cert, self.tls_key, self.tls_ca)

        async def main() -> T:
            async with connect_cluster(self.address, secret, self.timeout, tls) as client:
                return await body(client)

        return trio.run(main)


def client_options(fn: Callable[..., None]) -> Callable[..., None]:
    """--address, --secret-file, the TLS options and --timeout, handed to the command as one
    `conn: Connection`."""

    @functools.wraps(fn)
    def command(
        *args: Any,
        address: str,
        secret_file: str | None,
        timeout: float,
        tls_cert: str | None,
        tls_key: str | None,
        tls_ca: str | None,
        **kwargs: Any,
    ) -> None:
        conn = Connection(address, secret_file, timeout, tls_cert, tls_key, tls_ca)
        fn(*args, conn=conn, **kwargs)

    for option in (timeout_option, tls_options, secret_option, address_option):
        command = option(command)
    return command


def _job_graph(
    job_file: str | None, name: str | None, parallelism: int | None, duration: float | None
) -> JobGraph:
    job_id = uuid.uuid4()
    if job_file:
        spec = load_job_file(job_file)
        import random

        graph = spec.to_job_graph(random.Random(job_id.int))
        graph.job_id = job_id
        if name:
            graph.name = name
        if parallelism is not None or duration is not None:
            fail("--parallelism and --task-duration cannot be combined with a job file", EXIT_USAGE)
        return graph
    return JobGraph(
        job_id,
        name or "job",
        [
            JobVertex(
                "task",
                parallelism if parallelism is not None else 2,
                duration if duration is not None else 2.0,
            )
        ],
    )


@click.command("submit-job", context_settings=CONTEXT)
@click.argument("job_file", required=False, type=click.Path(dir_okay=False))
@click.option("--name", type=NAME, help="The job's name (default: from the file, or 'job').")
@click.option(
    "--parallelism",
    type=Count(1, MAX_PARALLELISM, "a parallelism"),
    help=f"Subtasks per vertex (default 2, at most {MAX_PARALLELISM:,}).",
)
@click.option("--task-duration", type=DURATION, help="How long each task runs (default 2s).")
@click.option("--wait", is_flag=True, help="Follow the job; exit 0 for FINISHED, 1 otherwise.")
@client_options
@json_option
def submit_job(
    job_file: str | None,
    name: str | None,
    parallelism: int | None,
    task_duration: float | None,
    wait: bool,
    conn: Connection,
    as_json: bool,
) -> None:
    """Submit a job through the Dispatcher and print its id.

    JOB_FILE is a YAML job file; every key is in docs/scenarios.md, and a key it does not know
    is an error (exit 2), except keys starting with x-, which are yours.

    \b
    A job file, job.yaml:
      name: etl
      vertices:
        - {name: read, parallelism: 4, task_duration: 3s}
        - {name: write, parallelism: 2}
      edges: [{from: read, to: write}]
      restart: {attempts: 2, delay: 1s}

    \b
    Examples:
      minicluster submit-job --name etl --parallelism 4 --task-duration 3s --wait
      minicluster submit-job job.yaml --json
    """
    with reported():
        graph = _job_graph(job_file, name, parallelism, task_duration)
        interactive = sys.stderr.isatty() and not as_json

        submitted = trio.Event()  # set once the Dispatcher has the job: Ctrl-C leaves it running

        async def body(client: ClusterClient) -> str:
            await client.call(lambda d: d.submit_job(graph))
            submitted.set()
            if not as_json:
                click.echo(graph.job_id.hex)
            status = "CREATED"
            if wait:
                status = await _follow(client, graph.job_id, interactive)
            else:
                status = await client.call(lambda d: d.request_job_status(graph.job_id))
            return status

        try:
            status = conn.run(body)
        except BaseException as exc:
            if submitted.is_set() and is_interrupt(exc):
                if interactive:
                    click.echo("", err=True)
                fail(
                    f"interrupted; job {graph.name} ({graph.job_id.hex}) keeps running: cancel "
                    f"it with `minicluster cancel-job {graph.job_id.hex} --address "
                    f"{conn.address}`",
                    EXIT_INTERRUPTED,
                )
            raise
        if as_json:
            print_json({"job_id": graph.job_id.hex, "name": graph.name, "status": status})
        if wait and status != "FINISHED":
            fail(f"job {graph.name} ({graph.job_id.hex}) ended {status}")


def _waiting(details: dict[str, Any]) -> str:
    """The job's pending demand, as views show it: ", waiting for 2 slots"."""
    pending = details.get("slots_pending") or 0
    if not isinstance(pending, int) or pending <= 0:
        return ""
    return f", waiting for {pending} slot{'' if pending == 1 else 's'}"


# how the --wait line names task states: Flink's ExecutionState, grouped as a person reads them
_TASK_STATE_WORDS = (
    ("scheduled", ("CREATED", "SCHEDULED")),
    ("deploying", ("DEPLOYING", "INITIALIZING")),
    ("running", ("RUNNING",)),
)


def _progress(details: dict[str, Any]) -> str:
    """`2 deploying, 1 running, 3/8 finished, waiting for 2 slots, 0 restarts`."""
    states = details.get("task_states") or {}
    parts = []
    for word, names in _TASK_STATE_WORDS:
        count = sum(states.get(name, 0) for name in names)
        if count:
            parts.append(f"{count} {word}")
    parts.append(f"{details.get('tasks_finished', 0)}/{details.get('tasks_total', 0)} finished")
    restarts = details.get("restarts", 0)
    return ", ".join(parts) + _waiting(details) + f", {restarts} restart{'s' * (restarts != 1)}"


def _elapsed(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 60}m{whole % 60:02d}s" if whole >= 60 else f"{whole}s"


async def _follow(client: ClusterClient, job_id: uuid.UUID, interactive: bool) -> str:
    """Poll the job until it ends, showing progress on stderr: one line rewritten in place on
    a terminal (elapsed time, task states, pending demand), a new line for each change
    otherwise; a leader change is followed."""
    began = trio.current_time()
    last = ""
    while True:
        details = await client.call(lambda d: d.request_job(job_id))
        status = details["status"]
        progress = f"{details['name']}: {status}, {_progress(details)}"
        elapsed = _elapsed(trio.current_time() - began)
        if interactive:
            click.echo(f"\r\033[K{progress} ({elapsed})", err=True, nl=False)
        elif progress != last:
            click.echo(f"{progress} ({elapsed})", err=True)
        last = progress
        if JobStatus(status).is_globally_terminal:
            if interactive:
                click.echo("", err=True)
            return str(status)
        await trio.sleep(0.2)


@click.command("list-jobs", context_settings=CONTEXT)
@client_options
@json_option
def list_jobs(conn: Connection, as_json: bool) -> None:
    """List the cluster's jobs: id, name, status, parallelism, start time, duration.

    \b
    Example:
      minicluster list-jobs --json
    """
    with reported():
        jobs = conn.run(lambda c: c.call(lambda d: d.list_jobs()))
        if as_json:
            print_json({"jobs": jobs})
            return
        if not jobs:
            click.echo("no jobs")
            return
        click.echo(
            f"{'JOB ID':<32}  {'NAME':<16} {'STATUS':<10} {'PAR':>4} {'START':>9} {'DURATION':>9}"
        )
        for job in jobs:
            click.echo(
                f"{job['job_id']:<32}  {job['name'][:16]:<16} {job['status']:<10} "
                f"{job['parallelism']:>4} {'+' + format(job['start_time'], '.1f') + 's':>9} "
                f"{job['duration'] or 0:>8.1f}s"
            )


@click.command("job-status", context_settings=CONTEXT)
@click.argument("job_id")
@client_options
@json_option
def job_status(job_id: str, conn: Connection, as_json: bool) -> None:
    """Show one job, its tasks and their states (JOB_ID may be a unique prefix or the name).

    \b
    Example:
      minicluster job-status 3f2a --json
    """
    with reported():

        async def body(client: ClusterClient) -> dict[str, Any]:
            resolved = await client.find_job(job_id)
            snapshot = await client.job_snapshot(resolved)
            return snapshot.as_dict()

        details = conn.run(body)
        tasks = [
            {k: t.get(k) for k in ("vertex", "subtask", "state", "task_executor")}
            for t in details.get("tasks", [])
        ]
        if as_json:
            print_json(
                {
                    "job_id": details["job_id"],
                    "name": details["name"],
                    "status": details["status"],
                    "restarts": details.get("restarts", 0),
                    "slots_pending": details.get("slots_pending", 0),
                    "tasks": tasks,
                }
            )
            return
        click.echo(
            f"{details['name']} ({details['job_id']}): {details['status']}, "
            f"{details.get('tasks_finished', 0)}/{details.get('tasks_total', len(tasks))} tasks "
            f"finished, {details.get('restarts', 0)} restarts" + _waiting(details)
        )
        for task in tasks:
            click.echo(
                f"  {task['vertex']}[{task['subtask']}]  {task['state']:<10} "
                f"{task['task_executor'] or '-'}"
            )
        hidden = details.get("tasks_total", len(tasks)) - len(tasks)
        if isinstance(hidden, int) and hidden > 0:
            click.echo(f"  ... and {hidden:,} more tasks")


@click.command("cancel-job", context_settings=CONTEXT)
@click.argument("job_id")
@client_options
@json_option
def cancel_job(job_id: str, conn: Connection, as_json: bool) -> None:
    """Cancel a job; exits 0 once it is CANCELED.

    \b
    Example:
      minicluster cancel-job 3f2a
    """
    with reported():

        async def body(client: ClusterClient) -> tuple[str, str]:
            resolved = await client.find_job(job_id)
            await client.call(lambda d: d.cancel_job(resolved))
            with trio.move_on_after(conn.timeout):
                while True:
                    status = await client.call(lambda d: d.request_job_status(resolved))
                    if JobStatus(status).is_globally_terminal:
                        return resolved.hex, status
                    await trio.sleep(0.1)
            return resolved.hex, await client.call(lambda d: d.request_job_status(resolved))

        resolved, status = conn.run(body)
        if as_json:
            print_json({"job_id": resolved, "status": status})
        elif status == "CANCELED":
            click.echo(f"job {resolved} CANCELED")
        if status != "CANCELED":
            fail(f"job {resolved} is {status}, not CANCELED")


@click.command(context_settings=CONTEXT)
@click.option("--watch", is_flag=True, help="Refresh the view until Ctrl-C.")
@client_options
@json_option
def inspect(watch: bool, conn: Connection, as_json: bool) -> None:
    """Show the topology: leaders with their fencing tokens, TaskExecutors and slots, jobs.

    \b
    Example:
      minicluster inspect --watch
    """
    with reported():
        if watch and as_json:
            fail("--watch and --json cannot be combined", EXIT_USAGE)
        if not watch:
            snapshot = conn.run(lambda c: c.cluster_snapshot())
            if as_json:
                print_json(_inspect_json(snapshot.as_dict()))
            else:
                console, _ = make_console(False)
                console.print(render_topology(snapshot, max_task_executors=50))
                console.print(render_jobs(snapshot))
            return
        console, live_enabled = make_console(False)

        async def body(client: ClusterClient) -> int | None:
            live = LiveConsole(console) if live_enabled else None
            if live is not None:
                live.start()
            stopped_by: int | None = None
            try:
                with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    async with trio.open_nursery() as nursery:

                        async def stop_on_signal() -> None:
                            nonlocal stopped_by
                            async for signum in signals:
                                stopped_by = signum
                                nursery.cancel_scope.cancel()

                        nursery.start_soon(stop_on_signal)
                        while True:
                            snapshot = await client.cluster_snapshot()
                            if live is not None:
                                live.update(
                                    snapshot,
                                    snapshot.events,
                                    snapshot.rpc,
                                    {"scenario": conn.address, "clock": "real"},
                                )
                            else:
                                console.print(render_topology(snapshot))
                            await trio.sleep(1.0)
            finally:
                if live is not None:
                    live.stop()
            return stopped_by

        if conn.run(body) == signal.SIGINT:
            fail(INTERRUPTED, EXIT_INTERRUPTED)  # Ctrl-C: 130, as every command


def _inspect_json(snapshot: dict[str, Any]) -> dict[str, Any]:
    return {
        "dispatcher": snapshot["dispatcher"],
        "resource_manager": snapshot["resource_manager"],
        "job_masters": snapshot["job_masters"],
        "task_executors": [
            {
                "id": te["id"],
                "address": te["address"],
                "state": te.get("state"),
                "slots": [
                    {"index": s["index"], "state": s["state"], "job_id": s["job_id"]}
                    for s in te["slots"]
                ],
            }
            for te in snapshot["task_executors"]
        ],
        "jobs": [
            {"job_id": j["job_id"], "name": j["name"], "status": j["status"]}
            for j in snapshot["jobs"]
        ],
    }


@click.command(context_settings=CONTEXT)
@client_options
@json_option
def stop(conn: Connection, as_json: bool) -> None:
    """Cancel the cluster's unfinished jobs, then shut the cluster down; exits 0 once it has.

    Prints each job it ended with its final state; TaskExecutors that joined from other
    processes are told and exit 0.

    \b
    Example:
      minicluster stop --address tcp://127.0.0.1:6123
    """
    with reported():

        async def body(client: ClusterClient) -> list[dict[str, Any]]:
            ended = await _end_jobs(client, conn.timeout)
            await client.call(lambda d: d.shutdown_cluster())
            with trio.move_on_after(conn.timeout):
                while True:
                    try:
                        await client.leaders()
                    except Exception:
                        return ended
                    await trio.sleep(0.1)
            fail(f"the cluster at {conn.address} did not stop within {conn.timeout:g} s")

        ended = conn.run(body)
        if as_json:
            print_json({"stopped": True, "jobs_ended": ended})
            return
        for job in ended:
            click.echo(
                f"ended job {job['name']} ({job['job_id']}): {job['status']} (was {job['was']})"
            )
        click.echo("cluster stopped")


async def _end_jobs(client: ClusterClient, timeout: float) -> list[dict[str, Any]]:
    """Cancel every job that has not ended, and wait (at most `timeout`) for its final state:
    a stopped cluster leaves no job in a state nobody can see again."""
    jobs = await client.call(lambda d: d.list_jobs())
    unfinished = [j for j in jobs if not JobStatus(j["status"]).is_globally_terminal]
    ended = [
        {"job_id": j["job_id"], "name": j["name"], "status": j["status"], "was": j["status"]}
        for j in unfinished
    ]
    for job in ended:
        job_id = uuid.UUID(hex=job["job_id"])
        await client.call(lambda d, job_id=job_id: d.cancel_job(job_id))  # type: ignore[misc]
    with trio.move_on_after(timeout):
        for job in ended:
            job_id = uuid.UUID(hex=job["job_id"])
            while True:
                status = await client.call(
                    lambda d, job_id=job_id: d.request_job_status(job_id)  # type: ignore[misc]
                )
                job["status"] = status
                if JobStatus(status).is_globally_terminal:
                    break
                await trio.sleep(0.1)
    return ended
