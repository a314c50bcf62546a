"""What every component of one cluster shares: configuration, ids, HA services and events."""

from __future__ import annotations

import random
import uuid
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from .components import DISPATCHER, RESOURCE_MANAGER
from .model import new_id


@dataclass
class ClusterConfig:
    """Timeouts and sizes, with Flink's defaults."""

    heartbeat_interval: float = 10.0
    heartbeat_timeout: float = 50.0
    heartbeat_rpc_failure_threshold: int = 2
    rpc_timeout: float = 10.0
    # TaskExecutor -> ResourceManager registration (Flink's cluster.registration.*)
    registration_initial_timeout: float = 0.1
    registration_max_timeout: float = 30.0
    registration_error_delay: float = 10.0
    registration_refused_delay: float = 30.0
    # JobMaster -> ResourceManager resource declaration retries
    declare_initial_backoff: float = 0.1
    declare_max_backoff: float = 10.0
    # ResourceManager: wait this long after a change before matching slots to requirements
    requirement_check_delay: float = 0.05
    # TaskExecutor -> JobMaster slot offers
    offer_timeout: float = 10.0
    # an allocated slot no JobMaster takes is freed after this (taskmanager.slot.timeout)
    slot_timeout: float = 10.0
    # slot.request.timeout: a region's slot bulk that cannot be fulfilled for this long fails
    # with NoResourceAvailableException; it is also the ResourceManager's start-up period
    # (resourcemanager.standalone.start-up-time), after which requirements that no free slot
    # can meet fail the JobMaster's pending requests
    slot_request_timeout: float = 300.0
    # slot.request.max-interval: requirement changes within it make one declaration
    slot_request_max_interval: float = 0.02
    # slot.idle.timeout: a slot the job's pool holds but no longer needs goes back after this
    slot_idle_timeout: float = 50.0
    # taskmanager.registration.timeout: a TaskExecutor not registered for this long gives up
    registration_timeout: float = 300.0
    # HA: how long leader-retrieval news takes to reach a listener (ZooKeeper-like lag)
    leader_notification_delay: float = 0.0
    seed: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Event:
    """One thing that happened in the cluster, in the order it happened."""

    time: float
    kind: str  # rpc, tell, dropped, state, failover, fencing, heartbeat, job, info, step
    sender: str | None = None
    receiver: str | None = None
    method: str | None = None
    outcome: str | None = None
    message: str = ""
    # the ids an RPC message carries (trace_detail.message_detail), for the trace file only
    detail: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None and k != "detail"}


NOTABLE_KINDS = frozenset(
    {"failover", "fencing", "failure", "heartbeat", "job", "state", "partition", "registration"}
)
"""Kinds of events that tell a run's story (leader changes, fencing rejections, failures,
losses, restarts, joins); messages, offers and slot bookkeeping are routine traffic."""


def is_notable(event: Event) -> bool:
    """Whether a person watching needs to see this event, however much traffic follows it:
    a notable kind, or the slot pool giving up on a region (NoResourceAvailableException)."""
    if event.kind in NOTABLE_KINDS:
        return event.outcome is None or event.outcome != "ok"
    return event.kind == "slots" and event.message.startswith("NoResourceAvailable")


class EventLog:
    """Events of a cluster: kept (bounded) for views, counted for statistics, and streamed to
    subscribers. Cheap when nobody listens: counters only, plus bounded deques. The notable
    events are kept apart (`notable`), so that thousands of routine messages after a failure
    do not push the failure out of what a view can show."""

    def __init__(self, keep: int = 2000, keep_notable: int = 200) -> None:
        self.recent: deque[Event] = deque(maxlen=keep)
        self.notable: deque[Event] = deque(maxlen=keep_notable)
        self.subscribers: list[Callable[[Event], None]] = []
        self.rpc_calls = 0
        self.by_method: dict[str, int] = defaultdict(int)
        self.latencies: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=512))
        self.fencing_rejections = 0
        self.record_rpc = True
        # the ids a message carries (trace_detail), kept only for a trace file: reading them
        # costs a lookup per message that nothing else needs
        self.record_detail = False
        self.start = 0.0  # trio time at which the cluster started; events count from there
        self._clock: Callable[[], float] | None = None  # the run's clock, from begin()
        # called after anything happened, recorded or not: what waits for the cluster's state
        # to change (a scenario's `wait`) wakes up on it instead of polling
        self.watchers: list[Callable[[], None]] = []

    def emit(self, event: Event) -> None:
        self.recent.append(event)
        if is_notable(event):
            self.notable.append(event)
        for subscriber in self.subscribers:
            subscriber(event)
        self.changed()

    def changed(self) -> None:
        for watcher in self.watchers:
            watcher()

    def begin(self) -> None:
        """The cluster starts now (in its trio run): events count their time from here, read
        from the run's clock directly (a lookup of the current run per event is measurable)."""
        clock = trio.lowlevel.current_clock()
        self.start = clock.current_time()
        self._clock = clock.current_time

    def now(self) -> float:
        clock = self._clock
        return round((clock() if clock is not None else trio.current_time()) - self.start, 6)


