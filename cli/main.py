"""The `minicluster` command: parsing, output and exit codes. The work lives in `minicluster`."""

from __future__ import annotations

import errno
import functools
import json
import os
import socket
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import click
import trio

from minicluster import __version__
from minicluster.client import DEFAULT_ADDRESS, ClusterClient, connect_cluster
from minicluster.cluster import ClusterConfig, JobGraph, JobStatus, JobVertex, MiniCluster
from minicluster.cluster.context import Event
from minicluster.cluster.stats import recent_events, rpc_statistics
from minicluster.console import LiveConsole, format_event_line, make_console
from minicluster.console.views import render_jobs, render_topology
from minicluster.limits import (
    CLUSTER_DURATIONS,
    MAX_PARALLELISM,
    MAX_SLOTS_PER_TASK_EXECUTOR,
    MAX_TASK_EXECUTORS,
)
from minicluster.rpc.tls import TlsConfig
from minicluster.scenario import format_duration, load_job_file

from .errors import EXIT_FAILED, EXIT_USAGE, fail, reported
from .group import MiniclusterGroup
from .lines import LinePrinter
from .params import (
    ADDRESS,
    DURATION,
    HOST,
    NAME,
    PORT,
    POSITIVE_DURATION,
    SPEED,
    TASK_EXECUTOR_ID,
    Count,
)
from .secrets import read_secret

T = TypeVar("T")
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


SLOTS = Count(1, MAX_SLOTS_PER_TASK_EXECUTOR, "a number of slots")


def address_option(fn: Any) -> Any:
    return click.option(
        "--address",
        type=ADDRESS,
        default=DEFAULT_ADDRESS,
        envvar="MINICLUSTER_ADDRESS",
        show_default=True,
        help="The cluster, as tcp://HOST:PORT (or set MINICLUSTER_ADDRESS).",
    )(fn)


def secret_option(fn: Any) -> Any:
    return click.option(
        "--secret-file",
        type=click.Path(dir_okay=False),
        help="A file holding the cluster's shared secret.",
    )(fn)


def tls_options(fn: Any) -> Any:
    for name, text in (
        ("--tls-ca", "CA certificate (PEM) to trust: enables TLS to the cluster."),
        ("--tls-key", "Private key (PEM) for --tls-cert."),
        ("--tls-cert", "Certificate (PEM) to present: enables TLS when serving."),
    ):
        fn = click.option(name, type=click.Path(exists=True, dir_okay=False), help=text)(fn)
    return fn


def tls_config(cert: str | None, key: str | None, ca: str | None) -> TlsConfig | None:
    if cert is None and key is None and ca is None:
        return None
    if (cert is None) != (key is None):
        fail("--tls-cert and --tls-key go together", EXIT_USAGE)
    return TlsConfig(cert=cert, key=key, ca=ca)


def json_option(fn: Any) -> Any:
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")(fn)


def timeout_option(fn: Any) -> Any:
    return click.option(
        "--timeout",
        type=POSITIVE_DURATION,
        default="10s",
        show_default=True,
        help="How long to wait for the cluster to answer.",
    )(fn)


def cluster_duration_options(command: str) -> Callable[[Any], Any]:
    """A flag for every duration of limits.CLUSTER_DURATIONS that `command` takes."""
    return functools.partial(_cluster_duration_options, command)


def _cluster_duration_options(command: str, fn: Any) -> Any:
    for setting in reversed(CLUSTER_DURATIONS):
        if setting.flag and command in setting.commands:
            fn = click.option(
                setting.option,
                setting.attribute,
                type=DURATION if setting.allow_zero else POSITIVE_DURATION,
                default=format_duration(setting.default),
                show_default=True,
                help=setting.help,
            )(fn)
    return fn


