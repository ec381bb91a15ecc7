"""Where a learned codec's networks run (``--device cpu|cuda[:N]``) and how their time is measured.

Entropy coding always runs on the CPU; only the transforms move. On CUDA the numbers and the
bytes follow one protocol, because a GPU's first calls, its shared use and its float
arithmetic would otherwise leak into them:

- :func:`start_cuda` makes ``cuda:N`` the process's current device and creates its context
  when the codec is placed, before a job's memory ceiling applies (CUDA reserves far more
  address space than the ceiling allows), with cuDNN restricted to deterministic algorithms,
  no autotuning and TF32 off: encoder and decoder, in different processes, must compute the
  same scales bit for bit.
- :func:`warm_up`: each network runs once per padded image size, untimed, before its first
  timed call (context set-up and lazy kernel loading stay out of the times).
- :func:`network_clock`: CUDA events on the current stream of the chosen device around each
  network, read after a synchronise; the CPU clock outside the networks, with the image's
  copies to and from the device timed apart (:class:`Clock`), is the entropy coder's.
- :func:`jobs_on`: one job at a time per GPU (two processes on one GPU time each other's kernels).
- :func:`device_identity`: GPU model, compute capability, CUDA, cuDNN and torch versions; it
  keys the results cache (:func:`bench.cachekey.run_hash`), so files from one GPU or library
  set are never reported under another's.
- :func:`device_failure`: a CUDA out-of-memory or CUDA error is the device's failure, not the
  image's; the runner stops the run with :class:`DeviceFailure` instead of leaving the image out.

The record's ``device`` label says where the networks ran.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bench.codec import BitstreamError

if TYPE_CHECKING:   # torch is imported where it is used: a classical codec's worker never loads it
    import torch
    from torch import nn

DEVICES = ("cpu", "cuda")
#: Device kinds whose networks warm up before their first timed call. The CPU's first-call cost
#: is small next to its network time and its numbers stay comparable with earlier runs.
WARM_UP_KINDS = ("cuda",)
#: What :func:`start_cuda` sets for coding (torch.backends attribute → value).
CODING_FLAGS = {"cudnn.deterministic": True, "cudnn.benchmark": False, "cudnn.allow_tf32": False,
                "cuda.matmul.allow_tf32": False}
_FAILURE_TEXT = ("cuda out of memory", "cuda error", "cudnn_status", "cublas_status", "cudnn error")


class DeviceError(ValueError):
    """A device this machine or this codec cannot run on (the message says what to do)."""


class DeviceMismatch(DeviceError, BitstreamError):
    """A file coded with the networks on one kind of device, decoded on another (refused: the
    entropy parameters would differ). A BitstreamError too: whoever handles bad files handles it."""


class DeviceFailure(DeviceError):
    """The device failed a job (CUDA out of memory, a CUDA error): the run stops, since leaving
    the image out would report a row over fewer images for a reason that is not the image's."""


# --------------------------------------------------------------------------- availability
def cuda_problem() -> str | None:
    """Why this environment cannot run networks on CUDA (None: it can): a CPU-only torch
    wheel, or a CUDA wheel that sees no GPU."""
    import torch

    base = torch.__version__.split("+")[0]
    if torch.version.cuda is None:
        return (f"the installed torch {torch.__version__} is a CPU-only wheel; install a CUDA build of the same "
                f"release into the environment, e.g. `.venv/bin/pip install torch=={base} --index-url "
                "https://download.pytorch.org/whl/cu126` (cuXYZ: a CUDA version your driver supports, which "
                "`nvidia-smi` shows), with the torchvision of that release")
    if not torch.cuda.is_available():
        return (f"torch {torch.__version__} (built for CUDA {torch.version.cuda}) sees no CUDA device: check "
                f"`nvidia-smi`, CUDA_VISIBLE_DEVICES, and that the driver supports CUDA {torch.version.cuda} "
                f"(if not, install torch=={base} built for an older CUDA from https://download.pytorch.org/whl/)")
    return None


def check_device(name: str) -> str:
    """``name`` when this machine has it ("cuda" becomes "cuda:N", the current device);
    DeviceError otherwise."""
    kind = name.split(":", 1)[0]
    if kind not in DEVICES or (":" in name and not name.split(":", 1)[1].isdigit()):
        raise DeviceError(f"unknown device {name!r}; use one of {DEVICES} (or cuda:N for the N-th GPU)")
    if kind == "cuda":
        import torch

        problem = cuda_problem()
        if problem:
            raise DeviceError(f"--device {name}: {problem}; or use --device cpu")
        index = int(name.split(":", 1)[1]) if ":" in name else torch.cuda.current_device()
        if index >= torch.cuda.device_count():
            raise DeviceError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        return f"cuda:{index}"
    return name


