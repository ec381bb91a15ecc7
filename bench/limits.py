"""Resource limits for untrusted files and for each job: a pixel cap, the size a file claims
against the original's, and a memory ceiling.

A checksum stops accidental corruption, not a forged file: a header can claim 30,000 × 30,000
pixels with a valid CRC, and a decoder that trusts it allocates tens of gigabytes. So every
decoder asks :func:`check_pixels` before it allocates for a header's size (the learned
container in :func:`bench.container.unpack`, the classical codecs in
``bench/codecs/classical.py``), the harness compares the size a file claims with the size of
the original it came from (:func:`check_declared_size`), and each job runs under an
address-space ceiling (:func:`job_memory`), so a job that still blows up fails alone and the
run goes on.

A light module (the standard library and ``bench.codec``, no torch): the container and the
codecs import it.
"""

from __future__ import annotations

import math
import os
import re
import resource
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from bench.codec import BitstreamError

if TYPE_CHECKING:
    from bench.codec import Codec

#: 8192 × 8192: above every shipped dataset (CLIC images are at most 4.2 MP, Kodak 0.4 MP).
DEFAULT_MAX_PIXELS = 2**26
MAX_PIXELS_ENV = "BENCH_MAX_PIXELS"

#: Measured with ``noise_hyperprior`` and ``ecg_hyperprior`` (encode + decode, float32 on the
#: CPU): the peak address space grows by ~430 bytes per pixel (170 MB for a Kodak image,
#: 1.2 GB for 2048 × 1365) above the ~3.9 GiB a process has after importing torch and
#: compressai and loading the models; each torch thread adds up to ~64 MiB (glibc's malloc
#: arena). The default ceiling is that growth with room to spare: a fixed headroom, a
#: per-thread allowance and 1 KiB per pixel (2.4× the measured rate).
JOB_MEMORY_ENV = "BENCH_JOB_MEMORY"
JOB_HEADROOM = 2**30
JOB_BYTES_PER_THREAD = 2**27
JOB_BYTES_PER_PIXEL = 2**10

_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


# --------------------------------------------------------------------------- pixel cap
def max_pixels() -> int:
    """The most pixels a decoder may allocate for: ``$BENCH_MAX_PIXELS`` or the default."""
    raw = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{MAX_PIXELS_ENV}={raw!r}: give the pixel cap as a positive integer (e.g. 100000000)")
    return value


def set_max_pixels(value: int) -> None:
    """Set the cap for this process and the worker processes it starts afterwards (the
    ``--max-pixels`` flag): the cap travels as the environment variable."""
    if value < 1:
        raise ValueError(f"the pixel cap must be a positive number of pixels, got {value}")
    os.environ[MAX_PIXELS_ENV] = str(int(value))


def check_pixels(height: int, width: int, what: str) -> None:
    """BitstreamError when ``height × width`` is above the cap; call it before allocating."""
    cap = max_pixels()
    if height * width > cap:
        raise BitstreamError(
            f"{what}: {height}×{width} = {height * width:,} pixels, above the pixel limit of {cap:,}: refused "
            f"before anything is allocated for it. If the image really is that large, raise the limit with "
            f"{MAX_PIXELS_ENV}=N (or --max-pixels N); if not, the file's header is forged or corrupted")


def check_declared_size(codec: Codec, data: bytes, expected_hw: tuple[int, int] | None, name: str
                        ) -> tuple[int, int] | None:
    """The (height, width) the file claims (``codec.declared_size``), checked against the cap
    and, when the original's size is known, against it; None when the codec cannot tell.

    Raises BitstreamError for a claim above the cap or different from ``expected_hw``: a
    decoder must not allocate for a size the harness knows to be wrong.
    """
    try:
        claimed = codec.declared_size(data)
    except BitstreamError as e:
        raise BitstreamError(f"{name}: {e}") from None
    if claimed is None:
        return None
    height, width = claimed
    check_pixels(height, width, name)
    if expected_hw is not None and (height, width) != tuple(expected_hw):
        raise BitstreamError(f"{name}: the file claims {height}×{width} pixels, the original image is "
                             f"{expected_hw[0]}×{expected_hw[1]}: a forged or mismatched file, not decoded")
    return height, width


