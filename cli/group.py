"""The `minicluster` group: click's usage errors (a bad flag value, an unknown option) as the
command's other errors are, one line `minicluster: <sentence>` on stderr and exit 2, instead of
click's usage block; Ctrl-C while parsing or starting is one line and exit 130."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import click

from .errors import EXIT_INTERRUPTED, INTERRUPTED, quiet_broken_pipe, sentence


def usage_sentence(exc: click.ClickException) -> str:
    """`--port: expected a port from 0 to 65535, got 70000.`: the flag, then what is wrong."""
    missing = isinstance(exc, click.MissingParameter)
    if isinstance(exc, click.BadParameter) and exc.param is not None and not missing:
        param = exc.param
        if isinstance(param, click.Option):
            flag = max(param.opts, key=len)
        else:
            flag = param.human_readable_name.upper()
        return sentence(f"{flag}: {exc.message}")
    return sentence(exc.format_message())


class MiniclusterGroup(click.Group):
    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            result = super().main(args, prog_name, complete_var, False, **extra)
        except click.ClickException as exc:
            _exit(usage_sentence(exc), exc.exit_code)
        except click.Abort:  # click's name for a KeyboardInterrupt outside a command's body
            _exit(INTERRUPTED, EXIT_INTERRUPTED)
        except BrokenPipeError:  # --help or --version into `| head`
            quiet_broken_pipe()
        sys.exit(result if isinstance(result, int) else 0)


def _exit(message: str, code: int) -> NoReturn:
    click.echo(f"minicluster: {message}", err=True)
    sys.exit(code)
