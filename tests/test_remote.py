"""Calls over TCP, after Flink's PekkoRpcActorTest, HandshakeTest and MessageSerializationTest."""

from __future__ import annotations

import re
import socket
import uuid
from collections.abc import AsyncIterator

import cbor2
import pytest
import trio

from minicluster.rpc import (
    AuthenticationError,
    EndpointNotFoundError,
    EndpointNotStartedError,
    HandshakeError,
    MessageTooLargeError,
    NoSuchMethodError,
    ProtocolError,
    RecipientUnreachableError,
    RemoteError,
    RpcConnectionError,
    RpcError,
    RpcService,
    SerializationError,
    open_rpc_service,
    protocol,
)
from tests.rpc_fixtures import Calc, CalcGateway, NotWireSafe, OtherGateway, Point


@pytest.fixture
async def server() -> AsyncIterator[RpcService]:
    async with open_rpc_service("127.0.0.1", max_frame_size=64 * 1024) as service:
        Calc(service).start()
        yield service


@pytest.fixture
async def client() -> AsyncIterator[RpcService]:
    async with open_rpc_service(max_frame_size=64 * 1024) as service:
        yield service


async def calc_at(client: RpcService, server: RpcService) -> CalcGateway:
    return await client.connect(f"{server.address}/calc", CalcGateway)


async def test_remote_ask_and_tell(server: RpcService, client: RpcService) -> None:
    gateway = await calc_at(client, server)
    assert await gateway.add(2, 3) == 5
    assert await gateway.echo({"p": Point(1, 2), "id": uuid.UUID(int=7)}) == {
        "p": Point(1, 2),
        "id": uuid.UUID(int=7),
    }
    gateway.note("told")
    assert await gateway.notes() == ["told"]


async def test_many_calls_in_flight_on_one_connection_get_their_own_replies(
    server: RpcService, client: RpcService
) -> None:
    gateway = await calc_at(client, server)
    results: dict[int, object] = {}

    async def call(i: int) -> None:
        # sleeps of different lengths make the replies come back out of order
        if i % 3 == 0:
            results[i] = await gateway.sleep(0.001 * (10 - i % 10))
        else:
            results[i] = await gateway.add(i, 1000)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for i in range(200):
                nursery.start_soon(call, i)
    assert all(results[i] == ("slept" if i % 3 == 0 else i + 1000) for i in range(200))
    assert len(client._connections) == 1


async def test_remote_exception_keeps_type_message_and_traceback(
    server: RpcService, client: RpcService
) -> None:
    gateway = await calc_at(client, server)
    with pytest.raises(ValueError, match="remote boom") as info:
        await gateway.fail("remote boom")
    assert "in fail" in info.value.remote_traceback  # type: ignore[attr-defined]


async def test_unregistered_remote_exception_arrives_as_remote_error(
    server: RpcService, client: RpcService
) -> None:
    gateway = await calc_at(client, server)
    with pytest.raises(RemoteError) as info:
        await gateway.fail_custom("custom")
    assert info.value.type_name == "CustomProblem"
    assert info.value.remote_message == "custom"


async def test_handshake_refuses_a_gateway_the_endpoint_does_not_implement(
    server: RpcService, client: RpcService
) -> None:
    with pytest.raises(HandshakeError, match="does not implement gateway 'OtherGateway'"):
        await client.connect(f"{server.address}/calc", OtherGateway)


async def test_handshake_refuses_another_protocol_version(server: RpcService) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", server.port)  # type: ignore[arg-type]
    await stream.send_all(protocol.encode_frame({"type": "hello", "protocol": 2}))
    message = await _read_message(stream)
    assert message["type"] == "goodbye" and "protocol version 2" in message["reason"]


async def test_handshake_request_with_wrong_version_is_a_handshake_error(
    server: RpcService,
) -> None:
    stream = await _open_raw(server)
    await stream.send_all(protocol.encode_frame(protocol.handshake(1, "calc", "CalcGateway", 9)))
    message = await _read_message(stream)
    assert message["error"]["type"] == "HandshakeError"


async def test_connecting_to_an_unknown_endpoint_fails(
    server: RpcService, client: RpcService
) -> None:
    with pytest.raises(EndpointNotFoundError):
        await client.connect(f"{server.address}/nobody", CalcGateway)


async def test_connecting_where_nothing_listens_fails_fast(client: RpcService) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    with trio.fail_after(2):
        with pytest.raises(RpcConnectionError, match=f"127.0.0.1:{free_port}"):
            await client.connect(f"tcp://127.0.0.1:{free_port}/calc", CalcGateway)


