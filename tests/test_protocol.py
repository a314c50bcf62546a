"""The sans-IO wire protocol (docs/protocol.md), driven with plain byte strings, no sockets.

Frames, messages, values (CBOR plus registered wire types), requests, error maps and auth
proofs, in the style of h11's tests: bytes in, events or errors out.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import itertools
import sys
import uuid
from typing import Any

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minicluster.rpc import RpcError, large_values, protocol, serialization
from minicluster.rpc.errors import (
    AuthenticationError,
    EndpointNotFoundError,
    FencingTokenError,
    HandshakeError,
    MessageTooLargeError,
    NoSuchMethodError,
    ProtocolError,
    RemoteError,
    SerializationError,
)
from minicluster.rpc.protocol import FrameDecoder, FrameTooLargeError
from minicluster.rpc.serialization import wire_type

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- wire types used by these tests (names prefixed so that they cannot clash) ---------------


@wire_type(name="test_protocol.Leaf")
@dataclasses.dataclass
class Leaf:
    name: str
    count: int


@wire_type(name="test_protocol.Pair")
@dataclasses.dataclass
class Pair:
    left: Any
    right: Any = None


@wire_type(name="test_protocol.Color")
class Color(enum.Enum):
    RED = "red"
    GREEN = 2
    BLUE = None


@wire_type(name="test_protocol.Slot")
@dataclasses.dataclass(frozen=True)
class Slot:
    host: str
    index: int


class NotRegistered:
    """A class nobody registered for the wire."""


@dataclasses.dataclass
class UnregisteredDataclass:
    x: int


# --- helpers ---------------------------------------------------------------------------------


def same(a: Any, b: Any) -> bool:
    """Equal, with the same types all the way down: True is not 1, an enum is not its value."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if dataclasses.is_dataclass(a):
        return all(same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
    return bool(a == b)


def decode_all(data_chunks: list[bytes], max_frame_size: int = protocol.DEFAULT_MAX_FRAME_SIZE):
    """Feed the chunks one by one, draining complete frames after every feed."""
    decoder = FrameDecoder(max_frame_size)
    frames: list[bytes] = []
    for chunk in data_chunks:
        decoder.feed(chunk)
        frames.extend(decoder)
    return frames, decoder


def through_the_wire(message: dict[str, Any]) -> dict[str, Any]:
    frames, decoder = decode_all([protocol.encode_frame(message)])
    assert len(frames) == 1
    assert decoder.buffered == 0
    return protocol.decode_message(frames[0])


def tagged(tag: int, value: Any) -> cbor2.CBORTag:
    return cbor2.CBORTag(tag, value)


def call_with_arg(request_id: int, arg: Any) -> bytes:
    """A call payload built with raw cbor2, so that it may hold things our encoder refuses."""
    return cbor2.dumps(
        {
            "type": "call",
            "id": request_id,
            "endpoint": "calc",
            "method": "echo",
            "args": [arg],
            "kwargs": {},
        }
    )


# --- strategies ------------------------------------------------------------------------------

texts = st.text(alphabet=st.characters(codec="utf-8"), max_size=20)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),  # includes big ints (CBOR bignums, tags 2 and 3)
    st.integers(min_value=-(2**300), max_value=2**300),
    st.floats(allow_nan=False),
    texts,
    st.binary(max_size=20),
    st.uuids(),
    st.sampled_from(Color),
    st.builds(Leaf, texts, st.integers()),
)


def _containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(texts, children, max_size=5),
        st.builds(Pair, children, children),
    )


values = st.recursive(scalars, _containers, max_leaves=25)


# --- frames: round trips, split and coalesced feeds ----------------------------------------


@FAST
@given(values)
def test_any_wire_value_survives_a_frame_round_trip(value: Any) -> None:
    message = through_the_wire(protocol.reply(7, value))
    assert message["type"] == "reply"
    assert message["id"] == 7
    assert same(message["value"], value)


@FAST
@given(st.lists(values, min_size=1, max_size=4))
def test_a_request_with_any_arguments_survives_a_frame_round_trip(args: list[Any]) -> None:
    token = uuid.uuid4()
    kwargs = {f"k{i}": v for i, v in enumerate(args)}
    message = through_the_wire(protocol.call(3, "dispatcher", "submit", args, kwargs, token))
    request = protocol.parse_request(message)
    assert (request.kind, request.id, request.endpoint, request.method) == (
        "call",
        3,
        "dispatcher",
        "submit",
    )
    assert same(request.args, args)
    assert same(request.kwargs, kwargs)
    assert same(request.token, token)


def test_values_nested_well_within_the_depth_limit_decode() -> None:
    value: Any = 1
    for _ in range(200):
        value = [value]
    assert same(through_the_wire(protocol.reply(1, value))["value"], value)


