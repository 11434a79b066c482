"""glibc's allocator for jobs that allocate the same large tensors over and over (SPES saliency).

PyTorch's CPU allocator has no cache: every intermediate tensor is a ``malloc`` and a ``free``. With
glibc's defaults, a block larger than the mmap threshold (128 KiB, rising with use to at most
32 MiB) is mapped fresh from the kernel and unmapped when freed, and free memory at the top of the
heap is given back once it exceeds the trim threshold. The intermediates of a saliency batch (400
masks x 63 encoder frames x 576 FFN channels: 29 MB in bf16, 58 MB in fp32) are near or above that,
so many of them are page-faulted anew on first touch: on this project's CPU the SiLU of such a tensor took
38.6 ms with 14,176 page faults, 12.9 ms once freed memory was kept.

:func:`retain_freed_memory` raises both thresholds to their maximum (``mallopt``), so freed blocks
stay in the process and are reused. The arithmetic is untouched (the maps are bit-identical; the
benchmark checks it); the cost is that the process keeps its peak heap until it exits, which suits
short jobs of one shape family (a saliency shard) and not a long training job whose batch shapes
vary (measured: no gain there, see README "Allocator"). Elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util

__all__ = ["retain_freed_memory"]

M_TRIM_THRESHOLD = -1
"""``mallopt`` parameter: free memory at the top of the heap above this is returned to the kernel."""
M_MMAP_THRESHOLD = -3
"""``mallopt`` parameter: requests at least this large are served by ``mmap`` (and unmapped on free)."""
_MAX = 2**31 - 1  # mallopt takes an int


def _glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc (it has ``gnu_get_libc_version``), else None."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.gnu_get_libc_version.restype = ctypes.c_char_p
        libc.gnu_get_libc_version()
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    except (OSError, AttributeError):
        return None
    return libc


def retain_freed_memory(enabled: bool = True) -> str:
    """Keep freed memory in the process (glibc: trim and mmap thresholds at their maximum).

    Call it once, early in a job, before the large allocations. Returns what was done, for the
    job's log. ``enabled`` False does nothing (the config key's off switch).

    Raises:
        RuntimeError: glibc refused a setting (it returns 0 for a value it does not accept).
    """
    if not enabled:
        return "allocator: left as it is (explain.retain_freed_memory is false)"
    libc = _glibc()
    if libc is None:
        return "allocator: not glibc, left as it is"
    for param, name in ((M_TRIM_THRESHOLD, "M_TRIM_THRESHOLD"), (M_MMAP_THRESHOLD, "M_MMAP_THRESHOLD")):
        if libc.mallopt(param, _MAX) != 1:
            raise RuntimeError(f"glibc mallopt({name}, {_MAX}) failed")
    return "allocator: glibc, freed memory kept in the process (trim and mmap thresholds 2**31 - 1)"
