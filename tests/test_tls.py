"""TLS on the RPC transport, with certificates made by trustme."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
import trustme

from minicluster.rpc import HandshakeError, RpcConnectionError, open_rpc_service
from minicluster.rpc.tls import TlsConfig
from tests.rpc_fixtures import Calc, CalcGateway


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    directory = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    paths = {
        "ca": directory / "ca.pem",
        "cert": directory / "server.pem",
        "key": directory / "server.key",
        "other_ca": directory / "other-ca.pem",
    }
    ca.cert_pem.write_to_path(str(paths["ca"]))
    server.cert_chain_pems[0].write_to_path(str(paths["cert"]))
    server.private_key_pem.write_to_path(str(paths["key"]))
    trustme.CA().cert_pem.write_to_path(str(paths["other_ca"]))
    yield {k: str(v) for k, v in paths.items()}


def server_tls(certs: dict[str, str]) -> TlsConfig:
    return TlsConfig(cert=certs["cert"], key=certs["key"], ca=certs["ca"])


async def test_calls_work_over_tls(certificates: dict[str, str]) -> None:
    async with (
        open_rpc_service("127.0.0.1", tls=server_tls(certificates)) as server,
        open_rpc_service(tls=TlsConfig(ca=certificates["ca"])) as client,
    ):
        Calc(server).start()
        gateway = await client.connect(f"{server.address}/calc", CalcGateway)
        assert await gateway.add(40, 2) == 42
        assert len(await gateway.echo(b"x" * 300_000)) == 300_000


async def test_a_plain_client_against_a_tls_server_gets_a_clear_error(
    certificates: dict[str, str],
) -> None:
    async with (
        open_rpc_service("127.0.0.1", tls=server_tls(certificates)) as server,
        open_rpc_service() as client,
    ):
        Calc(server).start()
        with trio.fail_after(5), pytest.raises(HandshakeError, match="requires TLS"):
            await client.connect(f"{server.address}/calc", CalcGateway)


async def test_a_tls_client_against_a_plain_server_gets_a_clear_error(
    certificates: dict[str, str],
) -> None:
    async with (
        open_rpc_service("127.0.0.1") as server,
        open_rpc_service(tls=TlsConfig(ca=certificates["ca"])) as client,
    ):
        Calc(server).start()
        with trio.fail_after(5), pytest.raises(RpcConnectionError, match="TLS handshake"):
            await client.connect(f"{server.address}/calc", CalcGateway)


async def test_a_server_certificate_from_an_unknown_ca_is_refused(
    certificates: dict[str, str],
) -> None:
    async with (
        open_rpc_service("127.0.0.1", tls=server_tls(certificates)) as server,
        open_rpc_service(tls=TlsConfig(ca=certificates["other_ca"])) as client,
    ):
        Calc(server).start()
        with trio.fail_after(5), pytest.raises(RpcConnectionError, match="certificate"):
            await client.connect(f"{server.address}/calc", CalcGateway)


def test_certificate_files_exist(certificates: dict[str, str]) -> None:
    assert all(Path(p).exists() for p in certificates.values())
