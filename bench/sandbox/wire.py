"""The frames between the harness and a sandboxed worker: a JSON header and raw byte blobs.

A frame is ``u32 header length · header (UTF-8 JSON object) · u32 blob count · (u64 length ·
bytes) per blob``, all big-endian. Nothing is pickled: the harness reads what an untrusted
worker wrote, and unpickling would run the worker's code in the harness. Every length is
checked against a limit before anything is allocated for it.
"""

from __future__ import annotations

import json
import struct
from typing import Any, BinaryIO

MAX_HEADER = 1 << 20           # 1 MiB of JSON: measures, errors, complexity tables
MAX_BLOBS = 4
MAX_BLOB = 1 << 32             # 4 GiB: above any image or file the pixel cap allows

_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")


class WireError(ConnectionError):
    """The other side closed the pipe or wrote something that is not a frame."""


def send(stream: BinaryIO, header: dict[str, Any], blobs: tuple[bytes | memoryview, ...] = ()) -> None:
    """Write one frame and flush it."""
    text = json.dumps(header, allow_nan=True).encode()
    parts = [_U32.pack(len(text)), text, _U32.pack(len(blobs))]
    for blob in blobs:
        parts += [_U64.pack(len(blob)), blob]
    for part in parts:
        stream.write(part)
    stream.flush()


def _read(stream: BinaryIO, n: int, what: str) -> bytes:
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        k = stream.readinto(view[got:])
        if not k:
            raise WireError(f"the pipe closed after {got} of the {n} bytes of the {what}")
        got += k
    return bytes(buf)


def receive(stream: BinaryIO, max_blob: int = MAX_BLOB) -> tuple[dict[str, Any], list[bytes]]:
    """One frame: its header and its blobs (WireError for anything that is not a frame within
    the limits)."""
    (size,) = _U32.unpack(_read(stream, 4, "frame's header length"))
    if size > MAX_HEADER:
        raise WireError(f"a frame header of {size:,} bytes, above the {MAX_HEADER:,} allowed")
    try:
        header = json.loads(_read(stream, size, "frame's header"))
    except (UnicodeDecodeError, ValueError) as e:
        raise WireError(f"a frame header that is not JSON ({e})") from None
    if not isinstance(header, dict):
        raise WireError(f"a frame header that is a {type(header).__name__}, not an object")
    (count,) = _U32.unpack(_read(stream, 4, "blob count"))
    if count > MAX_BLOBS:
        raise WireError(f"a frame with {count} blobs, above the {MAX_BLOBS} allowed")
    blobs = []
    for i in range(count):
        (n,) = _U64.unpack(_read(stream, 8, f"length of blob {i}"))
        if n > max_blob:
            raise WireError(f"blob {i} of {n:,} bytes, above the {max_blob:,} expected")
        blobs.append(_read(stream, n, f"blob {i}"))
    return header, blobs
