"""Values on the wire: CBOR plus a registry of domain types (tag 27) and UUIDs (tag 37).

Decoding never imports or instantiates anything that was not registered with `wire_type`, and
only a short list of standard CBOR tags is accepted; everything else is a `ProtocolError`.
"""

from __future__ import annotations

import dataclasses
import enum
import io
import uuid
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import cbor2

from .decode_budget import check_decode_cost
from .errors import ProtocolError, SerializationError
from .large_values import STAND_IN_CBOR, bytes_head, find_large_bytes, put_back
from .typecheck import Checker, field_checkers

DOMAIN_TAG = 27
UUID_TAG = 37
MAX_DEPTH = 256
# Decoding a payload of N bytes may take at most max(DECODE_BUDGET_FLOOR, 1.25 * N)
# bytes of memory (estimated before decoding, see decode_budget.py).
DECODE_BUDGET_FACTOR_PERCENT = 125
DECODE_BUDGET_FLOOR = 4 * 1024 * 1024

T = TypeVar("T")

# Tags cbor2 decodes into plain standard-library values on its own; all others are refused.
# Standard tags we decode ourselves, checking their content: bignums (bounded), UUIDs, sets.
_STANDARD_TAGS = frozenset({2, 3, UUID_TAG, 258})
MAX_BIGNUM_BYTES = 128  # 1024 bits: far beyond any id or counter, far below costly to print


class _WireType:
    __slots__ = ("_checkers", "cls", "custom", "fields", "is_enum", "name")

    def __init__(self, cls: type, name: str) -> None:
        self.cls = cls
        self.name = name
        self.is_enum = issubclass(cls, enum.Enum)
        self.fields: tuple[str, ...] = (
            () if self.is_enum else tuple(f.name for f in dataclasses.fields(cls) if f.init)
        )
        self._checkers: list[tuple[str, Checker]] | None = None
        # a class with `to_wire()` and a `from_wire(map)` classmethod chooses its own wire
        # form (a map of CBOR values) and checks it itself when it is built back
        self.custom = callable(getattr(cls, "to_wire", None)) and callable(
            getattr(cls, "from_wire", None)
        )

    def check(self, obj: Any) -> None:
        """Validate a decoded instance, once, where it enters: each field against its
        annotation, then the class's own `validate()` (ranges, lengths) if it has one."""
        checkers = self._checkers
        if checkers is None:
            # resolved on first use: annotations may name classes defined after this one
            checkers = self._checkers = field_checkers(self.cls)
        for field_name, check in checkers:
            problem = check(getattr(obj, field_name))
            if problem is not None:
                raise ValueError(f"field {field_name}: {problem}")
        validate = getattr(obj, "validate", None)
        if validate is not None:
            validate()


_BY_NAME: dict[str, _WireType] = {}
_BY_CLASS: dict[type, _WireType] = {}


def wire_type(cls: type[T] | None = None, *, name: str | None = None) -> Any:
    """Register a dataclass or Enum so that its instances may cross the wire as tag 27.

    Usable bare (`@wire_type`) or with a stable name (`@wire_type(name="SlotOffer")`).
    """

    def register(klass: type[T]) -> type[T]:
        if not (dataclasses.is_dataclass(klass) or issubclass(klass, enum.Enum)):
            raise TypeError(
                f"{klass.__qualname__} must be a dataclass or an Enum to be a wire type"
            )
        if issubclass(klass, int | str | float | bytes):
            # cbor2 encodes these natively and never asks us, so the type would be lost.
            raise TypeError(
                f"{klass.__qualname__} subclasses a CBOR type; use a plain Enum or dataclass"
            )
        type_name = name or klass.__name__
        known = _BY_NAME.get(type_name)
        if known is not None and known.cls is not klass:
            raise ValueError(f"wire type name {type_name!r} is already taken by {known.cls!r}")
        info = _WireType(klass, type_name)
        _BY_NAME[type_name] = info
        _BY_CLASS[klass] = info
        return klass

    return register if cls is None else register(cls)


def _encode_default(encoder: Any, value: Any) -> None:
    info = _BY_CLASS.get(type(value))
    if info is None:
        raise SerializationError(
            f"cannot serialize a value of type {type(value).__qualname__}: "
            "use CBOR types or register the class with @wire_type"
        )
    if info.is_enum:
        fields = {"value": value.value}
    elif info.custom:
        fields = value.to_wire()
    else:
        fields = {f: getattr(value, f) for f in info.fields}
    encoder.encode(cbor2.CBORTag(DOMAIN_TAG, [info.name, fields]))


def dumps(value: Any) -> bytes:
    """Encode one value as CBOR, raising `SerializationError` for anything that cannot travel."""
    try:
        return cbor2.dumps(value, default=_encode_default)
    except SerializationError:
        raise
    except (cbor2.CBOREncodeError, TypeError, ValueError) as exc:
        cause = exc.__cause__ if isinstance(exc.__cause__, SerializationError) else None
        if cause is not None:
            raise cause from None
        raise SerializationError(f"cannot serialize value: {exc}") from None


