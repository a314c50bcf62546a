"""The `minicluster` command as a person at the console meets it, through real processes: what
a failure says (one sentence, never a traceback), the exit codes of Ctrl-C and of a closed
pipe, a TaskExecutor that cannot join, a peer that is not a cluster, and what `stop` ends."""

from __future__ import annotations

import http.server
import random
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.test_cli import assert_one_sentence, client


@contextmanager
def http_server() -> Iterator[str]:
    """A tiny HTTP server on a free loopback port, served by a thread; yields HOST:PORT."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@contextmanager
def random_bytes_server(data: bytes) -> Iterator[str]:
    """A loopback server that sends `data` to whoever connects, then waits for them to leave."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)

    def serve() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(10)
            try:
                conn.sendall(data)
                while conn.recv(4096):
                    pass
            except OSError:
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()
        thread.join(timeout=15)


# --- a peer that is not a minicluster cluster -------------------------------------------


def test_a_client_says_an_http_server_at_the_address_is_not_a_cluster() -> None:
    with http_server() as address:
        result = client(address, "list-jobs", "--timeout", "5s", timeout=20)
    assert result.returncode == 1
    line = assert_one_sentence(result.stderr)
    assert f"{address} answered like an HTTP server" in line
    assert "not a minicluster cluster" in line


def test_a_client_says_a_peer_sending_random_bytes_is_not_a_cluster() -> None:
    data = b"\x9f" + random.Random(7).randbytes(63)  # a header announcing ~2.6 GB
    with random_bytes_server(data) as address:
        result = client(address, "list-jobs", "--timeout", "5s", timeout=20)
    assert result.returncode == 1
    line = assert_one_sentence(result.stderr)
    assert f"{address} is not a minicluster cluster" in line
    assert "9f" in line


@pytest.mark.parametrize("address", ["127.0.0.1:{port}", "tcp://127.0.0.1:{port}"])
def test_a_client_says_connection_refused_naming_the_address(address: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = client(address.format(port=port), "list-jobs", timeout=20)
    assert result.returncode == 1
    line = assert_one_sentence(result.stderr)
    assert f"cannot connect to tcp://127.0.0.1:{port}: connection refused" in line