@contextmanager
def serving_errors(host: str, port: int) -> Iterator[None]:
    """Binding the listening socket fails in a few ways a user can fix: say which, and how."""
    try:
        yield
    except (OSError, BaseExceptionGroup) as exc:
        leaf: BaseException | None = exc
        if isinstance(exc, BaseExceptionGroup):
            match, _ = exc.split(OSError)
            leaf = _first_os_error(match)
        if isinstance(leaf, OSError):
            _bind_failure(leaf, host, port)
        raise


def _first_os_error(group: BaseExceptionGroup[BaseException] | None) -> OSError | None:
    while isinstance(group, BaseExceptionGroup):
        inner = group.exceptions[0]
        if isinstance(inner, OSError):
            return inner
        group = inner if isinstance(inner, BaseExceptionGroup) else None
    return None


def _bind_failure(exc: OSError, host: str, port: int) -> None:
    where = f"cannot serve on {host}:{port}"
    if isinstance(exc, socket.gaierror):
        fail(f"{where}: the host name does not resolve ({exc.strerror})", EXIT_USAGE)
    if exc.errno == errno.EADDRINUSE:
        fail(
            f"{where}: the address is already in use; choose another --port, "
            "or --port 0 for a free one",
            EXIT_FAILED,
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        fail(f"{where}: no interface of this machine has that address; check --host", EXIT_USAGE)
    if exc.errno == errno.EACCES:
        fail(
            f"{where}: permission denied (ports below 1024 need privileges); choose another --port",
            EXIT_FAILED,
        )


def print_json(document: Any) -> None:
    click.echo(json.dumps(document, indent=2, default=str))


@click.group(cls=MiniclusterGroup, context_settings=CONTEXT)
@click.version_option(__version__, prog_name="minicluster")
def cli() -> None:
    """minicluster: Flink's RPC layer and cluster coordination, simulated in Python.

    \b
    Start with a scenario (virtual clock, runs in a second):
      minicluster run-scenario scenarios/quickstart.yaml
    Or run a cluster and talk to it from another terminal:
      minicluster start
      minicluster submit-job --parallelism 4 --wait
      minicluster inspect
    """


# --- start -------------------------------------------------------------------------------


@cli.command(context_settings=CONTEXT)
@click.option(
    "--host", type=HOST, default="127.0.0.1", show_default=True, help="Interface to serve on."
)
@click.option("--port", type=PORT, default=6123, show_default=True, help="0 picks a free port.")
@click.option(
    "--task-executors",
    type=Count(0, MAX_TASK_EXECUTORS, "a number of TaskExecutors"),
    default=2,
    show_default=True,
)
@click.option("--slots-per-executor", type=SLOTS, default=2, show_default=True)
@click.option(
    "--rpc", type=click.Choice(["shared", "dedicated"]), default="shared", show_default=True
)
@cluster_duration_options("start")
@click.option(
    "--config", "config_file", type=click.Path(dir_okay=False), help="YAML with a cluster: section."
)
@secret_option
@tls_options
@click.option("--no-live", is_flag=True, help="Plain event lines instead of the live view.")
@click.pass_context
def start(ctx: click.Context, /, **options: Any) -> None:
    """Start a cluster (Dispatcher, ResourceManager, TaskExecutors) serving on TCP.

    Prints `cluster ready at tcp://HOST:PORT` once it accepts submissions, then serves until
    Ctrl-C, SIGTERM or `minicluster stop`.

    \b
    Example:
      minicluster start --port 6123 --task-executors 3 --heartbeat-timeout 5s
    """
    with reported():
        settings = _start_settings(ctx, options)
        secret = read_secret(options["secret_file"])
        tls = tls_config(options["tls_cert"], options["tls_key"], options["tls_ca"])
        if tls is not None and tls.cert is None:
            fail("serving TLS needs --tls-cert and --tls-key", EXIT_USAGE)
        console, live_enabled = make_console(options["no_live"], stderr=True)
        live = LiveConsole(console) if live_enabled else None
        printer = None if live_enabled else LinePrinter()

        def on_ready(cluster: MiniCluster) -> None:
            click.echo(f"cluster ready at {cluster.address}")
            sys.stdout.flush()
            if live is not None:
                live.start()
            elif printer is not None:
                cluster.events.subscribers.append(_plain_event_printer(printer))

        def on_tick(cluster: MiniCluster) -> None:
            if live is not None:
                live.update(_snapshot(cluster), _events(cluster), _rpc_stats(cluster), None)

        from minicluster.serve import serve_cluster

        try:
            with serving_errors(options["host"], options["port"]):
                reason = trio.run(
                    lambda: serve_cluster(
                        host=options["host"],
                        port=options["port"],
                        task_executors=settings["task_executors"],
                        slots_per_executor=settings["slots_per_executor"],
                        rpc=settings["rpc"],
                        config=settings["config"],
                        secret=secret,
                        tls=tls,
                        on_ready=on_ready,
                        on_tick=on_tick,
                        background=printer.run if printer is not None else None,
                    )
                )
        finally:
            if live is not None:
                live.stop()
        click.echo(f"cluster {reason}; shut down cleanly", err=True)


def _start_settings(ctx: click.Context, options: dict[str, Any]) -> dict[str, Any]:
    """Options from --config, overridden by flags given on the command line."""
    durations: dict[str, Any] = {s.attribute: s.default for s in CLUSTER_DURATIONS}
    durations.update(
        {
            s.attribute: options[s.attribute]
            for s in CLUSTER_DURATIONS
            if s.flag and "start" in s.commands
        }
    )
    values: dict[str, Any] = {
        "task_executors": options["task_executors"],
        "slots_per_executor": options["slots_per_executor"],
        "rpc": options["rpc"],
    }
    if options["config_file"]:
        from minicluster.scenario import load_cluster_config

        spec = load_cluster_config(options["config_file"])
        from_file: dict[str, Any] = {
            "task_executors": len(spec.task_executors),
            "slots_per_executor": spec.slots_per_executor,
            "rpc": spec.rpc,
        }
        given = click.core.ParameterSource.COMMANDLINE
        for key, value in from_file.items():
            if ctx.get_parameter_source(key) is not given:
                values[key] = value
        for key, value in spec.config_values().items():
            if ctx.get_parameter_source(key) is not given:
                durations[key] = value
    _check_heartbeat(durations)
    values["config"] = ClusterConfig(**durations)
    return values


def _check_heartbeat(durations: dict[str, Any]) -> None:
    interval, timeout = durations["heartbeat_interval"], durations["heartbeat_timeout"]
    if timeout <= interval:
        fail(
            f"the heartbeat timeout ({format_duration(timeout)}) must be longer than the "
            f"interval ({format_duration(interval)}); see --heartbeat-timeout",
            EXIT_USAGE,
        )


def _plain_event_printer(printer: LinePrinter) -> Any:
    def show(event: Event) -> None:
        if event.method is not None and "heartbeat" in event.method and event.outcome == "ok":
            return  # heartbeats that went fine are the noise of a healthy cluster
        printer.put(format_event_line(event.as_dict()))

    return show


def _snapshot(cluster: MiniCluster) -> dict[str, Any]:
    snapshot = cluster.snapshot()
    snapshot["heartbeat_timeout"] = cluster.config.heartbeat_timeout
    return snapshot


def _events(cluster: MiniCluster) -> list[dict[str, Any]]:
    return recent_events(cluster)


def _rpc_stats(cluster: MiniCluster) -> dict[str, Any]:
    return rpc_statistics(cluster)


# --- clients -----------------------------------------------------------------------------


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


@cli.command("submit-job", context_settings=CONTEXT)
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

    \b
    Examples:
      minicluster submit-job --name etl --parallelism 4 --task-duration 3s --wait
      minicluster submit-job job.yaml --json
    """
    with reported():
        graph = _job_graph(job_file, name, parallelism, task_duration)
        interactive = sys.stderr.isatty() and not as_json

        async def body(client: ClusterClient) -> str:
            await client.call(lambda d: d.submit_job(graph))
            if not as_json:
                click.echo(graph.job_id.hex)
            status = "CREATED"
            if wait:
                status = await _follow(client, graph.job_id, interactive)
            else:
                status = await client.call(lambda d: d.request_job_status(graph.job_id))
            return status

        status = conn.run(body)
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


async def _follow(client: ClusterClient, job_id: uuid.UUID, interactive: bool) -> str:
    """Poll the job until it ends, showing progress on stderr; a leader change is followed."""
    last = ""
    while True:
        details = await client.call(lambda d: d.request_job(job_id))
        status = details["status"]
        line = (
            f"{details['name']}: {status} {details.get('tasks_finished', 0)}/"
            f"{details.get('tasks_total', 0)} tasks, {details.get('restarts', 0)} restarts"
            + _waiting(details)
        )
        if line != last:
            if interactive:
                click.echo(f"\r\033[K{line}", err=True, nl=False)
            else:
                click.echo(line, err=True)
            last = line
        if JobStatus(status).is_globally_terminal:
            if interactive:
                click.echo("", err=True)
            return str(status)
        await trio.sleep(0.2)


@cli.command("list-jobs", context_settings=CONTEXT)
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


@cli.command("job-status", context_settings=CONTEXT)
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
            result: dict[str, Any] = await client.call(lambda d: d.request_job(resolved))
            return result

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


@cli.command("cancel-job", context_settings=CONTEXT)
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


@cli.command(context_settings=CONTEXT)
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
            snapshot = conn.run(lambda c: c.topology())
            if as_json:
                print_json(_inspect_json(snapshot))
            else:
                console, _ = make_console(False)
                console.print(render_topology(snapshot, max_task_executors=50))
                console.print(render_jobs(snapshot))
            return
        console, live_enabled = make_console(False)

        async def body(client: ClusterClient) -> None:
            live = LiveConsole(console) if live_enabled else None
            if live is not None:
                live.start()
            try:
                with trio.open_signal_receiver(2, 15) as signals:
                    async with trio.open_nursery() as nursery:

                        async def stop_on_signal() -> None:
                            async for _ in signals:
                                nursery.cancel_scope.cancel()

                        nursery.start_soon(stop_on_signal)
                        while True:
                            snapshot = await client.topology()
                            if live is not None:
                                live.update(
                                    snapshot,
                                    snapshot.get("events", []),
                                    snapshot.get("rpc"),
                                    {"scenario": conn.address, "clock": "real"},
                                )
                            else:
                                console.print(render_topology(snapshot))
                            await trio.sleep(1.0)
            finally:
                if live is not None:
                    live.stop()

        conn.run(body)


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


@cli.command(context_settings=CONTEXT)
@client_options
def stop(conn: Connection) -> None:
    """Ask the cluster to shut down; exits 0 once it has.

    \b
    Example:
      minicluster stop --address tcp://127.0.0.1:6123
    """
    with reported():

        async def body(client: ClusterClient) -> None:
            await client.call(lambda d: d.shutdown_cluster())
            with trio.move_on_after(conn.timeout):
                while True:
                    try:
                        await client.leaders()
                    except Exception:
                        return
                    await trio.sleep(0.1)
            fail(f"the cluster at {conn.address} did not stop within {conn.timeout:g} s")

        conn.run(body)
        click.echo("cluster stopped")


@cli.command("task-executor", context_settings=CONTEXT)
@click.option(
    "--join", "join", type=ADDRESS, required=True, help="The cluster to join, tcp://HOST:PORT."
)
@click.option("--slots", type=SLOTS, default=2, show_default=True)
@click.option("--host", type=HOST, default="127.0.0.1", show_default=True)
@click.option("--port", type=PORT, default=0, show_default=True, help="0 picks a free port.")
@click.option(
    "--id",
    "resource_id",
    type=TASK_EXECUTOR_ID,
    help="The TaskExecutor's id (default: te-<random>).",
)
@cluster_duration_options("task-executor")
@secret_option
@tls_options
def task_executor(
    join: str,
    slots: int,
    host: str,
    port: int,
    resource_id: str | None,
    secret_file: str | None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    tls_ca: str | None = None,
    **durations: Any,
) -> None:
    """Run one TaskExecutor in this process, joining a running cluster.

    It registers at the cluster's ResourceManager (retrying with backoff until it is there),
    serves its slots, follows leader changes, and deregisters when stopped (Ctrl-C, SIGTERM).

    \b
    Example:
      minicluster task-executor --join tcp://127.0.0.1:6123 --slots 4 --id te-extra
    """
    with reported():
        secret = read_secret(secret_file)
        resource_id = resource_id or f"te-{uuid.uuid4().hex[:6]}"
        _check_heartbeat(durations)
        config = ClusterConfig(**durations)
        from minicluster.serve import join_cluster

        def on_ready(te: Any) -> None:
            click.echo(f"task executor {resource_id} serving at {te.address}, joining {join}")
            sys.stdout.flush()

        def on_event(event: Event) -> None:
            click.echo(format_event_line(event.as_dict()))
            sys.stdout.flush()

        with serving_errors(host, port):
            outcome = trio.run(
                lambda: join_cluster(
                    cluster_address=join,
                    resource_id=resource_id,
                    slots=slots,
                    host=host,
                    port=port,
                    secret=secret,
                    tls=tls_config(tls_cert, tls_key, tls_ca),
                    config=config,
                    on_ready=on_ready,
                    on_event=on_event,
                )
            )
        if outcome.startswith("failed: "):
            fail(f"task executor {resource_id} gave up: {outcome[len('failed: ') :]}")
        click.echo(f"task executor {resource_id} stopped", err=True)


# --- scenarios ---------------------------------------------------------------------------


@cli.command("run-scenario", context_settings=CONTEXT)
@click.argument("scenario_file", type=click.Path(dir_okay=False))
@click.option("--seed", type=int, help="Overrides the file's seed; same seed, same run.")
@click.option("--clock", type=click.Choice(["virtual", "real"]), help="Overrides the file's clock.")
@click.option(
    "--report", "report_file", type=click.Path(dir_okay=False), help="Write a JSON report."
)
@click.option(
    "--trace",
    "trace_file",
    type=click.Path(dir_okay=False),
    help="Write one JSON line per RPC message.",
)
@click.option(
    "--speed",
    type=SPEED,
    default=None,
    help="Virtual seconds per real second in the live view (0.01 to 10,000), or 'max'.",
)
@click.option("--no-live", is_flag=True, help="Plain lines instead of the live view.")
def run_scenario(
    scenario_file: str,
    seed: int | None,
    clock: str | None,
    report_file: str | None,
    trace_file: str | None,
    speed: float | str | None,
    no_live: bool,
) -> None:
    """Run a scenario file on an in-process cluster and print a summary.

    Exits 0 when every wait and expect held, 1 when one did not, 2 when the file is invalid.

    \b
    Example:
      minicluster run-scenario scenarios/taskexecutor-crash.yaml --seed 7 --report out.json
    """
    with reported():
        from minicluster.scenario import load_scenario

        from .scenario_view import run_with_view

        scenario = load_scenario(scenario_file)
        for warning in scenario.warnings:
            click.echo(f"minicluster: warning: {warning}", err=True)
        pace = speed if isinstance(speed, float) else None
        result = run_with_view(
            scenario,
            seed=seed,
            clock=clock,
            report_file=report_file,
            trace_file=trace_file,
            no_live=no_live,
            speed=pace,
            speed_given=speed is not None,
        )
        if not result.passed:
            failure = result.failure
            detail = (
                f"step {failure.index + 1} ({failure.kind}): {failure.message}" if failure else ""
            )
            fail(f"scenario {scenario.name} failed at {detail}", EXIT_FAILED)


from .simulate_cmd import simulate  # noqa: E402 - a command of its own module

cli.add_command(simulate)


def main() -> None:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    cli(prog_name="minicluster")
