"""What the views show of a cluster's activity: recent events worth a look, RPC statistics."""

from __future__ import annotations

import statistics
from typing import Protocol

from .context import Event, EventLog
from .snapshot import EventSnapshot, MethodStatistics, RpcStatistics


class Observed(Protocol):
    """A cluster as these views see it (a `MiniCluster`, a `ClusterContext`): only its event
    log. Named by shape so that this module does not import the cluster module."""

    @property
    def events(self) -> EventLog: ...


def rpc_statistics(cluster: Observed, window: float = 5.0) -> RpcStatistics:
    events = cluster.events
    now = events.now()
    recent = sum(
        1 for e in events.recent if e.kind in ("rpc", "tell", "fencing") and now - e.time <= window
    )
    by_method: list[MethodStatistics] = []
    for method, calls in sorted(events.by_method.items(), key=lambda kv: -kv[1]):
        samples = sorted(events.latencies.get(method, ()))
        if samples:
            p50 = statistics.median(samples)
            p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
            by_method.append(MethodStatistics(method, calls, p50, p99))
        else:
            by_method.append(MethodStatistics(method, calls))
    return RpcStatistics(
        calls_per_second=recent / window if now > 0 else 0.0,
        total_calls=events.rpc_calls,
        fencing_rejections=events.fencing_rejections,
        by_method=tuple(by_method),
    )


def _snapshot(event: Event) -> EventSnapshot:
    return EventSnapshot(
        event.time,
        event.kind,
        event.sender,
        event.receiver,
        event.method,
        event.outcome,
        event.message,
    )


def notable_events(cluster: Observed, limit: int = 100) -> tuple[EventSnapshot, ...]:
    """The last `limit` events that tell the run's story (failures, fencing rejections, leader
    changes, restarts, losses, joins), however much routine traffic came after them."""
    kept = list(cluster.events.notable)[-limit:] if limit > 0 else []
    return tuple(_snapshot(event) for event in kept)


def recent_events(cluster: Observed, limit: int = 60) -> tuple[EventSnapshot, ...]:
    """The last events worth showing a person: heartbeats that went fine are left out (a
    healthy cluster sends many; the trace keeps them)."""
    shown: list[EventSnapshot] = []
    for event in reversed(cluster.events.recent):
        if event.method and "heartbeat" in event.method and event.outcome == "ok":
            continue
        shown.append(_snapshot(event))
        if len(shown) >= limit:
            break
    shown.reverse()
    return tuple(shown)