SAMPLE_MESSAGES = [
    protocol.hello(),
    protocol.call(1, "calc", "add", [1, 2], {"x": Leaf("a", 1)}),
    protocol.reply(1, {"big": 2**80, "b": b"\x00\xff" * 10}),
    protocol.tell("calc", "note", [Color.RED], {}),
]
SAMPLE_STREAM = b"".join(protocol.encode_frame(m) for m in SAMPLE_MESSAGES)
SAMPLE_PAYLOADS = [protocol.encode_message(m) for m in SAMPLE_MESSAGES]


def test_a_stream_split_at_any_single_point_yields_the_same_frames() -> None:
    for cut in range(len(SAMPLE_STREAM) + 1):
        frames, decoder = decode_all([SAMPLE_STREAM[:cut], SAMPLE_STREAM[cut:]])
        assert frames == SAMPLE_PAYLOADS, cut
        assert decoder.buffered == 0


def test_a_stream_fed_byte_by_byte_yields_the_same_frames() -> None:
    chunks = [SAMPLE_STREAM[i : i + 1] for i in range(len(SAMPLE_STREAM))]
    frames, decoder = decode_all(chunks)
    assert frames == SAMPLE_PAYLOADS
    assert decoder.buffered == 0
    assert [protocol.decode_message(f) for f in frames] == [
        serialization.roundtrip(m) for m in SAMPLE_MESSAGES
    ]


def test_many_frames_coalesced_in_one_feed_all_come_out_in_order() -> None:
    stream = SAMPLE_STREAM * 50
    frames, decoder = decode_all([stream])
    assert frames == SAMPLE_PAYLOADS * 50
    assert decoder.buffered == 0


@FAST
@given(
    st.lists(st.binary(max_size=300), min_size=1, max_size=8),
    st.lists(st.integers(min_value=0, max_value=4000), max_size=10),
)
def test_any_chunking_of_a_stream_yields_the_same_frames(
    payloads: list[bytes], cuts: list[int]
) -> None:
    stream = b"".join(protocol.frame_bytes(p) for p in payloads)
    points = sorted({min(c, len(stream)) for c in cuts} | {0, len(stream)})
    chunks = [stream[a:b] for a, b in itertools.pairwise(points)]
    frames, decoder = decode_all(chunks)
    assert frames == payloads
    assert decoder.buffered == 0


def test_a_partial_frame_stays_buffered_until_its_last_byte_arrives() -> None:
    frame = protocol.frame_bytes(b"hello")
    decoder = FrameDecoder()
    decoder.feed(frame[:-1])
    assert list(decoder) == []
    assert decoder.buffered == len(frame) - 1
    decoder.feed(frame[-1:])
    assert list(decoder) == [b"hello"]
    assert decoder.buffered == 0


def test_an_empty_payload_is_a_frame() -> None:
    frames, _ = decode_all([protocol.frame_bytes(b"") * 3])
    assert frames == [b"", b"", b""]


# --- frames: the size limit ----------------------------------------------------------------


def test_an_oversized_header_is_refused_as_soon_as_its_four_bytes_arrive() -> None:
    decoder = FrameDecoder(max_frame_size=100)
    header = (101).to_bytes(4, "big")
    for byte in header[:3]:
        decoder.feed(bytes([byte]))
    assert list(decoder) == []
    with pytest.raises(FrameTooLargeError) as info:
        decoder.feed(header[3:])
    assert (info.value.size, info.value.limit) == (101, 100)
    assert isinstance(info.value, MessageTooLargeError)
    assert decoder.buffered == 0


def test_an_oversized_header_with_body_bytes_in_the_same_feed_buffers_nothing() -> None:
    decoder = FrameDecoder(max_frame_size=100)
    with pytest.raises(FrameTooLargeError):
        decoder.feed((2**32 - 1).to_bytes(4, "big") + b"x" * 50)
    assert decoder.buffered == 0


def test_a_decoder_that_refused_a_frame_keeps_refusing_later_feeds() -> None:
    decoder = FrameDecoder(max_frame_size=100)
    with pytest.raises(FrameTooLargeError):
        decoder.feed((1000).to_bytes(4, "big"))
    for _ in range(3):
        with pytest.raises(FrameTooLargeError):
            decoder.feed(b"x" * 10)
        assert decoder.buffered == 0
    assert decoder.next_frame() is None


def test_an_oversized_header_after_a_consumed_frame_is_refused() -> None:
    decoder = FrameDecoder(max_frame_size=10)
    decoder.feed(protocol.frame_bytes(b"ok"))
    assert list(decoder) == [b"ok"]
    with pytest.raises(FrameTooLargeError):
        decoder.feed((11).to_bytes(4, "big"))
    assert decoder.buffered == 0