async def test_remote_call_to_an_endpoint_that_is_not_started(
    server: RpcService, client: RpcService
) -> None:
    Calc(server, "later")
    gateway = await client.connect(f"{server.address}/later", CalcGateway)
    with pytest.raises(EndpointNotStartedError):
        await gateway.add(1, 1)


async def test_unknown_method_is_no_such_method(server: RpcService) -> None:
    stream = await _open_raw(server)
    await stream.send_all(protocol.encode_frame(protocol.call(5, "calc", "close", [], {})))
    message = await _read_message(stream)
    assert message["id"] == 5 and message["error"]["type"] == "NoSuchMethodError"


async def test_non_serializable_argument_fails_at_once_and_is_not_sent(
    server: RpcService, client: RpcService
) -> None:
    gateway = await calc_at(client, server)
    with pytest.raises(SerializationError, match="NotWireSafe"):
        await gateway.echo(NotWireSafe())
    assert await gateway.add(1, 1) == 2


async def test_non_serializable_result_is_an_error_reply(
    server: RpcService, client: RpcService
) -> None:
    gateway = await calc_at(client, server)
    with pytest.raises(SerializationError, match="NotWireSafe"):
        await gateway.make_unserializable()


async def test_oversized_request_fails_at_the_caller_and_is_not_sent(
    server: RpcService, client: RpcService
) -> None:
    gateway = await calc_at(client, server)
    with pytest.raises(MessageTooLargeError, match="not sent"):
        await gateway.echo(b"x" * 100_000)
    assert await gateway.add(1, 1) == 2  # the connection is still fine


async def test_oversized_reply_becomes_an_error_naming_both_sizes(
    server: RpcService, client: RpcService
) -> None:
    gateway = await calc_at(client, server)
    with pytest.raises(
        MessageTooLargeError,
        match=r"the reply to big_reply is 100,0\d\d bytes, over the caller's frame limit of "
        r"65,536 bytes",
    ):
        await gateway.big_reply(100_000)
    assert len(await gateway.big_reply(1000)) == 1000


async def test_a_reply_over_the_callers_frame_limit_fails_that_call_only() -> None:
    big = 3 * 1024 * 1024
    async with open_rpc_service("127.0.0.1") as server:  # the server takes 10 MiB frames
        Calc(server).start()
        async with open_rpc_service(max_frame_size=1024 * 1024) as client:
            gateway = await calc_at(client, server)
            (connection,) = client._connections.values()
            with pytest.raises(RpcError) as info:
                await gateway.big_reply(big)
            assert isinstance(info.value, MessageTooLargeError)
            assert re.fullmatch(
                r"the reply to big_reply is 3,145,7\d\d bytes, over the caller's frame limit "
                r"of 1,048,576 bytes",
                str(info.value),
            )
            assert await gateway.add(1, 1) == 2
            assert list(client._connections.values()) == [connection]
            assert not connection.closed


async def test_a_client_that_states_no_frame_limit_gets_replies_up_to_the_servers_limit(
    server: RpcService,
) -> None:
    stream = await _open_raw(server)  # a hello without max_frame_size, as older clients send
    await stream.send_all(
        protocol.encode_frame(protocol.call(1, "calc", "big_reply", [100_000], {}))
    )
    message = await _read_message(stream)
    assert message["id"] == 1 and message["error"]["type"] == "MessageTooLargeError"
    assert re.fullmatch(
        r"the reply to big_reply is 100,0\d\d bytes, over this server's frame limit of "
        r"65,536 bytes",
        message["error"]["message"],
    )
    await stream.send_all(protocol.encode_frame(protocol.call(2, "calc", "add", [1, 2], {})))
    assert await _read_message(stream) == {"type": "reply", "id": 2, "value": 3}
    await stream.aclose()


@pytest.mark.parametrize("limit", ["big", 1023, -1, True, 2.5e6])
async def test_a_hello_with_a_malformed_frame_limit_gets_goodbye(
    server: RpcService, limit: object
) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", server.port)  # type: ignore[arg-type]
    hello = {"type": "hello", "protocol": 1, "max_frame_size": limit}
    await stream.send_all(protocol.encode_frame(hello))
    message = await _read_message(stream)
    assert message == {
        "type": "goodbye",
        "reason": "max_frame_size in hello must be an integer of at least 1024 bytes, "
        f"got {limit!r}",
    }
    assert await _read_eof(stream)
    await stream.aclose()


async def test_a_frame_limit_below_the_minimum_is_refused_when_the_service_opens() -> None:
    with pytest.raises(ValueError, match="max_frame_size must be an integer of at least 1024"):
        async with open_rpc_service(max_frame_size=1000):
            pass


async def test_local_oversized_reply_is_fine() -> None:
    async with open_rpc_service(max_frame_size=1024) as service:
        calc = Calc(service)
        calc.start()
        assert len(await calc.get_self_gateway(CalcGateway).big_reply(10_000)) == 10_000


