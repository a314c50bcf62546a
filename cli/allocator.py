"""Keep large buffers out of mmap so that megabyte frames do not pay page faults each time.

glibc serves big allocations with fresh mmap'd pages, so every 1 MiB frame costs hundreds of
page faults to encode and again to decode (measured here: 1.07 ms to `cbor2.dumps` 1 MiB, 0.23
ms with this). Raising the mmap and trim thresholds makes the heap reuse those pages.

This is a setting of the whole process, so the library never makes it: only the `minicluster`
command's own server processes (`start`, `task-executor`) do, for themselves. Set
MINICLUSTER_NO_MALLOPT=1 to leave the allocator alone there too.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_done = False


def tune_allocator(threshold: int = 64 * 1024 * 1024) -> bool:
    """Once per process; True when glibc took the setting."""
    global _done
    if _done or not sys.platform.startswith("linux") or os.environ.get("MINICLUSTER_NO_MALLOPT"):
        return False
    _done = True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, threshold)) and bool(
        mallopt(_M_TRIM_THRESHOLD, 2 * threshold)
    )
