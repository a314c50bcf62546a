"""`minicluster start` serves the REST API and the dashboard: its second ready line, its memory
while idle, and the dashboard rendered by a real headless browser (Debian's chromium) against
one started cluster shared by the module, on 127.0.0.1 with free ports."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.browser import CHROMIUM_FLAGS, chromium_path
from tests.test_boundaries import assert_one_sentence, listening_socket, run
from tests.test_cli import READY, Process, client, eventually, started

REST_READY = re.compile(r"^REST API and dashboard at (http://127\.0\.0\.1:(\d+))$")
CHROMIUM = chromium_path()
MAX_IDLE_RSS = 80 * 1024 * 1024


class Cluster:
    def __init__(self, process: Process, address: str, url: str) -> None:
        self.process = process
        self.address = address
        self.url = url


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    args = ["start", "--host", "127.0.0.1", "--port", "0", "--rest-port", "0", "--no-live"]
    args += ["--task-executors", "3"]
    with started(args, tmp_path_factory.mktemp("rest"), "cluster") as process:
        address = process.expect_line(READY, timeout=20).group(1)
        url = process.expect_line(REST_READY, timeout=5).group(1)
        yield Cluster(process, address, url)


def test_start_prints_the_rest_line_right_after_the_unchanged_ready_line(
    cluster: Cluster,
) -> None:
    first, second = cluster.process.seen[:2]
    assert first == f"cluster ready at {cluster.address}"
    assert REST_READY.match(second)
    assert httpx.get(f"{cluster.url}/v1/overview", timeout=10).json()["taskmanagers"] == 3


def test_an_idle_start_with_the_rest_server_stays_under_80_mib(cluster: Cluster) -> None:
    for path in ("/", "/overview", "/jobs/overview", "/taskmanagers", "/minicluster/snapshot"):
        assert httpx.get(cluster.url + path, timeout=10).status_code == 200
    status = Path(f"/proc/{cluster.process.popen.pid}/status").read_text()
    rss_kib = int(re.search(r"^VmRSS:\s+(\d+) kB$", status, re.M).group(1))  # type: ignore[union-attr]
    assert rss_kib * 1024 < MAX_IDLE_RSS, f"VmRSS {rss_kib / 1024:.1f} MiB"


def submit(cluster: Cluster, name: str) -> str:
    options = ["--name", name, "--parallelism", "2", "--task-duration", "10m"]
    result = client(cluster.address, "submit-job", *options)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def chromium(url: str) -> subprocess.Popen[str]:
    assert CHROMIUM is not None
    profile = tempfile.mkdtemp(prefix="minicluster-chromium-")
    return subprocess.Popen(
        [
            CHROMIUM,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            "--virtual-time-budget=5000",
            "--dump-dom",
            url,
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def dom_of(browser: subprocess.Popen[str]) -> str:
    try:
        dom, _ = browser.communicate(timeout=60)
    finally:
        if browser.poll() is None:
            browser.kill()
            browser.wait(timeout=10)
        profile = next(a for a in browser.args if a.startswith("--user-data-dir="))  # type: ignore[union-attr]
        shutil.rmtree(profile.split("=", 1)[1], ignore_errors=True)
    return dom


# without chromium the browser tests are skipped, unless MINICLUSTER_REQUIRE_BROWSER is set (as
# .ci/run does): then they run, and fail
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("MINICLUSTER_REQUIRE_BROWSER"),
    reason="needs Debian's chromium (.ci/run installs it)",
)


@needs_chromium
def test_the_dashboard_in_a_headless_browser_shows_every_task_executor_and_a_running_job(
    cluster: Cluster,
) -> None:
    job_id = submit(cluster, "etl")
    eventually(
        lambda: (
            True
            if any(
                j["status"] == "RUNNING" for j in httpx.get(cluster.url + "/jobs").json()["jobs"]
            )
            else None
        ),
        10,
        "a RUNNING job",
    )
    dom = dom_of(chromium(cluster.url + "/"))
    assert sorted(re.findall(r'data-te="([^"]+)"', dom)) == ["te-1", "te-2", "te-3"]
    row = re.search(rf'<tr [^>]*data-job-id="{job_id}"[^>]*>', dom)
    assert row is not None, dom[-3000:]
    assert 'data-status="RUNNING"' in row.group(0)
    assert "<svg" in dom  # the sequence diagram
    assert int(re.search(r'data-polls="(\d+)"', dom).group(1)) >= 2  # type: ignore[union-attr]


@needs_chromium
def test_the_dashboard_shows_a_job_submitted_while_it_is_open_within_2_s(
    cluster: Cluster,
) -> None:
    def polls() -> int:
        document = httpx.get(cluster.url + "/minicluster/snapshot", timeout=10).json()
        return int(document["dashboard_polls"])

    before = polls()
    browser = chromium(cluster.url + "/")
    try:
        # the page is open and polling: only then does the cluster change
        eventually(lambda: True if polls() > before else None, 30, "the dashboard's first poll")
        submitted = time.monotonic()
        job_id = submit(cluster, "late")
        took = time.monotonic() - submitted
    finally:
        dom = dom_of(browser)
    row = re.search(rf'<tr [^>]*data-job-id="{job_id}"[^>]*>', dom)
    assert row is not None, f"the job is not on the page: {dom[-3000:]}"
    attributes = dict(re.findall(r'(data-[a-z-]+)="([^"]*)"', row.group(0)))
    assert int(attributes["data-first-poll"]) > 1, "it was on the page from the start"
    assert int(attributes["data-seen-after-ms"]) <= 2000, (attributes, took)


def test_a_busy_rest_port_is_one_sentence_naming_rest_port() -> None:
    with listening_socket() as sock:
        port = sock.getsockname()[1]
        code, stderr = run("start", "--no-live", "--port", "0", "--rest-port", str(port))
    assert code == 1
    assert assert_one_sentence(stderr) == (
        f"minicluster: cannot serve the REST API on 127.0.0.1:{port}: Address already in use; "
        "choose another --rest-port, --rest-port 0 for a free one, or --no-rest."
    )
