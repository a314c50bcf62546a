"""Moving frames over trio streams: the server side and the client side of a connection.

One client connection per peer carries every call to that peer; many calls are in flight at
once and replies come back in any order. A writer task batches queued frames into one send.

The parts live in their own modules: `frame_writer` (the batching writer), `server_connection`
(accepting and serving a peer), `client_connection` (calling a peer) and `transport_host` (what
the connections need of their service). This module gathers their names in one place.
"""

from __future__ import annotations

from .client_connection import ClientConnection, RemoteInvoker
from .frame_writer import COALESCE_LIMIT, FrameWriter
from .server_connection import (
    RECEIVE_SIZE,
    SETUP_TIMEOUT,
    TLS_HANDSHAKE_RECORD,
    WRITE_HIGH_WATER,
    WRITE_LOW_WATER,
    ServerConnection,
    accept_tls,
    log,
)
from .transport_host import TransportHost

__all__ = [
    "COALESCE_LIMIT",
    "RECEIVE_SIZE",
    "SETUP_TIMEOUT",
    "TLS_HANDSHAKE_RECORD",
    "WRITE_HIGH_WATER",
    "WRITE_LOW_WATER",
    "ClientConnection",
    "FrameWriter",
    "RemoteInvoker",
    "ServerConnection",
    "TransportHost",
    "accept_tls",
    "log",
]
