"""Mermaid's browser build, which the HTML page inlines: found on this machine, not shipped.

The project does not carry third-party code in its tree. `python -m minicluster.diagram.fetch`
takes the pinned build from the npm registry (`npm pack mermaid@MERMAID_VERSION`), checks its
SHA-256 and keeps it in the user's cache; `MINICLUSTER_MERMAID_JS` names another copy. Without
a build the page still carries the diagram's Mermaid source and the slot timeline.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

MERMAID_VERSION = "11.17.2"
MERMAID_SHA256 = "581ed7d74bd9048d0e3a91363927d72ef22942d7722546b27f7cc29e35390eb8"
ENVIRONMENT = "MINICLUSTER_MERMAID_JS"


class MermaidBuildError(ValueError):
    """A Mermaid build is named or cached, but it is not the pinned one."""


def cached_path() -> Path:
    """Where `fetch` keeps the build: $XDG_CACHE_HOME (or ~/.cache)/minicluster/."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "minicluster" / f"mermaid-{MERMAID_VERSION}.min.js"


def mermaid_path() -> Path | None:
    """The build to use: $MINICLUSTER_MERMAID_JS, else the cached one; None if neither exists."""
    named = os.environ.get(ENVIRONMENT)
    path = Path(named) if named else cached_path()
    return path if path.is_file() else None


def is_pinned(data: bytes) -> bool:
    """Whether `data` is the pinned Mermaid build (by its SHA-256)."""
    return hashlib.sha256(data).hexdigest() == MERMAID_SHA256


def mermaid_js() -> str | None:
    """The text of the pinned build, or None when this machine has none."""
    path = mermaid_path()
    if path is None:
        return None
    data = path.read_bytes()
    if not is_pinned(data):
        raise MermaidBuildError(
            f"{path} is not Mermaid {MERMAID_VERSION} as pinned (its SHA-256 differs); "
            "run python -m minicluster.diagram.fetch again"
        )
    return data.decode("utf-8")
