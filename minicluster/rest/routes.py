"""Which endpoint a request names: Flink's REST paths, with or without the `/v1` prefix that
Flink's own clients use, and the dashboard's files. Pure: a method and a path in, a match out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# (method, path pattern, endpoint name); ":name" is a path parameter. Literal segments win
# over parameters (/jobs/overview is not the job "overview").
ROUTES: tuple[tuple[str, str, str], ...] = (
    ("GET", "/config", "config"),
    ("GET", "/overview", "overview"),
    ("GET", "/jobs", "jobs"),
    ("GET", "/jobs/overview", "jobs_overview"),
    ("GET", "/jobs/:jobid", "job"),
    ("PATCH", "/jobs/:jobid", "cancel_job"),
    ("GET", "/jobs/:jobid/exceptions", "job_exceptions"),
    ("GET", "/jobs/:jobid/vertices/:vertexid/subtasktimes", "subtask_times"),
    ("GET", "/taskmanagers", "taskmanagers"),
    ("GET", "/taskmanagers/:taskmanagerid", "taskmanager"),
    ("GET", "/jobmanager/config", "jobmanager_config"),
    ("GET", "/minicluster/snapshot", "dashboard_snapshot"),
    ("GET", "/", "dashboard"),
    ("GET", "/dashboard/:file", "dashboard_file"),
)
API_PREFIX = "/v1"


@dataclass(frozen=True, slots=True)
class Match:
    """The endpoint a request names, or why none: `endpoint` is None and `allowed` lists the
    methods the path takes (empty: no such path)."""

    endpoint: str | None
    params: dict[str, str] = field(default_factory=dict)
    allowed: tuple[str, ...] = ()


def _segments(path: str) -> list[str]:
    return [part for part in path.split("/") if part]


_TABLE = [(method, _segments(pattern), name) for method, pattern, name in ROUTES]


def _match_pattern(pattern: list[str], parts: list[str]) -> dict[str, str] | None:
    if len(pattern) != len(parts):
        return None
    params: dict[str, str] = {}
    for want, got in zip(pattern, parts, strict=True):
        if want.startswith(":"):
            params[want[1:]] = got
        elif want != got:
            return None
    return params


def _literal_count(pattern: list[str]) -> int:
    return sum(1 for part in pattern if not part.startswith(":"))


def match(method: str, path: str) -> Match:
    """The route for `method` and `path` (the path without its query string)."""
    if path == API_PREFIX or path.startswith(API_PREFIX + "/"):
        path = path[len(API_PREFIX) :] or "/"
    parts = _segments(path)
    best: list[tuple[int, str, str, dict[str, str]]] = []
    for route_method, pattern, name in _TABLE:
        params = _match_pattern(pattern, parts)
        if params is not None:
            best.append((_literal_count(pattern), route_method, name, params))
    if not best:
        return Match(None)
    most = max(count for count, *_ in best)
    candidates = [(m, name, params) for count, m, name, params in best if count == most]
    for route_method, name, params in candidates:
        if route_method == method or (method == "HEAD" and route_method == "GET"):
            return Match(name, params)
    return Match(None, allowed=tuple(sorted({m for m, _, _ in candidates})))