def dumps_around(message: Any, large: bytes) -> list[bytes]:
    """Encode `message`, in which `LARGE_STAND_IN` stands once for `large`, as pieces whose
    concatenation is exactly `dumps` of the message with `large` in its place; `large`
    itself is one of the pieces, uncopied (see large_values.py)."""
    encoded = dumps(message)
    at = encoded.find(STAND_IN_CBOR)
    if at < 0:  # pragma: no cover - the caller put the stand-in in
        raise SerializationError("the stand-in for a large value is not in the message")
    tail = encoded[at + len(STAND_IN_CBOR) :]
    pieces = [encoded[:at] + bytes_head(len(large)), large]
    if tail:
        pieces.append(tail)
    return pieces


# Errors met inside a semantic decoder are remembered here, because cbor2 wraps whatever the
# decoder raises. trio runs one task at a time, so a module-level slot is enough.
_decode_failure: list[str] = []


def _decode_domain(value: Any, immutable: bool) -> Any:
    # Map keys and set members arrive immutable (tuple, frozendict): accept both forms.
    if not (isinstance(value, list | tuple) and len(value) == 2 and isinstance(value[0], str)):
        return _fail("a domain object (tag 27) must be [type name, {field: value}]")
    type_name, fields = value
    if not isinstance(fields, Mapping):
        return _fail(f"the fields of {type_name!r} must be a map")
    info = _BY_NAME.get(type_name)
    if info is None:
        return _fail(f"unknown wire type {type_name!r}")
    try:
        if info.is_enum:
            return info.cls(fields["value"])
        if info.custom:
            return info.cls.from_wire(fields)  # type: ignore[attr-defined]
        obj = info.cls(**{k: fields[k] for k in info.fields if k in fields})
        info.check(obj)
        return obj
    except (KeyError, TypeError, ValueError) as exc:
        return _fail(f"cannot build {type_name!r} from its fields: {exc}")


def _fail(reason: str) -> None:
    _decode_failure.append(reason)
    return None


def _refuse_tag(tag: int) -> Callable[[Any, bool], Any]:
    def refuse(value: Any, immutable: bool) -> Any:
        return _fail(f"unsupported CBOR tag {tag}")

    return refuse


def _unknown_tag(tag: cbor2.CBORTag, immutable: bool) -> Any:
    return _fail(f"unsupported CBOR tag {tag.tag}")


def _decode_bignum(negative: bool) -> Callable[[Any, bool], Any]:
    def decode(value: Any, immutable: bool) -> Any:
        if not isinstance(value, bytes):
            return _fail("a bignum (tag 2/3) must hold a byte string")
        if len(value) > MAX_BIGNUM_BYTES:
            return _fail(f"a bignum of {len(value)} bytes is over the limit of {MAX_BIGNUM_BYTES}")
        number = int.from_bytes(value, "big")
        return -1 - number if negative else number

    return decode


def _decode_uuid(value: Any, immutable: bool) -> Any:
    if not isinstance(value, bytes) or len(value) != 16:
        return _fail("a UUID (tag 37) must hold 16 bytes")
    return uuid.UUID(bytes=value)


def _decode_set(value: Any, immutable: bool) -> Any:
    if not isinstance(value, list | tuple):
        return _fail("a set (tag 258) must hold an array")
    try:
        return set(value)
    except TypeError:
        return _fail("a set (tag 258) may hold only hashable items")


_SEMANTIC_DECODERS: dict[int, Any] = {
    t: _refuse_tag(t) for t in range(0, 300) if t not in _STANDARD_TAGS
}
_SEMANTIC_DECODERS[2] = _decode_bignum(negative=False)
_SEMANTIC_DECODERS[3] = _decode_bignum(negative=True)
_SEMANTIC_DECODERS[UUID_TAG] = _decode_uuid
_SEMANTIC_DECODERS[258] = _decode_set
_SEMANTIC_DECODERS.update({t: _refuse_tag(t) for t in (1004, 1040, 55799, 43000)})
_SEMANTIC_DECODERS[DOMAIN_TAG] = _decode_domain