def test_a_complete_frame_before_an_oversized_header_is_still_delivered() -> None:
    decoder = FrameDecoder(max_frame_size=10)
    received: list[bytes] = []
    with pytest.raises(FrameTooLargeError):
        decoder.feed(protocol.frame_bytes(b"abc") + (11).to_bytes(4, "big"))
        received.extend(decoder)
    assert received == [b"abc"]


def test_a_frame_exactly_at_the_limit_is_accepted() -> None:
    payload = b"p" * 64
    frames, decoder = decode_all([protocol.frame_bytes(payload) * 2], max_frame_size=64)
    assert frames == [payload, payload]
    assert decoder.buffered == 0


def test_the_default_limit_is_ten_mebibytes() -> None:
    decoder = FrameDecoder()
    decoder.feed((10 * 1024 * 1024).to_bytes(4, "big"))
    with pytest.raises(FrameTooLargeError):
        FrameDecoder().feed((10 * 1024 * 1024 + 1).to_bytes(4, "big"))


def test_encode_frame_refuses_a_message_larger_than_the_limit() -> None:
    message = protocol.reply(1, b"x" * 100)
    assert len(protocol.encode_frame(message, max_frame_size=1000)) > 100
    with pytest.raises(MessageTooLargeError, match="exceeds the frame limit of 50 bytes"):
        protocol.encode_frame(message, max_frame_size=50)


# --- malformed payloads ----------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_garbage_payloads_raise_protocol_error_and_nothing_else(payload: bytes) -> None:
    try:
        message = protocol.decode_message(payload)
    except ProtocolError:
        return
    assert isinstance(message, dict)
    assert isinstance(message["type"], str)


@FAST
@given(st.binary(min_size=1, max_size=8), st.integers(min_value=0, max_value=200))
def test_corrupted_valid_payloads_raise_protocol_error_and_nothing_else(
    junk: bytes, where: int
) -> None:
    payload = protocol.encode_message(SAMPLE_MESSAGES[1])
    where = min(where, len(payload))
    for corrupted in (
        payload[:where] + junk + payload[where:],
        payload[:where] + junk + payload[where + len(junk) :],
    ):
        with contextlib.suppress(ProtocolError):
            protocol.decode_message(corrupted)


def test_every_truncation_of_a_payload_is_a_protocol_error() -> None:
    payload = protocol.encode_message(SAMPLE_MESSAGES[1])
    for end in range(len(payload)):
        with pytest.raises(ProtocolError):
            protocol.decode_message(payload[:end])


def test_bytes_after_the_message_in_a_payload_are_a_protocol_error() -> None:
    payload = protocol.encode_message(protocol.hello()) + b"\xff\x00junk"
    with pytest.raises(ProtocolError):
        protocol.decode_message(payload)


@pytest.mark.parametrize(
    "value", [[1, 2], 5, "hello", b"bytes", None, True, 1.5], ids=lambda v: type(v).__name__
)
def test_a_payload_that_is_not_a_map_is_a_protocol_error(value: Any) -> None:
    with pytest.raises(ProtocolError, match="must be a CBOR map") as info:
        protocol.decode_message(cbor2.dumps(value))
    assert info.value.request_id is None


@pytest.mark.parametrize(
    "message",
    [{}, {"id": 1}, {"type": 5}, {"type": None}, {"type": b"call"}, {"type": ["call"]}],
    ids=repr,
)
def test_a_map_without_a_text_type_is_a_protocol_error(message: dict[str, Any]) -> None:
    with pytest.raises(ProtocolError, match="text 'type'"):
        protocol.decode_message(cbor2.dumps(message))


@pytest.mark.parametrize("tag", [99, 35, 28, 29, 21, 256, 1004, 55799, 2**40])
def test_unknown_cbor_tags_are_a_protocol_error(tag: int) -> None:
    payload = cbor2.dumps({"type": "reply", "id": 1, "value": tagged(tag, "a+b")})
    with pytest.raises(ProtocolError, match="unsupported CBOR tag"):
        protocol.decode_message(payload)


@pytest.mark.parametrize(
    "name", ["NoSuchType", "os.system", "builtins.eval", "Leaf", "", "test_protocol.leaf"]
)
def test_unknown_wire_type_names_are_a_protocol_error(name: str) -> None:
    payload = cbor2.dumps({"type": "reply", "id": 1, "value": tagged(27, [name, {}])})
    with pytest.raises(ProtocolError, match="unknown wire type"):
        protocol.decode_message(payload)


@pytest.mark.parametrize(
    "content",
    [
        "test_protocol.Leaf",
        [],
        ["test_protocol.Leaf"],
        ["test_protocol.Leaf", {"name": "a", "count": 1}, "extra"],
        [1, {}],
        ["test_protocol.Leaf", ["a", 1]],
        ["test_protocol.Leaf", {"name": "a"}],
        ["test_protocol.Color", {}],
        ["test_protocol.Color", {"value": "purple"}],
        ["test_protocol.Color", {"value": [1]}],
        {"test_protocol.Leaf": {}},
    ],
    ids=repr,
)
def test_a_domain_object_of_the_wrong_shape_is_a_protocol_error(content: Any) -> None:
    payload = cbor2.dumps({"type": "reply", "id": 1, "value": tagged(27, content)})
    with pytest.raises(ProtocolError):
        protocol.decode_message(payload)


