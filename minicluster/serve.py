"""Long-running processes: a cluster serving on TCP (`minicluster start`) and a TaskExecutor
joining one from another process (`minicluster task-executor --join`)."""

from __future__ import annotations

import contextlib
import random
import signal
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from minicluster.client import unreachable
from minicluster.cluster import ClusterConfig, MiniCluster
from minicluster.cluster.context import ClusterContext, EventLog, RemoteHaServices
from minicluster.cluster.gateways import ClusterGateway
from minicluster.cluster.taskexecutor import TaskExecutor
from minicluster.rpc import ForeignPeerError, RpcError, open_rpc_service
from minicluster.rpc.tls import TlsConfig

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
INTERRUPTED = "interrupted by Ctrl-C"  # the reason a serve returns for SIGINT: exit 130
_CAUSES = {  # why a serve ended, as its TaskExecutors hear it
    "stopped by a shutdown request": "the cluster was stopped (minicluster stop)",
    "stopped by a signal": "the cluster process was stopped by a signal",
    INTERRUPTED: "the cluster process was interrupted (Ctrl-C)",
}
NOTICE_TIMEOUT = 2.0
# A TaskExecutor believes the cluster's notice that it stops when the cluster is gone within
# this long after it: anyone can send the notice, so it alone ends nothing.
STOPPING_GRACE = 10.0  # how long a stopping cluster waits for its TaskExecutors to hear it


async def _until_signal(
    signals: Any, cancel_scope: trio.CancelScope, said: Callable[[str], None]
) -> None:
    async for signum in signals:
        said(INTERRUPTED if signum == signal.SIGINT else "stopped by a signal")
        cancel_scope.cancel()
        return


async def _tell_task_executors(cluster: MiniCluster, cause: str) -> None:
    """Tell the TaskExecutors of other processes that the cluster stops (`cluster_stopping`),
    all at once and for at most NOTICE_TIMEOUT: they exit instead of retrying for ever."""
    rm = cluster.resource_manager
    own = set(cluster.task_executors)
    try:
        records = await rm.call_async(
            lambda: [r for r in rm.task_executors.values() if r.resource_id not in own],
            timeout=NOTICE_TIMEOUT,
        )
    except RpcError:
        return  # no ResourceManager: nobody registered to tell

    async def tell(gateway: Any) -> None:
        with contextlib.suppress(RpcError):
            await gateway.cluster_stopping(cause)

    with trio.move_on_after(NOTICE_TIMEOUT):
        async with trio.open_nursery() as nursery:
            for record in records:
                nursery.start_soon(tell, record.gateway)


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

    def said(why: str) -> None:
        nonlocal reason
        reason = why

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
                nursery.start_soon(_until_signal, signals, scope, said)

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
        await _tell_task_executors(cluster, _CAUSES.get(reason, reason))
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
    join_timeout: float = 60.0,
    on_retry: Callable[[str], None] | None = None,
) -> str:
    """Run one TaskExecutor in this process, serving on TCP, registered at the cluster's
    ResourceManager (found and followed through the cluster's `leaders()`).

    Returns why it ended: "stopped" (a signal), INTERRUPTED (Ctrl-C), "cluster stopped: ..."
    (the cluster said so, then was gone) or "failed: ..." (given up). The cluster unreachable
    for longer than `join_timeout` (when joining, or after losing it) is a failure; each failed
    attempt is said through `on_retry`, with the pause before the next (1 s doubling to 10 s).
    """
    outcome = "stopped"
    stop = trio.CancelScope()

    def end(why: str) -> None:
        nonlocal outcome
        if not stop.cancel_called:
            outcome = why
            stop.cancel()

    async with (
        open_rpc_service(
            host, port, secret=secret, ask_timeout=config.rpc_timeout, tls=tls
        ) as service,
        trio.open_nursery() as nursery,
    ):
        unreachable_since: float | None = None
        pause = 1.0
        # the cluster's word that it stops, and when: believed once the cluster is gone
        stopping: tuple[str, float] | None = None

        def cluster_stopping(cause: str) -> None:
            nonlocal stopping
            stopping = (cause, trio.current_time())

        async def fetch_leaders() -> Any:
            """The leaders, trying until the cluster answers; gives up after join_timeout."""
            nonlocal unreachable_since, pause
            while True:
                try:
                    gateway = await service.connect(
                        f"{cluster_address.rstrip('/')}/cluster",
                        ClusterGateway,
                        timeout=min(2.0, join_timeout),
                    )
                    leaders = await gateway.leaders()
                except ForeignPeerError as exc:
                    end(f"failed: {exc}")
                    await trio.sleep_forever()
                except (RpcError, OSError) as exc:
                    now = trio.current_time()
                    if stopping is not None and now - stopping[1] <= STOPPING_GRACE:
                        end(f"cluster stopped: {stopping[0]}")
                        await trio.sleep_forever()
                    if unreachable_since is None:
                        unreachable_since = now
                    left = join_timeout - (now - unreachable_since)
                    why = unreachable(cluster_address, exc)
                    if left <= 0:
                        end(
                            f"failed: the cluster stayed unreachable for {join_timeout:g} s "
                            f"(--join-timeout): {why}"
                        )
                        await trio.sleep_forever()
                    wait = min(pause, left)
                    if on_retry is not None:
                        on_retry(f"{why}; retrying in {wait:.2g} s")
                    await trio.sleep(wait)
                    pause = min(pause * 2, 10.0)
                    continue
                unreachable_since, pause = None, 1.0
                return leaders

        events = EventLog()
        events.record_rpc = False
        events.subscribers.append(on_event)
        rng = random.Random(config.seed)
        ha = RemoteHaServices(
            rng, nursery, fetch_leaders, interval=min(1.0, config.heartbeat_interval)
        )
        context = ClusterContext(config, rng, ha, events)
        # a fatal error (registration timeout or rejection) ends the process, as in Flink
        te = TaskExecutor(
            service,
            context,
            resource_id,
            slots,
            on_fatal_error=lambda cause: end(f"failed: {cause}"),
            on_cluster_stopping=cluster_stopping,
        )
        te.start()

        with trio.open_signal_receiver(*STOP_SIGNALS) as signals, stop as scope:
            on_ready(te)

            def said(why: str) -> None:
                nonlocal outcome
                outcome = INTERRUPTED if why == INTERRUPTED else "stopped"

            nursery.start_soon(_until_signal, signals, scope, said)
            await trio.sleep_forever()
        if outcome.startswith(("failed: ", "cluster stopped: ")):
            await te.close()
            nursery.cancel_scope.cancel()
            return outcome
        # graceful: tell the ResourceManager we are going, then stop
        try:
            with trio.move_on_after(2):
                await te.call_async(te.disconnect_gracefully)
                await trio.sleep(0.05)  # let the goodbye leave
        except RpcError:
            pass
        await te.close()
        nursery.cancel_scope.cancel()
    return outcome
