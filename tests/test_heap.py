"""bench/heap.py: freed buffers stay in the heap, in this process and in the processes it
starts (joblib and Dask workers). Counted in page faults, not seconds: the machine is shared."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bench.heap import ENVIRONMENT

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")

# 20 allocations of 64 MiB, each written and freed: glibc mmaps and munmaps each one by default
CHURN = ("import resource\nfor _ in range(20):\n    b = bytearray(64 << 20)\n    del b\n"
         "print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt)")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _faults(code: str) -> int:
    env = {k: v for k, v in os.environ.items() if k not in ENVIRONMENT} | {"PYTHONPATH": ROOT}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1])


def test_freed_buffers_are_reused_here_and_in_started_processes():
    default = _faults(CHURN)
    here = _faults("from bench.heap import keep_heap\nassert keep_heap()\n" + CHURN)
    child = _faults("import subprocess, sys\nfrom bench.heap import keep_heap\nkeep_heap()\n"
                    f"print(subprocess.run([sys.executable, '-c', {CHURN!r}], capture_output=True, text=True).stdout)")
    pages = 20 * (64 << 20) // os.sysconf("SC_PAGE_SIZE")
    assert default > pages                  # every allocation faulted in afresh
    assert here < default / 4 and child < default / 4


def test_a_value_the_user_exported_is_kept():
    code = ("import os\nfrom bench.heap import keep_heap\nprint(keep_heap(), os.environ['MALLOC_TRIM_THRESHOLD_'])")
    env = {k: v for k, v in os.environ.items() if k not in ENVIRONMENT} | {"PYTHONPATH": ROOT,
                                                                          "MALLOC_TRIM_THRESHOLD_": "12345"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "12345"]


def _grow_and_report(step: int, keep: bool) -> int:
    """A task that leaves its worker 400 MB larger each time (a kept heap holding a bigger peak)."""
    import time

    if keep:
        from bench.heap import keep_heap_in_loky_worker

        keep_heap_in_loky_worker()
    global _HELD
    _HELD = bytearray((400 << 20) * step)   # what a kept heap looks like to loky: resident, not freed
    time.sleep(1.1)                        # loky checks a worker's size at most once a second
    return os.getpid()


@pytest.mark.parametrize("keep", [False, True])
def test_loky_keeps_a_worker_whose_heap_is_kept(keep, monkeypatch):
    from joblib.externals.loky import get_reusable_executor

    pytest.importorskip("psutil")          # loky only checks worker sizes with psutil
    monkeypatch.setenv("MALLOC_MMAP_MAX_", "0")
    pool = get_reusable_executor(max_workers=1, reuse=False)   # the pool joblib's loky backend runs on
    pids = [pool.submit(_grow_and_report, k, keep).result() for k in range(1, 4)]
    pool.shutdown(wait=True)
    assert (len(set(pids)) == 1) if keep else (len(set(pids)) > 1)   # loky replaced the growing worker
