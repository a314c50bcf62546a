"""The command line's value types: each checks a flag against minicluster.limits, so a bad value
is refused while parsing, before anything starts or is sent, in one sentence naming the flag
and the limit (cli.group puts it on one line)."""

from __future__ import annotations

from typing import Any

import click

from minicluster.limits import (
    MAX_NAME_LENGTH,
    LimitError,
    check_address,
    check_count,
    check_host,
    check_port,
    check_positive_duration,
    check_speed,
    check_task_executor_id,
)
from minicluster.scenario import parse_duration

__all__ = [
    "ADDRESS",
    "DURATION",
    "HOST",
    "NAME",
    "PORT",
    "POSITIVE_DURATION",
    "SPEED",
    "TASK_EXECUTOR_ID",
    "Count",
]


class _Checked(click.ParamType):  # type: ignore[type-arg]
    """A type whose `check` raises LimitError or ValueError; either becomes a usage error."""

    def check(self, value: Any) -> Any:
        raise NotImplementedError

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            return self.check(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class Duration(_Checked):
    name = "duration"

    def check(self, value: Any) -> float:
        return float(value) if isinstance(value, float | int) else parse_duration(value)


class PositiveDuration(Duration):
    """An interval or timeout: finite and at least limits.MIN_DURATION."""

    def check(self, value: Any) -> float:
        return check_positive_duration(super().check(value), value)


class Count(_Checked):
    """An integer from `minimum` to `maximum` (a limit of minicluster.limits)."""

    name = "integer"

    def __init__(self, minimum: int, maximum: int, what: str = "a number") -> None:
        self.minimum = minimum
        self.maximum = maximum
        self.what = what

    def check(self, value: Any) -> int:
        if isinstance(value, str):
            try:
                value = int(value.strip())
            except ValueError:
                raise LimitError(f"expected an integer, got {value!r}") from None
        return check_count(value, self.minimum, self.maximum, self.what)


class Port(_Checked):
    name = "port"

    def check(self, value: Any) -> int:
        if isinstance(value, str):
            try:
                value = int(value.strip())
            except ValueError:
                raise LimitError(f"expected a port from 0 to 65535, got {value!r}") from None
        return check_port(value)


class Host(_Checked):
    name = "host"

    def check(self, value: Any) -> str:
        return check_host(str(value))


class Address(_Checked):
    """tcp://HOST:PORT, given back without a trailing slash."""

    name = "address"

    def check(self, value: Any) -> str:
        host, port = check_address(str(value))
        return f"tcp://{host}:{port}"


class Speed(_Checked):
    """run-scenario --speed: 'max' or a finite number within limits."""

    name = "speed"

    def check(self, value: Any) -> float | str:
        if isinstance(value, str) and value.strip() == "max":
            return "max"
        return check_speed(str(value))


class Name(_Checked):
    """A job or TaskExecutor name: text of at most limits.MAX_NAME_LENGTH characters."""

    name = "text"

    def check(self, value: Any) -> str:
        text = str(value).strip()
        if not text:
            raise LimitError("expected a name, got an empty string")
        if len(text) > MAX_NAME_LENGTH:
            raise LimitError(f"expected at most {MAX_NAME_LENGTH} characters, got {len(text):,}")
        return text


class TaskExecutorId(_Checked):
    name = "id"

    def check(self, value: Any) -> str:
        return check_task_executor_id(str(value))


DURATION = Duration()
POSITIVE_DURATION = PositiveDuration()
PORT = Port()
HOST = Host()
ADDRESS = Address()
SPEED = Speed()
NAME = Name()
TASK_EXECUTOR_ID = TaskExecutorId()
