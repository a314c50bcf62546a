"""The options and helpers the `minicluster` commands share: --address, --secret-file, the TLS
flags, --json, --timeout, the cluster's duration flags, and JSON output."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

import click

from minicluster.client import DEFAULT_ADDRESS
from minicluster.limits import CLUSTER_DURATIONS, MAX_SLOTS_PER_TASK_EXECUTOR
from minicluster.rpc.tls import TlsConfig
from minicluster.scenario import format_duration

from .errors import EXIT_USAGE, fail
from .params import ADDRESS, DURATION, POSITIVE_DURATION, Count

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
SLOTS = Count(1, MAX_SLOTS_PER_TASK_EXECUTOR, "a number of slots")


def address_option(fn: Any) -> Any:
    return click.option(
        "--address",
        type=ADDRESS,
        default=DEFAULT_ADDRESS,
        envvar="MINICLUSTER_ADDRESS",
        show_default=True,
        help="The cluster, as tcp://HOST:PORT (or set MINICLUSTER_ADDRESS).",
    )(fn)


def secret_option(fn: Any) -> Any:
    return click.option(
        "--secret-file",
        type=click.Path(dir_okay=False),
        help="A file holding the cluster's shared secret.",
    )(fn)


def tls_options(fn: Any) -> Any:
    for name, text in (
        ("--tls-ca", "CA certificate (PEM) to trust: enables TLS to the cluster."),
        ("--tls-key", "Private key (PEM) for --tls-cert."),
        ("--tls-cert", "Certificate (PEM) to present: enables TLS when serving."),
    ):
        fn = click.option(name, type=click.Path(exists=True, dir_okay=False), help=text)(fn)
    return fn


def tls_config(cert: str | None, key: str | None, ca: str | None) -> TlsConfig | None:
    if cert is None and key is None and ca is None:
        return None
    if (cert is None) != (key is None):
        fail("--tls-cert and --tls-key go together", EXIT_USAGE)
    return TlsConfig(cert=cert, key=key, ca=ca)


def json_option(fn: Any) -> Any:
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")(fn)


def timeout_option(fn: Any) -> Any:
    return click.option(
        "--timeout",
        type=POSITIVE_DURATION,
        default="10s",
        show_default=True,
        help="How long to wait for the cluster to answer.",
    )(fn)


def cluster_duration_options(command: str) -> Callable[[Any], Any]:
    """A flag for every duration of limits.CLUSTER_DURATIONS that `command` takes."""
    return functools.partial(_cluster_duration_options, command)


def _cluster_duration_options(command: str, fn: Any) -> Any:
    for setting in reversed(CLUSTER_DURATIONS):
        if setting.flag and command in setting.commands:
            fn = click.option(
                setting.option,
                setting.attribute,
                type=DURATION if setting.allow_zero else POSITIVE_DURATION,
                default=format_duration(setting.default),
                show_default=True,
                help=setting.help,
            )(fn)
    return fn


def print_json(document: Any) -> None:
    click.echo(json.dumps(document, indent=2, default=str))
