"""`minicluster diagram`: a trace file as a Mermaid sequence diagram, a slot timeline (SVG) or
one offline HTML page with both; and what `run-scenario --diagram` writes at the end of a run.

Registered in cli/main.py with ``cli.add_command(diagram)``. Only reading, parsing of flags,
writing and exit codes live here; the diagrams are minicluster.diagram (sans-IO).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import click

from minicluster.diagram import (
    DEFAULT_MAX_MESSAGES,
    MAX_MESSAGES,
    SelectionError,
    TraceRecord,
    TraceRecordError,
    Window,
    WindowError,
    build_sequence,
    build_timeline,
    endpoints_of,
    job_names,
    parse_line,
    render_mermaid,
    render_page,
    render_svg,
    select_components,
)
from minicluster.diagram.records import MAX_LINE_LENGTH

from .errors import EXIT_USAGE, fail, reported
from .options import CONTEXT
from .params import DURATION, Count

FORMATS = ("mermaid", "html", "svg")
SUFFIXES = {
    ".mmd": "mermaid",
    ".mermaid": "mermaid",
    ".html": "html",
    ".htm": "html",
    ".svg": "svg",
}


def format_of(path: str) -> str | None:
    """The format a file name asks for by its suffix, None when it names none."""
    return SUFFIXES.get(Path(path).suffix.lower())


def _lines(stream: IO[str]) -> Iterator[str]:
    """The file's lines, none read whole past the longest a trace line may be."""
    while True:
        line = stream.readline(MAX_LINE_LENGTH + 2)
        if not line:
            return
        if len(line) > MAX_LINE_LENGTH + 1:
            yield line  # parse_line says it is too long; the rest of it is never read
            return
        yield line


def read_trace(path: str) -> list[TraceRecord]:
    """Every record of a trace file; exit 2 with the file and line for anything else."""
    records = []
    number = 0
    try:
        with open(path, encoding="utf-8") as stream:
            for number, line in enumerate(_lines(stream), 1):  # noqa: B007 - used below
                if line.strip():
                    records.append(parse_line(line))
    except TraceRecordError as exc:
        fail(f"{path}: line {number} is not a trace record: {exc.reason}", EXIT_USAGE)
    except UnicodeDecodeError:
        fail(f"{path}: line {number + 1} is not UTF-8 text", EXIT_USAGE)
    except OSError as exc:
        fail(f"cannot read the trace file {path}: {exc.strerror or exc}", EXIT_USAGE)
    return records


def render(
    records: list[TraceRecord],
    fmt: str,
    *,
    title: str,
    window: Window = Window(),  # noqa: B008 - immutable
    only: set[str] | None = None,
    max_messages: int = DEFAULT_MAX_MESSAGES,
) -> str:
    """The diagram's text in a format of FORMATS."""
    if fmt == "svg":
        return render_svg(build_timeline(records, window, only), f"{title}: slots over time")
    sequence = build_sequence(records, window, only, max_messages)
    text = render_mermaid(sequence)
    if fmt == "mermaid":
        return text
    from minicluster.diagram.assets import MermaidBuildError, mermaid_js

    try:
        renderer = mermaid_js()
    except MermaidBuildError as exc:
        fail(str(exc), EXIT_USAGE)
    svg = render_svg(build_timeline(records, window, only), "Slots over time")
    drawn = sequence.selected - sequence.left_out
    summary = (
        f"{len(records):,} messages in the trace, {sequence.selected:,} selected, {drawn:,} drawn."
    )
    return render_page(title, text, svg, renderer, summary)


def write_output(text: str, output: str | None) -> None:
    if output is None or output == "-":
        click.echo(text, nl=False)
        return
    try:
        with open(output, "w", encoding="utf-8") as out:
            out.write(text)
    except OSError as exc:
        fail(f"cannot write {output}: {exc.strerror or exc}", EXIT_USAGE)


def components(records: list[TraceRecord], only: str | None) -> set[str] | None:
    if only is None:
        return None
    names = [name for name in only.split(",") if name.strip()]
    if not names:
        fail("--only: expected component names separated by commas", EXIT_USAGE)
    try:
        return select_components(names, endpoints_of(records), job_names(records))
    except SelectionError as exc:
        fail(f"--only: {exc}", EXIT_USAGE)


@click.command("diagram", context_settings=CONTEXT)
@click.argument("trace_file", type=click.Path(dir_okay=False))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    help="Write here (its suffix .mmd, .html or .svg picks the format); default: standard output.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    help="mermaid (sequence diagram text), html (one offline page with both) or svg (the slot "
    "timeline). Default: from --output's suffix, else mermaid.",
)
@click.option(
    "--from", "start", type=DURATION, help="Start of the window (cluster time: 90, 1.5m)."
)
@click.option("--to", "end", type=DURATION, help="End of the window (cluster time).")
@click.option(
    "--only",
    help="Components, comma separated (resourcemanager, te-1, a job's name, taskexecutors, ...): "
    "a message is kept when both its ends are among them.",
)
@click.option(
    "--max-messages",
    type=Count(1, MAX_MESSAGES, "--max-messages"),
    default=DEFAULT_MAX_MESSAGES,
    show_default=True,
    help="Messages drawn (a folded heartbeat run counts once); a note says how many were left out.",
)
def diagram(
    trace_file: str,
    output: str | None,
    fmt: str | None,
    start: float | None,
    end: float | None,
    only: str | None,
    max_messages: int,
) -> None:
    """Draw a trace written by run-scenario --trace: who sent what to whom, and which task ran
    in which slot when.

    Exits 0 when the diagram is written, 2 for a missing or invalid trace or a bad flag.

    \b
    Example:
      minicluster run-scenario scenarios/taskexecutor-crash.yaml --trace crash.jsonl
      minicluster diagram crash.jsonl -o crash.html --from 2s --to 20s
      minicluster diagram crash.jsonl --only resourcemanager,te-1
    """
    with reported():
        if fmt is None:
            fmt = (format_of(output) if output and output != "-" else None) or "mermaid"
        try:
            window = Window(start, end)
        except WindowError as exc:
            fail(f"--from/--to: {exc}", EXIT_USAGE)
        records = read_trace(trace_file)
        selected = components(records, only)
        title = os.path.basename(trace_file)
        write_output(
            render(
                records, fmt, title=title, window=window, only=selected, max_messages=max_messages
            ),
            output,
        )


class TraceCopy:
    """What run-scenario hands the runner as its trace when --diagram is given: every line
    kept for the diagram, and written on to the --trace file if there is one."""

    def __init__(self, also: IO[str] | None) -> None:
        self.lines: list[str] = []
        self.also = also

    def write(self, text: str) -> int:
        self.lines.append(text)
        if self.also is not None:
            self.also.write(text)
        return len(text)

    def records(self) -> list[TraceRecord]:
        return [parse_line(line) for line in self.lines]
