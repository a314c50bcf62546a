"""Fuzz of the cluster's remote interfaces: every public method of every gateway is called over
real TCP, with the leaders' own fencing tokens (which anyone can read from `leaders()`), with
arguments built from the method's type hints that mix valid values with hostile ones, and after
each batch of calls the cluster must still be whole.

Arguments come from each parameter's annotation: a UUID is the id of a real job, a real fencing
token, an id the attacker reuses from call to call, or a random one; text is a real TaskExecutor
id or address, or odd text; a number is small, 2**64, 10**30, negative; a domain object is built
field by field the same way (so a JobGraph is sometimes valid and sometimes absurd); a list is
short or 10,000 long. One value in five is hostile whatever the annotation says: NaN, infinity,
1 MB of text, a list for a string, None, text for a UUID. So many calls pass the type checks and
reach the endpoints with valid but adversarial values: a slot request of a job that does not
exist, a registration under a taken id, a disconnect of a live TaskExecutor, a cancel.

Legitimate effects of those calls are allowed (a disconnected TaskExecutor registers again, a
cancelled job is CANCELED); what is not: a handler crashing (an error that is a bug, not a
refusal), an endpoint terminating with an error, a TaskExecutor that gives up, a job that never
ends or disappears, slots that stay taken, a view that does not answer, a normal job that no
longer runs. Seeded (derandomize) and bounded: a fixed number of batches, each calling every
method at least once; no shrinking (each example starts a cluster on TCP, shrinking would take
minutes), Hypothesis prints the failing batch's draws instead.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import math
import os
import types
import typing
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from operator import methodcaller
from typing import Any

import trio
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from minicluster.client import connect_cluster
from minicluster.cluster import ClusterConfig, JobGraph, JobStatus, JobVertex, MiniCluster
from minicluster.cluster.context import Event
from minicluster.cluster.gateways import (
    ClusterGateway,
    DispatcherGateway,
    JobMasterGateway,
    ResourceManagerGateway,
    TaskExecutorGateway,
)
from minicluster.cluster.model import JobEdge, RestartStrategy
from minicluster.rpc import (
    RecipientUnreachableError,
    RpcError,
    RpcGateway,
    RpcService,
    open_rpc_service,
)
from minicluster.rpc.errors import RemoteError
from minicluster.rpc.gateway import gateway_methods
from minicluster.rpc.serialization import dumps, loads

GATEWAYS: tuple[type[RpcGateway], ...] = (
    DispatcherGateway,
    ResourceManagerGateway,
    JobMasterGateway,
    TaskExecutorGateway,
    ClusterGateway,
)
HEARTBEAT_INTERVAL = 0.2
HEARTBEAT_TIMEOUT = 1.5
CONFIG = dict(
    heartbeat_interval=HEARTBEAT_INTERVAL,
    heartbeat_timeout=HEARTBEAT_TIMEOUT,
    rpc_timeout=3.0,
    slot_timeout=1.0,
    offer_timeout=2.0,
    slot_idle_timeout=1.0,
    registration_max_timeout=1.0,
    registration_error_delay=0.2,
    registration_refused_delay=0.2,
)
TASK_EXECUTORS, SLOTS = 2, 2
# Hypothesis examples, each a fresh cluster and one batch; set MINICLUSTER_GATEWAY_FUZZ_BATCHES
# for more, and MINICLUSTER_GATEWAY_FUZZ_RANDOM for new examples on every run
BATCHES = int(os.environ.get("MINICLUSTER_GATEWAY_FUZZ_BATCHES", "6"))
EXTRA_CALLS = 8  # at most this many calls per batch beyond one per method
CALL_TIMEOUT = 4.0  # an ask unanswered for this long is a finding
# a disrupted TaskExecutor must be registered again within this many heartbeat intervals
# (the RM's heartbeat timeout, the TaskExecutor's own, one registration, and slack)
SETTLE_INTERVALS = 30
SETTLE = SETTLE_INTERVALS * HEARTBEAT_INTERVAL
# errors that are refusals; any other error type a handler raises is a crash
CRASHES = frozenset(
    {
        "TypeError",
        "KeyError",
        "IndexError",
        "LookupError",
        "AttributeError",
        "OverflowError",
        "ArithmeticError",
        "ZeroDivisionError",
        "AssertionError",
        "RuntimeError",
        "RecursionError",
        "NotImplementedError",
        "UnboundLocalError",
        "NameError",
        "MemoryError",
    }
)


# --- values that print short, made when the call is sent --------------------------------


@dataclass(frozen=True)
class Big:
    """A large value: Hypothesis prints `Big('1 MiB of text')` instead of the megabyte."""

    what: str
    make: Callable[[], Any] = field(compare=False, repr=False)


@dataclass(frozen=True)
class Repeated:
    """A list of `count` copies of `item`."""

    item: Any
    count: int


@dataclass(frozen=True)
class Ref:
    """A value of the live cluster, looked up when the call is sent: the running job's id, a
    leader's fencing token or address (what `leaders()` and `topology()` tell anyone)."""

    role: str


