"""Mapping failures to the exit codes (README), each with one clear sentence on stderr."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn, TypeVar

import click

from minicluster.client import ClusterUnreachableError
from minicluster.rpc import RpcError
from minicluster.scenario import ScenarioError

T = TypeVar("T")

EXIT_FAILED = (
    1  # what was asked for failed: job FAILED/CANCELED, expectation, unreachable, rejected
)
EXIT_USAGE = 2  # bad usage or an invalid input file
EXIT_INTERRUPTED = 130  # Ctrl-C (SIGINT), as shells report 128 + 2
EXIT_BROKEN_PIPE = 141  # the reader of stdout went away (`| head`), as shells report 128 + 13
INTERRUPTED = "interrupted."


class CommandFailed(Exception):
    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    raise CommandFailed(message, code)


def sentence(text: str) -> str:
    """``text`` on one line, ending like a sentence."""
    text = " ".join(text.split())
    return text if text.endswith((".", "!", "?")) else text + "."


def _sentence(exc: BaseException) -> str:
    return sentence(str(exc) or type(exc).__name__)


@contextmanager
def reported() -> Iterator[None]:
    """Run a command body; turn what can go wrong into an exit code and one sentence."""
    try:
        yield
    except KeyboardInterrupt:
        _exit(INTERRUPTED, EXIT_INTERRUPTED)
    except BrokenPipeError:
        quiet_broken_pipe()
    except CommandFailed as exc:
        _exit(_sentence(exc), exc.code)
    except ScenarioError as exc:
        _exit(_sentence(exc), EXIT_USAGE)
    except ClusterUnreachableError as exc:
        _exit(_sentence(exc), EXIT_FAILED)
    except RpcError as exc:
        _exit(f"the cluster refused: {_sentence(exc)}", EXIT_FAILED)
    except OSError as exc:
        _exit(_sentence(exc), EXIT_FAILED)
    except BaseExceptionGroup as group:  # trio wraps failures of tasks
        interrupted, _ = group.split(KeyboardInterrupt)
        if interrupted is not None:  # Ctrl-C: whatever else the tasks said on the way out
            _exit(INTERRUPTED, EXIT_INTERRUPTED)
        if group.split(BrokenPipeError)[0] is not None:
            quiet_broken_pipe()
        leaf = _first_leaf(group)
        if isinstance(
            leaf, (CommandFailed, ScenarioError, ClusterUnreachableError, RpcError, OSError)
        ):
            with reported():
                raise leaf from None
        raise


def is_interrupt(exc: BaseException) -> bool:
    """Ctrl-C, bare or inside trio's exception groups."""
    if isinstance(exc, BaseExceptionGroup):
        return exc.split(KeyboardInterrupt)[0] is not None
    return isinstance(exc, KeyboardInterrupt)


def _first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    leaf: BaseException = group
    while isinstance(leaf, BaseExceptionGroup) and leaf.exceptions:
        leaf = leaf.exceptions[0]
    return leaf


def stdout_to_devnull() -> None:
    """Point stdout at /dev/null: what is still buffered, or still to be written, goes
    nowhere instead of failing again (the interpreter flushes stdout on its way out)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)


def quiet_broken_pipe() -> NoReturn:
    """The reader of our output went away (`minicluster list-jobs | head -1`): stop without a
    word, as Unix tools do, with the status a shell gives a writer that SIGPIPE ended."""
    stdout_to_devnull()
    sys.exit(EXIT_BROKEN_PIPE)


def _exit(message: str, code: int) -> NoReturn:
    click.echo(f"minicluster: {message}", err=True)
    sys.exit(code)
