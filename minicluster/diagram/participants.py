"""The components of a trace as diagram participants: endpoint ids to readable names.

Endpoint ids are the cluster's: ``dispatcher``, ``resourcemanager``, ``jobmaster-<job hex>``,
``taskexecutor-<id>`` and ``client`` for the scenario's own calls. A participant has an alias
(letters, digits and underscores, what Mermaid's grammar takes as an actor id) and a label
(what a reader sees: "JobMaster wordcount", "TaskExecutor te-1").
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from minicluster.cluster.components import (
    DISPATCHER,
    RESOURCE_MANAGER,
    job_of,
    task_executor_of,
)

CLIENT = "client"
UNKNOWN_SENDER = "(unknown)"
"""The endpoint id a message without a sender is drawn from."""

_ROLE_ORDER = {"client": 0, "dispatcher": 1, "resourcemanager": 2, "jobmaster": 3}


@dataclass(frozen=True)
class Participant:
    endpoint: str
    role: str  # client, dispatcher, resourcemanager, jobmaster, taskexecutor, other
    alias: str
    label: str


def role_of(endpoint: str) -> str:
    if endpoint == CLIENT:
        return "client"
    if endpoint == DISPATCHER:
        return "dispatcher"
    if endpoint == RESOURCE_MANAGER:
        return "resourcemanager"
    if job_of(endpoint) is not None:
        return "jobmaster"
    if task_executor_of(endpoint) is not None:
        return "taskexecutor"
    return "other"


def _identifier(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", text)[:60] or "_"


def _natural(text: str) -> tuple[object, ...]:
    """te-2 before te-10."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", text))


def _describe(endpoint: str, job_names: Mapping[str, str]) -> tuple[str, str]:
    """(alias stem, label) of an endpoint."""
    role = role_of(endpoint)
    if role == "client":
        return "Client", "Client"
    if role == "dispatcher":
        return "Dispatcher", "Dispatcher"
    if role == "resourcemanager":
        return "RM", "ResourceManager"
    if role == "jobmaster":
        job = job_of(endpoint) or ""
        name = job_names.get(job)
        return f"JM_{_identifier(job[:8])}", f"JobMaster {name}" if name else f"JobMaster {job[:8]}"
    if role == "taskexecutor":
        resource_id = task_executor_of(endpoint) or ""
        return f"TE_{_identifier(resource_id)}", f"TaskExecutor {resource_id}"
    return f"P_{_identifier(endpoint)}", endpoint


def order_key(endpoint: str, first_seen: Mapping[str, int]) -> tuple[object, ...]:
    """Client, Dispatcher, ResourceManager, JobMasters (as they appear), TaskExecutors (by
    id), then anything else: Flink's diagrams read from the user to the workers."""
    role = role_of(endpoint)
    if role == "taskexecutor":
        return (4, _natural(endpoint))
    if role == "other":
        return (5, first_seen.get(endpoint, 0))
    return (_ROLE_ORDER[role], first_seen.get(endpoint, 0))


def make_participants(endpoints: Iterable[str], job_names: Mapping[str, str]) -> list[Participant]:
    """Participants for the endpoints (in the order given; aliases made unique)."""
    participants = []
    taken: set[str] = set()
    for endpoint in endpoints:
        stem, label = _describe(endpoint, job_names)
        alias, n = stem, 2
        while alias in taken:
            alias, n = f"{stem}_{n}", n + 1
        taken.add(alias)
        participants.append(Participant(endpoint, role_of(endpoint), alias, label))
    return participants


class SelectionError(ValueError):
    """A name of --only that no component of the trace has."""


def select_components(
    names: Iterable[str], endpoints: Iterable[str], job_names: Mapping[str, str]
) -> set[str]:
    """The endpoint ids that the names select.

    A name is an endpoint id (``taskexecutor-te-1``), a TaskExecutor's own id (``te-1``), a
    job's name or the start of its id (its JobMaster), a participant's label or alias
    (``ResourceManager``, ``RM``), or a role for all of its kind (``taskexecutors``,
    ``jobmasters``); case does not matter."""
    endpoints = sorted(set(endpoints))
    participants = make_participants(endpoints, job_names)
    chosen: set[str] = set()
    for raw in names:
        name = raw.strip().lower()
        if not name:
            continue
        found = {
            p.endpoint
            for p in participants
            if name
            in (
                p.endpoint.lower(),
                p.alias.lower(),
                p.label.lower(),
                p.role,
                p.role + "s",
                (task_executor_of(p.endpoint) or "").lower(),
                (job_names.get(job_of(p.endpoint) or "", "") or "").lower(),
            )
            or (
                p.role == "jobmaster"
                and len(name) >= 4
                and (job_of(p.endpoint) or "").startswith(job_of(name) or name)
            )
        }
        found.discard("")
        if not found:
            known = ", ".join(p.endpoint for p in participants[:12])
            more = "" if len(participants) <= 12 else f" and {len(participants) - 12} more"
            raise SelectionError(
                f"no component of the trace is called {raw.strip()!r} (it has {known}{more})"
            )
        chosen |= found
    return chosen