@pytest.mark.parametrize(
    "bad_arg",
    [
        tagged(27, ["NoSuchType", {}]),
        tagged(27, "wrong shape"),
        tagged(99, 1),
        [1, {"deep": tagged(27, ["os.system", {"cmd": "rm -rf /"}])}],
    ],
    ids=["unknown-type", "bad-shape", "unknown-tag", "nested-unknown-type"],
)
def test_a_call_with_an_undecodable_argument_keeps_its_id_for_the_error_reply(
    bad_arg: Any,
) -> None:
    with pytest.raises(ProtocolError) as info:
        protocol.decode_message(call_with_arg(4242, bad_arg))
    assert info.value.request_id == 4242


def test_a_tell_with_an_undecodable_argument_has_no_id_to_answer() -> None:
    payload = cbor2.dumps(
        {"type": "tell", "id": 5, "endpoint": "e", "method": "m", "args": [tagged(99, 1)]}
    )
    with pytest.raises(ProtocolError) as info:
        protocol.decode_message(payload)
    assert info.value.request_id is None


@pytest.mark.parametrize(
    "payload",
    [
        b"\x81" * 100_000 + b"\x01",  # arrays
        b"\x9f" * 100_000 + b"\x01",  # indefinite-length arrays
        b"\xa1\x01" * 100_000 + b"\x01",  # maps
        b"\xd8\x25" * 100_000 + b"\x01",  # tags
        b"\xd8\x1b\x82\x60" * 100_000 + b"\x01",  # domain objects
        cbor2.dumps({"type": "call", "id": 1})[:-1] + b"\x81" * 100_000 + b"\x01",
    ],
    ids=["arrays", "indefinite-arrays", "maps", "tags", "domain-objects", "inside-a-message"],
)
def test_deeply_nested_items_are_a_protocol_error_not_a_crash(payload: bytes) -> None:
    with pytest.raises(ProtocolError):
        protocol.decode_message(payload)


# --- requests --------------------------------------------------------------------------------


def test_a_valid_call_parses() -> None:
    token = uuid.uuid4()
    message = through_the_wire(
        protocol.call(9, "jobmaster-1", "offer", [Slot("h", 1)], {"timeout": 2.5}, token)
    )
    request = protocol.parse_request(message)
    assert request.kind == "call"
    assert request.id == 9
    assert request.endpoint == "jobmaster-1"
    assert request.method == "offer"
    assert request.args == [Slot("h", 1)]
    assert request.kwargs == {"timeout": 2.5}
    assert request.token == token


def test_a_valid_tell_parses_without_an_id() -> None:
    message = through_the_wire(protocol.tell("calc", "note", [1], {}))
    assert "id" not in message
    request = protocol.parse_request(message)
    assert (request.kind, request.id, request.method, request.args) == ("tell", None, "note", [1])
    assert request.token is None


def test_a_valid_handshake_parses() -> None:
    message = through_the_wire(protocol.handshake(1, "dispatcher", "DispatcherGateway"))
    request = protocol.parse_request(message)
    assert request.kind == "handshake"
    assert request.id == 1
    assert request.endpoint == "dispatcher"
    assert request.gateway == "DispatcherGateway"
    assert request.version == protocol.PROTOCOL_VERSION


def test_a_call_without_args_or_kwargs_gets_empty_ones() -> None:
    request = protocol.parse_request({"type": "call", "id": 2, "endpoint": "e", "method": "m"})
    assert (request.args, request.kwargs) == ([], {})


CALL = {"type": "call", "id": 11, "endpoint": "calc", "method": "add", "args": [], "kwargs": {}}
TELL = {k: v for k, v in CALL.items() if k != "id"} | {"type": "tell"}
HANDSHAKE = {"type": "handshake", "id": 12, "endpoint": "calc", "gateway": "G", "version": 1}


