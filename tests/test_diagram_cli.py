"""`minicluster diagram` and `run-scenario --diagram` as a user runs them: real processes, exit
codes, one sentence on stderr for bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.main import cli

ROOT = Path(__file__).resolve().parent.parent
MINICLUSTER = [sys.executable, "-m", "minicluster"]


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run(
        [*MINICLUSTER, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def invoke(*args: str | Path) -> tuple[int, str]:
    """In process, for the variants of a case a real process already covers."""
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.output


def one_sentence(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    assert lines[0].startswith("minicluster: ") and lines[0].endswith("."), lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """run-scenario --diagram on the quickstart scenario, with its trace."""
    folder = tmp_path_factory.mktemp("diagram")
    done = run(
        "run-scenario",
        ROOT / "scenarios" / "quickstart.yaml",
        "--no-live",
        "--trace",
        folder / "trace.jsonl",
        "--diagram",
        folder / "run.mmd",
    )
    assert done.returncode == 0, done.stderr
    return folder / "trace.jsonl"


def test_run_scenario_writes_the_diagram_of_its_run(trace: Path) -> None:
    text = (trace.parent / "run.mmd").read_text(encoding="utf-8")
    assert text.startswith("sequenceDiagram\n")
    assert "Client->>Dispatcher: submit_job wordcount" in text
    lines = trace.read_text(encoding="utf-8").splitlines()
    assert len(lines) > 10 and all(json.loads(line)["method"] for line in lines)


def test_diagram_writes_each_format_and_exits_0(trace: Path) -> None:
    out = trace.parent
    done = run("diagram", trace, "--from", "0.05", "--to", "3s", "--only", "jobmaster,te-1")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("sequenceDiagram\n") and "TE_te_2" not in done.stdout
    assert invoke("diagram", trace, "-o", out / "slots.svg")[0] == 0
    assert (out / "slots.svg").read_text(encoding="utf-8").startswith("<svg ")
    assert invoke("diagram", trace, "-o", out / "page.html")[0] == 0
    page = (out / "page.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "<svg " in page and "mermaid.initialize" in page


def test_a_missing_trace_file_exits_2_naming_it(tmp_path: Path) -> None:
    done = run("diagram", tmp_path / "nowhere.jsonl")
    assert done.returncode == 2
    assert "cannot read the trace file" in one_sentence(done.stderr)
    assert "nowhere.jsonl" in done.stderr


def test_a_line_that_is_not_a_trace_record_exits_2_naming_the_line(
    trace: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.jsonl"
    lines = trace.read_text(encoding="utf-8").splitlines()
    bad.write_text(
        "\n".join([*lines[:3], '{"time": 1, "kind": "ask", "sender": null}', *lines[3:]]) + "\n"
    )
    done = run("diagram", bad)
    assert done.returncode == 2
    assert one_sentence(done.stderr) == (
        f"minicluster: {bad}: line 4 is not a trace record: 'receiver' must be a non-empty string."
    )


def test_a_bad_window_or_component_exits_2_with_one_sentence(trace: Path) -> None:
    backwards = run("diagram", trace, "--from", "2m", "--to", "1m")
    assert backwards.returncode == 2
    assert one_sentence(backwards.stderr) == (
        "minicluster: --from/--to: the window starts at 120 s, after its end at 60 s."
    )
    code, output = invoke("diagram", trace, "--to", "-3s")
    assert code == 2 and "--to: a duration cannot be negative" in output
    code, output = invoke("diagram", trace, "--only", "nimbus")
    assert code == 2 and "no component of the trace is called 'nimbus'" in output


def test_run_scenario_refuses_a_diagram_file_of_unknown_kind_before_running(
    tmp_path: Path,
) -> None:
    done = run(
        "run-scenario", ROOT / "scenarios" / "quickstart.yaml", "--diagram", tmp_path / "x.png"
    )
    assert done.returncode == 2
    assert "must end in .mmd (Mermaid), .html (a page) or .svg" in one_sentence(done.stderr)
    assert done.stdout == "" and not (tmp_path / "x.png").exists()
