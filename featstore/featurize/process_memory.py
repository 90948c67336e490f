"""glibc's malloc tuned for a process that runs an encoder: freed memory is kept for reuse.

An encoder pass allocates and frees activations of megabytes, batch after batch. By default
glibc returns blocks that large to the kernel (mmap above a moving threshold, heap trimming) and
maps them again on the next batch, where every 4 KiB page faults and is zeroed: about 400,000
minor faults per pass of 4,000 Banking77 texts through MiniLM, in every pass. With the mmap
threshold fixed at its largest (32 MiB) and the heap's free top kept up to 512 MiB, the second
batch on reuses the first one's pages (docs/SCALING.md: 12% on a first pass of short texts, more
on long ones; peak memory up 2-9%). The processes featstore owns (the command line, Ray
workers) call it; a notebook may too, knowing it tunes its whole process.
"""

from __future__ import annotations

import ctypes
import sys

# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
_SETTINGS = ((_M_MMAP_THRESHOLD, 32 << 20), (_M_TRIM_THRESHOLD, 512 << 20),
             (_M_TOP_PAD, 64 << 20))
_tuned = False


def keep_freed_memory() -> bool:
    """Tune this process's malloc once; False where there is no glibc `mallopt` to tune."""
    global _tuned
    if _tuned or not sys.platform.startswith("linux"):
        return _tuned
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process already runs on
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    _tuned = all(mallopt(param, value) == 1 for param, value in _SETTINGS)
    return _tuned
