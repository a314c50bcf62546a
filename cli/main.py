"""Entry point of the `minicluster` command."""

from __future__ import annotations

import click

from minicluster import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="minicluster")
def cli() -> None:
    """minicluster: Flink's RPC layer and cluster coordination, simulated in Python.

    \b
    Example:
      minicluster --version
    """


def main() -> None:
    cli(prog_name="minicluster")
