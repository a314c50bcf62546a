"""The cluster's shared secret from --secret-file, read within its size limit."""

from __future__ import annotations

from minicluster.bounded_read import FileTooLargeError, read_bounded

from .errors import EXIT_USAGE, fail


def read_secret(path: str | None) -> bytes | None:
    """The secret, stripped of surrounding whitespace; None without --secret-file."""
    if path is None:
        return None
    try:
        secret = read_bounded(path, "secret file").strip()
    except FileTooLargeError as exc:
        fail(f"--secret-file {path}: {exc}", EXIT_USAGE)
    except OSError as exc:
        fail(f"cannot read the secret file {path}: {exc.strerror or exc}", EXIT_USAGE)
    if not secret:
        fail(f"the secret file {path} is empty", EXIT_USAGE)
    return secret
