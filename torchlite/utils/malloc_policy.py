"""Keep freed memory in the process (glibc's malloc), for the commands.

Why: a model call allocates and frees the same activations every time (a
U-Net on a lung-sized slice: 8-17 MB each). glibc serves blocks of that size
with ``mmap``, or from the top of its heap, which it trims back to the system
as soon as a few MB are free; the next call then faults in fresh zeroed
pages. Measured on the 2-core VM, segmenting a full-size scan in ``torchlite
analyze`` took 5.3-7.2 s (varying from process to process with how the
allocations happened to fall) against 4.1 s with freed blocks kept.

With :func:`keep_freed_memory`, blocks up to 32 MB (glibc's largest mmap
threshold) come from the heap and the heap is never trimmed: the process
keeps its peak, as PyTorch's CUDA caching allocator keeps device memory.
The ``torchlite`` commands apply it at start (``torchlite-app`` does the
same); a program importing torchlite decides for itself. Setting
``TORCHLITE_KEEP_FREED_MEMORY=0`` turns it off.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform

log = logging.getLogger(__name__)

ENV = "TORCHLITE_KEEP_FREED_MEMORY"
# <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # glibc's maximum (HEAP_MAX_SIZE / 2 on 64-bit)
TRIM_THRESHOLD = 1 << 30  # never, in practice (mallopt takes an int)


def keep_freed_memory() -> bool:
    """Apply the policy to this process (and the processes it forks later).
    Returns whether it was applied: not off by the environment, glibc, and
    ``mallopt`` accepted both settings."""
    if os.environ.get(ENV) == "0":
        return False
    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    applied = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    log.debug("keep freed memory (mmap threshold %d MB, no trimming): %s", MMAP_THRESHOLD >> 20, applied)
    return applied
