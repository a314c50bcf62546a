"""The documentation agrees with the code and stands on its own: the protocol's example frame is
what the code sends, and no file sends its reader to a document outside the repository."""

from __future__ import annotations

import json
import re
from pathlib import Path

from minicluster.rpc import protocol

ROOT = Path(__file__).resolve().parent.parent


def test_the_example_frame_in_the_protocol_doc_is_the_hello_the_code_sends() -> None:
    text = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
    section = text.split("## Frames", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```\n(.*?)```", section, flags=re.DOTALL)
    assert block is not None, "docs/protocol.md: no example frame under ## Frames"
    hex_line, legend = block.group(1).splitlines()[:2]
    frame = bytes.fromhex(hex_line)
    assert frame == protocol.encode_frame(protocol.hello())
    header, payload = frame[:4], frame[4:]
    length = re.search(r"N = (\d+)", legend)
    shown = re.search(r"CBOR map (\{.*\})", legend)
    assert length is not None and shown is not None
    assert int.from_bytes(header, "big") == int(length.group(1)) == len(payload)
    assert protocol.decode_message(payload) == json.loads(shown.group(1))


# What sends a reader outside the repository: an agreement kept elsewhere, or a tracker's number.
OUTSIDE_REFERENCE = re.compile(r"contract|\bissues?\s*(#\s*)?\d|\bissues?\s*#", re.IGNORECASE)
CHECKED = ("minicluster", "cli", "docs", "benchmarks", "scenarios", "tests", "examples", "scripts")


def _checked_files() -> list[Path]:
    files = [ROOT / "README.md"]
    for folder in CHECKED:
        files += (p for p in sorted((ROOT / folder).rglob("*")) if p.is_file())
    this = Path(__file__).resolve()
    return [p for p in files if p.suffix in (".py", ".md", ".yaml", ".yml") and p != this]


def test_no_file_refers_to_a_document_outside_the_repository() -> None:
    found = []
    for path in _checked_files():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            match = OUTSIDE_REFERENCE.search(line)
            if match:
                found.append(f"{path.relative_to(ROOT)}:{number}: {match.group(0)!r}")
    assert found == [], "write the sentence so that it stands on its own:\n" + "\n".join(found)


def test_the_outside_reference_check_reads_every_kind_of_file_it_names() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in _checked_files()}
    assert {"README.md", "docs/protocol.md", "cli/main.py", "scenarios/quickstart.yaml"} <= names
    assert "tests/test_docs.py" not in names
    for text in ("see the contract", "Issue 2", "issue #6", "issues #12", "ISSUE#3"):
        assert OUTSIDE_REFERENCE.search(text), text
    for text in ("ca.issue_cert(host)", "issued at", "the calls it issued 2 s ago"):
        assert not OUTSIDE_REFERENCE.search(text), text
