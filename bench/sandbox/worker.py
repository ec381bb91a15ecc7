"""A codec worker: one submission's codec in one role (encoder or decoder), serving the
harness's requests until the pipe closes. ``python -m bench.sandbox.worker ROLE [VIEW...]``
runs it (VIEW: the folders bound into its sandbox, for naming refusals); its first frame is
the submission (name, codec entry point, folder, params) whose codec it makes;
:mod:`bench.sandbox.client` starts it, under bubblewrap unless told otherwise.

The encoder gets images and returns files (``encode``), estimates (``estimate``) and costs
(``complexity``); the decoder gets files and returns pixels (``decode``), and is never sent
an image. Each reply carries what the codec measured (the stateless contract of
:mod:`bench.codec`). A job that runs out of memory ends the process after its reply: native
code can keep such a failure (oneDNN's primitive cache), so the next job gets a fresh one.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.codec import Codec, as_decoded, as_encoded
from bench.device import DeviceError, device_refusal
from bench.limits import check_declared_size, is_out_of_memory, job_memory
from bench.quiet import quiet_third_party
from bench.sandbox.watch import Watch
from bench.sandbox.wire import WireError, receive, send

ROLES = ("encoder", "decoder")
EXIT_OUT_OF_MEMORY = 3

Reply = tuple[dict[str, Any], tuple[bytes, ...]]


def _ready(codec: Codec, req: dict[str, Any], name: str) -> str:
    """The request's torch threads and device (DeviceError when the codec cannot run there);
    returns the device. Called before :func:`job_memory`: placing a codec on CUDA starts the
    device, which needs more address space than a job's ceiling allows."""
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(int(req.get("threads", 1)))
    device = req.get("device", "cpu")
    if codec.device != device:
        if device.split(":")[0] not in codec.devices:
            raise DeviceError(device_refusal(name, codec.devices, device))
        codec.place(device)
    return device


def _image(req: dict[str, Any], blob: bytes) -> np.ndarray:
    h, w = (int(v) for v in req["shape"])
    return np.frombuffer(blob, dtype=np.uint8).reshape(h, w, 3)


def _pixels_reply(pixels: np.ndarray, extra: dict[str, Any]) -> Reply:
    pixels = np.ascontiguousarray(pixels)
    return {"shape": list(pixels.shape), "dtype": str(pixels.dtype), **extra}, (pixels.tobytes(),)


def encode(codec: Codec, req: dict[str, Any], blobs: list[bytes], name: str) -> Reply:
    image = _image(req, blobs[0])
    device = _ready(codec, req, name)
    with job_memory(image.shape[0] * image.shape[1], req["what"], int(req.get("threads", 1)), device):
        enc = as_encoded(codec.encode(image, req["point"]), name)
    return {"measures": enc.measures.as_record()}, (enc.data,)


def decode(codec: Codec, req: dict[str, Any], blobs: list[bytes], name: str) -> Reply:
    data, expected = blobs[0], req.get("expected")
    device = _ready(codec, req, name)
    size = check_declared_size(codec, data, tuple(expected) if expected else None, req["what"])
    hw = size or expected or (0, 0)
    with job_memory(hw[0] * hw[1], req["what"], int(req.get("threads", 1)), device):
        dec = as_decoded(codec.decode(data), name)
    return _pixels_reply(dec.pixels, {"measures": dec.measures.as_record()})


def estimate(codec: Codec, req: dict[str, Any], blobs: list[bytes], name: str) -> Reply:
    image = _image(req, blobs[0])
    device = _ready(codec, req, name)
    with job_memory(image.shape[0] * image.shape[1], req["what"], int(req.get("threads", 1)), device):
        est = codec.estimate(image, req["point"])
    if est is None:
        return {"none": True}, ()
    return _pixels_reply(np.asarray(est.decoded), {"bytes": int(est.bytes)})


def complexity(codec: Codec, req: dict[str, Any], blobs: list[bytes], name: str) -> Reply:
    out = []
    for point, h, w in req["items"]:
        c = codec.complexity(point, int(h), int(w))
        out.append(None if c is None else {"model": c.model, "enc_macs": float(c.enc_macs),
                                           "dec_macs": float(c.dec_macs), "params": int(c.params),
                                           "decoder_bytes": int(c.decoder_bytes), "uncounted": list(c.uncounted)})
    return {"items": out}, ()


HANDLERS: dict[str, dict[str, Callable[..., Reply]]] = {
    "encoder": {"encode": encode, "estimate": estimate, "complexity": complexity},
    "decoder": {"decode": decode},
}


def error_reply(e: BaseException, watch: Watch | None) -> dict[str, Any]:
    """What the harness needs to rebuild the error: its class name, message and the accesses
    the sandbox refused while the request ran."""
    kinds = ["DeviceMismatch", "BitstreamError", "DeviceError", "SubmissionError", "MemoryError"]
    names = [c.__name__ for c in type(e).__mro__]
    kind = next((k for k in kinds if k in names), "MemoryError" if is_out_of_memory(e) else "")
    return {"ok": False, "type": type(e).__name__, "kind": kind, "message": str(e),
            "refused": watch.take() if watch else []}


def _protocol_streams():
    """The pipe to the harness (this process's stdin and stdout at start); afterwards stdin
    reads /dev/null and stdout writes to stderr, so a codec's prints cannot break a frame."""
    proto_in = os.fdopen(os.dup(0), "rb", buffering=0)
    proto_out = os.fdopen(os.dup(1), "wb")
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(2, 1)
    os.close(null)
    return proto_in, proto_out


def _submission(spec: dict[str, Any]):
    """The submission the harness sent (its manifest as the harness validated it)."""
    from bench.submission import Submission

    return Submission(name=str(spec["name"]), description="", codec_ref=str(spec["codec_ref"]),
                      root=Path(spec["root"]), params=dict(spec["params"]))


def serve(role: str, watch: Watch | None) -> int:
    proto_in, proto_out = _protocol_streams()
    try:
        start, _ = receive(proto_in)
        sub = _submission(start["submission"])
        codec = sub.make_codec()
        send(proto_out, {"ok": True, "pid": os.getpid(), "devices": list(codec.devices),
                         "versions": {str(k): str(v) for k, v in codec.versions().items()}})
    except Exception as e:  # the codec cannot be made: the harness reports it before any job
        send(proto_out, error_reply(e, watch))
        return 1
    handlers = HANDLERS[role]
    while True:
        try:
            req, blobs = receive(proto_in)
        except (WireError, OSError):
            return 0                                   # the harness closed the pipe (or died)
        if watch:
            watch.take()
        try:
            op = handlers.get(req.get("op"))
            if op is None:
                raise ValueError(f"a {role} does not do {req.get('op')!r}; it does {sorted(handlers)}")
            reply, out = op(codec, req, blobs, sub.name)
            send(proto_out, {"ok": True, **reply}, out)
        except Exception as e:  # the job's failure, reported to the harness; the worker goes on
            send(proto_out, error_reply(e, watch))
            if is_out_of_memory(e):
                return EXIT_OUT_OF_MEMORY


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ROLES:
        print(f"usage: python -m bench.sandbox.worker {{{','.join(ROLES)}}} [VIEW...]", file=sys.stderr)
        return 2
    quiet_third_party()
    watch = Watch(argv[1:]) if len(argv) > 1 else None
    if watch:
        sys.addaudithook(watch.hook)
    return serve(argv[0], watch)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
