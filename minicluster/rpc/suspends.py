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


_NOT_PARKABLE_OPS = frozenset(
    {"BEFORE_ASYNC_WITH", "GET_AITER", "GET_ANEXT", "BEFORE_WITH", "SETUP_WITH"}
)
_JUMPS = frozenset(dis.hasjrel) | frozenset(dis.hasjabs)


def suspends_only_in_off_main(fn: Callable[..., Any]) -> bool:
    """Whether every await of an async method is `await self.off_main(...)`, with no `with`,
    `async with` or `async for` in it.

    Such a handler may start on the caller's task when its endpoint is idle: up to its first
    off_main wait it cannot suspend, and from there it is parked and goes on on the main
    thread. Anything this check cannot read for sure counts as no (the call is queued)."""
    code = getattr(inspect.unwrap(fn), "__code__", None)
    if code is None or not code.co_varnames:
        return False
    return _code_suspends_only_in_off_main(code)


@functools.cache
def _code_suspends_only_in_off_main(code: types.CodeType) -> bool:
    instructions = list(dis.get_instructions(code))
    awaits = yields = 0
    for index, instruction in enumerate(instructions):
        name = instruction.opname
        if name in _NOT_PARKABLE_OPS:
            return False
        if name == "YIELD_VALUE":
            yields += 1
        elif name == "GET_AWAITABLE":
            awaits += 1
            if not _awaits_off_main(instructions, index, code.co_varnames[0]):
                return False
    return awaits > 0 and yields == awaits


def _awaits_off_main(instructions: list[dis.Instruction], index: int, self_name: str) -> bool:
    """Whether the value awaited at `index` is what `self.off_main(...)` returned: a call just
    before it whose callable is the method `off_main` of the first argument, with its
    arguments' instructions straight-line in between (no jump, no other await)."""
    call = index - 1
    if call < 0 or instructions[call].opname != "CALL":
        return False
    argc = instructions[call].arg or 0
    start = call - 1 if call > 0 and instructions[call - 1].opname == "PRECALL" else call
    depth = 0
    for j in range(start - 1, 0, -1):
        instruction = instructions[j]
        if (
            instruction.opname in ("LOAD_METHOD", "LOAD_ATTR")
            and instruction.argval == "off_main"
            and depth == argc
        ):
            before = instructions[j - 1]
            return before.opname == "LOAD_FAST" and before.argval == self_name
        if instruction.opcode in _JUMPS or instruction.opname in ("GET_AWAITABLE", "YIELD_VALUE"):
            return False
        try:
            depth += dis.stack_effect(instruction.opcode, instruction.arg)
        except ValueError:
            return False
    return False
