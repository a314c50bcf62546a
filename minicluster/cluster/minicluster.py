"""MiniCluster: a whole cluster in one process, as an async context manager.

Embedded HA services, the ResourceManager, the Dispatcher (with a JobMaster per job) and N
TaskExecutors, on one shared in-process RPC service or on one TCP service per component. It
also injects the faults a simulator needs: kill, stop, partition, fail over, fail a task.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from typing import Any

import trio

from minicluster.rpc import FencingTokenError, RpcService, open_rpc_service
from minicluster.rpc.tls import TlsConfig

from .components import (
    DISPATCHER,
    RESOURCE_MANAGER,
    endpoint_of,
    task_executor_endpoint,
)
from .context import (
    ClusterConfig,
    ClusterContext,
    Event,
    EventLog,
    HaServices,
)
from .dispatcher import ClusterEndpoint, Dispatcher, JobStore, build_cluster_snapshot
from .gateways import DispatcherGateway
from .model import JobGraph, JobStatus
from .resourcemanager import ResourceManager
from .snapshot import SNAPSHOT_QUERIES, ClusterSnapshot, TaskExecutorSnapshot
from .taskexecutor import TaskExecutor
from .trace_detail import message_detail


class _Tracer:
    """Turns every message the RPC layer handles into an event and a statistic."""

    def __init__(self, events: EventLog) -> None:
        self.events = events

    def message(
        self,
        sender: str | None,
        receiver: str,
        method: str,
        is_ask: bool,
        error: BaseException | None,
        args: Sequence[Any] = (),
    ) -> None:
        if method in SNAPSHOT_QUERIES:
            return  # an observer's query, not cluster protocol: no event, count or trace
        events = self.events
        events.rpc_calls += 1
        events.by_method[method] += 1
        reason = ""
        if isinstance(error, FencingTokenError):
            events.fencing_rejections += 1
            kind, outcome = "fencing", "rejected: stale fencing token"
            reason = str(error)  # names both tokens: the one expected and the one carried
        else:
            kind = "rpc" if is_ask else "tell"
            outcome = "ok" if error is None else f"error: {type(error).__name__}"
        if events.record_rpc or kind == "fencing":
            detail = message_detail(method, args) if events.record_detail else None
            events.emit(
                Event(events.now(), kind, sender, receiver, method, outcome, reason, detail)
            )
        elif events.watchers:
            events.changed()

    def latency(self, method: str, seconds: float) -> None:
        if method not in SNAPSHOT_QUERIES:
            self.events.latencies[method].append(seconds)

    def dropped(self, sender: str | None, receiver: str, method: str, is_ask: bool) -> None:
        events = self.events
        if events.record_rpc and method not in SNAPSHOT_QUERIES:
            events.emit(Event(events.now(), "dropped", sender, receiver, method, "dropped"))


@contextmanager
def _seeded_trio_scheduler(seed: int | None) -> Iterator[None]:
    """Make trio's scheduling repeatable for a seeded run on a virtual clock, for the run only.

    trio runs the tasks that became runnable together in an order that depends on memory
    addresses (timers due at the same instant) and on a random source. Its deterministic mode,
    the one Hypothesis switches on for trio tests, orders them by creation and shuffles with
    that source, which we seed. Both are private to trio and process-wide: they are set when
    the seeded cluster starts and put back as they were when it stops, so a library user's
    other trio code is not changed behind their back. Without them a seeded run still works,
    it just may not repeat to the event.
    """
    try:
        from trio._core import _run
    except ImportError:  # pragma: no cover
        yield
        return
    if seed is None:
        yield
        return
    had_flag = hasattr(_run, "_ALLOW_DETERMINISTIC_SCHEDULING")
    flag = getattr(_run, "_ALLOW_DETERMINISTIC_SCHEDULING", None)
    rng = getattr(_run, "_r", None)
    state = rng.getstate() if isinstance(rng, random.Random) else None
    if had_flag:
        _run._ALLOW_DETERMINISTIC_SCHEDULING = True  # type: ignore[misc]
    if isinstance(rng, random.Random):
        rng.seed(seed)
    try:
        yield
    finally:
        if had_flag:
            _run._ALLOW_DETERMINISTIC_SCHEDULING = flag  # type: ignore[misc,assignment]
        if isinstance(rng, random.Random) and state is not None:
            rng.setstate(state)


def stream(seed: int | None, purpose: str) -> random.Random:
    """A random stream of its own for one purpose, derived from the seed (unseeded: random)."""
    return random.Random(f"{seed}/{purpose}") if seed is not None else random.Random()


class MiniCluster:
    def __init__(
        self,
        task_executors: int | list[tuple[str, int]] = 2,
        slots_per_executor: int = 2,
        rpc: str = "shared",
        config: ClusterConfig | None = None,
        host: str | None = None,
        port: int = 0,
        secret: bytes | None = None,
        tls: TlsConfig | None = None,
    ) -> None:
        if rpc not in ("shared", "dedicated"):
            raise ValueError(f"rpc must be 'shared' or 'dedicated', not {rpc!r}")
        self.config = config or ClusterConfig()
        if isinstance(task_executors, int):
            task_executors = [(f"te-{i + 1}", slots_per_executor) for i in range(task_executors)]
        self._initial_tes = task_executors
        self.slots_per_executor = slots_per_executor
        self.rpc_mode = rpc
        self.host = host
        self.port = port
        self.secret = secret
        self.tls = tls
        # independent streams per purpose, all derived from the seed: ids (allocations,
        # executions, sessions) and fencing tokens never draw from one another, so a job id or
        # an allocation id never equals a fencing token
        self.rng = stream(self.config.seed, "ids")
        self.token_rng = stream(self.config.seed, "tokens")
        self.events = EventLog()
        self.task_executors: dict[str, TaskExecutor] = {}
        self.te_states: dict[str, str] = {}  # killed / stopped ones stay listed
        self.killed: set[str] = set()
        # faults, by endpoint id (components.py): a message is checked without translating
        # its sender and receiver
        self._killed_endpoints: set[str] = set()
        self.partitions: dict[frozenset[str], float] = {}
        self.store = JobStore()
        self.shutdown_requested = trio.Event()
        self._te_count = 0
        self._services: list[RpcService] = []

    # --- set-up and tear-down ---------------------------------------------------------------

    @asynccontextmanager
    async def _running(self) -> AsyncIterator[MiniCluster]:
        self.events.begin()
        async with AsyncExitStack() as stack:
            stack.enter_context(_seeded_trio_scheduler(self.config.seed))
            nursery = await stack.enter_async_context(trio.open_nursery())
            self._nursery = nursery
            self.ha = HaServices(self.token_rng, nursery, self.config.leader_notification_delay)
            self.context = ClusterContext(self.config, self.rng, self.ha, self.events)
            self._stack = stack
            if self.rpc_mode == "shared":
                service = await self._open_service(self.host, self.port)
                self.dispatcher_service = self.rm_service = self._shared = service
            else:
                self.dispatcher_service = await self._open_service(
                    self.host or "127.0.0.1", self.port
                )
                self.rm_service = await self._open_service("127.0.0.1", 0)
            self._start_resource_manager()
            self._start_dispatcher()
            self.cluster_endpoint = ClusterEndpoint(
                self.dispatcher_service, self.context, self.snapshot
            )
            self.cluster_endpoint.start()
            for resource_id, slots in self._initial_tes:
                await self.add_task_executor(resource_id, slots)
            try:
                yield self
            finally:
                nursery.cancel_scope.cancel()

    async def _open_service(self, host: str | None, port: int) -> RpcService:
        service = await self._stack.enter_async_context(
            open_rpc_service(
                host,
                port,
                ask_timeout=self.config.rpc_timeout,
                secret=self.secret,
                tls=self.tls if host is not None else None,
                name=f"minicluster-{len(self._services) + 1}",
            )
        )
        service.tracer = _Tracer(self.events)
        service.message_filter = self._allows
        self._services.append(service)
        return service

    async def _open_task_executor_service(self) -> RpcService:
        """A TCP service of its own for a TaskExecutor (dedicated mode), living in a task of
        the cluster's nursery: a TaskExecutor may be added from any task (a scenario step),
        and its service must nest in the cluster, not in whoever asked."""
        service: RpcService = await self._nursery.start(self._serve_task_executor_service)
        return service

    async def _serve_task_executor_service(
        self, *, task_status: trio.TaskStatus[RpcService] = trio.TASK_STATUS_IGNORED
    ) -> None:
        async with open_rpc_service(
            "127.0.0.1",
            0,
            ask_timeout=self.config.rpc_timeout,
            secret=self.secret,
            tls=self.tls,
            name=f"minicluster-{len(self._services) + 1}",
        ) as service:
            service.tracer = _Tracer(self.events)
            service.message_filter = self._allows
            self._services.append(service)
            task_status.started(service)
            await trio.sleep_forever()

    async def __aenter__(self) -> MiniCluster:
        self._cm = self._running()
        return await self._cm.__aenter__()

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        return await self._cm.__aexit__(*exc_info)

    @property
    def services(self) -> tuple[RpcService, ...]:
        """The RPC services the cluster opened, oldest first (for observers of asks)."""
        return tuple(self._services)

    @property
    def address(self) -> str:
        """Where clients find the cluster (the service hosting the `cluster` endpoint)."""
        return self.dispatcher_service.address

    # --- leaders ------------------------------------------------------------------------

    def _start_resource_manager(self) -> None:
        token = self.ha.new_token()
        self.resource_manager = ResourceManager(self.rm_service, self.context, token)
        self.resource_manager.start()
        self.ha.publish(RESOURCE_MANAGER, self.resource_manager.address, token)

    def _start_dispatcher(self) -> None:
        token = self.ha.new_token()
        self.dispatcher = Dispatcher(
            self.dispatcher_service,
            self.context,
            token,
            self.store,
            self.shutdown_requested.set,
            self,
            lambda: self.resource_manager.resource_overview(detail=False),
        )
        self.dispatcher.start()
        self.ha.publish(DISPATCHER, self.dispatcher.address, token)

    async def failover(self, component: str, job: uuid.UUID | None = None) -> uuid.UUID:
        """A new leader with a new fencing token; returns the token."""
        if component == "resource_manager":
            self.ha.revoke(RESOURCE_MANAGER)
            await self.resource_manager.close()
            self._start_resource_manager()
            token = self.resource_manager.fencing_token
        elif component == "dispatcher":
            self.ha.revoke(DISPATCHER)
            await self.dispatcher.close()
            self._start_dispatcher()
            token = self.dispatcher.fencing_token
        elif component == "job_master" and job is not None:
            await self.dispatcher.call_async(lambda: self.dispatcher.failover_job_master(job))
            record = self.store.jobs[job]
            assert record.job_master is not None
            token = record.job_master.fencing_token
        else:
            raise ValueError(f"cannot fail over {component!r}")
        self.context.emit("failover", f"{component} failed over: new fencing token {token}")
        return token

    # --- TaskExecutors --------------------------------------------------------------------

    async def add_task_executor(
        self, resource_id: str | None = None, slots: int | None = None
    ) -> TaskExecutor:
        self._te_count += 1
        resource_id = resource_id or f"te-{self._te_count}"
        if resource_id in self.task_executors:
            raise ValueError(f"TaskExecutor {resource_id} is already running")
        service = (
            self._shared if self.rpc_mode == "shared" else await self._open_task_executor_service()
        )
        te = TaskExecutor(
            service,
            self.context,
            resource_id,
            slots or self.slots_per_executor,
            on_fatal_error=lambda cause: self._nursery.start_soon(
                self._task_executor_gave_up, resource_id, te
            ),
        )
        self.task_executors[resource_id] = te
        self.te_states.pop(resource_id, None)
        self.killed.discard(resource_id)
        self._killed_endpoints.discard(task_executor_endpoint(resource_id))
        te.start()
        self.context.emit("state", f"TaskExecutor {resource_id} started")
        return te

    async def stop_task_executor(self, resource_id: str) -> None:
        """Graceful: it tells the ResourceManager it is going, then stops."""
        te = self._te(resource_id)
        await te.call_async(te.disconnect_gracefully)
        await te.close()
        del self.task_executors[resource_id]
        self.te_states[resource_id] = "stopped"
        self.context.emit("state", f"TaskExecutor {resource_id} stopped")

    async def kill_task_executor(self, resource_id: str) -> None:
        """A crash: from now on it answers nothing and says no goodbye."""
        te = self._te(resource_id)
        self.killed.add(resource_id)
        self._killed_endpoints.add(task_executor_endpoint(resource_id))
        await te.close()
        del self.task_executors[resource_id]
        self.te_states[resource_id] = "killed"
        self.context.emit("state", f"TaskExecutor {resource_id} killed")

    async def _task_executor_gave_up(self, resource_id: str, te: TaskExecutor) -> None:
        """A fatal error (registration timeout or rejection): the TaskExecutor stops, as its
        process would exit."""
        await te.close()
        if self.task_executors.get(resource_id) is te:
            del self.task_executors[resource_id]
            self.te_states[resource_id] = "failed"

    def _te(self, resource_id: str) -> TaskExecutor:
        te = self.task_executors.get(resource_id)
        if te is None:
            raise KeyError(f"no running TaskExecutor {resource_id!r}")
        return te

    # --- network faults -----------------------------------------------------------------

    def partition(self, a: str, b: str, duration: float) -> None:
        """Drop every message between components a and b (both ways) for `duration` s.

        Components are named as scenario files name them (te-1, resource_manager, dispatcher,
        job_master:<job name or id hex>)."""
        job_id_of = self.store.by_name.get
        self.partition_endpoints(
            endpoint_of(a, job_id_of), endpoint_of(b, job_id_of), duration, f"{a} and {b}"
        )

    def partition_endpoints(self, a: str, b: str, duration: float, label: str = "") -> None:
        """`partition`, for components given by endpoint id."""
        self.partitions[frozenset((a, b))] = trio.current_time() + duration
        self.context.emit(
            "partition", f"network partition between {label or f'{a} and {b}'} for {duration:g} s"
        )

    def _allows(self, sender: str | None, receiver: str, method: str) -> bool:
        if (not self._killed_endpoints and not self.partitions) or method in SNAPSHOT_QUERIES:
            return True
        killed = self._killed_endpoints
        if sender in killed or receiver in killed:
            return False
        if self.partitions and sender is not None:
            pair = frozenset((sender, receiver))
            until = self.partitions.get(pair)
            if until is not None:
                if trio.current_time() < until:
                    return False
                self.partitions.pop(pair, None)
        return True

    # --- jobs ---------------------------------------------------------------------------

    def dispatcher_gateway(self, caller: str = "client") -> DispatcherGateway:
        """The Dispatcher leader's gateway, in-process; `caller` names who calls in traces
        ("observer" for the scenario's conditions)."""
        return self.dispatcher_service.local_gateway(
            self.dispatcher, DispatcherGateway, self.dispatcher.fencing_token, caller=caller
        )

    async def submit_job(self, graph: JobGraph) -> uuid.UUID:
        result: uuid.UUID = await self.dispatcher_gateway().submit_job(graph)
        return result

    async def cancel_job(self, job_id: uuid.UUID) -> str:
        result: str = await self.dispatcher_gateway().cancel_job(job_id)
        return result

    def job_status(self, job_id: uuid.UUID) -> JobStatus:
        return self.store.jobs[job_id].status

    def job_id(self, name: str) -> uuid.UUID:
        return self.store.by_name[name]

    async def wait_for_job(self, job_id: uuid.UUID, timeout: float | None = None) -> JobStatus:
        record = self.store.jobs[job_id]
        with trio.fail_after(timeout if timeout is not None else float("inf")):
            await record.done.wait()
        return record.status

    async def fail_task(self, job_id: uuid.UUID, subtask: int, vertex: str | None = None) -> None:
        record = self.store.jobs[job_id]
        if record.job_master is None:
            raise ValueError(f"job {record.graph.name} has no running JobMaster")
        job_master = record.job_master
        await job_master.call_async(lambda: job_master.fail_task(vertex, subtask))

    async def wait_until(
        self, condition: Callable[[], bool], timeout: float, poll: float = 0.05
    ) -> bool:
        """Poll `condition` (cheap, on this task) until it holds or the timeout passes."""
        with trio.move_on_after(timeout):
            while not condition():
                await trio.sleep(poll)
            return True
        return condition()

    # --- what the views show ------------------------------------------------------------

    def free_slots(self) -> int:
        return sum(
            1
            for te in self.task_executors.values()
            for slot in te.slots
            if slot.state.value == "FREE"
        )

    def registered_task_executors(self) -> int:
        return len(self.resource_manager.task_executors)

    def task_executor_snapshots(self) -> tuple[TaskExecutorSnapshot, ...]:
        """This process's TaskExecutors through their public snapshot method, then those that
        were stopped, killed or failed (listed with their end, no slots)."""
        rows = [te.task_executor_snapshot() for te in self.task_executors.values()]
        rows.extend(
            TaskExecutorSnapshot(resource_id, None, state)
            for resource_id, state in self.te_states.items()
        )
        return tuple(rows)

    def snapshot(self, detail: bool = True, event_limit: int = 30) -> ClusterSnapshot:
        """The ClusterSnapshot, read synchronously in-process: each endpoint's public snapshot
        method, the same ones the gateway handlers answer with (for views whose refresh is a
        synchronous callback; asynchronous readers ask `request_cluster_snapshot`)."""
        dispatcher = self.dispatcher
        return build_cluster_snapshot(
            self.context,
            self,
            self.resource_manager.resource_overview(),
            dispatcher.job_snapshots(),
            {job_id: record.graph.name for job_id, record in self.store.jobs.items()},
            detail,
            event_limit,
        )