def materialize(value: Any, resolve: Callable[[str], Any]) -> Any:
    if isinstance(value, Ref):
        return resolve(value.role)
    if isinstance(value, Big):
        return value.make()
    if isinstance(value, Repeated):
        return [materialize(value.item, resolve)] * value.count
    if isinstance(value, list):
        return [materialize(v, resolve) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        copy = object.__new__(type(value))
        for f in dataclasses.fields(value):
            object.__setattr__(copy, f.name, materialize(getattr(value, f.name), resolve))
        return copy
    return value


HOSTILE_SCALARS: list[Any] = [
    math.nan,
    math.inf,
    -math.inf,
    1e308,
    -1.0,
    2**64,
    10**30,
    -(2**63),
    -1,
    0,
    True,
    None,
    "",
    "not-a-uuid",
    "\x00\ud7ff\n",
    Big("1 MiB of text", lambda: "x" * (1 << 20)),
    Big("201 characters", lambda: "n" * 201),
    ["a", "list", "for", "a", "string"],
    [],
    {"a": "map"},
    b"\x00bytes",
    [[[[]]]],
]


def hostile() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.sampled_from(HOSTILE_SCALARS),
        st.uuids(),
        st.integers(),
        st.floats(),
        st.text(max_size=8),
    )


# --- valid-but-adversarial values from the type hints -------------------------------------

JOB_ID, JM_TOKEN, RM_TOKEN, DISPATCHER_TOKEN = (
    Ref("the running job"),
    Ref("its JobMaster's token"),
    Ref("the ResourceManager's token"),
    Ref("the Dispatcher's token"),
)
OWN_IDS = [uuid.UUID(int=i, version=4) for i in (1, 2, 3)]  # made up, reused from call to call
RESOURCE_IDS = [f"te-{i + 1}" for i in range(2)] + ["te-9"]
ADDRESSES = [
    Ref("te-1's address"),
    Ref("te-2's address"),
    Ref("its JobMaster's address"),
    Ref("the ResourceManager's address"),
    Ref("the Dispatcher's address"),
    Ref("a local address of te-1"),
    Ref("nobody at the cluster's address"),
    "tcp://127.0.0.1:1/taskexecutor-te-1",
    "not an address",
]


def uuids(name: str) -> st.SearchStrategy[Any]:
    everything: list[Any] = [JOB_ID, JM_TOKEN, RM_TOKEN, DISPATCHER_TOKEN, *OWN_IDS]
    preferred: list[Any]
    if name == "job_id":
        preferred = [JOB_ID]
    elif "token" in name:
        preferred = [JM_TOKEN, RM_TOKEN]
    else:
        preferred = OWN_IDS
    return st.one_of(st.sampled_from(preferred), st.sampled_from(everything), st.uuids(version=4))


def texts(name: str) -> st.SearchStrategy[Any]:
    odd = st.one_of(
        st.text(min_size=1, max_size=12), st.sampled_from(["map", "job", "region", "full"])
    )
    if name in ("resource_id", "task_executor"):
        return st.one_of(st.sampled_from(RESOURCE_IDS), odd)
    if "address" in name:
        return st.one_of(st.sampled_from(ADDRESSES), odd)
    return st.one_of(odd, st.sampled_from(RESOURCE_IDS + ADDRESSES))


