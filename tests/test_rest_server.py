"""The REST server on a real socket keeps serving under bad requests: garbage, huge headers,
invalid ids, wrong methods; an idle (slowloris) connection is cut by a timeout. Served by
`serve_rest` in the cluster's nursery on 127.0.0.1, on trio's mock clock."""

from __future__ import annotations

import trio
import trio.testing

from minicluster.cluster import ClusterConfig, MiniCluster
from minicluster.rest import serve_rest
from minicluster.rest.server import IDLE_TIMEOUT, MAX_HEADER_BYTES


async def exchange(port: int, request: bytes, limit: int = 1 << 16) -> bytes:
    """Send `request`, read until the server closes (bounded in bytes and time)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    answer = b""
    with trio.fail_after(30):
        async with stream:
            try:
                await stream.send_all(request)
            except trio.BrokenResourceError:
                pass  # the server closed before taking it all
            while len(answer) < limit:
                try:
                    chunk = await stream.receive_some()
                except trio.BrokenResourceError:
                    break
                if not chunk:
                    break
                answer += chunk
    return answer


def status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


GOOD = b"GET /v1/overview HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


async def test_the_rest_server_keeps_serving_under_bad_requests(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with MiniCluster(1, 2, config=ClusterConfig(seed=3)) as cluster, trio.open_nursery() as n:
        url = await n.start(serve_rest, cluster, "127.0.0.1", 0)
        port = int(url.rpartition(":")[2])
        assert status(await exchange(port, GOOD)) == 200
        huge = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (MAX_HEADER_BYTES * 2) + b"\r\n\r\n"
        bad = [
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)),  # a TLS hello
            b"NOT HTTP AT ALL\r\n\r\n",
            b"GET /../../etc/passwd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            b"GET /jobs/%00%ff HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            b"BREW /jobs HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            b"PATCH /jobs/zz HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n",
            huge,
        ]
        statuses = [status(await exchange(port, request)) for request in bad]
        assert statuses == [400, 400, 404, 400, 405, 413, 431]
        assert status(await exchange(port, GOOD)) == 200
        n.cancel_scope.cancel()


async def test_an_idle_connection_is_cut_after_the_idle_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with MiniCluster(1, 2, config=ClusterConfig(seed=4)) as cluster, trio.open_nursery() as n:
        url = await n.start(serve_rest, cluster, "127.0.0.1", 0)
        port = int(url.rpartition(":")[2])
        began = trio.current_time()
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(b"GET /overview HTTP/1.1\r\nHo")  # and never the rest
            with trio.fail_after(IDLE_TIMEOUT * 4):
                answer = b""
                while chunk := await stream.receive_some():
                    answer += chunk
        # cut: closed, at most with an error status, never an answer to a request
        assert status(answer) in (0, 408)
        assert trio.current_time() - began <= IDLE_TIMEOUT + 0.5
        assert status(await exchange(port, GOOD)) == 200
        n.cancel_scope.cancel()
