"""`minicluster start` and `minicluster task-executor`: the commands that serve a cluster, or one
TaskExecutor joining one, in this process until stopped.

Registered in cli/main.py with ``cli.add_command``. Only parsing, output and exit codes live
here; the serving is minicluster.serve.
"""

from __future__ import annotations

import errno
import socket
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Any

import click
import trio

from minicluster.cluster import ClusterConfig, MiniCluster
from minicluster.cluster.context import Event
from minicluster.console import LiveConsole, make_console
from minicluster.limits import CLUSTER_DURATIONS, MAX_TASK_EXECUTORS
from minicluster.scenario import format_duration
from minicluster.serve import INTERRUPTED

from .allocator import tune_allocator
from .errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE, fail, reported
from .lines import LinePrinter, now_stamp, wall_clock_line
from .options import (
    CONTEXT,
    SLOTS,
    cluster_duration_options,
    secret_option,
    tls_config,
    tls_options,
)
from .params import ADDRESS, HOST, PORT, POSITIVE_DURATION, TASK_EXECUTOR_ID, Count
from .secrets import read_secret


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


@contextmanager
def rest_errors() -> Iterator[None]:
    """The REST API's port cannot be had: say so, naming --rest-port."""
    from minicluster.rest import RestBindError

    try:
        yield
    except (RestBindError, BaseExceptionGroup) as exc:
        leaf: BaseException = exc
        while isinstance(leaf, BaseExceptionGroup) and len(leaf.exceptions) == 1:
            leaf = leaf.exceptions[0]
        if isinstance(leaf, RestBindError):
            in_use = leaf.error.errno == errno.EADDRINUSE
            fail(
                f"{leaf}; choose another --rest-port, --rest-port 0 for a free one, or --no-rest",
                EXIT_FAILED if in_use else EXIT_USAGE,
            )
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


@click.command(context_settings=CONTEXT)
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
@click.option(
    "--rest-port",
    type=PORT,
    default=8081,
    show_default=True,
    help="Port of Flink's REST API and the web dashboard, on --host; 0 picks a free port.",
)
@click.option("--no-rest", is_flag=True, help="Serve no REST API and no dashboard.")
@click.option("--no-live", is_flag=True, help="Plain event lines instead of the live view.")
@click.option(
    "--log-file",
    type=click.Path(dir_okay=False),
    help="Append every event to this file, one line each, with wall-clock timestamps.",
)
@click.pass_context
def start(ctx: click.Context, /, **options: Any) -> None:
    """Start a cluster (Dispatcher, ResourceManager, TaskExecutors) serving on TCP.

    Prints `cluster ready at tcp://HOST:PORT` once it accepts submissions, then
    `REST API and dashboard at http://HOST:PORT` (unless --no-rest), then serves until
    Ctrl-C, SIGTERM or `minicluster stop`.

    \b
    Example:
      minicluster start --port 6123 --task-executors 3 --heartbeat-timeout 5s
    """
    tune_allocator()  # this process is the command's own: see cli/allocator.py
    with reported():
        settings = _start_settings(ctx, options)
        secret = read_secret(options["secret_file"])
        tls = tls_config(options["tls_cert"], options["tls_key"], options["tls_ca"])
        if tls is not None and tls.cert is None:
            fail("serving TLS needs --tls-cert and --tls-key", EXIT_USAGE)
        log = _open_log(options["log_file"])
        console, live_enabled = make_console(options["no_live"], stderr=True)
        live = LiveConsole(console) if live_enabled else None
        printer = None if live_enabled else LinePrinter()

        def on_ready(cluster: MiniCluster) -> None:
            if log is not None:
                cluster.events.subscribers.append(_log_writer(log))
            click.echo(f"cluster ready at {cluster.address}")
            sys.stdout.flush()
            if live is not None:
                live.start()
            elif printer is not None:
                cluster.events.subscribers.append(_plain_event_printer(printer))

        def on_rest_ready(url: str) -> None:
            click.echo(f"REST API and dashboard at {url}")
            sys.stdout.flush()

        def on_tick(cluster: MiniCluster) -> None:
            if log is not None:
                log.flush()
            if live is not None:
                # a synchronous refresh: the endpoints' public snapshot methods, in-process
                snapshot = cluster.snapshot(event_limit=60)
                live.update(snapshot, snapshot.events, snapshot.rpc, None)

        from minicluster.serve import serve_cluster

        try:
            with rest_errors(), serving_errors(options["host"], options["port"]):
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
                        rest_port=None if options["no_rest"] else options["rest_port"],
                        on_rest_ready=on_rest_ready,
                    )
                )
        finally:
            if live is not None:
                live.stop()
            if log is not None:
                log.close()
        # Ctrl-C is how a person ends a serving cluster, as SIGTERM and `stop` are: a clean
        # shutdown, so exit 0 (scripts that run `start` rely on it); one line says why it ended
        if reason == INTERRUPTED:
            click.echo("minicluster: interrupted; the cluster shut down cleanly.", err=True)
            return
        click.echo(f"cluster {reason}; shut down cleanly", err=True)


def _open_log(path: str | None) -> IO[str] | None:
    if path is None:
        return None
    try:
        return open(path, "a", encoding="utf-8")
    except OSError as exc:
        fail(f"cannot write the log file {path}: {exc.strerror}", EXIT_USAGE)


def _log_writer(log: IO[str]) -> Callable[[Event], None]:
    def write(event: Event) -> None:
        log.write(wall_clock_line(event.as_dict()) + "\n")

    return write


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
        printer.put(wall_clock_line(event.as_dict()))

    return show


@click.command("task-executor", context_settings=CONTEXT)
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
@click.option(
    "--join-timeout",
    type=POSITIVE_DURATION,
    default="60s",
    show_default=True,
    help="Give up (exit 1) when the cluster stays unreachable this long, joining or later.",
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
    join_timeout: float,
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
    tune_allocator()  # this process is the command's own: see cli/allocator.py
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
            say(wall_clock_line(event.as_dict()))

        def on_retry(why: str) -> None:
            say(f"[{now_stamp()}] registration {resource_id}: {why}")

        def say(line: str) -> None:
            click.echo(line)
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
                    join_timeout=join_timeout,
                    on_retry=on_retry,
                )
            )
        if outcome.startswith("failed: "):
            fail(f"task executor {resource_id} gave up: {outcome.removeprefix('failed: ')}")
        if outcome == INTERRUPTED:
            fail(f"interrupted; task executor {resource_id} stopped", EXIT_INTERRUPTED)
        if outcome.startswith("cluster stopped: "):
            cause = outcome.removeprefix("cluster stopped: ")
            click.echo(f"task executor {resource_id} stopped: {cause}", err=True)
            return
        click.echo(f"task executor {resource_id} stopped", err=True)