def type_hints(obj: Any) -> dict[str, Any]:
    return typing.get_type_hints(obj)


def argument(annotation: Any, name: str, hostile_one_in: int = 6) -> st.SearchStrategy[Any]:
    """A value for a parameter or field: valid for its annotation, or (one in
    `hostile_one_in`) hostile whatever the annotation."""
    valid = valid_value(annotation, name)
    return st.integers(1, hostile_one_in).flatmap(lambda k: hostile() if k == 1 else valid)


def valid_value(annotation: Any, name: str) -> st.SearchStrategy[Any]:
    """Values that pass the wire's type check for `annotation`, chosen to hurt."""
    if annotation is Any:
        return hostile()
    if annotation is type(None) or annotation is None:
        return st.none()
    if annotation is bool:
        return st.booleans()
    if annotation is int:
        small = st.integers(0, 3)
        return st.one_of(
            small,
            small,
            small,
            st.sampled_from([-1, 2**31, 2**63 - 1, 2**64, 10**30, -(10**30), 10**9]),
        )
    if annotation is float:
        return st.sampled_from([0.0, 0.05, 0.5, 1e308, 5e-324, -1.0, 3600.0])
    if annotation is str:
        return texts(name)
    if annotation is uuid.UUID:
        return uuids(name)
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        return st.one_of(*(valid_value(a, name) for a in typing.get_args(annotation)))
    if origin is list:
        (item_type,) = typing.get_args(annotation)
        return st.one_of(
            st.lists(argument(item_type, name, 10), max_size=3),
            st.tuples(valid_value(item_type, name), st.sampled_from([1_025, 10_000])).map(
                lambda pair: Repeated(*pair)
            ),
        )
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return st.sampled_from(list(annotation))
    if annotation is JobGraph:
        return st.one_of(job_graphs(), job_graphs(), domain_object(JobGraph))
    if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
        return domain_object(annotation)
    raise AssertionError(f"no strategy for {annotation!r}: teach the fuzz this type")


def domain_object(cls: type) -> st.SearchStrategy[Any]:
    """An instance built field by field from its annotations: two in three with every field
    of its type (its own checks may still refuse a value), the third with hostile fields."""
    hints = type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    typed = st.fixed_dictionaries({n: valid_value(hints[n], n) for n in names})
    weird = st.fixed_dictionaries({n: argument(hints[n], n, 4) for n in names})
    return st.one_of(typed, typed, weird).map(lambda values: _build(cls, values))


def _build(cls: type, values: dict[str, Any]) -> Any:
    """An instance whatever its fields hold (no __init__, no checks)."""
    obj: Any = object.__new__(cls)
    for name, value in values.items():
        object.__setattr__(obj, name, value)
    return obj


def job_graphs() -> st.SearchStrategy[JobGraph]:
    """Valid jobs with adversarial values: the largest parallelism, 200-character names,
    durations of 1e308 s, failures in every attempt, a restart delay of an hour, the id of the
    running job."""
    vertex = st.builds(
        JobVertex,
        name=st.sampled_from(["map", "sink", "v" * 200]),
        parallelism=st.sampled_from([1, 2, 5, 32_768]),
        task_duration=st.sampled_from([0.0, 0.05, 1e308]),
        fail_subtasks=st.sampled_from([[], [0]]),
        fail_after=st.sampled_from([0.0, 0.01]),
        fail_attempts=st.sampled_from([0, 1, 1_000_000]),
    )
    vertices = st.lists(vertex, min_size=1, max_size=2, unique_by=lambda v: v.name)

    def graph(job_id: Any, vs: list[JobVertex], pointwise: bool, delay: float) -> JobGraph:
        edges = (
            [JobEdge(vs[0].name, vs[1].name, "pointwise" if pointwise else "all-to-all")]
            if len(vs) > 1
            else []
        )
        strategy = "full" if pointwise else "region"
        return JobGraph(job_id, "fuzzed", vs, edges, RestartStrategy(2, delay), strategy)

    return st.builds(
        graph,
        st.one_of(st.just(JOB_ID), st.uuids(version=4)),
        vertices,
        st.booleans(),
        st.sampled_from([0.0, 0.1, 3600.0]),
    )


