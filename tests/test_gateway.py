"""Gateway declarations: which methods are asks, which are tells, and which are mistakes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from minicluster.rpc import (
    FencedRpcGateway,
    RpcEndpoint,
    RpcGateway,
    RpcTimeout,
)
from minicluster.rpc.gateway import gateway_methods
from tests.rpc_fixtures import CalcGateway

ADVICE = "use `async def` for an ask, or annotate it `-> None` for a tell"


def test_a_plain_def_returning_a_value_is_refused_when_the_gateway_is_defined() -> None:
    with pytest.raises(TypeError) as info:

        class StatusGateway(RpcGateway):
            async def ping(self) -> str: ...

            def status(self) -> str: ...

    assert str(info.value) == (
        "gateway StatusGateway: method status is a plain def returning str; a plain def is a "
        f"tell, which returns nothing: {ADVICE}"
    )


def test_a_plain_def_without_a_return_annotation_is_refused_when_the_gateway_is_defined() -> None:
    with pytest.raises(TypeError) as info:

        class UntypedGateway(FencedRpcGateway):
            def note(self, value):  # type: ignore[no-untyped-def]
                ...

    assert str(info.value) == (
        "gateway UntypedGateway: method note has no return annotation; a plain def is a tell, "
        f"which returns nothing: {ADVICE}"
    )


def _with_return(annotation: object) -> Callable[..., Any]:
    """A method whose return annotation is an evaluated object, as without the
    `from __future__ import annotations` of this file."""

    def method(self: Any) -> None: ...

    method.__annotations__ = {"return": annotation}
    return method


def test_an_evaluated_return_annotation_is_judged_the_same() -> None:
    with pytest.raises(TypeError, match="method status is a plain def returning list\\[int\\]"):
        type("Evaluated", (RpcGateway,), {"status": _with_return(list[int])})
    for none in (None, type(None)):
        gateway = type("EvaluatedTell", (RpcGateway,), {"note": _with_return(none)})
        assert not gateway_methods(gateway)["note"].is_ask


def test_a_gateway_extending_another_is_checked_for_its_own_methods() -> None:
    with pytest.raises(TypeError, match="gateway MoreCalc: method total is a plain def"):

        class MoreCalc(CalcGateway):
            def total(self) -> int: ...


def test_asks_tells_and_endpoint_helpers_define_fine() -> None:
    class Good(RpcGateway):
        async def ask(self, timeout: RpcTimeout = 1.0) -> int: ...

        async def ask_none(self) -> None: ...

        def tell(self, value: int) -> None: ...

        def _private_helper(self) -> int:
            return 1

        @staticmethod
        def describe() -> str:
            return "not a remote method"

    specs = gateway_methods(Good)
    assert {name: spec.is_ask for name, spec in specs.items()} == {
        "ask": True,
        "ask_none": True,
        "tell": False,
    }

    class GoodEndpoint(RpcEndpoint, Good):
        """An endpoint's own methods are not remote: they may return anything."""

        async def ask(self, timeout: float = 1.0) -> int:
            return 1

        async def ask_none(self) -> None: ...

        def tell(self, value: int) -> None: ...

        def load(self) -> int:
            return 0

    assert GoodEndpoint.gateway_name == "GoodEndpoint"
