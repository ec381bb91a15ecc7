"""Where a learned codec's networks run (``--device cpu|cuda``) and how their time is measured.

Entropy coding always runs on the CPU; only the transforms move. On CUDA a kernel launch
returns before the work is done, so CPU clocks around a network call would time the launch:
:func:`network_clock` records CUDA events around each transform instead and reads them after
one synchronise. The record's ``device`` label says where the networks really ran.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from typing import TYPE_CHECKING

from bench.codec import BitstreamError

if TYPE_CHECKING:   # torch is imported where it is used: a classical codec's worker never loads it
    import torch
    from torch import nn

DEVICES = ("cpu", "cuda")


class DeviceError(ValueError):
    """A device this machine or this codec cannot run on (the message says what to do)."""


class DeviceMismatch(DeviceError, BitstreamError):
    """A file coded with the networks on one kind of device, decoded on another (refused: the
    entropy parameters would differ). A BitstreamError too: whoever handles bad files handles it."""


def check_device(name: str) -> str:
    """``name`` when this machine has it ("cuda" becomes "cuda:N", the current device);
    DeviceError otherwise."""
    kind = name.split(":", 1)[0]
    if kind not in DEVICES or (":" in name and not name.split(":", 1)[1].isdigit()):
        raise DeviceError(f"unknown device {name!r}; use one of {DEVICES} (or cuda:N for the N-th GPU)")
    if kind == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise DeviceError(f"--device {name}: torch sees no CUDA device on this machine "
                              f"(torch {torch.__version__}, CUDA build {torch.version.cuda}); use --device cpu")
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


@contextmanager
def network_clock(modules: Iterable[nn.Module], device: str) -> Iterator[list[float]]:
    """Seconds spent inside ``modules`` during the block, summed into the one-element list it
    yields (filled when the block ends). CPU: the wall clock around each call. CUDA: an event
    pair around each call, read after a synchronise (GPU time, not launch time)."""
    import torch

    spent: list[float] = [0.0]
    cuda = device.startswith("cuda")
    started: dict[int, object] = {}
    pairs: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []

    def pre(module, _inp):
        if cuda:
            ev = torch.cuda.Event(enable_timing=True)
            ev.record()
            started[id(module)] = ev
        else:
            started[id(module)] = time.perf_counter()

    def post(module, _inp, _out):
        start = started.pop(id(module))
        if cuda:
            end = torch.cuda.Event(enable_timing=True)
            end.record()
            pairs.append((start, end))
        else:
            spent[0] += time.perf_counter() - start

    hooks = [h for m in modules for h in (m.register_forward_pre_hook(pre), m.register_forward_hook(post))]
    try:
        yield spent
    finally:
        for h in hooks:
            h.remove()
        if cuda:
            torch.cuda.synchronize(torch.device(device))
            spent[0] += sum(a.elapsed_time(b) for a, b in pairs) / 1000