# --- calls -------------------------------------------------------------------------------


class Method:
    """One gateway method: its name, kind and parameters with their annotations, in order."""

    def __init__(
        self,
        gateway: type[RpcGateway],
        name: str,
        is_ask: bool,
        parameters: tuple[tuple[str, Any], ...],
    ) -> None:
        self.gateway, self.name, self.is_ask, self.parameters = gateway, name, is_ask, parameters

    def __repr__(self) -> str:
        return f"{self.gateway.__name__}.{self.name}"

    def arguments(self) -> st.SearchStrategy[tuple[Any, ...]]:
        """Three calls in four pass the type checks (their domain objects may still be
        refused by their own checks); the fourth has one hostile argument, anywhere."""
        valid = [valid_value(annotation, name) for name, annotation in self.parameters]
        if not valid:
            return st.just(())

        def one_hostile(position: int) -> st.SearchStrategy[tuple[Any, ...]]:
            return st.tuples(*(hostile() if i == position else v for i, v in enumerate(valid)))

        well_typed = st.tuples(*valid)
        return st.one_of(
            well_typed,
            well_typed,
            well_typed,
            st.integers(0, len(valid) - 1).flatmap(one_hostile),
        )


def all_methods() -> list[Method]:
    """Every public method of every gateway, found as the RPC layer finds them: a method added
    to a gateway is fuzzed without a change here."""
    methods = []
    for gateway in GATEWAYS:
        for name, spec in gateway_methods(gateway).items():
            fn = getattr(gateway, name)
            hints = type_hints(fn)
            parameters = tuple(
                (p.name, hints.get(p.name, Any))
                for p in list(inspect.signature(fn).parameters.values())[1:]
            )
            methods.append(Method(gateway, name, spec.is_ask, parameters))
    return methods


METHODS = all_methods()


def victim_graph() -> JobGraph:
    """A job that runs through the batch, so that there is a JobMaster to call."""
    return JobGraph(
        uuid.uuid4(), "victim", [JobVertex("map", 2, 60.0)], restart=RestartStrategy(1000, 0.1)
    )


