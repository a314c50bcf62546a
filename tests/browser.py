"""Debian's chromium, headless, as the browser tests run it.

The flags keep it from reaching out (this machine's network is closed: without them it tries
Google's hosts at every start) and from keeping state: each run gets a fresh profile."""

from __future__ import annotations

import os
import shutil

import pytest

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


def require_chromium() -> str:
    """The browser, or a skip; a failure instead when MINICLUSTER_REQUIRE_BROWSER is set (as
    .ci/run sets it): there the browser tests must run."""
    found = chromium_path()
    if found is None:
        if os.environ.get("MINICLUSTER_REQUIRE_BROWSER"):
            pytest.fail("chromium is not installed: apt-get install -y chromium")
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    return found
