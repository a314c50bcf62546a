"""What the views show of a cluster's activity: recent events worth a look, RPC statistics."""

from __future__ import annotations

import statistics
from typing import Any, Protocol

from .context import EventLog


class Observed(Protocol):
    """A cluster as these views see it (a `MiniCluster`): only its event log. Named by shape so
    that this module does not import the cluster module, which imports it."""

    @property
    def events(self) -> EventLog: ...


def rpc_statistics(cluster: Observed, window: float = 5.0) -> dict[str, Any]:
    events = cluster.events
    now = events.now()
    recent = sum(
        1 for e in events.recent if e.kind in ("rpc", "tell", "fencing") and now - e.time <= window
    )
    by_method: dict[str, Any] = {}
    for method, calls in sorted(events.by_method.items(), key=lambda kv: -kv[1]):
        samples = sorted(events.latencies.get(method, ()))
        entry: dict[str, Any] = {"calls": calls}
        if samples:
            entry["p50"] = statistics.median(samples)
            entry["p99"] = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
        by_method[method] = entry
    return {
        "calls_per_second": recent / window if now > 0 else 0.0,
        "total_calls": events.rpc_calls,
        "fencing_rejections": events.fencing_rejections,
        "by_method": by_method,
    }


def recent_events(cluster: Observed, limit: int = 60) -> list[dict[str, Any]]:
    """The last events worth showing a person: heartbeats that went fine are left out (a
    healthy cluster sends many; the trace keeps them)."""
    shown: list[dict[str, Any]] = []
    for event in reversed(cluster.events.recent):
        if event.method and "heartbeat" in event.method and event.outcome == "ok":
            continue
        shown.append(event.as_dict())
        if len(shown) >= limit:
            break
    shown.reverse()
    return shown
