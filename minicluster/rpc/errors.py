"""The error types of the RPC layer and their names on the wire (docs/protocol.md, "Errors")."""

from __future__ import annotations

import builtins


class RpcError(Exception):
    """Base class of every error the RPC layer raises itself."""


class HandshakeError(RpcError):
    """The peer does not speak our protocol version or does not serve the asked gateway."""


class EndpointNotFoundError(RpcError):
    """No endpoint with that id is registered at the service."""


class EndpointNotStartedError(RpcError):
    """The endpoint exists but `start()` has not been called yet, so it takes no messages."""


class NoSuchMethodError(RpcError):
    """The method is not part of any gateway the endpoint implements."""


class InvalidArgumentError(RpcError):
    """A remote call's argument does not fit the type its gateway method declares."""


class FencingTokenError(RpcError):
    """A fenced endpoint got a message with a missing or stale fencing token."""


class MessageTooLargeError(RpcError):
    """A frame is larger than the receiver's `max_frame_size`."""


class ProtocolError(RpcError):
    """A frame or message does not follow the wire protocol.

    `request_id` is the id of the bad request when it could be read, so that the sender can
    be answered instead of disconnected.
    """

    def __init__(self, message: str = "", request_id: object = None) -> None:
        super().__init__(message)
        self.request_id = request_id if type(request_id) is int else None


class AuthenticationError(RpcError):
    """The shared-secret challenge failed."""


class RecipientUnreachableError(RpcError):
    """The endpoint or the connection to it went away before the call was answered."""


class RpcConnectionError(RecipientUnreachableError):
    """No connection could be opened to the address."""


class ForeignPeerError(RpcConnectionError):
    """Something answered at the address, but not a minicluster RPC service (an HTTP server,
    say): retrying will not help, so the message says what answered."""


class RpcTimeoutError(RpcError):
    """An ask got no answer within its timeout."""


class SerializationError(RpcError):
    """A value cannot cross the wire: its type is not a CBOR type nor a registered wire type."""


class RemoteError(RpcError):
    """An exception raised remotely whose type is not registered here.

    Keeps the remote type name and traceback so that nothing is lost, without importing
    anything named on the wire.
    """

    def __init__(self, type_name: str, message: str, remote_traceback: str | None = None):
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name
        self.remote_message = message
        self.remote_traceback = remote_traceback


# Exception types that are rebuilt by name when they come back over the wire. Only these: a
# name on the wire never makes us import anything.
_ERROR_TYPES: dict[str, type[BaseException]] = {}


def register_error(cls: type[BaseException]) -> type[BaseException]:
    """Let exceptions of `cls` travel over the wire under their class name (decorator)."""
    _ERROR_TYPES[cls.__name__] = cls
    return cls


def error_type(name: str) -> type[BaseException] | None:
    return _ERROR_TYPES.get(name)


for _cls in (
    RpcError,
    HandshakeError,
    EndpointNotFoundError,
    EndpointNotStartedError,
    NoSuchMethodError,
    InvalidArgumentError,
    FencingTokenError,
    MessageTooLargeError,
    ProtocolError,
    AuthenticationError,
    RecipientUnreachableError,
    RpcConnectionError,
    RpcTimeoutError,
    SerializationError,
):
    register_error(_cls)

for _name in (
    "ValueError",
    "TypeError",
    "KeyError",
    "IndexError",
    "LookupError",
    "RuntimeError",
    "ArithmeticError",
    "ZeroDivisionError",
    "OverflowError",
    "AssertionError",
    "NotImplementedError",
    "PermissionError",
    "TimeoutError",
    "Exception",
):
    register_error(getattr(builtins, _name))
