"""Reading a user's file without trusting its size: at most the limit for its kind plus one
byte is read, so ``/dev/zero``, a pipe that never ends or a 50 MB file is refused at once,
with a sentence, instead of filling memory."""

from __future__ import annotations

from pathlib import Path

from minicluster.limits import FILE_SIZE_LIMITS, format_size

__all__ = ["FileTooLargeError", "read_bounded"]


class FileTooLargeError(ValueError):
    """The file holds more than its kind's limit; ``str()`` is one clause, without the path."""


def read_bounded(path: str | Path, kind: str) -> bytes:
    """The bytes of ``path``, a ``kind`` of FILE_SIZE_LIMITS ("scenario file", ...).

    Raises FileTooLargeError past the limit, OSError when the file cannot be read.
    """
    limit = FILE_SIZE_LIMITS[kind]
    with open(path, "rb") as file:
        data = file.read(limit + 1)
    if len(data) > limit:
        raise FileTooLargeError(
            f"the file is larger than {format_size(limit)}, the limit for a {kind}"
        )
    return data