def device_refusal(name: str, devices: tuple[str, ...], device: str) -> str:
    """Why a codec does not run on ``device``, and which ``--device`` it does run with."""
    return f"{name} runs on {' or '.join(devices)} only, not on {device}; run it with --device {devices[0]}"


def device_label(device: str, threads: int) -> str:
    """Where a job's networks ran: ``cpu (N threads)`` or ``cuda (<GPU name>)``."""
    if device.startswith("cuda"):
        import torch

        return f"cuda ({torch.cuda.get_device_name(torch.device(device))})"
    return f"cpu ({threads} threads)"


def matching_gpu(label: str) -> str | None:
    """A ``cuda:N`` of this machine whose label is ``label`` (a row's ``cuda (<GPU name>)``);
    None when there is none: a file decodes only on the GPU model that coded it."""
    import torch

    if not torch.cuda.is_available():
        return None
    return next((f"cuda:{i}" for i in range(torch.cuda.device_count()) if device_label(f"cuda:{i}", 0) == label),
                None)


# --------------------------------------------------------------------------- identity
def device_identity(device: str) -> dict[str, str]:
    """What the bytes of a CUDA-coded file depend on beyond the codec's own versions: GPU
    model, compute capability, CUDA and cuDNN versions, torch; empty for the CPU (its files
    are keyed as they always were)."""
    if not device.startswith("cuda"):
        return {}
    import torch

    props = torch.cuda.get_device_properties(torch.device(device))
    return {"gpu": str(props.name), "capability": f"{props.major}.{props.minor}", "cuda": str(torch.version.cuda),
            "cudnn": str(torch.backends.cudnn.version()), "torch": str(torch.__version__)}


def identity_tag(identity: dict[str, str]) -> str:
    """A short, stable fingerprint of :func:`device_identity` ("" for the CPU)."""
    if not identity:
        return ""
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]


# --------------------------------------------------------------------------- start-up
def set_coding_flags() -> None:
    """cuDNN's deterministic algorithms, no autotuning (its choice could differ between the
    encoder's and the decoder's process), TF32 off for convolutions and matmuls, and torch's
    deterministic implementations where an op has one (``CODING_FLAGS``)."""
    import torch

    for name, value in CODING_FLAGS.items():
        owner, attr = name.rsplit(".", 1)
        obj = torch.backends
        for part in owner.split("."):
            obj = getattr(obj, part)
        setattr(obj, attr, value)
    torch.use_deterministic_algorithms(True, warn_only=True)


def _create_context(device: str) -> None:
    import torch

    torch.zeros(1, device=device)
    torch.cuda.synchronize(device)


def start_cuda(device: str) -> None:
    """Make ``device`` (``cuda:N``) this process's current device, set the coding flags and
    create its context now: the codec is placed before a job's memory ceiling applies
    (:func:`bench.limits.job_memory`), and CUDA needs far more address space than that."""
    import torch

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")    # deterministic cuBLAS; read when it starts
    set_coding_flags()
    torch.cuda.set_device(torch.device(device))
    _create_context(device)


def jobs_on(device: str, jobs: int) -> int:
    """How many jobs run at once: one per run on a GPU (a run uses one), since jobs sharing it
    would each time the other's kernels; ``jobs`` on the CPU."""
    return 1 if device.startswith("cuda") else max(1, jobs)


def device_failure(e: BaseException) -> bool:
    """Whether ``e`` is the device failing (CUDA out of memory, a CUDA, cuDNN or cuBLAS error),
    as raised in the codec's process or rebuilt from its reply."""
    if isinstance(e, DeviceFailure):
        return True
    text = f"{type(e).__name__}: {e}".lower()
    return isinstance(e, (MemoryError, RuntimeError)) and any(s in text for s in _FAILURE_TEXT)


# --------------------------------------------------------------------------- timing
def warm_up(network: nn.Module, shape: tuple[int, ...], device: str, done: set, run: Callable[[Any], Any]) -> bool:
    """``run`` once, untimed, on a fixed pseudo-random input of ``shape`` on ``device``, the
    first time ``network`` meets that shape in this process (``done`` remembers); only on
    ``WARM_UP_KINDS``. Random, not zeros: a gated network skips the convolutions of silent
    channels, whose kernels would then load in the first timed call. True when it ran."""
    key = (network, tuple(shape))
    if not device.startswith(WARM_UP_KINDS) or key in done:
        return False
    import torch

    x = torch.rand(tuple(shape), generator=torch.Generator().manual_seed(0)).to(device)
    with torch.no_grad():
        run(x)
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)
    done.add(key)
    return True


