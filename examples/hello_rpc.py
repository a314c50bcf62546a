"""The README's example: a gateway, an endpoint, and a remote call over TCP."""

import trio

from minicluster.rpc import RpcEndpoint, RpcGateway, RpcTimeout, open_rpc_service


class GreeterGateway(RpcGateway):
    async def greet(self, name: str, timeout: RpcTimeout = 5.0) -> str: ...  # an ask

    def count(self) -> None: ...  # a tell: fire and forget


class Greeter(RpcEndpoint, GreeterGateway):
    greeted = 0  # endpoint state: touched only on its main thread, so no locks

    async def greet(self, name: str, timeout: float = 5.0) -> str:
        return f"hello, {name} (greeted {self.greeted} so far)"

    def count(self) -> None:
        self.greeted += 1


async def main() -> None:
    async with (
        open_rpc_service("127.0.0.1", port=0) as server,  # serves on TCP
        open_rpc_service() as client,  # in-process only, connects out
    ):
        Greeter(server, "greeter").start()
        greeter = await client.connect(f"{server.address}/greeter", GreeterGateway)
        greeter.count()
        print(await greeter.greet("Flink"))  # hello, Flink (greeted 1 so far)


if __name__ == "__main__":
    trio.run(main)