@dataclass
class Attacker:
    """A client on its own RPC service, connected to each endpoint with its leader's token;
    it keeps a job running (a new one when the last was cancelled) for JobMaster calls."""

    service: RpcService
    cluster: MiniCluster
    victims: list[uuid.UUID] = field(default_factory=list)
    proxies: dict[tuple[str, type[RpcGateway]], Any] = field(default_factory=dict)
    outcomes: Counter[str] = field(default_factory=Counter)
    crashes: list[str] = field(default_factory=list)
    submitted: list[uuid.UUID] = field(default_factory=list)
    leaders: dict[str, Any] = field(default_factory=dict)

    async def running_job(self) -> uuid.UUID:
        store = self.cluster.store
        victim = self.victims[-1] if self.victims else None
        if victim is None or store.jobs[victim].job_master is None:
            victim = await self.cluster.submit_job(victim_graph())
            self.victims.append(victim)
        return victim

    def resolve(self, role: str) -> Any:
        victim = self.victims[-1]
        leaders = self.leaders
        job_master = leaders["job_masters"].get(f"jobmaster-{victim.hex}") or {}
        te = self.cluster.task_executors
        return {
            JOB_ID.role: victim,
            JM_TOKEN.role: job_master.get("token"),
            RM_TOKEN.role: leaders["resource_manager"]["token"],
            DISPATCHER_TOKEN.role: leaders["dispatcher"]["token"],
            "te-1's address": te["te-1"].address if "te-1" in te else None,
            "te-2's address": te["te-2"].address if "te-2" in te else None,
            "its JobMaster's address": job_master.get("address"),
            "the ResourceManager's address": leaders["resource_manager"]["address"],
            "the Dispatcher's address": leaders["dispatcher"]["address"],
            "a local address of te-1": f"local://{self.cluster.dispatcher_service.name}"
            "/taskexecutor-te-1",
            "nobody at the cluster's address": f"{self.cluster.address}/nobody",
        }[role]

    async def target(self, gateway: type[RpcGateway], pick: int) -> Any:
        """The endpoint that serves `gateway` (the `pick`-th TaskExecutor or JobMaster)."""
        cluster_gateway = await self.proxy(self.cluster.address + "/cluster", ClusterGateway)
        self.leaders = await cluster_gateway.leaders()
        if gateway is DispatcherGateway:
            leader = self.leaders["dispatcher"]
        elif gateway is ResourceManagerGateway:
            leader = self.leaders["resource_manager"]
        elif gateway is JobMasterGateway:
            mine = f"jobmaster-{self.victims[-1].hex}"
            masters = sorted(self.leaders["job_masters"].items(), key=lambda kv: kv[0] != mine)
            if not masters:  # every job ended since running_job() looked (a cancel did it)
                raise RpcError("no JobMaster is elected right now")
            leader = masters[pick % len(masters)][1]
        elif gateway is TaskExecutorGateway:
            addresses = sorted(te.address for te in self.cluster.task_executors.values())
            return await self.proxy(addresses[pick % len(addresses)], gateway)
        else:
            return cluster_gateway
        return await self.proxy(leader["address"], gateway, leader["token"])

    async def proxy(
        self, address: str, gateway: type[RpcGateway], token: uuid.UUID | None = None
    ) -> Any:
        key = (address, gateway)
        known = self.proxies.get(key)
        if known is None or known._invoker.fencing_token != token or known._invoker.conn.closed:
            self.proxies[key] = await self.service.connect(address, gateway, token)
        return self.proxies[key]

    async def call(self, method: Method, pick: int, args: tuple[Any, ...]) -> None:
        label = f"{method}"
        await self.running_job()
        try:
            proxy = await self.target(method.gateway, pick)
        except RpcError as exc:
            if method.gateway is not JobMasterGateway:  # a JobMaster may end meanwhile
                self.crashes.append(f"cannot reach the endpoint of {label}: {exc}")
            return
        sent = tuple(materialize(a, self.resolve) for a in args)
        invoker = proxy._invoker
        try:
            with trio.fail_after(CALL_TIMEOUT):
                if method.is_ask:
                    result = await invoker.ask(method.name, sent, {}, CALL_TIMEOUT)
                else:
                    invoker.tell(method.name, sent, {})
                    # an ask behind it on the same connection: the tell was taken, or refused
                    # with a goodbye (a tell cannot be answered with an error)
                    result = await (await self.target(ClusterGateway, 0)).leaders()
        except trio.TooSlowError:
            self.crashes.append(f"no answer within {CALL_TIMEOUT:g} s: {label}{args!r:.300}")
            return
        except RemoteError as exc:  # a type the wire does not know: judged by its name
            self.outcomes[f"{label}: {exc.type_name}"] += 1
            if exc.type_name in CRASHES:
                self.crashes.append(f"{exc!s:.300} from {label}{args!r:.300}")
            return
        except RecipientUnreachableError as exc:
            if not invoker.conn.closed:  # the endpoint's answer: it could not reach someone
                self.outcomes[f"{label}: {type(exc).__name__}"] += 1
                return
            if "said goodbye" not in str(exc):
                self.crashes.append(f"connection lost: {exc!s:.300} from {label}{args!r:.300}")
            # a message that cannot be decoded (or answered) is refused as a whole, with a
            # goodbye: the next call opens a new connection
            self.outcomes[f"{label}: goodbye"] += 1
            return
        except Exception as exc:
            name = type(exc).__name__
            self.outcomes[f"{label}: {name}"] += 1
            if name in CRASHES or name == "RpcTimeoutError":
                self.crashes.append(f"{name}: {exc!s:.300} from {label}{args!r:.300}")
            return
        self.outcomes[f"{label}: {'ok' if method.is_ask else 'taken'}"] += 1
        if method.name == "submit_job" and isinstance(result, uuid.UUID):
            self.submitted.append(result)


