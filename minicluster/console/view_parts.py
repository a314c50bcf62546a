"""What every panel of the console shares: the shape of the data it draws, the border style,
and a renderable that picks a wide or a narrow form by the width it gets."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.measure import Measurement

_BORDER_STYLE = "bright_black"

Data = Mapping[str, Any]


class Typed(Protocol):
    """A typed snapshot (ClusterSnapshot, RpcStatistics, EventSnapshot): views draw its JSON
    form, ``as_dict()``, taken once where it enters a view."""

    def as_dict(self) -> dict[str, Any]: ...


Viewable = Data | Typed


class _ByWidth:
    """Draws ``wide`` when it has at least ``min_width`` columns, else ``narrow``."""

    def __init__(self, wide: RenderableType, narrow: RenderableType, min_width: int) -> None:
        self.wide, self.narrow, self.min_width = wide, narrow, min_width

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self.wide if options.max_width >= self.min_width else self.narrow

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        chosen = self.wide if options.max_width >= self.min_width else self.narrow
        return Measurement.get(console, options, chosen)