@pytest.mark.parametrize(
    ("message", "expected_id"),
    [
        ({**CALL, "id": None}, None),
        ({k: v for k, v in CALL.items() if k != "id"}, None),
        ({**CALL, "id": "11"}, None),
        ({**CALL, "id": 1.0}, None),
        ({**CALL, "id": True}, None),
        ({**CALL, "type": "reply"}, 11),
        ({**CALL, "type": "bogus"}, 11),
        ({**CALL, "endpoint": None}, 11),
        ({**CALL, "endpoint": 3}, 11),
        ({**CALL, "method": None}, 11),
        ({**CALL, "method": b"add"}, 11),
        ({**CALL, "args": {"a": 1}}, 11),
        ({**CALL, "args": "ab"}, 11),
        ({**CALL, "kwargs": [1, 2]}, 11),
        ({**CALL, "kwargs": {1: 2}}, 11),
        ({**CALL, "kwargs": {"a": 1, b"b": 2}}, 11),
        ({**TELL, "args": None}, None),
        ({**HANDSHAKE, "gateway": None}, 12),
        ({**HANDSHAKE, "version": "1"}, 12),
        ({**HANDSHAKE, "version": True}, 12),
        ({k: v for k, v in HANDSHAKE.items() if k != "id"}, None),
    ],
    ids=[
        "call-id-null",
        "call-id-missing",
        "call-id-text",
        "call-id-float",
        "call-id-bool",
        "reply-is-not-a-request",
        "unknown-type",
        "endpoint-missing",
        "endpoint-not-text",
        "method-missing",
        "method-not-text",
        "args-a-map",
        "args-text",
        "kwargs-an-array",
        "kwargs-int-key",
        "kwargs-bytes-key",
        "tell-args-null",
        "handshake-gateway-missing",
        "handshake-version-text",
        "handshake-version-bool",
        "handshake-id-missing",
    ],
)
def test_a_request_of_the_wrong_shape_is_a_protocol_error_with_its_readable_id(
    message: dict[Any, Any], expected_id: int | None
) -> None:
    with pytest.raises(ProtocolError) as info:
        protocol.parse_request(message)
    assert info.value.request_id == expected_id


def test_a_malformed_tell_carrying_an_id_is_never_answered() -> None:
    with pytest.raises(ProtocolError) as info:
        protocol.parse_request({**TELL, "id": 11, "args": None})
    assert info.value.request_id is None


def test_a_wrong_shape_request_decoded_from_the_wire_keeps_its_id() -> None:
    payload = cbor2.dumps({**CALL, "kwargs": {1: 2}})
    with pytest.raises(ProtocolError) as info:
        protocol.parse_request(protocol.decode_message(payload))
    assert info.value.request_id == 11


def test_check_hello_accepts_hello_and_refuses_anything_else() -> None:
    assert protocol.check_hello(through_the_wire(protocol.hello())) is None
    with pytest.raises(ProtocolError, match="not supported"):
        protocol.check_hello({"type": "hello", "protocol": 2})
    with pytest.raises(ProtocolError, match="expected 'hello'"):
        protocol.check_hello(protocol.call(1, "e", "m", [], {}))


@pytest.mark.parametrize("char", ["x", "\u20ac", "\U0001f600"], ids=["1-byte", "3-byte", "4-byte"])
def test_an_error_reply_fits_the_frame_limit_whatever_its_characters(char: str) -> None:
    try:
        endpoint_method_that_fails(ValueError(char * 5000))
    except ValueError as exc:
        frame = protocol.encode_frame(protocol.error_reply(1, exc, protocol.MIN_FRAME_SIZE))
    assert len(frame) - protocol.HEADER_SIZE <= protocol.MIN_FRAME_SIZE
    error = through_the_wire(protocol.decode_message(frame[protocol.HEADER_SIZE :]))["error"]
    assert error["message"].startswith(char * 10) and "(5000 characters)" in error["message"]


def test_hello_states_the_clients_frame_limit_and_check_hello_returns_it() -> None:
    assert "max_frame_size" not in protocol.hello()
    hello = through_the_wire(protocol.hello(1024 * 1024))
    assert hello["max_frame_size"] == 1024 * 1024
    assert protocol.check_hello(hello) == 1024 * 1024
    assert protocol.check_hello(through_the_wire(protocol.hello(protocol.MIN_FRAME_SIZE))) == 1024
    with pytest.raises(ProtocolError, match="at least 1024 bytes, got 1023"):
        protocol.check_hello(protocol.hello(1023))


# --- errors ----------------------------------------------------------------------------------


def _raised(error: BaseException) -> BaseException:
    try:
        raise error
    except BaseException as exc:
        return exc


def endpoint_method_that_fails(error: BaseException) -> None:
    raise error


