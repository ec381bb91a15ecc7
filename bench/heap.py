"""Keep freed buffers in the process's heap instead of handing them back to the kernel.

glibc serves every allocation above its mmap threshold (a CLIC-size image's tensors, a
network's activations) with its own ``mmap`` and ``munmap``s it when freed, so the next job
faults the same memory back in page by page: 2.5 million minor page faults in one
noise_hyperprior job on a 3-megapixel image, which ran in 0.62× the time without them
(``reports/load/HEAP.md``; training loses 20 % of a step the same way,
``reports/training/FINDINGS.md``). With mmap off and trimming out of reach, freed buffers
stay in the heap and are reused: the process keeps its peak size, which it needed anyway.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

#: Read by glibc when a process starts: how the processes this one starts (joblib and Dask
#: workers) get the setting. A value the user already exported is left as it is.
ENVIRONMENT = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "100000000000"}
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4    # mallopt parameters (malloc.h)
_INT_MAX = 2**31 - 1                       # mallopt takes an int: the largest trim threshold it can set


def keep_heap() -> bool:
    """Apply the setting to this process (``mallopt``) and export it to its children; True
    when glibc took it here (False elsewhere: other C libraries have no such switch, and a
    value the user exported that is not a number is left to glibc, which ignores it)."""
    for key, value in ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    try:
        mmap_max = int(os.environ["MALLOC_MMAP_MAX_"])
        trim = min(int(os.environ["MALLOC_TRIM_THRESHOLD_"]), _INT_MAX)
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (ValueError, OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_MAX, mmap_max)) and bool(mallopt(_M_TRIM_THRESHOLD, trim))


#: How far a joblib (loky) worker may grow past its size after its first job before loky
#: takes it for a leaking one and replaces it (loky's own default: 300 MB). With the heap
#: kept, a worker holds its largest job's peak, and CLIC photos differ in size by more than
#: that: the worker was replaced every three or four jobs, reloading torch and its models
#: each time.
LOKY_GROWTH_ALLOWED = 64 << 30


def keep_heap_in_loky_worker() -> None:
    """In a loky worker whose heap is kept: let it grow to its jobs' peak without being replaced."""
    if os.environ.get("MALLOC_MMAP_MAX_") != "0":
        return
    from joblib.externals.loky import process_executor

    if getattr(process_executor, "_MAX_MEMORY_LEAK_SIZE", LOKY_GROWTH_ALLOWED) < LOKY_GROWTH_ALLOWED:
        process_executor._MAX_MEMORY_LEAK_SIZE = LOKY_GROWTH_ALLOWED
