"""Keep freed memory inside the process (glibc on Linux), so the next batch reuses it without page faults.

glibc serves every allocation above 32 MB with its own ``mmap`` and hands it back to the kernel on
``free``. A CPU training step allocates dozens of activations that large (8 x 96 x 192 x 192 floats is
113 MB), so each step faults every page of them in again and the kernel zeroes each one: on the
2-core demo machine about a fifth of a step was system time. Serving them from the heap and never
trimming it makes a steady-state step reuse the same pages (a demo training step 1.38 s -> 1.05 s).
The cost is that the process keeps its peak heap until it exits, which it needs again next step anyway.

``calcidet`` calls ``keep_freed_memory()`` once at start; set ``CALCIDET_MALLOC=system`` to keep
glibc's defaults. Elsewhere (macOS, Windows, musl, a preloaded jemalloc/tcmalloc) it changes nothing
that matters.
"""

from __future__ import annotations

import ctypes
import logging
import os

log = logging.getLogger(__name__)

# mallopt parameters from glibc's <malloc.h>
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
OPT_OUT = "CALCIDET_MALLOC"


def glibc_version() -> str | None:
    """``"glibc 2.36"`` where the C library is glibc, else None."""
    try:
        version = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (AttributeError, ValueError, OSError):  # not a POSIX system with glibc's confstr names
        return None
    return version if version.startswith("glibc") else None


def keep_freed_memory() -> bool:
    """Tell glibc's malloc to serve large blocks from the heap and keep freed ones; True if it did."""
    if os.environ.get(OPT_OUT, "").lower() == "system":
        return False
    libc_version = glibc_version()
    if libc_version is None:
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    # M_MMAP_MAX 0: no allocation gets its own mapping. M_TRIM_THRESHOLD: release the heap's free top
    # only beyond 2 GiB (the largest value mallopt takes), i.e. practically never between steps.
    done = bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1))
    log.debug("malloc keeps freed memory: %s (%s)", done, libc_version)
    return done
