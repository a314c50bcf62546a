"""The ASGI application: checks a request at the boundary (method, path, query, body size, ids),
reads the cluster through its typed snapshot, and answers Flink's JSON or Flink's errors.

Reads are in-process and synchronous (`MiniCluster.snapshot()`, the endpoints' public snapshot
methods) except a job's details, which are asked of the Dispatcher through its gateway, as is
cancelling a job (`cancel_job`). A refused request changes nothing.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any, Protocol
from urllib.parse import parse_qs

import trio

from minicluster.cluster import ClusterConfig
from minicluster.cluster.context import EventLog
from minicluster.cluster.gateways import DispatcherGateway
from minicluster.cluster.model import JobNotFoundError, JobStateError
from minicluster.cluster.snapshot import ClusterSnapshot, JobSnapshot
from minicluster.rpc import RpcError

from . import json_views as views
from .ids import BadId, parse_job_id, parse_task_executor_id, parse_vertex_id
from .routes import match

# What a request may be: anything larger is refused before it is read further.
MAX_PATH = 2_048  # characters of a path
MAX_QUERY = 1_024  # characters of a query string
MAX_QUERY_FIELDS = 8
MAX_BODY = 4_096  # bytes of a request body (Flink's clients send "{}" with a PATCH)
MAX_HEADERS = 16 * 1024  # bytes of all header names and values (h11 bounds only a partial read)
# the dashboard's long poll waits at most this long for the cluster to change
MAX_POLL_WAIT = 1.0
# how many recent events a job's exception history and the dashboard look through
EXCEPTION_EVENTS = 1_000
DASHBOARD_EVENTS = 200
STATIC_FILES = {
    "index.html": "text/html; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}
JSON_TYPE = "application/json; charset=UTF-8"

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class ObservedCluster(Protocol):
    """What the REST API reads of a cluster (a `MiniCluster`): its snapshot, its event log (to
    learn that something changed), its settings and the Dispatcher leader's gateway."""

    config: ClusterConfig
    events: EventLog
    slots_per_executor: int

    @property
    def address(self) -> str: ...

    def snapshot(self, detail: bool = True, event_limit: int = 30) -> ClusterSnapshot: ...

    def dispatcher_gateway(self, caller: str = "client") -> DispatcherGateway: ...


class HttpError(Exception):
    """An answer in Flink's error form, `{"errors": [message]}`."""

    def __init__(self, status: int, message: str, headers: tuple[tuple[str, str], ...] = ()):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def _static(name: str) -> bytes:
    return resources.files("minicluster.rest").joinpath("static", name).read_bytes()