# --- the cluster's invariants ---------------------------------------------------------------


def watch_handler_errors(cluster: MiniCluster) -> list[str]:
    """Every handler that raised an error of a crash type (asks and tells, from anyone)."""
    seen: list[str] = []

    def on_event(event: Event) -> None:
        outcome = event.outcome or ""
        if outcome.startswith("error: ") and outcome[len("error: ") :] in CRASHES:
            seen.append(f"{event.receiver}.{event.method}: {outcome}")

    cluster.events.subscribers.append(on_event)
    return seen


async def eventually(
    condition: Callable[[], bool],
    timeout: float,
    what: str,
    state: Callable[[], object] = lambda: "",
) -> None:
    with trio.move_on_after(timeout):
        while not condition():
            await trio.sleep(HEARTBEAT_INTERVAL / 4)
        return
    raise AssertionError(f"not within {timeout:g} s: {what} {state()}")


def task_executors_whole(cluster: MiniCluster) -> bool:
    rm = cluster.resource_manager
    names = {f"te-{i + 1}" for i in range(TASK_EXECUTORS)}
    return (
        set(cluster.task_executors) == names
        and all(te.is_running and te.registration_state == "registered" for te in tes(cluster))
        and set(rm.task_executors) == names
        and all(rm.task_executors[te.resource_id].address == te.address for te in tes(cluster))
    )


def tes(cluster: MiniCluster) -> list[Any]:
    return list(cluster.task_executors.values())


def slots_taken(cluster: MiniCluster) -> list[str]:
    """What still holds a slot, as the TaskExecutors and the ResourceManager see it."""
    rm = cluster.resource_manager
    taken = [
        f"{te.resource_id}/{slot.index} {slot.state.value} for job {slot.job_id}"
        for te in tes(cluster)
        for slot in te.slots
        if slot.state.value != "FREE"
    ]
    taken += [
        f"the ResourceManager counts {slot_id} {slot.state} for job {slot.job_id}"
        for slot_id, slot in rm.slots.items()
        if slot.state != "FREE"
    ]
    if len(rm.slots) != TASK_EXECUTORS * SLOTS:
        taken.append(f"the ResourceManager knows {len(rm.slots)} slots")
    taken += [f"the ResourceManager keeps requirements of job {j}" for j in rm.requirements]
    taken += [f"{te.resource_id} is connected to job {j}" for te in tes(cluster) for j in te.jobs]
    return taken


def endpoint_failures(cluster: MiniCluster) -> list[str]:
    endpoints = [
        cluster.resource_manager,
        cluster.dispatcher,
        cluster.cluster_endpoint,
        *tes(cluster),
    ]
    failures = [
        f"{e.endpoint_id}: {e.termination_error!r}"
        for e in endpoints
        if e.termination_error is not None or not e.is_running
    ]
    failures += [f"{name} is {state}" for name, state in cluster.te_states.items()]
    return failures


