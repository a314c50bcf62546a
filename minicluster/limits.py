"""What minicluster accepts from its users, written once: the command line, the scenario loader
and the cluster's inputs check their values against these numbers, so a flag, a scenario key and
a message never disagree about a limit. docs/limits.md explains each one.

The ``check_*`` functions raise :class:`LimitError` with a message that completes
``"<where>: "`` (a flag, or a file, path and line): ``expected a port from 0 to 65535, got
70000``. They are pure: no I/O, no state.
"""

from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import dataclass

__all__ = [
    "CLUSTER_DURATIONS",
    "FILE_SIZE_LIMITS",
    "MAX_DESCRIPTION_LENGTH",
    "MAX_EDGES_PER_JOB",
    "MAX_FILE_DURATION",
    "MAX_HOST_LENGTH",
    "MAX_JOBS_PER_SCENARIO",
    "MAX_NAME_LENGTH",
    "MAX_PARALLELISM",
    "MAX_PORT",
    "MAX_SLOTS_PER_TASK_EXECUTOR",
    "MAX_SPEED",
    "MAX_STEPS_PER_SCENARIO",
    "MAX_TASKS_PER_JOB",
    "MAX_TASK_EXECUTORS",
    "MAX_VERTICES_PER_JOB",
    "MAX_WORKERS",
    "MIN_DURATION",
    "MIN_SPEED",
    "TASK_EXECUTOR_ID",
    "DurationSetting",
    "LimitError",
    "check_address",
    "check_count",
    "check_host",
    "check_port",
    "check_positive_duration",
    "check_speed",
    "check_task_executor_id",
    "format_size",
]

# --- network ----------------------------------------------------------------------------------

MAX_PORT = 65_535  # TCP; 0 asks the system for a free port
MAX_HOST_LENGTH = 253  # a DNS name, dots included (RFC 1035)
_MAX_LABEL_LENGTH = 63

# --- a cluster ---------------------------------------------------------------------------------

MAX_TASK_EXECUTORS = 1_000  # per in-process cluster (start, a scenario): one process, one core
MAX_SLOTS_PER_TASK_EXECUTOR = 1_024
MAX_PARALLELISM = 32_768  # Flink's largest max parallelism of a vertex (2^15)
MAX_VERTICES_PER_JOB = 1_000
MAX_EDGES_PER_JOB = 10_000
MAX_TASKS_PER_JOB = 100_000  # the sum of the vertices' parallelism
MAX_RESTART_ATTEMPTS = 1_000_000  # of a job's fixed-delay restart strategy
MAX_ERROR_LENGTH = 65_536  # characters of a task's failure message on the wire
MAX_ADDRESS_LENGTH = 1_024  # characters of an endpoint address on the wire

# --- scenario files ----------------------------------------------------------------------------

MAX_STEPS_PER_SCENARIO = 5_000
MAX_JOBS_PER_SCENARIO = 1_000
MAX_NAME_LENGTH = 200  # characters of a scenario, job, vertex or TaskExecutor name
MAX_DESCRIPTION_LENGTH = 10_000

# --- sizes of the files minicluster reads, by kind ----------------------------------------------

FILE_SIZE_LIMITS: dict[str, int] = {
    "scenario file": 512 * 1024,
    "job file": 256 * 1024,
    "config file": 64 * 1024,
    "secret file": 4 * 1024,
}

# --- time ----------------------------------------------------------------------------------

MIN_DURATION = 0.001  # an interval or timeout shorter than a millisecond only spins
# Any duration a scenario, job or config file writes: a week of cluster time. The virtual clock
# still works through every heartbeat of it (about 2 s of CPU per idle cluster day), so a
# longer one (1e22s is finite) would run for ever rather than fail.
MAX_FILE_DURATION = 7 * 24 * 3600.0
MIN_SPEED = 0.01  # run-scenario --speed: virtual seconds per real second
MAX_SPEED = 10_000.0
MAX_WORKERS = 64  # simulate --workers: processes


@dataclass(frozen=True)
class DurationSetting:
    """A duration of the cluster's configuration that users may set: the ClusterConfig (and
    ClusterSpec) attribute, where a scenario's ``cluster:`` section writes it, its default and
    whether `start` and `task-executor` take it as a flag (``--heartbeat-interval`` for
    ``heartbeat_interval``). Adding a setting is one entry of CLUSTER_DURATIONS."""

    attribute: str
    key: tuple[str, ...]  # under cluster:, e.g. ("heartbeat", "interval")
    default: float
    help: str
    flag: bool = True
    allow_zero: bool = False  # a delay may be zero; an interval or timeout may not
    # the commands that take it as a flag (a TaskExecutor process has no slot requests)
    commands: tuple[str, ...] = ("start", "task-executor")

    @property
    def option(self) -> str:
        return "--" + self.attribute.replace("_", "-")

    @property
    def path(self) -> str:
        return ".".join(("cluster", *self.key))