class RestApp:
    """Flink's REST API and the dashboard for one cluster. `rest_host`/`rest_port` are where it
    is served (for /jobmanager/config)."""

    def __init__(self, cluster: ObservedCluster, rest_host: str, rest_port: int) -> None:
        self.cluster = cluster
        self.rest_host = rest_host
        self.rest_port = rest_port
        self.clock = views.RestClock(time.time() - cluster.events.now())
        self.version = 0  # counts the cluster's changes, for the dashboard's long poll
        self.dashboard_polls = 0
        self._changed = trio.Event()
        self._files = {name: _static(name) for name in STATIC_FILES}

    # --- the cluster's changes, for the long poll ------------------------------------------

    def watch(self) -> None:
        """Start counting the cluster's changes (until `unwatch`)."""
        self.cluster.events.watchers.append(self._on_change)

    def unwatch(self) -> None:
        if self._on_change in self.cluster.events.watchers:
            self.cluster.events.watchers.remove(self._on_change)

    def _on_change(self) -> None:
        self.version += 1
        self._changed.set()
        self._changed = trio.Event()

    # --- ASGI ------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return  # websockets: not served (hypercorn refuses the upgrade)
        method = scope["method"]
        try:
            status, body, content_type, headers = await self._handle(scope, receive)
        except HttpError as error:
            status, content_type, headers = error.status, JSON_TYPE, error.headers
            body = _json({"errors": [error.message]})
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", content_type.encode()),
                    (b"content-length", str(len(body)).encode()),
                    (b"cache-control", b"no-store"),
                    (b"access-control-allow-origin", b"*"),
                    *((k.encode(), v.encode()) for k, v in headers),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        for name, value in scope["headers"]:
            if name == b"content-length" and (not value.isdigit() or int(value) > MAX_BODY):
                raise HttpError(413, f"a request body is at most {MAX_BODY:,} bytes")
        body = b""
        while True:
            message = await receive()
            if message["type"] != "http.request":
                raise HttpError(400, "the request ended before its body")
            chunk: bytes = message.get("body", b"")
            body += chunk
            if len(body) > MAX_BODY:
                raise HttpError(413, f"a request body is at most {MAX_BODY:,} bytes")
            if not message.get("more_body", False):
                return body

    async def _handle(
        self, scope: Scope, receive: Receive
    ) -> tuple[int, bytes, str, tuple[tuple[str, str], ...]]:
        path: str = scope["path"]
        raw_query: bytes = scope["query_string"]
        if len(path) > MAX_PATH:
            raise HttpError(414, f"a path is at most {MAX_PATH:,} characters")
        if len(raw_query) > MAX_QUERY:
            raise HttpError(414, f"a query string is at most {MAX_QUERY:,} characters")
        if sum(len(name) + len(value) for name, value in scope["headers"]) > MAX_HEADERS:
            raise HttpError(431, f"request headers are at most {MAX_HEADERS:,} bytes in all")
        await self._read_body(scope, receive)
        route = match(scope["method"], path)
        if route.endpoint is None:
            if route.allowed:
                raise HttpError(
                    405,
                    f"{scope['method']} is not allowed on {path}; it takes "
                    + ", ".join(route.allowed),
                    (("allow", ", ".join(route.allowed)),),
                )
            raise HttpError(404, f"Not found: {path}")
        query = _query(raw_query)
        if route.endpoint == "dashboard":
            return 200, self._files["index.html"], STATIC_FILES["index.html"], ()
        if route.endpoint == "dashboard_file":
            name = route.params["file"]
            if name not in STATIC_FILES or name == "index.html":
                raise HttpError(404, f"Not found: {path}")
            return 200, self._files[name], STATIC_FILES[name], ()
        status, document = await self._api(route.endpoint, route.params, query)
        return status, _json(document), JSON_TYPE, ()

    async def _api(
        self, endpoint: str, params: dict[str, str], query: dict[str, str]
    ) -> tuple[int, Any]:
        try:
            job_id = parse_job_id(params["jobid"]) if "jobid" in params else None
            vertex = parse_vertex_id(params["vertexid"]) if "vertexid" in params else None
            te_id = (
                parse_task_executor_id(params["taskmanagerid"])
                if "taskmanagerid" in params
                else None
            )
        except BadId as exc:
            raise HttpError(400, str(exc)) from None
        clock = self.clock
        if endpoint == "config":
            return 200, views.dashboard_config()
        if endpoint == "jobmanager_config":
            return 200, views.jobmanager_config(
                self.cluster.config,
                self.cluster.address,
                self.rest_host,
                self.rest_port,
                self.cluster.slots_per_executor,
            )
        if endpoint == "cancel_job":
            assert job_id is not None
            mode = query.get("mode", "cancel")
            if mode != "cancel":
                raise HttpError(400, f"mode is 'cancel' (the only one there is), got {mode!r}")
            await self._cancel(job_id)
            return 202, {}
        if job_id is not None:
            job = await self._job(job_id)
            now = self.cluster.events.now()
            if endpoint == "job":
                return 200, views.job_details(job, clock, now)
            if endpoint == "job_exceptions":
                events = self.cluster.snapshot(event_limit=EXCEPTION_EVENTS).events
                truncated = len(events) >= EXCEPTION_EVENTS
                return 200, views.job_exceptions(job, events, clock, truncated)
            assert endpoint == "subtask_times" and vertex is not None
            name = views.find_vertex(job, vertex)
            if name is None:
                raise HttpError(404, f"job {job_id.hex} has no vertex {vertex}")
            return 200, views.subtask_times(job, name, clock, now)
        if endpoint == "dashboard_snapshot":
            return 200, await self._dashboard(query)
        snapshot = self.cluster.snapshot(event_limit=0)
        if endpoint == "overview":
            return 200, views.overview(snapshot)
        if endpoint == "jobs":
            return 200, views.jobs(snapshot)
        if endpoint == "jobs_overview":
            return 200, views.jobs_overview(snapshot, clock)
        if endpoint == "taskmanagers":
            return 200, views.task_managers(snapshot, clock)
        assert endpoint == "taskmanager" and te_id is not None
        details = views.task_manager_details(snapshot, te_id, clock)
        if details is None:
            raise HttpError(404, f"no TaskManager {te_id} is registered")
        return 200, details

    async def _job(self, job_id: uuid.UUID) -> JobSnapshot:
        try:
            gateway = self.cluster.dispatcher_gateway("rest")
            snapshot: JobSnapshot = await gateway.request_job_snapshot(job_id)
        except JobNotFoundError:
            raise HttpError(404, f"Job {job_id.hex} not found") from None
        except RpcError as exc:
            raise HttpError(503, f"the Dispatcher did not answer: {exc}") from None
        return snapshot

    async def _cancel(self, job_id: uuid.UUID) -> None:
        try:
            await self.cluster.dispatcher_gateway("rest").cancel_job(job_id)
        except JobNotFoundError:
            raise HttpError(404, f"Job {job_id.hex} not found") from None
        except JobStateError as exc:
            raise HttpError(409, f"Job cancellation failed: {exc}") from None
        except RpcError as exc:
            raise HttpError(503, f"the Dispatcher did not answer: {exc}") from None

    async def _dashboard(self, query: dict[str, str]) -> dict[str, Any]:
        """The dashboard's document; with `after=VERSION` a long poll: it waits (at most
        MAX_POLL_WAIT s) until the cluster has changed since that version."""
        if "after" in query:
            after = query["after"]
            if not after.isdigit() or len(after) > 18:
                raise HttpError(400, f"after is a version number, got {after[:40]!r}")
            self.dashboard_polls += 1
            if int(after) >= self.version:
                with trio.move_on_after(MAX_POLL_WAIT):
                    await self._changed.wait()
        snapshot = self.cluster.snapshot(event_limit=DASHBOARD_EVENTS)
        document = views.dashboard_snapshot(snapshot, self.clock, self.version)
        document["dashboard_polls"] = self.dashboard_polls
        return document


def _query(raw: bytes) -> dict[str, str]:
    """The query string's parameters (the last value of each); malformed text is a 400."""
    try:
        text = raw.decode("ascii")
        pairs = parse_qs(text, keep_blank_values=True, max_num_fields=MAX_QUERY_FIELDS)
    except (UnicodeDecodeError, ValueError):
        raise HttpError(
            400, f"a query string is ASCII with at most {MAX_QUERY_FIELDS} fields"
        ) from None
    return {key: values[-1] for key, values in pairs.items()}


def _json(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":"), allow_nan=False).encode()