async def test_remote_service_stopping_fails_calls_in_flight_fast(client: RpcService) -> None:
    outcomes: list[BaseException] = []
    async with trio.open_nursery() as nursery:
        async with open_rpc_service("127.0.0.1") as server:
            Calc(server).start()
            gateway = await calc_at(client, server)

            async def call() -> None:
                try:
                    await gateway.sleep(60)
                except RecipientUnreachableError as exc:
                    outcomes.append(exc)

            for _ in range(5):
                nursery.start_soon(call)
            await trio.sleep(0.05)
            stopped_at = trio.current_time()
        with trio.fail_after(2):
            while len(outcomes) < 5:
                await trio.sleep(0.01)
    assert trio.current_time() - stopped_at < 2
    with pytest.raises(RecipientUnreachableError):
        await gateway.add(1, 1)


async def test_remote_endpoint_closing_fails_calls_in_flight_fast(
    server: RpcService, client: RpcService
) -> None:
    gateway = await calc_at(client, server)
    errors: list[BaseException] = []

    async def call() -> None:
        try:
            await gateway.sleep(60)
        except RecipientUnreachableError as exc:
            errors.append(exc)

    with trio.fail_after(2):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(call)
            await trio.sleep(0.05)
            calc = server.lookup_endpoint("calc")
            assert calc is not None
            await calc.close()
    assert len(errors) == 1


async def test_bad_bytes_on_one_connection_do_not_disturb_others(
    server: RpcService, client: RpcService
) -> None:
    gateway = await calc_at(client, server)
    bad = await trio.open_tcp_stream("127.0.0.1", server.port)  # type: ignore[arg-type]
    await bad.send_all(b"\x00\x00\x00\x03\xff\xff\xff")
    message = await _read_message(bad)
    assert message["type"] == "goodbye"
    assert await _read_eof(bad)
    assert await gateway.add(20, 22) == 42


async def test_malformed_request_with_readable_id_gets_protocol_error_reply(
    server: RpcService,
) -> None:
    stream = await _open_raw(server)
    payload = cbor2.dumps({"type": "call", "id": 9, "endpoint": "calc", "method": 3})
    await stream.send_all(protocol.frame_bytes(payload))
    message = await _read_message(stream)
    assert message["id"] == 9 and message["error"]["type"] == "ProtocolError"
    # the connection keeps serving
    await stream.send_all(protocol.encode_frame(protocol.call(10, "calc", "add", [1, 2], {})))
    assert (await _read_message(stream))["value"] == 3


async def test_unknown_wire_type_in_arguments_is_a_protocol_error_reply(
    server: RpcService,
) -> None:
    stream = await _open_raw(server)
    evil = cbor2.CBORTag(27, ["os.system", {"command": "true"}])
    payload = cbor2.dumps(
        {"type": "call", "id": 4, "endpoint": "calc", "method": "echo", "args": [evil]}
    )
    await stream.send_all(protocol.frame_bytes(payload))
    message = await _read_message(stream)
    assert message["id"] == 4
    assert message["error"]["type"] == "ProtocolError"
    assert "unknown wire type 'os.system'" in message["error"]["message"]


async def test_oversized_frame_header_gets_goodbye_without_reading_the_body(
    server: RpcService,
) -> None:
    stream = await _open_raw(server)
    await stream.send_all((10**9).to_bytes(4, "big"))
    message = await _read_message(stream)
    assert message["type"] == "goodbye" and "exceeds the limit" in message["reason"]
    assert await _read_eof(stream)


async def test_first_frame_must_be_hello(server: RpcService) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", server.port)  # type: ignore[arg-type]
    await stream.send_all(protocol.encode_frame(protocol.call(1, "calc", "add", [1, 2], {})))
    message = await _read_message(stream)
    assert message["type"] == "goodbye" and "hello" in message["reason"]


async def test_force_serialization_catches_types_that_would_fail_remotely() -> None:
    async with open_rpc_service(force_serialization=True) as service:
        calc = Calc(service)
        calc.start()
        gateway = calc.get_self_gateway(CalcGateway)
        assert await gateway.echo(Point(1, 2)) == Point(1, 2)
        with pytest.raises(SerializationError):
            await gateway.echo(NotWireSafe())
        with pytest.raises(SerializationError):
            await gateway.make_unserializable()


async def test_shared_secret_admits_a_client_with_the_secret() -> None:
    async with (
        open_rpc_service("127.0.0.1", secret=b"s3cret") as server,
        open_rpc_service(secret=b"s3cret") as client,
    ):
        Calc(server).start()
        assert await (await calc_at(client, server)).add(1, 2) == 3