class _Leader:
    __slots__ = ("address", "listeners", "token")

    def __init__(self) -> None:
        self.address: str | None = None
        self.token: uuid.UUID | None = None
        self.listeners: list[Callable[[str, uuid.UUID], None]] = []


class HaServices:
    """Embedded leader election and retrieval (Flink's EmbeddedHaServices).

    Granting leadership makes a new fencing token; publishing tells every listener, after
    `notification_delay`, where the new leader is.
    """

    def __init__(self, rng: random.Random, nursery: trio.Nursery, notification_delay: float):
        self._rng = rng
        self._nursery = nursery
        self._delay = notification_delay
        self._leaders: dict[str, _Leader] = {}

    def new_token(self) -> uuid.UUID:
        return new_id(self._rng)

    def _entry(self, component: str) -> _Leader:
        entry = self._leaders.get(component)
        if entry is None:
            entry = self._leaders[component] = _Leader()
        return entry

    def publish(self, component: str, address: str, token: uuid.UUID) -> None:
        entry = self._entry(component)
        entry.address, entry.token = address, token
        for listener in list(entry.listeners):
            if self._delay > 0:
                self._nursery.start_soon(self._notify_later, listener, address, token)
            else:
                listener(address, token)

    async def _notify_later(
        self, listener: Callable[[str, uuid.UUID], None], address: str, token: uuid.UUID
    ) -> None:
        await trio.sleep(self._delay)
        listener(address, token)

    def revoke(self, component: str) -> None:
        entry = self._entry(component)
        entry.address, entry.token = None, None

    def leader(self, component: str) -> tuple[str, uuid.UUID] | None:
        entry = self._leaders.get(component)
        if entry is None or entry.address is None or entry.token is None:
            return None
        return entry.address, entry.token

    def leaders_of(self, prefix: str) -> dict[str, tuple[str, uuid.UUID]]:
        return {
            component: (entry.address, entry.token)
            for component, entry in self._leaders.items()
            if component.startswith(prefix) and entry.address is not None and entry.token
        }

    def watch(
        self, component: str, listener: Callable[[str, uuid.UUID], None]
    ) -> Callable[[], None]:
        """Call `listener(address, token)` now (if there is a leader) and on every change."""
        entry = self._entry(component)
        entry.listeners.append(listener)
        if entry.address is not None and entry.token is not None:
            listener(entry.address, entry.token)

        def unwatch() -> None:
            if listener in entry.listeners:
                entry.listeners.remove(listener)

        return unwatch

    def forget(self, component: str) -> None:
        self._leaders.pop(component, None)


class RemoteHaServices(HaServices):
    """Leader retrieval for a component in another process: polls the cluster's `leaders()`
    and publishes what changed to local listeners."""

    def __init__(
        self,
        rng: random.Random,
        nursery: trio.Nursery,
        fetch: Callable[[], Any],
        interval: float,
    ) -> None:
        super().__init__(rng, nursery, 0.0)
        self._fetch = fetch
        self._interval = interval
        nursery.start_soon(self._poll)

    async def _poll(self) -> None:
        while True:
            try:
                leaders = await self._fetch()
            except Exception:
                leaders = None
            if isinstance(leaders, dict):
                self._update(RESOURCE_MANAGER, leaders.get("resource_manager"))
                self._update(DISPATCHER, leaders.get("dispatcher"))
                for component, leader in (leaders.get("job_masters") or {}).items():
                    self._update(component, leader)
            await trio.sleep(self._interval)

    def _update(self, component: str, leader: Any) -> None:
        if not isinstance(leader, dict):
            return
        address, token = leader.get("address"), leader.get("token")
        if isinstance(address, str) and isinstance(token, uuid.UUID):
            current = self.leader(component)
            if current != (address, token):
                self.publish(component, address, token)


@dataclass
class ClusterContext:
    config: ClusterConfig
    rng: random.Random
    ha: HaServices
    events: EventLog

    def new_id(self) -> uuid.UUID:
        return new_id(self.rng)

    def emit(self, kind: str, message: str = "", **fields: Any) -> None:
        self.events.emit(Event(self.events.now(), kind, message=message, **fields))