@dataclass
class Clock:
    """What :func:`network_clock` measured. ``net_s``: inside the networks (GPU time from CUDA
    events; the wall clock on the CPU). ``inside_s``: the wall clock inside them (on CUDA
    their launches and the wait for them). ``copy_s``: the image's copies to and from the
    device (CUDA only). The entropy coder's share of a call is the rest (:meth:`coder_s`)."""

    device: str
    net_s: float = 0.0
    inside_s: float = 0.0
    copy_s: float = 0.0

    @property
    def cuda(self) -> bool:
        return self.device.startswith("cuda")

    def coder_s(self, wall: float) -> float:
        """``wall`` (the whole call) less the networks and the copies."""
        return wall - self.inside_s - self.copy_s

    def copies(self) -> float | None:
        """``copy_s`` on CUDA; None on the CPU, where nothing is copied (records stay as they were)."""
        return self.copy_s if self.cuda else None

    def to_device(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` on the device; on CUDA the copy is timed apart."""
        return self._copy(lambda: x.to(self.device)) if self.cuda else x.to(self.device)

    def to_host(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` on the CPU; on CUDA the copy is timed apart."""
        return self._copy(x.cpu) if self.cuda else x

    def _copy(self, fn: Callable[[], torch.Tensor]) -> torch.Tensor:
        import torch

        torch.cuda.synchronize(self.device)
        t = time.perf_counter()
        out = fn()
        torch.cuda.synchronize(self.device)
        self.copy_s += time.perf_counter() - t
        return out


@contextmanager
def network_clock(modules: Iterable[nn.Module], device: str) -> Iterator[Clock]:
    """Time ``modules`` during the block into the :class:`Clock` it yields (complete when the
    block ends). CPU: the wall clock around each call. CUDA, with ``device`` the current
    device throughout: a synchronise, then an event pair on the device's current stream
    around each call and a synchronise after it, so the CPU clock outside the calls holds
    no wait for the GPU; the events are read once, after the last synchronise."""
    import torch

    clock = Clock(device)
    started: dict[int, tuple[float, Any]] = {}
    pairs: list[tuple[Any, Any]] = []
    dev = torch.device(device)
    stream = None

    def pre(module, _inp):
        if clock.cuda:
            torch.cuda.synchronize(dev)
            ev = torch.cuda.Event(enable_timing=True)
            ev.record(stream)
            started[id(module)] = (time.perf_counter(), ev)
        else:
            started[id(module)] = (time.perf_counter(), None)

    def post(module, _inp, _out):
        t, start = started.pop(id(module))
        if clock.cuda:
            end = torch.cuda.Event(enable_timing=True)
            end.record(stream)
            torch.cuda.synchronize(dev)
            pairs.append((start, end))
            clock.inside_s += time.perf_counter() - t
        else:
            spent = time.perf_counter() - t
            clock.net_s += spent
            clock.inside_s += spent

    with torch.cuda.device(dev) if clock.cuda else _nothing():
        if clock.cuda:
            stream = torch.cuda.current_stream(dev)
        hooks = [h for m in modules for h in (m.register_forward_pre_hook(pre), m.register_forward_hook(post))]
        try:
            yield clock
        finally:
            for h in hooks:
                h.remove()
            if clock.cuda:
                torch.cuda.synchronize(dev)
                clock.net_s += sum(a.elapsed_time(b) for a, b in pairs) / 1000


@contextmanager
def _nothing() -> Iterator[None]:
    yield


# --------------------------------------------------------------------------- make setup
def main(argv: list[str]) -> int:
    """``python -m bench.device --check-cuda``: exit 1 with what to do when torch cannot run on
    CUDA here (``make setup DEVICE=cuda``); nothing is downloaded."""
    if argv != ["--check-cuda"]:
        print("usage: python -m bench.device --check-cuda", file=sys.stderr)
        return 2
    problem = cuda_problem()
    if problem:
        print(f"DEVICE=cuda: {problem}", file=sys.stderr)
        return 1
    import torch

    names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    print(f"torch {torch.__version__} (CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}): {names}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