@pytest.mark.parametrize(
    "error",
    [
        ValueError("bad value"),
        RuntimeError("boom"),
        ZeroDivisionError("division by zero"),
        TimeoutError("too slow"),
        FencingTokenError("stale token"),
        HandshakeError("gateway not served"),
        EndpointNotFoundError("no such endpoint"),
        NoSuchMethodError("no such method"),
        MessageTooLargeError("reply of 11 bytes exceeds the frame limit of 10 bytes"),
        ProtocolError("malformed request"),
        AuthenticationError("wrong proof"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_a_registered_error_comes_back_as_its_class_with_message_and_remote_traceback(
    error: BaseException,
) -> None:
    try:
        endpoint_method_that_fails(error)
    except BaseException as exc:
        wire_reply = through_the_wire(protocol.error_reply(5, exc))
    assert wire_reply["id"] == 5
    assert wire_reply["error"]["type"] == type(error).__name__
    rebuilt = protocol.error_from_wire(wire_reply["error"])
    assert type(rebuilt) is type(error)
    assert str(rebuilt) == str(error)
    remote_tb = rebuilt.remote_traceback  # type: ignore[attr-defined]
    if isinstance(error, RpcError):
        # the RPC layer's own refusals are about the request: no server internals travel
        assert remote_tb is None
        return
    assert "Traceback" in remote_tb
    assert "endpoint_method_that_fails" in remote_tb
    assert any(note.startswith("Remote traceback:") for note in rebuilt.__notes__)
    assert "endpoint_method_that_fails" in rebuilt.__notes__[-1]


def test_a_key_error_keeps_its_key_across_the_wire() -> None:
    rebuilt = protocol.error_from_wire(protocol.error_to_wire(_raised(KeyError("job-1"))))
    assert type(rebuilt) is KeyError
    assert rebuilt.args == ("job-1",)


def test_an_error_that_was_never_raised_travels_without_a_traceback() -> None:
    rebuilt = protocol.error_from_wire(protocol.error_to_wire(ValueError("plain")))
    assert type(rebuilt) is ValueError
    assert str(rebuilt) == "plain"
    assert rebuilt.remote_traceback is None  # type: ignore[attr-defined]
    assert not getattr(rebuilt, "__notes__", [])


def test_an_unregistered_error_type_comes_back_as_remote_error_with_its_name() -> None:
    class JobSchedulingError(Exception):
        pass

    wire = through_the_wire(protocol.error_reply(1, _raised(JobSchedulingError("no slots"))))
    rebuilt = protocol.error_from_wire(wire["error"])
    assert type(rebuilt) is RemoteError
    assert rebuilt.type_name == "JobSchedulingError"
    assert rebuilt.remote_message == "no slots"
    assert "JobSchedulingError: no slots" in str(rebuilt)
    assert rebuilt.remote_traceback is not None
    assert "Traceback" in rebuilt.remote_traceback
    assert rebuilt.__notes__


@pytest.mark.parametrize(
    "type_name",
    [
        "os.system",
        "builtins.eval",
        "subprocess.Popen",
        "__import__",
        "this.s",
        "antigravity.fly",
        "SystemExit",
        "KeyboardInterrupt",
        "BaseException",
        "GeneratorExit",
        "RemoteError",
    ],
)
def test_an_error_type_name_never_imports_anything(type_name: str) -> None:
    modules_before = set(sys.modules)
    rebuilt = protocol.error_from_wire({"type": type_name, "message": "echo pwned"})
    assert type(rebuilt) is RemoteError
    assert rebuilt.type_name == type_name
    assert rebuilt.remote_message == "echo pwned"
    assert set(sys.modules) == modules_before


def test_a_relayed_remote_error_keeps_its_original_type_and_traceback() -> None:
    first = protocol.error_from_wire({"type": "Custom", "message": "m", "traceback": "TB\n"})
    relayed = protocol.error_from_wire(through_the_wire(protocol.error_reply(2, first))["error"])
    assert type(relayed) is RemoteError
    assert (relayed.type_name, relayed.remote_message) == ("Custom", "m")
    assert relayed.remote_traceback == "TB\n"


@pytest.mark.parametrize("error", [None, "boom", ["ValueError", "m"], 3], ids=repr)
def test_a_malformed_error_map_becomes_a_protocol_error(error: Any) -> None:
    assert type(protocol.error_from_wire(error)) is ProtocolError


def test_odd_fields_in_an_error_map_do_not_break_the_caller() -> None:
    rebuilt = protocol.error_from_wire({"type": 5, "message": None, "traceback": 7})
    assert type(rebuilt) is RemoteError
    assert rebuilt.remote_traceback is None
    assert type(protocol.error_from_wire({})) is Exception


# --- auth ------------------------------------------------------------------------------------

SECRET = b"cluster secret"


def test_the_right_proof_is_accepted() -> None:
    challenge = protocol.new_challenge()
    proof = protocol.auth_proof(SECRET, challenge)
    message = through_the_wire(protocol.auth(proof))
    assert protocol.verify_proof(SECRET, challenge, message["proof"])


def test_challenges_are_fresh_and_long_enough() -> None:
    challenges = {protocol.new_challenge() for _ in range(20)}
    assert len(challenges) == 20
    assert all(len(c) >= 16 for c in challenges)
    welcome = through_the_wire(protocol.welcome(challenge=next(iter(challenges))))
    assert welcome["challenge"] in challenges


@pytest.mark.parametrize(
    "proof",
    [
        protocol.auth_proof(b"other secret", b"c" * 16),
        protocol.auth_proof(SECRET, b"d" * 16),
        protocol.auth_proof(SECRET, b"c" * 16)[:-1],
        protocol.auth_proof(SECRET, b"c" * 16) + b"\x00",
        b"",
        bytearray(protocol.auth_proof(SECRET, b"c" * 16)),
        protocol.auth_proof(SECRET, b"c" * 16).hex(),
        None,
        0,
        [],
    ],
    ids=[
        "other-secret",
        "other-challenge",
        "truncated",
        "extended",
        "empty",
        "bytearray",
        "hex-text",
        "none",
        "int",
        "list",
    ],
)
def test_a_wrong_proof_is_refused(proof: Any) -> None:
    challenge = b"c" * 16
    assert protocol.verify_proof(SECRET, challenge, protocol.auth_proof(SECRET, challenge))
    assert not protocol.verify_proof(SECRET, challenge, proof)


# --- serialization ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "type_name"),
    [
        (NotRegistered(), "NotRegistered"),
        ({"a": [1, NotRegistered()]}, "NotRegistered"),
        (UnregisteredDataclass(1), "UnregisteredDataclass"),
        (Pair(Leaf("x", 1), NotRegistered()), "NotRegistered"),
        (object(), "object"),
    ],
    ids=["plain", "nested", "dataclass", "inside-a-wire-type", "object"],
)
def test_dumps_of_an_unregistered_object_raises_serialization_error_naming_its_type(
    value: Any, type_name: str
) -> None:
    with pytest.raises(SerializationError, match=rf"\b{type_name}\b"):
        serialization.dumps(value)
    with pytest.raises(SerializationError, match=rf"\b{type_name}\b"):
        protocol.encode_frame(protocol.call(1, "e", "m", [value], {}))


def test_only_dataclasses_and_enums_can_be_wire_types() -> None:
    with pytest.raises(TypeError, match="dataclass or an Enum"):
        wire_type(NotRegistered)


def test_a_wire_type_name_cannot_be_taken_twice() -> None:
    with pytest.raises(ValueError, match="already taken"):

        @wire_type(name="test_protocol.Leaf")
        @dataclasses.dataclass
        class Impostor:
            name: str


@pytest.mark.parametrize(
    "value",
    [{Color.RED: 1}, {Slot("h", 1): "free"}, {Color.GREEN, Color.RED}],
    ids=["enum-key", "frozen-dataclass-key", "enum-set"],
)
def test_hashable_wire_types_survive_as_map_keys_and_set_members(value: Any) -> None:
    assert serialization.roundtrip(value) == value


def test_an_int_or_str_enum_cannot_be_registered_since_its_type_would_be_lost() -> None:
    class Priority(enum.IntEnum):
        HIGH = 2

    with pytest.raises(TypeError, match="subclasses a CBOR type"):
        wire_type(Priority)


def test_a_large_frame_received_straight_into_its_own_buffer_comes_out_whole_in_order() -> None:
    big = bytes(range(256)) * (protocol.LARGE_PAYLOAD // 256 + 7)
    small_before, small_after = b"before", b"after"
    stream = (
        protocol.frame_bytes(small_before)
        + protocol.frame_bytes(big)
        + protocol.frame_bytes(small_after)
    )
    decoder = FrameDecoder()
    decoder.feed(stream[:100_000])  # the first frame, the large one's header and its start
    assert list(decoder) == [small_before]
    end_of_big = 4 + len(small_before) + 4 + len(big)
    pos = 100_000
    while (view := decoder.receive_view()) is not None:
        with view:
            count = min(len(view), 70_000)  # a socket's recv_into fills a part of the view
            view[:count] = stream[pos : pos + count]
        decoder.received(count)
        pos += count
    assert pos == end_of_big  # nothing past the large frame was taken into its buffer
    decoder.feed(stream[pos:])
    assert list(decoder) == [big, small_after]
    assert decoder.buffered == 0


def _receive_large(decoder: FrameDecoder, stream: bytes) -> tuple[list[bytes | bytearray], int]:
    """Feed `stream` to `decoder` as a reader on a socket does (the rest of a large frame
    straight into its buffer); the payloads and the id of the large one's buffer."""
    decoder.feed(stream[:1000])
    pos = 1000
    buffer_id = 0
    while (view := decoder.receive_view()) is not None:
        buffer_id = id(view.obj)
        with view:
            count = min(len(view), 70_000)
            view[:count] = stream[pos : pos + count]
        decoder.received(count)
        pos += count
    decoder.feed(stream[pos:])
    return list(decoder), buffer_id


def test_a_large_buffer_given_back_is_received_into_again_and_what_was_decoded_stays() -> None:
    size = protocol.LARGE_PAYLOAD + 5
    first = protocol.encode_message({"type": "reply", "id": 1, "value": b"\x01" * size})
    second = protocol.encode_message({"type": "reply", "id": 2, "value": b"\x02" * size})
    decoder = FrameDecoder()
    [payload], first_buffer = _receive_large(decoder, protocol.frame_bytes(first))
    value = protocol.decode_message(payload)["value"]
    decoder.give_back(payload)
    [payload], second_buffer = _receive_large(decoder, protocol.frame_bytes(second))
    assert second_buffer == first_buffer  # the same memory, no fresh allocation
    assert protocol.decode_message(payload)["value"] == b"\x02" * size
    assert value == b"\x01" * size  # the first value was copied out before the reuse


def test_a_large_buffer_not_given_back_is_never_received_into_again() -> None:
    size = protocol.LARGE_PAYLOAD + 5
    decoder = FrameDecoder()
    [kept], _ = _receive_large(decoder, protocol.frame_bytes(b"\x01" * size))
    [other], _ = _receive_large(decoder, protocol.frame_bytes(b"\x02" * size))
    assert kept == b"\x01" * size and other == b"\x02" * size
    assert other is not kept
    decoder.give_back(b"\x03" * size)  # bytes were never a receive buffer: not kept
    [third], _ = _receive_large(decoder, protocol.frame_bytes(b"\x04" * size))
    assert third == b"\x04" * size


@pytest.mark.parametrize("size", [large_values.LARGE_BYTES, 1 << 20, (1 << 16) * 300 + 1])
def test_a_large_value_encoded_around_is_the_same_bytes_as_encoded_whole(size: int) -> None:
    large = bytes(range(256)) * (size // 256) + b"\x09" * (size % 256)
    stand_in = large_values.LARGE_STAND_IN
    reply = protocol.reply(7, stand_in)
    call = {
        "type": "call",
        "id": 8,
        "endpoint": "e",
        "method": "m",
        "args": [1, stand_in, "x"],
        "kwargs": {"k": 2},
        "sender": "s",
    }
    for message, whole in (
        (reply, protocol.reply(7, large)),
        (call, {**call, "args": [1, large, "x"]}),
    ):
        pieces = serialization.dumps_around(message, large)
        assert b"".join(pieces) == serialization.dumps(whole)
        assert any(piece is large for piece in pieces)  # not copied
        assert protocol.decode_message(b"".join(pieces)) == whole


def test_only_bytes_at_least_the_large_size_are_sent_around() -> None:
    large = b"\x00" * large_values.LARGE_BYTES
    assert large_values.large_bytes_index((1, "two", large)) == 2
    assert large_values.large_bytes_index((large[:-1], bytearray(large))) == -1
    assert large_values.large_bytes_index(()) == -1


@pytest.mark.parametrize(
    "request_id", [0, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**63 - 1]
)
def test_a_reply_built_from_its_parts_is_the_same_bytes_as_the_reply_encoded_whole(
    request_id: int,
) -> None:
    for value in (None, 7, -1, "text", b"bytes", [1, {"a": Leaf("x", 2)}], 1.5, uuid.UUID(int=3)):
        assert protocol.encode_reply(request_id, value) == protocol.encode_message(
            protocol.reply(request_id, value)
        )
    with pytest.raises(SerializationError):
        protocol.encode_reply(request_id, object())


@pytest.mark.parametrize("request_id", [1, 24, 70_000, 2**40])
@pytest.mark.parametrize("token", [None, uuid.UUID(int=5)])
@pytest.mark.parametrize("sender", [None, "jobmaster-1"])
def test_a_call_built_from_its_parts_is_the_same_bytes_as_the_call_encoded_whole(
    request_id: int, token: uuid.UUID | None, sender: str | None
) -> None:
    for args, kwargs in (
        ((), {}),
        ((1, "two", [Leaf("x", 3)]), {}),
        ([4.5], {"timeout": 2.0, "name": b"n"}),
    ):
        message = protocol.call(request_id, "endpoint-é", "method", args, kwargs, token)
        if sender is not None:
            message["sender"] = sender
        parts = protocol.call_parts("endpoint-é", "method", token, sender)
        built = protocol.encode_call(parts, request_id, args, kwargs)
        assert built == protocol.encode_message(message)
        assert protocol.decode_message(built) == protocol.decode_message(
            protocol.encode_message(message)
        )


def test_a_large_buffer_over_the_spare_limit_is_not_kept_for_the_next_frame() -> None:
    size = protocol.SPARE_LIMIT + 1  # a connection keeps at most one buffer of 4 MiB
    decoder = FrameDecoder(2 * size)
    [first], _ = _receive_large(decoder, protocol.frame_bytes(b"\x01" * size))
    decoder.give_back(first)
    [second], _ = _receive_large(decoder, protocol.frame_bytes(b"\x02" * size))
    assert second is not first and second == b"\x02" * size
