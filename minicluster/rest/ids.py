"""The ids of Flink's REST paths: 32-hex job and vertex ids, TaskExecutor ids.

Flink's JobID is 16 bytes printed as 32 lowercase hex digits; a job's UUID is 16 bytes too, so
its `.hex` is the job's REST id, and parsing one gives the UUID back. Flink's JobVertexID is
also 16 bytes; ours are derived (a job graph here has vertex names, no vertex ids): the first
16 bytes of BLAKE2b over the job's id and the vertex's name, stable for the life of the job
and the same on every request.
"""

from __future__ import annotations

import hashlib
import re
import uuid

from minicluster.limits import MAX_NAME_LENGTH, TASK_EXECUTOR_ID

_HEX32 = re.compile(r"[0-9a-fA-F]{32}")


class BadId(ValueError):
    """A path parameter that cannot be an id (Flink answers 400 Bad Request)."""


def parse_job_id(text: str) -> uuid.UUID:
    """A job id as Flink prints it: 32 hex digits."""
    if not _HEX32.fullmatch(text):
        raise BadId(f"a job id is 32 hexadecimal digits, got {_shown(text)}")
    return uuid.UUID(hex=text)


def parse_vertex_id(text: str) -> str:
    """A vertex id: 32 hex digits, returned in lowercase (to compare with vertex_id)."""
    if not _HEX32.fullmatch(text):
        raise BadId(f"a vertex id is 32 hexadecimal digits, got {_shown(text)}")
    return text.lower()


def parse_task_executor_id(text: str) -> str:
    """A TaskExecutor's resource id: letters, digits, '.', '_' and '-'."""
    if len(text) > MAX_NAME_LENGTH or not TASK_EXECUTOR_ID.fullmatch(text):
        raise BadId(f"a TaskManager id holds letters, digits, '.', '_' and '-', got {_shown(text)}")
    return text


def vertex_id(job_id: uuid.UUID, vertex: str) -> str:
    """The vertex's 32-hex id, derived from its job's id and its name."""
    digest = hashlib.blake2b(job_id.bytes + vertex.encode("utf-8"), digest_size=16)
    return digest.hexdigest()


def _shown(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:40] + "...")
