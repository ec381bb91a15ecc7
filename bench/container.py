"""A small versioned container for learned-codec bitstreams.

Layout (big-endian; 32 bytes of header for two streams and a 2-D latent shape)::

    offset  size          field
    0       3             magic b"LIC"
    3       1             format version (VERSION)
    4       4             CRC32 of every byte from offset 8 to the end of the file
    8       2             model / operating-point id (uint16; the codec says what it means)
    10      4             original height (uint32)
    14      4             original width (uint32)
    18      1             number of streams S (uint8, 1..MAX_STREAMS)
    19      4·S           length of each stream (uint32)
    19+4S   1             number of latent dimensions D (uint8, 1..MAX_DIMS)
    20+4S   2·D           latent shape (uint16 each; the z shape that ``decompress`` wants)
    20+4S+2D ...          the streams, back to back (z first, then y)

The CRC sits right after the magic and version so that it covers every field the decoder
trusts (model id, size, lengths, shape) as well as the payload. compressai's rANS decoder
turns garbage into a plausible image without complaint, so the CRC is the only thing
standing between a corrupted file and a silently wrong reconstruction: :func:`unpack`
rejects every malformed input with :class:`~bench.codec.BitstreamError` before any
entropy decoder sees a byte.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from bench.codec import BitstreamError

MAGIC = b"LIC"
VERSION = 1
MAX_STREAMS = 8
MAX_DIMS = 4
MAX_SIDE = 2**16          # larger heights/widths are implausible for this benchmark

_PREFIX = struct.Struct(">3sBI")     # magic, version, crc32
_HEAD = struct.Struct(">HIIB")       # model id, height, width, stream count
_U32 = struct.Struct(">I")


@dataclass(frozen=True)
class Container:
    model_id: int
    height: int
    width: int
    streams: tuple[bytes, ...]
    shape: tuple[int, ...]
    version: int = VERSION


def header_size(n_streams: int, n_dims: int) -> int:
    """Bytes of header in front of the streams."""
    return _PREFIX.size + _HEAD.size + 4 * n_streams + 1 + 2 * n_dims


_MIN_SIZE = header_size(1, 1)   # one (empty) stream and a 1-D shape: nothing valid is shorter


def pack(model_id: int, height: int, width: int, streams: list[bytes] | tuple[bytes, ...],
         shape: tuple[int, ...] | list[int]) -> bytes:
    """The file: header + streams. Raises ValueError for values the format cannot hold."""
    streams = [bytes(s) for s in streams]
    shape = tuple(int(d) for d in shape)
    if not 0 <= model_id < 2**16:
        raise ValueError(f"model id {model_id} does not fit in a uint16")
    if not (1 <= height <= MAX_SIDE and 1 <= width <= MAX_SIDE):
        raise ValueError(f"image size {height}×{width} outside 1..{MAX_SIDE}")
    if not 1 <= len(streams) <= MAX_STREAMS:
        raise ValueError(f"{len(streams)} streams; the container holds 1..{MAX_STREAMS}")
    if not 1 <= len(shape) <= MAX_DIMS or not all(1 <= d < 2**16 for d in shape):
        raise ValueError(f"latent shape {shape} cannot be stored (1..{MAX_DIMS} dims, each 1..65535)")
    if any(len(s) >= 2**32 for s in streams):
        raise ValueError("a stream is longer than 4 GiB")
    body = b"".join([
        _HEAD.pack(model_id, height, width, len(streams)),
        b"".join(_U32.pack(len(s)) for s in streams),
        struct.pack(f">B{len(shape)}H", len(shape), *shape),
        *streams,
    ])
    return _PREFIX.pack(MAGIC, VERSION, zlib.crc32(body)) + body


def unpack(data: bytes) -> Container:
    """Parse and verify a container; every kind of bad input raises BitstreamError."""
    data = bytes(data)
    n = len(data)
    if n < _MIN_SIZE:
        raise BitstreamError(f"bitstream too short: {n} bytes, a LIC container needs at least "
                             f"{_MIN_SIZE} bytes of header")
    magic, version, crc = _PREFIX.unpack_from(data, 0)
    if magic != MAGIC:
        raise BitstreamError(f"not a LIC container (magic {magic!r}, expected {MAGIC!r})")
    if version != VERSION:
        raise BitstreamError(f"unknown LIC container version {version} (this decoder reads version {VERSION})")
    model_id, height, width, n_streams = _HEAD.unpack_from(data, _PREFIX.size)
    if not 1 <= n_streams <= MAX_STREAMS:
        raise BitstreamError(f"LIC header declares {n_streams} streams (allowed 1..{MAX_STREAMS})")
    pos = _PREFIX.size + _HEAD.size
    if n < pos + 4 * n_streams + 1:
        raise BitstreamError(f"bitstream truncated inside the header ({n} bytes)")
    lengths = struct.unpack_from(f">{n_streams}I", data, pos)
    pos += 4 * n_streams
    n_dims = data[pos]
    pos += 1
    if not 1 <= n_dims <= MAX_DIMS:
        raise BitstreamError(f"LIC header declares a {n_dims}-D latent shape (allowed 1..{MAX_DIMS})")
    if n < pos + 2 * n_dims:
        raise BitstreamError(f"bitstream truncated inside the header ({n} bytes)")
    shape = struct.unpack_from(f">{n_dims}H", data, pos)
    pos += 2 * n_dims
    declared, present = sum(lengths), n - pos
    if declared > present:
        raise BitstreamError(f"stream lengths {list(lengths)} point past the end of the file "
                             f"({declared} bytes declared, {present} present): truncated or corrupted")
    if declared < present:
        raise BitstreamError(f"{present - declared} trailing bytes after the declared streams "
                             f"{list(lengths)}: corrupted or concatenated file")
    if zlib.crc32(memoryview(data)[_PREFIX.size:]) != crc:
        raise BitstreamError("LIC container CRC32 mismatch: the file is corrupted")
    if not (1 <= height <= MAX_SIDE and 1 <= width <= MAX_SIDE):
        raise BitstreamError(f"implausible image size {height}×{width} in the header (allowed 1..{MAX_SIDE})")
    if 0 in shape:
        raise BitstreamError(f"latent shape {shape} has an empty dimension")
    streams, off = [], pos
    for length in lengths:
        streams.append(data[off:off + length])
        off += length
    return Container(model_id, height, width, tuple(streams), tuple(shape), version)
