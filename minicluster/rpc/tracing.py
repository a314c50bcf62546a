"""The hooks a simulator puts on an RPC service: a tracer that sees messages, a filter that drops
them.

Their own module so that endpoints and invokers, which call the hooks, and the service, which
holds them, can all name their types without importing each other.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol


class Tracer(Protocol):
    """Sees every message an endpoint of the service handled."""

    def message(
        self,
        sender: str | None,
        receiver: str,
        method: str,
        is_ask: bool,
        error: BaseException | None,
        args: Sequence[Any] = (),
    ) -> None:
        """`args` are the message's positional arguments, as the handler received them: a
        tracer may record ids from them (a trace that shows which task went to which slot)."""

    def dropped(self, sender: str | None, receiver: str, method: str, is_ask: bool) -> None: ...

    def latency(self, method: str, seconds: float) -> None:
        """How long an ask took, seen by the caller, in the service's clock (virtual or real)."""


MessageFilter = Callable[[str | None, str, str], bool]
"""(sender, receiver endpoint id, method) -> whether the message is delivered."""
