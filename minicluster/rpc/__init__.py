"""minicluster's RPC layer: a trio re-creation of Flink's flink-rpc-core and its Pekko runtime.

Gateways declare remote interfaces, endpoints implement them and run every call on their own
main thread, fenced endpoints check a fencing token, and an RPC service hosts endpoints and
connects to remote ones over TCP with CBOR frames.
"""

from .endpoint import (
    EndpointState,
    NotInMainThreadError,
    RpcEndpoint,
)
from .errors import (
    AuthenticationError,
    EndpointNotFoundError,
    EndpointNotStartedError,
    FencingTokenError,
    ForeignPeerError,
    HandshakeError,
    MessageTooLargeError,
    NoSuchMethodError,
    ProtocolError,
    RecipientUnreachableError,
    RemoteError,
    RpcConnectionError,
    RpcError,
    RpcTimeoutError,
    SerializationError,
    register_error,
)
from .fenced import FencedRpcEndpoint
from .gateway import FencedRpcGateway, RpcGateway, RpcTimeout, ask_with_callback
from .protocol import DEFAULT_MAX_FRAME_SIZE, PROTOCOL_VERSION
from .serialization import wire_type
from .service import DEFAULT_ASK_TIMEOUT, RpcService, open_rpc_service, parse_address

__all__ = [
    "DEFAULT_ASK_TIMEOUT",
    "DEFAULT_MAX_FRAME_SIZE",
    "PROTOCOL_VERSION",
    "AuthenticationError",
    "EndpointNotFoundError",
    "EndpointNotStartedError",
    "EndpointState",
    "FencedRpcEndpoint",
    "FencedRpcGateway",
    "FencingTokenError",
    "ForeignPeerError",
    "HandshakeError",
    "MessageTooLargeError",
    "NoSuchMethodError",
    "NotInMainThreadError",
    "ProtocolError",
    "RecipientUnreachableError",
    "RemoteError",
    "RpcConnectionError",
    "RpcEndpoint",
    "RpcError",
    "RpcGateway",
    "RpcService",
    "RpcTimeout",
    "RpcTimeoutError",
    "SerializationError",
    "ask_with_callback",
    "open_rpc_service",
    "parse_address",
    "register_error",
    "wire_type",
]