async def test_shared_secret_refuses_a_wrong_or_missing_secret() -> None:
    async with open_rpc_service("127.0.0.1", secret=b"s3cret") as server:
        Calc(server).start()
        async with open_rpc_service(secret=b"wrong") as client:
            with pytest.raises(AuthenticationError, match="authentication failed"):
                await calc_at(client, server)
        async with open_rpc_service() as client:
            with pytest.raises(AuthenticationError, match="requires a shared secret"):
                await calc_at(client, server)


async def test_no_call_is_served_before_authentication() -> None:
    async with open_rpc_service("127.0.0.1", secret=b"s3cret") as server:
        calc = Calc(server)
        calc.start()
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)  # type: ignore[arg-type]
        await stream.send_all(protocol.encode_frame(protocol.hello()))
        welcome = await _read_message(stream)
        assert isinstance(welcome.get("challenge"), bytes)
        await stream.send_all(protocol.encode_frame(protocol.tell("calc", "note", ["x"], {})))
        message = await _read_message(stream)
        assert message == {"type": "goodbye", "reason": "authentication failed"}
        assert calc.received == []


# --- raw socket helpers ------------------------------------------------------------------


async def _open_raw(server: RpcService) -> trio.SocketStream:
    stream = await trio.open_tcp_stream("127.0.0.1", server.port)  # type: ignore[arg-type]
    await stream.send_all(protocol.encode_frame(protocol.hello()))
    assert (await _read_message(stream))["type"] == "welcome"
    return stream


async def _read_message(stream: trio.SocketStream) -> dict:  # type: ignore[type-arg]
    decoder = protocol.FrameDecoder()
    with trio.fail_after(5):
        while True:
            frame = decoder.next_frame()
            if frame is not None:
                return protocol.decode_message(frame)
            data = await stream.receive_some(65536)
            assert data, "connection closed before a full frame"
            decoder.feed(data)


async def _read_eof(stream: trio.SocketStream) -> bool:
    with trio.fail_after(5):
        try:
            while await stream.receive_some(65536):
                pass
        except trio.BrokenResourceError:
            pass
    return True


def test_protocol_error_is_the_name_used_on_the_wire() -> None:
    assert protocol.error_to_wire(ProtocolError("x"))["type"] == "ProtocolError"
    assert protocol.error_to_wire(NoSuchMethodError("x"))["type"] == "NoSuchMethodError"


async def test_opening_a_service_leaves_the_process_allocator_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A library never changes process-wide settings behind its user's back: no mallopt (nor
    any other C library call) when a service opens, serves and closes."""
    import ctypes

    loaded: list[object] = []
    monkeypatch.setattr(ctypes, "CDLL", lambda *args, **kwargs: loaded.append(args))
    async with open_rpc_service("127.0.0.1") as server, open_rpc_service() as client:
        calc = Calc(server, "calc")
        calc.start()
        gateway = await client.connect(calc.address, CalcGateway)
        assert await gateway.add(1, 2) == 3
    assert loaded == []


async def test_the_stranger_probe_gets_a_goodbye_from_a_cluster_which_keeps_serving(
    server: RpcService, client: RpcService
) -> None:
    # a client whose hello goes unanswered for a second sends protocol.PROBE on a second
    # connection: a minicluster server that was merely slow must refuse only that connection
    host, port = server.address.removeprefix("tcp://").rsplit(":", 1)
    with trio.fail_after(5):
        probe = await trio.open_tcp_stream(host, int(port))
        async with probe:
            await probe.send_all(protocol.PROBE)
            answer = b""
            while chunk := await probe.receive_some(4096):
                answer += chunk
    assert protocol.foreign_peer(answer) is None  # not taken for a stranger
    goodbye = protocol.decode_message(answer[4:])
    assert goodbye["type"] == "goodbye"
    gateway = await calc_at(client, server)
    assert await gateway.add(1, 2) == 3


async def test_large_byte_strings_of_one_size_come_back_exactly_call_after_call() -> None:
    # sent uncopied around the message and received into a reused buffer on both sides:
    # each answer must still be its own call's bytes, in sequence and with several in flight
    size = 1024 * 1024
    async with open_rpc_service("127.0.0.1") as server:
        Calc(server).start()
        async with open_rpc_service() as client:
            gateway = await calc_at(client, server)
            for fill in range(4):
                data = bytes([fill]) * (size - 1) + b"\xff"
                assert await gateway.echo(data) == data
            answers: dict[int, bytes] = {}

            async def echo(fill: int) -> None:
                answers[fill] = await gateway.echo(bytes([fill]) * size)

            async with trio.open_nursery() as nursery:
                for fill in range(10, 16):
                    nursery.start_soon(echo, fill)
            assert answers == {fill: bytes([fill]) * size for fill in range(10, 16)}