CLUSTER_DURATIONS: tuple[DurationSetting, ...] = (
    DurationSetting(
        "heartbeat_interval", ("heartbeat", "interval"), 10.0, "How often heartbeats are sent."
    ),
    DurationSetting(
        "heartbeat_timeout",
        ("heartbeat", "timeout"),
        50.0,
        "A peer silent this long is lost (longer than the interval).",
    ),
    DurationSetting("rpc_timeout", ("rpc_timeout",), 10.0, "How long an ask waits for its answer."),
    DurationSetting(
        "slot_request_timeout",
        ("slot_request_timeout",),
        300.0,
        "Flink's slot.request.timeout: a region that cannot get its slots for this long fails "
        "(also the ResourceManager's start-up period).",
        commands=("start",),
    ),
    DurationSetting(
        "registration_timeout",
        ("registration_timeout",),
        300.0,
        "Flink's taskmanager.registration.timeout: a TaskExecutor not registered by then gives "
        "up (a task-executor process exits 1).",
    ),
    DurationSetting(
        "leader_notification_delay",
        ("ha", "notification_delay"),
        0.0,
        "How long news of a new leader takes to arrive.",
        flag=False,
        allow_zero=True,
    ),
)


class LimitError(ValueError):
    """A value outside what minicluster accepts; ``str()`` completes ``"<where>: "``."""


def format_size(size: int) -> str:
    """``512 KiB``, ``1 MiB``, ``100 bytes``: how messages and docs write a byte count."""
    for unit, scale in (("MiB", 1024 * 1024), ("KiB", 1024)):
        if size >= scale and size % scale == 0:
            return f"{size // scale} {unit}"
    return f"{size} bytes"


def _shown(value: object) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check_count(value: int, minimum: int, maximum: int, what: str = "a number") -> int:
    """An integer from ``minimum`` to ``maximum``; ``what`` names it in the message."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise LimitError(f"expected {what} from {minimum} to {maximum:,}, got {_shown(value)}")
    if not minimum <= value <= maximum:
        raise LimitError(
            f"expected {what} from {minimum} to {maximum:,}, got "
            f"{value if value.bit_length() < 64 else 'a huge number'}"
        )
    return value


def check_port(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_PORT:
        raise LimitError(f"expected a port from 0 to {MAX_PORT}, got {_shown(value)}")
    return value


def check_positive_duration(seconds: float, shown: object) -> float:
    """A finite duration of at least MIN_DURATION (``shown`` is what the user wrote)."""
    if math.isnan(seconds) or math.isinf(seconds) or seconds < MIN_DURATION:
        raise LimitError(f"expected a duration of at least 1ms, got {_shown(shown)}")
    return seconds


def check_speed(text: str) -> float:
    """run-scenario --speed: a finite number from MIN_SPEED to MAX_SPEED."""
    try:
        speed = float(text)
    except ValueError:
        raise LimitError(f"expected a number or 'max', got {_shown(text)}") from None
    if not (math.isfinite(speed) and MIN_SPEED <= speed <= MAX_SPEED):
        raise LimitError(
            f"expected a number from {MIN_SPEED:g} to {MAX_SPEED:,.0f} or 'max', got {_shown(text)}"
        )
    return speed


_LABEL = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?")


def check_host(host: str) -> str:
    """A host name (letters, digits, '-', '_' in dot-separated labels of at most 63 characters,
    at most 253 in all) or an IPv4 or IPv6 address."""
    if not host:
        raise LimitError("expected a host name or IP address, got an empty string")
    if len(host) > MAX_HOST_LENGTH:
        raise LimitError(f"a host name has at most {MAX_HOST_LENGTH} characters, got {len(host):,}")
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    labels = host.removesuffix(".").split(".")
    if all(len(label) <= _MAX_LABEL_LENGTH and _LABEL.fullmatch(label) for label in labels):
        return host
    raise LimitError(
        f"expected a host name (letters, digits, '-' and '.') or an IP address, got {_shown(host)}"
    )


TASK_EXECUTOR_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")


def check_task_executor_id(value: str) -> str:
    """A TaskExecutor id: letters, digits, '.', '_' and '-', at most MAX_NAME_LENGTH long."""
    if len(value) > MAX_NAME_LENGTH:
        raise LimitError(f"expected at most {MAX_NAME_LENGTH} characters, got {len(value):,}")
    if not TASK_EXECUTOR_ID.fullmatch(value):
        raise LimitError(
            f"a TaskExecutor id holds only letters, digits, '.', '_' and '-', got {_shown(value)}"
        )
    return value


_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def check_address(address: str) -> tuple[str, int]:
    """``tcp://HOST:PORT`` or ``HOST:PORT`` (tcp is the only scheme; a trailing ``/`` is
    fine) as its host and port."""
    text = address.strip()
    scheme = _SCHEME.match(text)
    if scheme is None:
        if "/" in text or ":" not in text:
            raise LimitError(f"expected tcp://HOST:PORT or HOST:PORT, got {_shown(address)}")
        text = "tcp://" + text
        scheme = _SCHEME.match(text)
        assert scheme is not None
    if scheme.group(1) != "tcp":
        raise LimitError(
            f"expected tcp://HOST:PORT, got the scheme {scheme.group(1)!r}; the cluster "
            "speaks only tcp"
        )
    rest = text[scheme.end() :].removesuffix("/")
    host, colon, port_text = rest.rpartition(":")
    if not colon or not host:
        raise LimitError(f"expected tcp://HOST:PORT with a port, got {_shown(address)}")
    digits = port_text.isascii() and port_text.isdigit() and len(port_text) <= 5
    if not digits or not 0 < int(port_text) <= MAX_PORT:
        raise LimitError(
            f"expected tcp://HOST:PORT with a port from 1 to {MAX_PORT}, got {_shown(address)}"
        )
    return check_host(host), int(port_text)
