"""Fenced endpoints (Flink's FencedRpcEndpointTest): the token is checked on every message."""

from __future__ import annotations

import uuid

import pytest
import trio

from minicluster.rpc import FencingTokenError, RpcService, open_rpc_service
from tests.rpc_fixtures import Leader, LeaderGateway

TOKEN = uuid.UUID(int=1)
STALE = uuid.UUID(int=2)


async def _gateways(
    service: RpcService, remote_client: RpcService | None, token: uuid.UUID | None
) -> LeaderGateway:
    if remote_client is None:
        return await service.connect(f"{service.address}/leader", LeaderGateway, token)
    return await remote_client.connect(f"{service.address}/leader", LeaderGateway, token)


@pytest.fixture(params=["local", "remote"])
def mode(request: pytest.FixtureRequest) -> str:
    return request.param  # type: ignore[no-any-return]


async def _run(mode: str, body) -> None:  # type: ignore[no-untyped-def]
    host = "127.0.0.1" if mode == "remote" else None
    async with open_rpc_service(host) as service, open_rpc_service() as client:
        leader = Leader(service, TOKEN)
        leader.start()
        await body(service, client if mode == "remote" else None, leader)


async def test_right_token_is_served(mode: str) -> None:
    async def body(service, client, leader) -> None:  # type: ignore[no-untyped-def]
        gateway = await _gateways(service, client, TOKEN)
        assert await gateway.whoami() == f"leader {TOKEN}"
        assert gateway.fencing_token == TOKEN

    await _run(mode, body)


async def test_stale_token_is_rejected_naming_both_tokens(mode: str) -> None:
    async def body(service, client, leader) -> None:  # type: ignore[no-untyped-def]
        gateway = await _gateways(service, client, STALE)
        with pytest.raises(FencingTokenError) as info:
            await gateway.whoami()
        assert str(TOKEN) in str(info.value) and str(STALE) in str(info.value)
        assert service.stats.fencing_rejections == 1

    await _run(mode, body)


async def test_missing_token_is_rejected(mode: str) -> None:
    async def body(service, client, leader) -> None:  # type: ignore[no-untyped-def]
        gateway = await _gateways(service, client, None)
        with pytest.raises(FencingTokenError, match="carried no token"):
            await gateway.whoami()

    await _run(mode, body)


async def test_tells_with_a_stale_token_are_dropped_and_counted(mode: str) -> None:
    async def body(service, client, leader) -> None:  # type: ignore[no-untyped-def]
        stale = await _gateways(service, client, STALE)
        good = await _gateways(service, client, TOKEN)
        stale.poke(1)
        good.poke(2)
        await good.whoami()  # the tells were sent before: they are processed by now
        assert leader.pokes == [2]
        assert service.stats.fencing_rejections == 1

    await _run(mode, body)


async def test_self_gateway_messages_carry_the_endpoints_token() -> None:
    async with open_rpc_service() as service:
        leader = Leader(service, TOKEN)
        leader.start()
        gateway = leader.get_self_gateway(LeaderGateway)
        assert gateway.fencing_token == TOKEN
        assert await gateway.poke_self(7) == 7
        await gateway.whoami()
        assert leader.pokes == [7]
        assert service.stats.fencing_rejections == 0


async def test_a_new_leader_is_a_new_endpoint_with_a_new_token() -> None:
    async with open_rpc_service() as service:
        old = Leader(service, TOKEN)
        old.start()
        old_gateway = leader_gateway = old.get_self_gateway(LeaderGateway)
        await old.close()
        new = Leader(service, STALE)
        new.start()
        leader_gateway = await service.connect(f"{service.address}/leader", LeaderGateway, STALE)
        assert await leader_gateway.whoami() == f"leader {STALE}"
        # a gateway built for the old leader with the old token is refused by the new one
        stale = await service.connect(f"{service.address}/leader", LeaderGateway, TOKEN)
        with pytest.raises(FencingTokenError):
            await stale.whoami()
        with trio.fail_after(1), pytest.raises(Exception):  # noqa: B017 - the old one is gone
            await old_gateway.whoami()
