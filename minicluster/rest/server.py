"""Serving the REST API with hypercorn's trio worker, as a task of the cluster's nursery.

Hypercorn speaks HTTP (h11); this module only configures it: where to listen, no logging
set-up (a library leaves the process's logging alone), and the limits that keep a bad client
from holding the server: headers of at most MAX_HEADER_BYTES, an idle or slow connection cut
after IDLE_TIMEOUT, a request read within READ_TIMEOUT.
"""

from __future__ import annotations

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from .app import ObservedCluster, RestApp

MAX_HEADER_BYTES = 16 * 1024  # a request line and headers larger than this are refused (400)
IDLE_TIMEOUT = 3.0  # s: a connection that sends nothing for this long is closed
READ_TIMEOUT = 10  # s: (whole seconds) a request must arrive within this
GRACEFUL_TIMEOUT = 1.0  # s: requests in flight at shutdown get this long to finish


class RestBindError(Exception):
    """The REST API could not listen on host:port (`error` says why)."""

    def __init__(self, host: str, port: int, error: OSError) -> None:
        super().__init__(f"cannot serve the REST API on {host}:{port}: {error.strerror or error}")
        self.host = host
        self.port = port
        self.error = error


async def _serve(app: RestApp, config: Config, *, task_status: trio.TaskStatus[list[str]]) -> None:
    await serve(app, config, task_status=task_status)  # type: ignore[arg-type]


def _os_error(exc: BaseException) -> OSError | None:
    """The OSError in `exc` (hypercorn binds inside its nurseries: it arrives in a group)."""
    while isinstance(exc, BaseExceptionGroup):
        if len(exc.exceptions) != 1:
            return None
        exc = exc.exceptions[0]
    return exc if isinstance(exc, OSError) else None


def rest_config(host: str, port: int) -> Config:
    config = Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = None
    config.h11_max_incomplete_size = MAX_HEADER_BYTES
    config.keep_alive_timeout = IDLE_TIMEOUT
    config.read_timeout = READ_TIMEOUT
    config.graceful_timeout = GRACEFUL_TIMEOUT
    config.include_server_header = False
    return config


async def serve_rest(
    cluster: ObservedCluster,
    host: str,
    port: int,
    *,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until cancelled (the cluster's nursery ends it); `task_status.started` gets the
    base URL, http://HOST:PORT (the port picked when `port` is 0). Start it with
    `nursery.start(serve_rest, ...)`. Failing to listen raises RestBindError."""
    config = rest_config(host, port)
    app = RestApp(cluster, host, port)
    app.watch()
    try:
        async with trio.open_nursery() as nursery:
            try:
                binds: list[str] = await nursery.start(_serve, app, config)
            except (OSError, BaseExceptionGroup) as exc:
                error = _os_error(exc)
                if error is None:
                    raise
                raise RestBindError(host, port, error) from exc
            url = binds[0]
            app.rest_port = int(url.rpartition(":")[2])
            task_status.started(url)
    finally:
        app.unwatch()
