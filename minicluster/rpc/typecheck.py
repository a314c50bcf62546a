"""Checking values that arrive from the wire against the annotations they were declared with.

A remote call's arguments are checked against its gateway method's parameters, and a domain
object's fields against its dataclass's annotations, once, where they enter: nothing of the
wrong type reaches an endpoint. Numbers must be finite (a NaN deadline or duration breaks
whatever compares with it). The checkers are compiled once per method or class from the
annotations (strings under ``from __future__ import annotations`` are resolved then).

Supported forms: ``Any``/``object``, ``None``, ``bool``, ``int`` (not bool), ``float`` (int
accepted, finite), ``str``, ``bytes``, ``uuid.UUID``, enums and ``@wire_type`` dataclasses (by
``isinstance``: their fields were checked when they were decoded), ``list[X]``, ``tuple[...]``,
``dict[K, V]``, ``X | Y`` and ``Optional[X]``. Anything else is accepted as is.
"""

from __future__ import annotations

import enum
import inspect
import math
import types
import typing
import uuid
from collections.abc import Callable
from dataclasses import fields, is_dataclass
from typing import Any

Checker = Callable[[Any], str | None]  # None when the value fits, else what is wrong


def _name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def _describe(value: Any) -> str:
    return type(value).__name__


def _accept(value: Any) -> str | None:
    return None


def compile_checker(annotation: Any) -> Checker:
    """A function telling whether a decoded value fits `annotation`."""
    if annotation is Any or annotation is object or annotation is inspect.Parameter.empty:
        return _accept
    if annotation is None or annotation is type(None):
        return lambda v: None if v is None else f"expected nothing (None), got {_describe(v)}"
    if annotation is bool:
        return lambda v: None if type(v) is bool else f"expected a boolean, got {_describe(v)}"
    if annotation is int:
        return lambda v: (
            None
            if isinstance(v, int) and not isinstance(v, bool)
            else f"expected an integer, got {_describe(v)}"
        )
    if annotation is float:

        def check_float(v: Any) -> str | None:
            if isinstance(v, bool) or not isinstance(v, int | float):
                return f"expected a number, got {_describe(v)}"
            if isinstance(v, float) and not math.isfinite(v):
                return f"expected a finite number, got {v}"
            return None

        return check_float
    if annotation is str:
        return lambda v: None if isinstance(v, str) else f"expected text, got {_describe(v)}"
    if annotation is bytes:
        return lambda v: None if isinstance(v, bytes) else f"expected bytes, got {_describe(v)}"
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        options = [compile_checker(a) for a in typing.get_args(annotation)]
        wanted = " or ".join(_name(a) for a in typing.get_args(annotation))

        def check_union(v: Any) -> str | None:
            for option in options:
                if option(v) is None:
                    return None
            return f"expected {wanted}, got {_describe(v)}"

        return check_union
    if origin is list:
        (item_type,) = typing.get_args(annotation) or (Any,)
        item = compile_checker(item_type)

        def check_list(v: Any) -> str | None:
            if not isinstance(v, list):
                return f"expected a list, got {_describe(v)}"
            for i, element in enumerate(v):
                problem = item(element)
                if problem is not None:
                    return f"item {i}: {problem}"
            return None

        return check_list
    if origin is dict:
        key_type, value_type = typing.get_args(annotation) or (Any, Any)
        key, value = compile_checker(key_type), compile_checker(value_type)

        def check_dict(v: Any) -> str | None:
            if not isinstance(v, dict):
                return f"expected a map, got {_describe(v)}"
            for k, element in v.items():
                problem = key(k) or value(element)
                if problem is not None:
                    return f"entry {k!r}: {problem}"
            return None

        return check_dict
    if origin is tuple:
        return lambda v: (
            None if isinstance(v, tuple | list) else f"expected a tuple, got {_describe(v)}"
        )
    if isinstance(annotation, type) and (
        annotation is uuid.UUID or issubclass(annotation, enum.Enum) or is_dataclass(annotation)
    ):
        wanted = _name(annotation)
        return lambda v: (
            None if isinstance(v, annotation) else f"expected {wanted}, got {_describe(v)}"
        )
    return _accept


def resolved_hints(obj: Any) -> dict[str, Any]:
    """Annotations with strings resolved; unresolvable ones count as Any."""
    try:
        return typing.get_type_hints(obj)
    except Exception:
        return {}


def field_checkers(cls: type) -> list[tuple[str, Checker]]:
    """One checker per field of a dataclass, from its annotations."""
    hints = resolved_hints(cls)
    return [(f.name, compile_checker(hints.get(f.name, Any))) for f in fields(cls)]


_NOT_EXACT: frozenset[type] = frozenset()
_EXACT_TYPES = {
    int: frozenset({int}),
    str: frozenset({str}),
    bytes: frozenset({bytes}),
    bool: frozenset({bool}),
    float: frozenset({int}),
}


def _surely_accepted(annotation: Any) -> frozenset[type] | None:
    """The exact types that `compile_checker(annotation)` accepts without looking further
    (None: every value; empty: no shortcut for this annotation). A float is left to the
    checker, which refuses the non-finite ones."""
    if annotation is Any or annotation is object or annotation is inspect.Parameter.empty:
        return None
    if isinstance(annotation, type):
        if annotation in _EXACT_TYPES:
            return _EXACT_TYPES[annotation]
        if annotation is uuid.UUID or issubclass(annotation, enum.Enum) or is_dataclass(annotation):
            return frozenset({annotation})
    return _NOT_EXACT


class ArgumentsChecker:
    """Checks a call's positional and keyword arguments against a method's parameters."""

    __slots__ = ("_by_name", "_exact", "_positional")

    def __init__(self, method: Callable[..., Any]) -> None:
        hints = resolved_hints(method)
        parameters = [
            p
            for p in inspect.signature(method).parameters.values()
            if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        ]
        self._positional = [
            (p.name, compile_checker(hints.get(p.name, Any)))
            for p in parameters
            if p.kind is p.POSITIONAL_OR_KEYWORD
        ]
        self._by_name = {p.name: compile_checker(hints.get(p.name, Any)) for p in parameters}
        # The common case in one pass: positional arguments whose exact types the checkers
        # surely accept (an int for an int, a str for a str, anything for Any). Whatever
        # this does not accept goes through the checkers, which say what is wrong.
        exact = [
            _surely_accepted(hints.get(p.name, Any))
            for p in parameters
            if p.kind is p.POSITIONAL_OR_KEYWORD
        ]
        self._exact: tuple[frozenset[type] | None, ...] | None = (
            tuple(exact) if all(e is not _NOT_EXACT for e in exact) else None
        )

    def problem(self, args: list[Any] | tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
        """What is wrong with the arguments, or None. Arity is left to the call itself."""
        exact = self._exact
        if exact is not None and not kwargs:
            for wanted, value in zip(exact, args, strict=False):
                if wanted is not None and type(value) not in wanted:
                    break
            else:
                return None
        for (name, check), value in zip(self._positional, args, strict=False):
            problem = check(value)
            if problem is not None:
                return f"argument {name}: {problem}"
        for name, value in kwargs.items():
            by_name = self._by_name.get(name)
            if by_name is not None:
                problem = by_name(value)
                if problem is not None:
                    return f"argument {name}: {problem}"
        return None
