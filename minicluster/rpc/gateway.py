"""Gateways: classes whose methods are an endpoint's remote interface.

An `async def` method is an *ask* (the caller awaits the answer); a plain `def` annotated
`-> None` is a *tell* (fire and forget). A plain `def` annotated with anything else, or with
no return annotation, is a `TypeError` when the gateway class is defined: a tell has no answer
to give, so `def status(self) -> str` would silently return None to every caller, and an
unannotated `def` leaves a reader to guess which of the two was meant. A parameter annotated
`RpcTimeout` is the call's timeout, as Flink's `@RpcTimeout`. Proxies are generated subclasses
of the gateway, so type checkers see the gateway's own signatures.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, ClassVar, Protocol, TypeVar
from uuid import UUID

from .typecheck import ArgumentsChecker


class _RpcTimeoutMarker:
    def __repr__(self) -> str:
        return "RpcTimeout"


RPC_TIMEOUT_MARKER: typing.Final = _RpcTimeoutMarker()

RpcTimeout = Annotated[float, RPC_TIMEOUT_MARKER]
"""Annotate a parameter with this to make it the ask's timeout in seconds."""


class MethodSpec:
    """What the RPC layer needs to know about one gateway method."""

    __slots__ = (
        "arguments",
        "is_ask",
        "name",
        "timeout_default",
        "timeout_index",
        "timeout_name",
    )

    def __init__(
        self,
        name: str,
        is_ask: bool,
        timeout_name: str | None = None,
        timeout_index: int | None = None,
        timeout_default: float | None = None,
    ) -> None:
        self.name = name
        self.is_ask = is_ask
        # checks a remote call's arguments against the declared parameter types
        self.arguments: ArgumentsChecker | None = None
        self.timeout_name = timeout_name
        self.timeout_index = timeout_index
        self.timeout_default = timeout_default

    def timeout_of(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> float | None:
        if self.timeout_name is None:
            return None
        if self.timeout_name in kwargs:
            return float(kwargs[self.timeout_name])
        assert self.timeout_index is not None
        if len(args) > self.timeout_index:
            return float(args[self.timeout_index])
        return self.timeout_default


class Invoker(Protocol):
    """What a proxy delegates to: a local endpoint or a remote connection."""

    address: str
    fencing_token: UUID | None

    async def ask(
        self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any], timeout: float | None
    ) -> Any: ...

    def tell(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None: ...

    def ask_with_callback(
        self,
        method: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        timeout: float | None,
        on_done: Callable[[Any, BaseException | None], None],
    ) -> None: ...


def ask_with_callback(
    gateway: RpcGateway,
    method: str,
    *args: Any,
    timeout: float | None = None,
    on_done: Callable[[Any, BaseException | None], None],
) -> None:
    """Ask `method` of `gateway` without a task waiting for the answer: `on_done(result, None)`
    or `on_done(None, error)` is called once, when the outcome is known (a timeout after
    `timeout` s, the service's ask timeout by default, is an RpcTimeoutError).

    This is how Flink's components use a gateway's CompletableFuture (heartbeat requests:
    `requestHeartbeat(...).whenCompleteAsync(...)`), and it costs no task: an idle local
    endpoint whose handler never suspends answers before this returns. `on_done` runs on
    whichever task delivers the outcome; an endpoint hands it to its main thread itself.
    """
    interface = getattr(type(gateway), "_gateway_interface", type(gateway))
    spec = gateway_methods(interface).get(method)
    if spec is None or not spec.is_ask:
        raise TypeError(f"{type(gateway).__name__} has no ask {method!r}")
    invoker: Invoker = gateway._invoker  # type: ignore[attr-defined]
    invoker.ask_with_callback(method, args, {}, timeout, on_done)


class GatewayImplementation:
    """Marks a class that implements gateways (`RpcEndpoint` and its subclasses) rather than
    declaring one, so this module tells the two apart without importing the endpoint module,
    which imports this one."""

    __slots__ = ()


_NO_ANNOTATION = object()


def _check_tells(gateway: type) -> None:
    """Refuse a plain `def` that does not return None: see the module's docstring.

    Annotations may be strings (`from __future__ import annotations`) that cannot be evaluated
    yet, so the return annotation is compared as written, never evaluated.
    """
    for name, attr in gateway.__dict__.items():
        if name.startswith("_") or not inspect.isfunction(attr):
            continue
        if inspect.iscoroutinefunction(attr):
            continue
        returns = attr.__annotations__.get("return", _NO_ANNOTATION)
        if returns is None or returns is type(None) or returns == "None":
            continue
        if returns is _NO_ANNOTATION:
            what = "has no return annotation"
        else:
            shown = returns if isinstance(returns, str) else inspect.formatannotation(returns)
            what = f"is a plain def returning {shown}"
        raise TypeError(
            f"gateway {gateway.__name__}: method {name} {what}; a plain def is a tell, which "
            "returns nothing: use `async def` for an ask, or annotate it `-> None` for a tell"
        )


class RpcGateway:
    """Base of every remote interface. Subclass it and declare methods; bodies are never run
    through a proxy (write `...`)."""

    gateway_name: ClassVar[str] = "RpcGateway"
    _invoker: Invoker

    def __init_subclass__(cls, *, _proxy: bool = False, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "gateway_name" not in cls.__dict__:
            cls.gateway_name = cls.__name__
        if not _proxy and not issubclass(cls, GatewayImplementation):
            _check_tells(cls)

    @property
    def address(self) -> str:
        """Where the endpoint behind this gateway lives (`tcp://host:port/id` or `local://...`)."""
        return self._invoker.address


class FencedRpcGateway(RpcGateway):
    """A gateway whose calls carry a fencing token, checked by the fenced endpoint."""

    @property
    def fencing_token(self) -> UUID | None:
        return self._invoker.fencing_token


_BASES = (RpcGateway, FencedRpcGateway)


def is_interface(cls: type) -> bool:
    """A gateway interface class, as opposed to an endpoint that implements one."""
    return issubclass(cls, RpcGateway) and not issubclass(cls, GatewayImplementation)


_SPECS: dict[type, dict[str, MethodSpec]] = {}


def gateway_methods(gateway: type) -> dict[str, MethodSpec]:
    """The remote methods of a gateway or of an endpoint (all gateways it implements)."""
    cached = _SPECS.get(gateway)
    if cached is not None:
        return cached
    specs: dict[str, MethodSpec] = {}
    for klass in reversed(gateway.__mro__):
        if klass in _BASES or not isinstance(klass, type) or not is_interface(klass):
            continue
        for name, attr in klass.__dict__.items():
            if name.startswith("_") or not inspect.isfunction(attr):
                continue
            specs[name] = _method_spec(klass, name, attr)
    _SPECS[gateway] = specs
    return specs


def _method_spec(klass: type, name: str, fn: Callable[..., Any]) -> MethodSpec:
    is_ask = inspect.iscoroutinefunction(fn)
    hints = typing.get_type_hints(fn, include_extras=True)
    params = list(inspect.signature(fn).parameters.values())[1:]  # without self
    for index, param in enumerate(params):
        hint = hints.get(param.name)
        if typing.get_origin(hint) is Annotated and RPC_TIMEOUT_MARKER in getattr(
            hint, "__metadata__", ()
        ):
            if not is_ask:
                raise TypeError(f"{klass.__name__}.{name}: a tell cannot have an RpcTimeout")
            default = None if param.default is inspect.Parameter.empty else float(param.default)
            spec = MethodSpec(name, True, param.name, index, default)
            spec.arguments = ArgumentsChecker(fn)
            return spec
    spec = MethodSpec(name, is_ask)
    spec.arguments = ArgumentsChecker(fn)
    return spec


def implemented_gateways(endpoint_cls: type) -> frozenset[str]:
    """Names of every gateway an endpoint class implements, for the handshake."""
    return frozenset(
        klass.gateway_name for klass in endpoint_cls.__mro__ if is_gateway_interface(klass)
    )


def is_gateway_interface(klass: type) -> typing.TypeGuard[type[RpcGateway]]:
    return isinstance(klass, type) and is_interface(klass)


G = TypeVar("G", bound=RpcGateway)
_PROXY_CLASSES: dict[type, type] = {}


def _make_ask(spec: MethodSpec) -> Callable[..., Any]:
    name = spec.name
    # Plain functions returning the invoker's coroutine: one coroutine frame less per ask.
    if spec.timeout_name is None:

        def ask(self: RpcGateway, *args: Any, **kwargs: Any) -> Awaitable[Any]:
            return self._invoker.ask(name, args, kwargs, None)

    else:
        timeout_of = spec.timeout_of

        def ask(self: RpcGateway, *args: Any, **kwargs: Any) -> Awaitable[Any]:
            return self._invoker.ask(name, args, kwargs, timeout_of(args, kwargs))

    ask.__name__ = ask.__qualname__ = name
    return ask


def _make_tell(spec: MethodSpec) -> Callable[..., Any]:
    name = spec.name

    def tell(self: RpcGateway, *args: Any, **kwargs: Any) -> None:
        self._invoker.tell(name, args, kwargs)

    tell.__name__ = tell.__qualname__ = name
    return tell


def make_proxy(gateway: type[G], invoker: Invoker) -> G:
    """An instance of `gateway` whose methods go through `invoker`."""
    proxy_cls = _PROXY_CLASSES.get(gateway)
    if proxy_cls is None:
        if not is_interface(gateway):
            raise TypeError(f"{gateway!r} is not a gateway interface (a subclass of RpcGateway)")
        namespace: dict[str, Any] = {"__slots__": ("_invoker",)}
        for spec in gateway_methods(gateway).values():
            namespace[spec.name] = _make_ask(spec) if spec.is_ask else _make_tell(spec)
        proxy_cls = type(f"{gateway.__name__}Proxy", (gateway,), namespace, _proxy=True)
        proxy_cls.gateway_name = gateway.gateway_name  # type: ignore[attr-defined]
        proxy_cls._gateway_interface = gateway  # type: ignore[attr-defined]
        _PROXY_CLASSES[gateway] = proxy_cls
    proxy: Any = object.__new__(proxy_cls)
    proxy._invoker = invoker
    return typing.cast(G, proxy)
