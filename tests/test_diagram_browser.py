"""Mermaid's own parser accepts the diagram of every shipped scenario, and the HTML page renders
offline: one headless Chromium run loads the pinned mermaid.min.js and calls
``mermaid.parse`` on each diagram, a second opens a page `minicluster diagram` wrote.

Chromium is Debian's (``apt-get install -y chromium``; .ci/run installs it). Without it these
tests are skipped, unless MINICLUSTER_REQUIRE_BROWSER is set (as .ci/run does): then they fail.
"""

from __future__ import annotations

import html
import io
import json
import re
import subprocess
import tempfile
from pathlib import Path

from cli.diagram_cmd import render
from minicluster.diagram import Window, parse_lines, parse_record
from minicluster.diagram.assets import MERMAID_SHA256, mermaid_js, mermaid_path
from minicluster.scenario import load_scenario
from minicluster.scenario.runner import run_scenario
from tests.browser import CHROMIUM_FLAGS as BROWSER_FLAGS
from tests.browser import require_chromium, required

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_FLAGS = [*BROWSER_FLAGS, "--virtual-time-budget=10000"]
BROKEN = "sequenceDiagram\n    A->>: a message without a receiver\n"


def chromium() -> str:
    return require_chromium()


def dump_dom(url: str) -> str:
    """The page's DOM after its scripts ran, from a fresh profile."""
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run(
            [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", url],
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def mermaid_verdicts(diagrams: dict[str, str], folder: Path) -> dict[str, str]:
    """name -> "ok" or Mermaid's parse error, from one Chromium run."""
    data = json.dumps(diagrams).replace("</", "<\\/")
    page = folder / "parse.html"
    page.write_text(
        f"""<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>
<pre id="verdicts">pending</pre>
<script src="{mermaid().as_uri()}"></script>
<script>
const diagrams = {data};
(async () => {{
  const verdicts = {{}};
  for (const [name, text] of Object.entries(diagrams)) {{
    try {{ await mermaid.parse(text); verdicts[name] = "ok"; }}
    catch (error) {{ verdicts[name] = String((error && error.message) || error); }}
  }}
  document.getElementById("verdicts").textContent = JSON.stringify(verdicts);
}})();
</script></body></html>""",
        encoding="utf-8",
    )
    dom = dump_dom(page.as_uri())
    found = re.search(r'<pre id="verdicts">(.*?)</pre>', dom, re.DOTALL)
    assert found is not None, dom[-2000:]
    text = html.unescape(found.group(1))
    assert text != "pending", "the page's script did not finish"
    verdicts: dict[str, str] = json.loads(text)
    return verdicts


def scenario_traces() -> dict[str, str]:
    traces = {}
    for path in sorted((ROOT / "scenarios").glob("*.yaml")):
        trace = io.StringIO()
        result = run_scenario(load_scenario(path), clock="virtual", trace=trace)
        assert result.passed, path.name
        traces[path.stem] = trace.getvalue()
    return traces


def hostile() -> str:
    """A diagram whose every text holds what Mermaid reads as syntax."""
    outcome = 'error: A;B #59; <b>x</b> %%{init: {"theme": "dark"}}%% end\nNote over A: x'
    records = [
        parse_record(
            {
                "time": 1.5,
                "sender": "taskexecutor-te-1;end",
                "receiver": "resourcemanager",
                "method": "register_task_executor",
                "kind": "ask",
                "outcome": outcome,
            }
        ),
        parse_record(
            {
                "time": 2,
                "sender": "client",
                "receiver": "dispatcher",
                "method": "submit_job",
                "kind": "ask",
                "outcome": "ok",
                "job": "ab" * 16,
                "job_name": "end; participant X as <Y> #35; -->> %%",
            }
        ),
        parse_record(
            {
                "time": 3,
                "sender": "jobmaster-" + "ab" * 16,
                "receiver": "resourcemanager",
                "method": "declare_required_resources",
                "kind": "tell",
                "outcome": "rejected: stale fencing token",
            }
        ),
    ]
    return render(records, "mermaid", title="hostile")


def mermaid() -> Path:
    """The pinned Mermaid build on this machine (python -m minicluster.diagram.fetch; .ci/run
    fetches it): skipped without one, failed where the browser tests must run."""
    return required(mermaid_path(), "no Mermaid build", "python -m minicluster.diagram.fetch")


def test_the_mermaid_build_used_is_the_pinned_one() -> None:
    import hashlib

    assert hashlib.sha256(mermaid().read_bytes()).hexdigest() == MERMAID_SHA256
    assert mermaid_js() is not None  # the page inlines it


def test_mermaids_parser_accepts_the_diagram_of_every_shipped_scenario(tmp_path: Path) -> None:
    chromium()
    mermaid()
    diagrams = {}
    traces = scenario_traces()
    for name, trace in traces.items():
        records = parse_lines(trace.splitlines())
        diagrams[name] = render(records, "mermaid", title=name)
    assert len(diagrams) >= 11
    crash = parse_lines(traces["taskexecutor-crash"].splitlines())
    only = {"resourcemanager", "taskexecutor-te-1"}
    diagrams["window and selection"] = render(
        crash, "mermaid", title="w", window=Window(2.0, 8.0), only=only
    )
    diagrams["bounded"] = render(crash, "mermaid", title="b", max_messages=5)
    diagrams["hostile text"] = hostile()
    diagrams["broken on purpose"] = BROKEN
    verdicts = mermaid_verdicts(diagrams, tmp_path)
    assert "Parse error on line 2" in verdicts.pop("broken on purpose")
    assert verdicts == dict.fromkeys(verdicts, "ok")
    assert verdicts.keys() == diagrams.keys() - {"broken on purpose"}


def test_the_html_page_renders_the_diagram_offline(tmp_path: Path) -> None:
    chromium()
    mermaid()
    trace = io.StringIO()
    run_scenario(load_scenario(ROOT / "scenarios" / "quickstart.yaml"), trace=trace)
    records = parse_lines(trace.getvalue().splitlines())
    page = tmp_path / "quickstart.html"
    page.write_text(render(records, "html", title="quickstart"), encoding="utf-8")
    dom = dump_dom(page.as_uri())
    sequence = re.search(r'<pre class="mermaid" id="sequence"[^>]*>(.*?)</pre>', dom, re.DOTALL)
    assert sequence is not None
    assert "<svg" in sequence.group(1) and "submit_task" in sequence.group(1)
    assert '<p id="diagram-error"></p>' in dom