def decode_budget(size: int) -> int:
    """The memory that decoding a payload of `size` bytes may take, by default."""
    return max(DECODE_BUDGET_FLOOR, size * DECODE_BUDGET_FACTOR_PERCENT // 100)


def loads(data: bytes | bytearray, *, lenient: bool = False, budget: int | None = None) -> Any:
    """Decode one CBOR item; anything malformed, unknown or too deep is a `ProtocolError`.

    A payload whose values would take more than `budget` bytes of memory (by default
    `decode_budget(len(data))`) is refused with `DecodeBudgetError` before anything is built.
    With `lenient`, refused tags decode as None instead, so that a reader can still find out
    who sent a message that it cannot accept.
    """
    size = len(data)
    if budget is None:
        if size <= _COPY_LIMIT:  # the common case: even its costliest bytes fit the budget
            return _loads_copied(data, size, lenient)
        budget = decode_budget(size)
    check_decode_cost(data, budget)
    if size <= _COPY_LIMIT:
        return _loads_copied(data, size, lenient)
    # a large byte string in it is copied out of the payload once, not read by cbor2 in
    # 64 KiB pieces and joined (see large_values.py)
    found = find_large_bytes(data)
    if found is not None:
        head, start, length = found
        with memoryview(data) as view:
            rest = bytes(view[:head]) + STAND_IN_CBOR + bytes(view[start + length :])
            message = loads(rest, lenient=lenient, budget=budget)
            if put_back(message, view[start : start + length].tobytes()):
                return message
    return _loads_viewed(data, size, lenient)


# A decoder costs as much to build as a small message to decode, and so does pointing it at a
# new stream: decoders are kept idle with their streams, and a small payload is copied into
# the stream of one. Decoding is synchronous, so few are ever in use at once; list pop and
# append are atomic.


def _loads_copied(data: bytes | bytearray, size: int, lenient: bool) -> Any:
    """A payload of at most `_COPY_LIMIT` bytes, decoded from a copy in an idle decoder's
    stream."""
    if _decode_failure:
        _decode_failure.clear()
    pair = _idle_decoders.pop() if _idle_decoders else _new_decoder()
    stream = pair[1]
    stream.__init__(data)  # type: ignore[misc]  # the stream, pointed at a new payload
    value = _decode(pair[0], stream, size)
    _done_with(pair, lenient)
    return value


def _loads_viewed(data: bytes | bytearray, size: int, lenient: bool) -> Any:
    """A large payload, decoded from a view of itself rather than a copy of it."""
    if _decode_failure:
        _decode_failure.clear()
    pair = _idle_decoders.pop() if _idle_decoders else _new_decoder()
    decoder, stream = pair
    decoder.fp = reader = _ViewReader(data)  # type: ignore[assignment]
    value = _decode(decoder, reader, size)
    decoder.fp = stream
    _done_with(pair, lenient)
    return value


def _decode(decoder: cbor2.CBORDecoder, stream: Any, size: int) -> Any:
    """One item of `size` bytes from `stream`, which the decoder reads; `ProtocolError` for
    anything malformed, refused, or left over after the item."""
    try:
        value = decoder.decode()
        if stream.tell() != size:
            _fail(f"{size - stream.tell()} bytes after the CBOR item")
    except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError, RecursionError) as exc:
        if _decode_failure:
            raise ProtocolError(_decode_failure[0]) from None
        raise ProtocolError(f"malformed CBOR: {exc}") from None
    return value


def _done_with(pair: tuple[cbor2.CBORDecoder, io.BytesIO], lenient: bool) -> None:
    """After a decode that raised nothing: the decoder goes back to the idle ones, unless it
    met malformed input (then it may be left in a state that breaks its next decode: cbor2
    6.3 panics then), which is a `ProtocolError` unless `lenient`."""
    if _decode_failure:
        if not lenient:
            raise ProtocolError(_decode_failure[0])
    elif len(_idle_decoders) < 4:
        _idle_decoders.append(pair)


class _ViewReader:
    """A read-only stream over a payload, without a copy of it: each read copies only what it
    returns. `io.BytesIO` copies a bytearray whole first (a large frame is received into one),
    which made decoding a 1 MiB payload take 1 ms instead of 0.1."""

    __slots__ = ("_pos", "_view")

    def __init__(self, data: bytes | bytearray) -> None:
        self._view = memoryview(data)
        self._pos = 0

    def read(self, size: int | None = -1) -> bytes:
        start = self._pos
        end = len(self._view) if size is None or size < 0 else min(start + size, len(self._view))
        self._pos = end
        return self._view[start:end].tobytes()

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = (0, self._pos, len(self._view))[whence]
        self._pos = max(0, min(base + offset, len(self._view)))
        return self._pos

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True


def _new_decoder() -> tuple[cbor2.CBORDecoder, io.BytesIO]:
    stream = io.BytesIO()
    decoder = cbor2.CBORDecoder(
        stream,
        semantic_decoders=_SEMANTIC_DECODERS,
        tag_hook=_unknown_tag,
        max_depth=MAX_DEPTH,
    )
    return decoder, stream


_COPY_LIMIT = 16 * 1024
_idle_decoders: list[tuple[cbor2.CBORDecoder, io.BytesIO]] = []


def roundtrip(value: Any) -> Any:
    """What the receiver of `value` would see; used to force serialization of local calls."""
    return loads(dumps(value))
