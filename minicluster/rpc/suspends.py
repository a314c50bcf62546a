"""Whether a handler can be run to its end on the caller's task (see RpcEndpoint.call_inline).

An async function that contains no await, async for or async with runs to its end when it is
called and sent None: an idle endpoint may answer such a call right on the caller's task, which
saves two task switches per ask. The check reads the function's bytecode once per function.
"""

from __future__ import annotations

import dis
import functools
import inspect
import types
from collections.abc import Callable
from typing import Any

_SUSPENDING_OPS = frozenset(
    {"GET_AWAITABLE", "YIELD_VALUE", "SEND", "BEFORE_ASYNC_WITH", "GET_AITER", "GET_ANEXT"}
)


def never_suspends(fn: Callable[..., Any]) -> bool:
    """Whether an async function contains no await, async for or async with (so that calling
    it and sending None runs it to its end)."""
    code = getattr(inspect.unwrap(fn), "__code__", None)
    if code is None:
        return False
    return _code_never_suspends(code)


@functools.cache
def _code_never_suspends(code: types.CodeType) -> bool:
    # once per function, not once per endpoint: a cluster of 2,500 TaskExecutors built each
    # one's table by disassembling the same methods again (a third of its set-up time)
    return not any(op.opname in _SUSPENDING_OPS for op in dis.get_instructions(code))