async def check_cluster_is_whole(cluster: MiniCluster, attacker: Attacker) -> None:
    """The invariants, allowing for the legitimate effects of the calls."""
    await eventually(
        lambda: task_executors_whole(cluster),
        SETTLE,
        f"every TaskExecutor registered again within {SETTLE_INTERVALS} heartbeat intervals",
    )
    assert endpoint_failures(cluster) == []
    async with connect_cluster(cluster.address, timeout=CALL_TIMEOUT) as client:
        with trio.fail_after(3 * CALL_TIMEOUT):
            jobs = await client.call(lambda d: d.list_jobs())
            listed = {uuid.UUID(hex=j["job_id"]) for j in jobs}
            lost = {*attacker.victims, *attacker.submitted} - listed
            assert not lost, f"jobs lost: {lost}"
            # cancel what the batch left running (its jobs may want every slot)
            for job in jobs:
                if not JobStatus(job["status"]).is_globally_terminal:
                    job_id = uuid.UUID(hex=job["job_id"])
                    try:
                        await client.call(methodcaller("cancel_job", job_id))
                    except RpcError as exc:  # it ended meanwhile
                        assert "cannot be cancelled" in str(exc), exc
        await eventually(
            lambda: all(r.status.is_globally_terminal for r in cluster.store.jobs.values()),
            SETTLE,
            "every job ends once cancelled",
        )
        probe = JobGraph(uuid.uuid4(), "probe", [JobVertex("map", 2, 0.05)])
        with trio.fail_after(3 * CALL_TIMEOUT):
            await client.call(lambda d: d.submit_job(probe))
        await eventually(
            lambda: cluster.store.jobs[probe.job_id].status is JobStatus.FINISHED,
            SETTLE,
            "a normal job submitted after the batch finishes",
        )
        await eventually(
            lambda: not slots_taken(cluster),
            SETTLE,
            "every slot is free again",
            lambda: slots_taken(cluster),
        )
        with trio.fail_after(3 * CALL_TIMEOUT):
            # every view answers
            await client.call(lambda d: d.list_jobs())
            overview = await client.call(lambda d: d.request_cluster_overview())
            assert overview["task_executors"] == TASK_EXECUTORS
            topology = await client.topology()
            assert len(topology["task_executors"]) == TASK_EXECUTORS
            leaders = await client.leaders()
            assert leaders["dispatcher"]["address"] and leaders["resource_manager"]["address"]
            for job_id in (attacker.victims[0], probe.job_id):
                details = await client.call(methodcaller("request_job", job_id))
                assert details["job_id"] == job_id.hex
    assert endpoint_failures(cluster) == []


# --- the fuzz ------------------------------------------------------------------------------

CALLED: Counter[str] = Counter()  # calls per method, over all batches
OUTCOMES: Counter[str] = Counter()  # "method: outcome", over all batches


