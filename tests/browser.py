"""Debian's chromium, headless, as the browser tests run it.

The flags keep it from reaching out (this machine's network is closed: without them it tries
Google's hosts at every start) and from keeping state: each run gets a fresh profile."""

from __future__ import annotations

import os
import shutil
from typing import TypeVar

import pytest

T = TypeVar("T")

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def required(found: T | None, missing: str, remedy: str) -> T:
    """`found`, or a skip saying what is `missing` and the `remedy`; a failure instead when
    MINICLUSTER_REQUIRE_BROWSER is set (as .ci/run sets it): there the browser tests must
    run."""
    if found is None:
        if os.environ.get("MINICLUSTER_REQUIRE_BROWSER"):
            pytest.fail(f"{missing}: {remedy}")
        pytest.skip(f"{missing} ({remedy})")
    return found


def require_chromium() -> str:
    """The browser (see `required`)."""
    return required(chromium_path(), "chromium is not installed", "apt-get install -y chromium")
