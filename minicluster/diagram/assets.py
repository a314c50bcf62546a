"""The vendored Mermaid build, read from the package's data: the only file this package reads.

vendor/mermaid.min.js is Mermaid's minified browser build, unchanged, with its LICENSE beside
it; vendor/README.md names the version and the file's SHA-256.
"""

from __future__ import annotations

from importlib import resources

MERMAID_VERSION = "11.17.2"
MERMAID_SHA256 = "581ed7d74bd9048d0e3a91363927d72ef22942d7722546b27f7cc29e35390eb8"


def mermaid_js() -> str:
    """The text of vendor/mermaid.min.js."""
    return (resources.files(__package__) / "vendor" / "mermaid.min.js").read_text(encoding="utf-8")