@settings(
    max_examples=BATCHES,
    derandomize=os.environ.get("MINICLUSTER_GATEWAY_FUZZ_RANDOM") is None,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
@given(data=st.data())
async def test_every_gateway_method_with_hostile_arguments_leaves_the_cluster_whole(
    data: st.DataObject,
) -> None:
    config = ClusterConfig(**CONFIG)  # type: ignore[arg-type]
    with trio.fail_after(60):
        async with (
            MiniCluster(TASK_EXECUTORS, SLOTS, host="127.0.0.1", config=config) as cluster,
            open_rpc_service(ask_timeout=CALL_TIMEOUT) as service,
        ):
            handler_errors = watch_handler_errors(cluster)
            await eventually(lambda: task_executors_whole(cluster), SETTLE, "a cluster starts")
            attacker = Attacker(service, cluster)
            order = data.draw(st.permutations(METHODS), label="order")
            extra = data.draw(
                st.lists(st.sampled_from(METHODS), max_size=EXTRA_CALLS), label="extra"
            )
            for method in [*order, *extra]:
                pick = data.draw(st.integers(0, 3), label=f"{method} target")
                args = data.draw(method.arguments(), label=f"{method} arguments")
                CALLED[repr(method)] += 1
                await attacker.call(method, pick, args)
            OUTCOMES.update(attacker.outcomes)
            assert not attacker.crashes, "\n".join(attacker.crashes)
            await check_cluster_is_whole(cluster, attacker)
            assert not handler_errors, "\n".join(handler_errors)


def test_the_fuzz_knows_every_gateway_method() -> None:
    """A gateway method is fuzzed as soon as it is declared, and every annotation a method uses
    has a strategy (building them raises otherwise)."""
    names = {repr(m) for m in METHODS}
    for gateway in GATEWAYS:
        for name in gateway_methods(gateway):
            assert f"{gateway.__name__}.{name}" in names
    for method in METHODS:
        method.arguments()
    assert len(METHODS) >= 39  # the five gateways as they are today


# --- what the fuzz found, pinned down (in-process, on a virtual clock) ---------------------


async def test_a_job_ending_while_the_resource_manager_lost_its_job_master_frees_its_slots(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The ResourceManager drops a running job's JobMaster (a `disconnect_job_manager` with a
    status that is not terminal, or lost heartbeats: both keep the requirements for the next
    JobMaster); the job is cancelled before its JobMaster registers again. Its goodbye, with
    the terminal status, found no registration and was ignored: the ended job's requirements
    stayed, and the ResourceManager requested slots for it again and again."""
    config = ClusterConfig(seed=11, heartbeat_interval=1.0, heartbeat_timeout=5.0)
    async with MiniCluster(2, 2, config=config) as cluster:
        graph = JobGraph(uuid.UUID(int=1), "victim", [JobVertex("map", 2, 100.0)])
        job_id = await cluster.submit_job(graph)
        assert await cluster.wait_until(lambda: cluster.free_slots() == 2, 10)
        rm = cluster.resource_manager
        gateway = cluster.rm_service.local_gateway(rm, ResourceManagerGateway, rm.fencing_token)
        gateway.disconnect_job_manager(job_id, JobStatus.RUNNING, "dropped")
        await cluster.cancel_job(job_id)
        assert await cluster.wait_for_job(job_id, 10) is JobStatus.CANCELED
        await trio.sleep(60)  # many slot timeouts and requirement checks
        assert rm.requirements == {}
        assert cluster.free_slots() == 4
        assert rm.resource_overview().slots_free == 4


async def test_a_job_ending_while_its_job_master_reconnects_frees_its_slots(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The JobMaster loses the ResourceManager (`disconnect_resource_manager`, or its heartbeats
    timed out) and its job is cancelled before it registered again: it had no ResourceManager
    to say goodbye to, and the ResourceManager, which still counted it registered, kept the
    ended job's requirements when its heartbeats stopped, requesting slots for it forever."""
    config = ClusterConfig(seed=12, heartbeat_interval=1.0, heartbeat_timeout=5.0)
    async with MiniCluster(2, 2, config=config) as cluster:
        graph = JobGraph(uuid.UUID(int=2), "victim", [JobVertex("map", 2, 100.0)])
        job_id = await cluster.submit_job(graph)
        assert await cluster.wait_until(lambda: cluster.free_slots() == 2, 10)
        job_master = cluster.store.jobs[job_id].job_master
        assert job_master is not None
        gateway = cluster.dispatcher_service.local_gateway(
            job_master, JobMasterGateway, job_master.fencing_token
        )
        gateway.disconnect_resource_manager("dropped")
        await gateway.cancel()
        assert await cluster.wait_for_job(job_id, 10) is JobStatus.CANCELED
        rm = cluster.resource_manager
        await trio.sleep(60)  # many heartbeat timeouts, slot timeouts and requirement checks
        assert rm.requirements == {}
        assert cluster.free_slots() == 4
        assert rm.resource_overview().slots_free == 4


async def test_a_job_masters_details_of_a_wide_job_fit_a_reply_any_client_decodes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A valid job of 32,768 tasks: the JobMaster's `request_job_details` listed every task,
    a 2 MB reply that a client's decoder refuses (its memory budget), so the caller lost its
    connection instead of getting an answer. It lists at most 1,000 tasks beside the total, as
    the Dispatcher's `request_job` does."""
    config = ClusterConfig(seed=13, heartbeat_interval=1.0, heartbeat_timeout=5.0)
    async with MiniCluster(1, 2, config=config) as cluster:
        graph = JobGraph(uuid.UUID(int=3), "wide", [JobVertex("map", 32_768, 100.0)])
        job_id = await cluster.submit_job(graph)
        job_master = cluster.store.jobs[job_id].job_master
        assert job_master is not None
        gateway = cluster.dispatcher_service.local_gateway(
            job_master, JobMasterGateway, job_master.fencing_token
        )
        details = await gateway.request_job_details()
        assert details["tasks_total"] == 32_768
        assert len(details["tasks"]) == details["tasks_listed"] == 1_000
        loads(dumps(details))  # what a client receiving it decodes
