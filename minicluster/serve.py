"""Long-running processes: a cluster serving on TCP (`minicluster start`) and a TaskExecutor
joining one from another process (`minicluster task-executor --join`)."""

from __future__ import annotations

import random
import signal
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from minicluster.cluster import ClusterConfig, MiniCluster
from minicluster.cluster.context import ClusterContext, EventLog, RemoteHaServices
from minicluster.cluster.gateways import ClusterGateway
from minicluster.cluster.taskexecutor import TaskExecutor
from minicluster.rpc import RpcError, open_rpc_service
from minicluster.rpc.tls import TlsConfig

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


async def _until_signal(signals: Any, cancel_scope: trio.CancelScope) -> None:
    async for _ in signals:
        cancel_scope.cancel()
        return


async def serve_cluster(
    *,
    host: str,
    port: int,
    task_executors: int,
    slots_per_executor: int,
    rpc: str,
    config: ClusterConfig,
    secret: bytes | None,
    tls: TlsConfig | None,
    on_ready: Callable[[MiniCluster], None],
    on_tick: Callable[[MiniCluster], None],
    tick_interval: float = 0.25,
    background: Callable[[], Awaitable[None]] | None = None,
    rest_port: int | None = None,
    on_rest_ready: Callable[[str], None] | None = None,
) -> str:
    """Serve until Ctrl-C, SIGTERM or `shutdown_cluster`; returns why it stopped.
    `background` runs alongside for as long as the cluster serves (an output writer, say).
    With `rest_port`, Flink's REST API and the dashboard are served on the same host (a task
    of this nursery, ended with the cluster); it listens before `on_ready` is called, and
    `on_rest_ready` gets its URL right after."""
    reason = "stopped by a signal"
    async with MiniCluster(
        task_executors,
        slots_per_executor,
        rpc=rpc,
        config=config,
        host=host,
        port=port,
        secret=secret,
        tls=tls,
    ) as cluster:
        # catch the signals before saying we are ready: a SIGTERM right after the ready line
        # must shut down cleanly, not kill the process
        with trio.open_signal_receiver(*STOP_SIGNALS) as signals, trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                rest_url = None
                if rest_port is not None:
                    from minicluster.rest import serve_rest

                    rest_url = await nursery.start(serve_rest, cluster, host, rest_port)
                on_ready(cluster)
                if rest_url is not None and on_rest_ready is not None:
                    on_rest_ready(rest_url)
                nursery.start_soon(_until_signal, signals, scope)

                async def shutdown_requested() -> None:
                    nonlocal reason
                    await cluster.shutdown_requested.wait()
                    reason = "stopped by a shutdown request"
                    scope.cancel()

                nursery.start_soon(shutdown_requested)
                if background is not None:
                    nursery.start_soon(background)
                while True:
                    on_tick(cluster)
                    await trio.sleep(tick_interval)
        on_tick(cluster)
    return reason


async def join_cluster(
    *,
    cluster_address: str,
    resource_id: str,
    slots: int,
    host: str,
    port: int,
    secret: bytes | None,
    tls: TlsConfig | None,
    config: ClusterConfig,
    on_ready: Callable[[TaskExecutor], None],
    on_event: Callable[[Any], None],
) -> str:
    """Run one TaskExecutor in this process, serving on TCP, registered at the cluster's
    ResourceManager (found and followed through the cluster's `leaders()`)."""
    async with (
        open_rpc_service(
            host, port, secret=secret, ask_timeout=config.rpc_timeout, tls=tls
        ) as service,
        trio.open_nursery() as nursery,
    ):

        async def fetch_leaders() -> Any:
            gateway = await service.connect(
                f"{cluster_address.rstrip('/')}/cluster", ClusterGateway, timeout=2.0
            )
            return await gateway.leaders()

        events = EventLog()
        events.record_rpc = False
        events.subscribers.append(on_event)
        rng = random.Random(config.seed)
        ha = RemoteHaServices(
            rng, nursery, fetch_leaders, interval=min(1.0, config.heartbeat_interval)
        )
        context = ClusterContext(config, rng, ha, events)
        stop = trio.CancelScope()
        # a fatal error (registration timeout or rejection) ends the process, as in Flink
        te = TaskExecutor(
            service, context, resource_id, slots, on_fatal_error=lambda _: stop.cancel()
        )
        te.start()
        with trio.open_signal_receiver(*STOP_SIGNALS) as signals, stop as scope:
            on_ready(te)
            nursery.start_soon(_until_signal, signals, scope)
            await trio.sleep_forever()
        if te.fatal_error is not None:
            await te.close()
            nursery.cancel_scope.cancel()
            return f"failed: {te.fatal_error}"
        # graceful: tell the ResourceManager we are going, then stop
        try:
            with trio.move_on_after(2):
                await te.call_async(te.disconnect_gracefully)
                await trio.sleep(0.05)  # let the goodbye leave
        except RpcError:
            pass
        await te.close()
        nursery.cancel_scope.cancel()
    return "stopped"
