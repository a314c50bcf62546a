"""The documentation agrees with the code and stands on its own: the protocol's example frame is
what the code sends, and no file sends its reader to a document outside the repository."""

from __future__ import annotations

import json
import re
import subprocess
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


# What sends a reader outside the repository: an agreement kept elsewhere, a tracker's number, a
# folder beside the repository.
OUTSIDE_REFERENCE = re.compile(
    r"contract|\bissues?\s*(#\s*)?\d|\bissues?\s*#|\.\./shared", re.IGNORECASE
)


def _checked_files() -> list[Path]:
    """Every text file the repository tracks (vendored files included: the project carries
    none, so that no licence or third-party text brings such a reference in), but this one."""
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode("utf-8")
    this = Path(__file__).resolve()
    files = []
    for name in filter(None, listed.split("\0")):
        path = ROOT / name
        if path == this or not path.is_file():
            continue
        try:
            path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # pictures
        files.append(path)
    return files


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
    for text in ("see the contract", "Issue 2", "issue #6", "issues #12", "ISSUE#3", "../shared"):
        assert OUTSIDE_REFERENCE.search(text), text
    for text in ("ca.issue_cert(host)", "issued at", "the calls it issued 2 s ago"):
        assert not OUTSIDE_REFERENCE.search(text), text


# --------------------------------------------------------------------------------------------
# docs/scenarios.md: every key the parsers accept, and every example, loads

SCENARIOS_DOC = ROOT / "docs" / "scenarios.md"

# Where docs/scenarios.md documents each place of loader.keys.KEYS_BY_PLACE (a heading's title,
# backticks dropped): a new place of the format fails here until it has its section.
PLACE_SECTIONS = {
    "scenario": "Top level",
    "cluster": "The cluster section",
    "cluster.heartbeat": "The cluster section",
    "cluster.ha": "The cluster section",
    "cluster.task_executors[]": "The cluster section",
    "steps[]": "Steps",
    "submit": "submit",
    "wait": "wait",
    "expect": "expect",
    "count": "Conditions",
    "kill_task_executor": "kill_task_executor",
    "stop_task_executor": "stop_task_executor",
    "add_task_executor": "add_task_executor",
    "fail_task": "fail_task",
    "failover": "failover",
    "partition": "partition",
    "partition.between[]": "partition",
    "cancel": "cancel",
    "job file": "Job files",
    "vertices[]": "Job files",
    "edges[]": "Job files",
    "restart": "Job files",
    "fail": "Job files",
    "config file": "Config files",
}


def doc_sections(text: str) -> dict[str, str]:
    """Each heading's title, backticks dropped, and its text up to the next heading of the
    same or a higher level (its subsections included). Lines in code blocks are not headings."""
    headings: list[tuple[int, int, str]] = []  # (line index, level, title)
    lines = text.splitlines()
    fenced = False
    for i, line in enumerate(lines):
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (m := re.match(r"(#+) (.+)$", line)):
            headings.append((i, len(m.group(1)), m.group(2).replace("`", "").strip()))
    sections: dict[str, str] = {}
    for n, (start, level, title) in enumerate(headings):
        end = next((i for i, lv, _ in headings[n + 1 :] if lv <= level), len(lines))
        assert title not in sections, f"two sections titled {title!r}"
        sections[title] = "\n".join(lines[start:end])
    return sections


def documents_key(section: str, key: str) -> bool:
    """The key as inline code (`parallelism`, `cluster:`) or as a key of an inline example
    ({job_master: JOB}, [{id: te-a, slots: 4}])."""
    k = re.escape(key)
    return re.search(rf"`{k}:?`|[`{{]{k}:|, {k}:", section) is not None


def test_every_key_the_parsers_accept_is_in_the_scenarios_doc() -> None:
    from minicluster.cluster.model import JobStatus
    from minicluster.scenario.loader.keys import CONDITION_KEYS, KEYS_BY_PLACE, STEP_KINDS
    from minicluster.scenario.loader.parsers import _STEP_PARSERS

    assert tuple(_STEP_PARSERS) == STEP_KINDS  # the kinds the parser knows are the listed ones
    sections = doc_sections(SCENARIOS_DOC.read_text(encoding="utf-8"))
    assert set(PLACE_SECTIONS) == set(KEYS_BY_PLACE)
    missing = [
        f"{place}: {key} (in section {PLACE_SECTIONS[place]!r})"
        for place, keys in KEYS_BY_PLACE.items()
        for key in keys
        if not documents_key(sections.get(PLACE_SECTIONS[place], ""), key)
    ]
    missing += [
        f"a section for the step kind {kind}" for kind in STEP_KINDS if kind not in sections
    ]
    conditions = sections.get("Conditions", "")
    missing += [f"condition {key}" for key in CONDITION_KEYS if f"| `{key}` |" not in conditions]
    missing += [f"job status {s.value}" for s in JobStatus if f"`{s.value}`" not in conditions]
    assert missing == [], "docs/scenarios.md does not document:\n" + "\n".join(missing)


def test_every_yaml_example_in_the_scenarios_doc_loads() -> None:
    from minicluster.scenario import parse_job, parse_scenario
    from minicluster.scenario.loader import parse_cluster_config

    parsers = {"scenario": parse_scenario, "job": parse_job, "config": parse_cluster_config}
    text = SCENARIOS_DOC.read_text(encoding="utf-8")
    blocks = re.findall(r"^```yaml([^\n]*)\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE)
    kinds = [kind.strip() for kind, _ in blocks]
    assert kinds.count("scenario") >= 10 and "job" in kinds and "config" in kinds
    for kind, body in blocks:
        assert kind.strip() in parsers, f"a yaml block says which file it is: {kind!r}"
        parsers[kind.strip()](body, "scenarios.md")  # raises ScenarioError with path and line


def test_every_scenario_example_in_the_scenarios_doc_passes_when_run() -> None:
    from minicluster.scenario import parse_scenario
    from minicluster.scenario.runner import run_scenario

    text = SCENARIOS_DOC.read_text(encoding="utf-8")
    failed = []
    for body in re.findall(r"^```yaml scenario\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE):
        scenario = parse_scenario(body, "scenarios.md")
        result = run_scenario(scenario, seed=1)  # the virtual clock: milliseconds each
        if not result.passed:
            failed.append(f"{scenario.name}: {result.failure}")
    assert failed == []


def test_the_scenarios_doc_opens_with_the_example_the_loader_tests_read() -> None:
    from tests.test_scenario_loader import DOCUMENTED_EXAMPLE

    assert f"```yaml scenario\n{DOCUMENTED_EXAMPLE}```" in SCENARIOS_DOC.read_text(encoding="utf-8")


def test_the_job_file_in_submit_job_help_loads_as_shown() -> None:
    import textwrap

    from click.testing import CliRunner

    from cli.main import cli
    from minicluster.scenario import parse_job

    result = CliRunner().invoke(cli, ["submit-job", "--help"], terminal_width=80)
    assert result.exit_code == 0
    example = result.output.split("A job file, job.yaml:\n", 1)[1].split("\n\n", 1)[0]
    job = parse_job(textwrap.dedent(example), "job.yaml")
    assert [(v.name, v.parallelism) for v in job.vertices] == [("read", 4), ("write", 2)]
    assert [(e.source, e.target) for e in job.edges] == [("read", "write")]
