"""`python -m minicluster.diagram.fetch [DEST]`: take the pinned Mermaid build from the npm
registry (with the machine's npm), check its SHA-256 and keep it where assets.py looks (or at
DEST). Run once per machine; `.ci/run` runs it before the tests."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from .assets import MERMAID_VERSION, cached_path, is_pinned


def fetch(destination: Path) -> Path:
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("minicluster: fetching Mermaid needs npm (Node.js's package manager)")
    with tempfile.TemporaryDirectory() as folder:
        subprocess.run(
            [npm, "pack", f"mermaid@{MERMAID_VERSION}", "--pack-destination", folder, "--silent"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        [tarball] = Path(folder).glob("mermaid-*.tgz")
        with tarfile.open(tarball) as archive:
            member = archive.extractfile("package/dist/mermaid.min.js")
            if member is None:
                raise SystemExit("minicluster: the Mermaid package has no dist/mermaid.min.js")
            data = member.read()
    if not is_pinned(data):
        raise SystemExit(f"minicluster: Mermaid {MERMAID_VERSION} from npm is not the pinned build")
    destination.parent.mkdir(parents=True, exist_ok=True)
    destination.write_bytes(data)
    return destination


def main() -> None:
    destination = Path(sys.argv[1]) if len(sys.argv) > 1 else cached_path()
    if destination.is_file() and is_pinned(destination.read_bytes()):
        print(destination)
        return
    print(fetch(destination))


if __name__ == "__main__":
    main()
