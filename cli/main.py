"""The `minicluster` command: parsing, output and exit codes. The work lives in `minicluster`.

This module is the command group and `run-scenario`; the other commands live beside it, each
module registered here with ``cli.add_command``: `start` and `task-executor` in serve_cmds.py,
the client commands (`submit-job`, `list-jobs`, `job-status`, `cancel-job`, `inspect`, `stop`)
in client_cmds.py, `simulate` in simulate_cmd.py, `diagram` in diagram_cmd.py; the options
they share in options.py.
"""

from __future__ import annotations

import os

import click

from minicluster import __version__

from .client_cmds import Connection as Connection
from .client_cmds import cancel_job, inspect, job_status, list_jobs, stop, submit_job
from .client_cmds import client_options as client_options
from .errors import EXIT_FAILED, EXIT_USAGE, fail, reported
from .group import MiniclusterGroup
from .options import CONTEXT
from .options import SLOTS as SLOTS
from .options import address_option as address_option
from .options import cluster_duration_options as cluster_duration_options
from .options import json_option as json_option
from .options import print_json as print_json
from .options import secret_option as secret_option
from .options import timeout_option as timeout_option
from .options import tls_config as tls_config
from .options import tls_options as tls_options
from .params import SPEED
from .serve_cmds import serving_errors as serving_errors
from .serve_cmds import start, task_executor


@click.group(cls=MiniclusterGroup, context_settings=CONTEXT)
@click.version_option(__version__, prog_name="minicluster")
def cli() -> None:
    """minicluster: Flink's RPC layer and cluster coordination, simulated in Python.

    \b
    Start with a scenario (virtual clock, runs in a second):
      minicluster run-scenario scenarios/quickstart.yaml
    Or run a cluster and talk to it from another terminal:
      minicluster start
      minicluster submit-job --parallelism 4 --wait
      minicluster inspect
    """


for command in (start, task_executor, submit_job, list_jobs, job_status, cancel_job, inspect, stop):
    cli.add_command(command)


# --- scenarios ---------------------------------------------------------------------------


@cli.command("run-scenario", context_settings=CONTEXT)
@click.argument("scenario_file", type=click.Path(dir_okay=False))
@click.option("--seed", type=int, help="Overrides the file's seed; same seed, same run.")
@click.option("--clock", type=click.Choice(["virtual", "real"]), help="Overrides the file's clock.")
@click.option(
    "--report", "report_file", type=click.Path(dir_okay=False), help="Write a JSON report."
)
@click.option(
    "--trace",
    "trace_file",
    type=click.Path(dir_okay=False),
    help="Write one JSON line per RPC message.",
)
@click.option(
    "--speed",
    type=SPEED,
    default=None,
    help="Virtual seconds per real second in the live view (0.01 to 10,000), or 'max'.",
)
@click.option(
    "--diagram",
    "diagram_file",
    type=click.Path(dir_okay=False),
    help="At the end, draw the run's messages: .mmd Mermaid, .html a page, .svg the slot timeline.",
)
@click.option("--no-live", is_flag=True, help="Plain lines instead of the live view.")
def run_scenario(
    scenario_file: str,
    seed: int | None,
    clock: str | None,
    report_file: str | None,
    trace_file: str | None,
    speed: float | str | None,
    diagram_file: str | None,
    no_live: bool,
) -> None:
    """Run a scenario file on an in-process cluster and print a summary.

    Exits 0 when every wait and expect held, 1 when one did not, 2 when the file is invalid.

    \b
    Example:
      minicluster run-scenario scenarios/taskexecutor-crash.yaml --seed 7 --report out.json
      minicluster run-scenario scenarios/quickstart.yaml --diagram quickstart.html
    """
    with reported():
        diagram_format = format_of(diagram_file) if diagram_file else None
        if diagram_file and diagram_format is None:
            fail(
                f"--diagram: {diagram_file} must end in .mmd (Mermaid), .html (a page) or .svg "
                "(the slot timeline)",
                EXIT_USAGE,
            )
        from minicluster.scenario import load_scenario

        from .scenario_view import run_with_view

        scenario = load_scenario(scenario_file)
        for warning in scenario.warnings:
            click.echo(f"minicluster: warning: {warning}", err=True)
        if scenario.checks == "invariants":
            from .simulate_cmd import run_checked

            run_checked(scenario, seed, trace_file)
            return
        pace = speed if isinstance(speed, float) else None
        trace_copy = TraceCopy(None) if diagram_file else None
        result = run_with_view(
            scenario,
            seed=seed,
            clock=clock,
            report_file=report_file,
            trace_file=trace_file,
            no_live=no_live,
            speed=pace,
            speed_given=speed is not None,
            trace_copy=trace_copy,
        )
        if trace_copy is not None and diagram_file and diagram_format:
            # written whether the run passed or not: a failed run is the one worth a look
            text = render(trace_copy.records(), diagram_format, title=f"scenario {scenario.name}")
            write_output(text, diagram_file)
        if not result.passed:
            failure = result.failure
            detail = (
                f"step {failure.index + 1} ({failure.kind}): {failure.message}" if failure else ""
            )
            fail(f"scenario {scenario.name} failed at {detail}", EXIT_FAILED)


from .diagram_cmd import TraceCopy, diagram, format_of, render, write_output  # noqa: E402
from .simulate_cmd import simulate  # noqa: E402 - a command of its own module

cli.add_command(simulate)
cli.add_command(diagram)


def main() -> None:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    cli(prog_name="minicluster")