# --------------------------------------------------------------------------- memory ceiling
def _parse_bytes(raw: str) -> int | None:
    """'8G', '512M', '1073741824' → bytes; 'off', 'none', '0' → None (no ceiling)."""
    text = raw.strip().lower()
    if text in ("off", "none", "0"):
        return None
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?", text)
    if not m:
        raise ValueError(f"{JOB_MEMORY_ENV}={raw!r}: give the memory a job may add as e.g. 8G or 512M, or off")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def job_allowance(pixels: int, threads: int = 1) -> int | None:
    """Bytes of address space a job on an image of ``pixels`` may add to its process:
    ``$BENCH_JOB_MEMORY`` (a size, or ``off`` for none), else the measured default."""
    raw = os.environ.get(JOB_MEMORY_ENV, "")
    if raw.strip():
        return _parse_bytes(raw)
    return JOB_HEADROOM + JOB_BYTES_PER_THREAD * max(1, threads) + JOB_BYTES_PER_PIXEL * pixels


def address_space() -> int | None:
    """This process's virtual size in bytes (Linux); None where /proc is not there."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def is_out_of_memory(e: BaseException) -> bool:
    """MemoryError, or torch's allocator failing (a RuntimeError that says so)."""
    text = str(e).lower()
    return isinstance(e, MemoryError) or (isinstance(e, RuntimeError) and (
        "can't allocate memory" in text or "out of memory" in text or "cannot allocate memory" in text))


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB"


class _Ceiling:
    """The process-wide RLIMIT_AS shared by the jobs running in this process right now (one,
    except on a Dask worker with several threads): the base size when the first one began
    plus all their allowances; the soft limit from before is put back when the last ends."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.active: list[int] = []
        self.base = 0
        self.previous = (resource.RLIM_INFINITY, resource.RLIM_INFINITY)

    def _apply(self) -> int:
        soft, hard = self.previous
        limit = self.base + sum(self.active)
        if soft != resource.RLIM_INFINITY:
            limit = min(limit, soft)     # never loosen a limit someone else set
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
        return limit

    def enter(self, allowance: int, base: int) -> int:
        with self.lock:
            if not self.active:
                self.previous, self.base = resource.getrlimit(resource.RLIMIT_AS), base
            self.active.append(allowance)
            return self._apply()

    def leave(self, allowance: int) -> None:
        with self.lock:
            self.active.remove(allowance)
            if self.active:
                self._apply()
            else:
                resource.setrlimit(resource.RLIMIT_AS, self.previous)


_CEILING = _Ceiling()


def _cuda_initialised() -> bool:
    """CUDA reserves far more address space than memory it uses: no ceiling once it runs."""
    torch = sys.modules.get("torch")
    return bool(torch is not None and torch.cuda.is_initialized())


@contextmanager
def job_memory(pixels: int, name: str, threads: int = 1, device: str = "cpu") -> Iterator[int | None]:
    """Run the block under an address-space ceiling (RLIMIT_AS) of the process's size now plus
    :func:`job_allowance`; yields the ceiling in bytes (None: no ceiling applies).

    A job whose networks run on CUDA (``device``), or any job once CUDA runs in the process,
    gets none: CUDA reserves tens of GB of address space, at start-up and as it allocates, so
    an address-space ceiling measures nothing there; the GPU's own memory bounds the
    networks, and the pixel cap and the declared-size check still come first. The codec
    starts CUDA when it is placed, before this block (:func:`bench.device.start_cuda`).

    Running out of memory inside the block (MemoryError, or torch's allocator failing) becomes
    a MemoryError that names ``name``, the ceiling and how to raise it; the previous limit is
    restored either way.
    """
    allowance = job_allowance(pixels, threads)
    base = address_space()
    if allowance is None or base is None or device.startswith("cuda") or _cuda_initialised():
        yield None
        return
    ceiling = _CEILING.enter(allowance, base)
    try:
        yield ceiling
    except (MemoryError, RuntimeError) as e:
        if not is_out_of_memory(e):
            raise
        raise MemoryError(
            f"{name}: ran out of memory under the job's ceiling of {_gib(ceiling)} of address space "
            f"({_gib(allowance)} above the {_gib(base)} the process had; {pixels:,} pixels). Allow more with "
            f"e.g. {JOB_MEMORY_ENV}={max(1, math.ceil(2 * allowance / 2**30))}G (what a job may add) or "
            f"{JOB_MEMORY_ENV}=off ({type(e).__name__}: {str(e)[:200]})") from None
    finally:
        _CEILING.leave(allowance)
