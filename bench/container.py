"""A small versioned container for learned-codec bitstreams.

Layout (version 3; integers are unsigned LEB128 varints, 7 bits per byte, minimal length)::

    offset  size            field
    0       3               magic b"LIC"
    3       1               format version (VERSION)
    4       4               CRC32 (big-endian) of every byte from offset 8 to the end of the file
    8       varint          model / operating-point id (< 2**16; the codec says what it means)
    .       varint          original height (1..MAX_SIDE)
    .       varint          original width (1..MAX_SIDE)
    .       1               layout: bits 0-2 = S − 1 (S streams, 1..MAX_STREAMS),
                            bits 3-7 = coding variant (0..MAX_VARIANT; the codec says what it means)
    .       varint · (S−1)  length of each stream but the last
    .       ...             the streams, back to back (z first, then y); the last one runs to
                            the end of the file

A 768×512 Kodak image with two streams (z of 128 B..16 KiB) and a model id below 128 has a
16-byte header (17 with a variable-rate codec's 14-bit λ index). Version 1
spent 32 bytes on fixed-width fields and the latent shape (which the codec derives from the
size), version 2 18 bytes (a separate stream-count byte and the last stream's length); at
0.075 bpp a file is about 2 kB, so each byte is 0.05 % of it.

The CRC sits right after the magic and version so that it covers every field the decoder
trusts (model id, size, lengths) as well as the payload. compressai's rANS decoder turns
garbage into a plausible image without complaint, so the CRC is the only thing standing
between a corrupted file and a silently wrong reconstruction: :func:`unpack` rejects every
malformed input with :class:`~bench.codec.BitstreamError` before any entropy decoder sees
a byte. A CRC is no defence against a forged file, though (anyone can recompute it): a size
above the pixel cap (:mod:`bench.limits`, 8192 × 8192 by default) is refused too, so a
header cannot make a decoder allocate tens of gigabytes.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from bench.codec import BitstreamError
from bench.limits import check_pixels

MAGIC = b"LIC"
VERSION = 3
MAX_STREAMS = 8
MAX_VARIANT = 31
MAX_SIDE = 2**16          # larger heights/widths are implausible for this benchmark
MAX_ID = 2**16 - 1
MAX_LENGTH = 2**32 - 1
PREFIX_SIZE = 8           # magic, version, CRC32

_PREFIX = struct.Struct(">3sBI")


@dataclass(frozen=True)
class Container:
    model_id: int
    height: int
    width: int
    streams: tuple[bytes, ...]
    header_size: int
    variant: int = 0
    version: int = VERSION


def uvarint(value: int) -> bytes:
    """Unsigned LEB128: 7 bits per byte, low bits first, high bit set on all but the last."""
    if value < 0:
        raise ValueError(f"varint of a negative number {value}")
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _read_uvarint(data: bytes, pos: int, field: str, limit: int) -> tuple[int, int]:
    """(value, next position); BitstreamError for a truncated, overlong or out-of-range varint."""
    value, shift, start = 0, 0, pos
    while True:
        if pos >= len(data):
            raise BitstreamError(f"bitstream truncated inside the header ({len(data)} bytes, reading the {field})")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            break
        shift += 7
        if value > limit or shift > limit.bit_length() + 7:
            raise BitstreamError(f"the {field} in the header exceeds {limit}: corrupted file")
    if pos - start > 1 and byte == 0:
        raise BitstreamError(f"the {field} in the header is not minimally encoded: corrupted file")
    if value > limit:
        raise BitstreamError(f"the {field} in the header is {value}, above {limit}: corrupted file")
    return value, pos


def pack(model_id: int, height: int, width: int, streams: list[bytes] | tuple[bytes, ...], variant: int = 0) -> bytes:
    """The file: header + streams. Raises ValueError for values the format cannot hold."""
    streams = [bytes(s) for s in streams]
    if not 0 <= model_id <= MAX_ID:
        raise ValueError(f"model id {model_id} outside 0..{MAX_ID}")
    if not (1 <= height <= MAX_SIDE and 1 <= width <= MAX_SIDE):
        raise ValueError(f"image size {height}×{width} outside 1..{MAX_SIDE}")
    if not 1 <= len(streams) <= MAX_STREAMS:
        raise ValueError(f"{len(streams)} streams; the container holds 1..{MAX_STREAMS}")
    if not 0 <= variant <= MAX_VARIANT:
        raise ValueError(f"coding variant {variant} outside 0..{MAX_VARIANT}")
    if any(len(s) > MAX_LENGTH for s in streams):
        raise ValueError("a stream is longer than 4 GiB")
    layout = (len(streams) - 1) | variant << 3
    body = b"".join([uvarint(model_id), uvarint(height), uvarint(width), bytes([layout]),
                     *(uvarint(len(s)) for s in streams[:-1]), *streams])
    return _PREFIX.pack(MAGIC, VERSION, zlib.crc32(body)) + body


def unpack(data: bytes) -> Container:
    """Parse and verify a container; every kind of bad input raises BitstreamError."""
    data = bytes(data)
    n = len(data)
    if n < PREFIX_SIZE + 4:     # id, height, width, layout: a byte each at least
        raise BitstreamError(f"bitstream too short: {n} bytes, a LIC container needs at least "
                             f"{PREFIX_SIZE + 4} bytes of header")
    magic, version, crc = _PREFIX.unpack_from(data, 0)
    if magic != MAGIC:
        raise BitstreamError(f"not a LIC container (magic {magic!r}, expected {MAGIC!r})")
    if version != VERSION:
        raise BitstreamError(f"LIC container version {version}: this decoder reads version {VERSION} only; "
                             "re-encode the image (bench run) with this version of the harness")
    pos = PREFIX_SIZE
    model_id, pos = _read_uvarint(data, pos, "model id", MAX_ID)
    height, pos = _read_uvarint(data, pos, "height", MAX_LENGTH)
    width, pos = _read_uvarint(data, pos, "width", MAX_LENGTH)
    if pos >= n:
        raise BitstreamError(f"bitstream truncated inside the header ({n} bytes, reading the layout byte)")
    layout, pos = data[pos], pos + 1
    n_streams, variant = (layout & 7) + 1, layout >> 3
    lengths = []
    for k in range(n_streams - 1):
        length, pos = _read_uvarint(data, pos, f"length of stream {k}", MAX_LENGTH)
        lengths.append(length)
    declared, present = sum(lengths), n - pos
    if declared > present:
        raise BitstreamError(f"stream lengths {lengths} point past the end of the file "
                             f"({declared} bytes declared, {present} present): truncated or corrupted")
    lengths.append(present - declared)
    if zlib.crc32(memoryview(data)[PREFIX_SIZE:]) != crc:
        raise BitstreamError("LIC container CRC32 mismatch: the file is corrupted")
    if not (1 <= height <= MAX_SIDE and 1 <= width <= MAX_SIDE):
        raise BitstreamError(f"implausible image size {height}×{width} in the header (allowed 1..{MAX_SIDE})")
    check_pixels(height, width, "LIC container header")     # a valid CRC does not make the size honest
    streams, off = [], pos
    for length in lengths:
        streams.append(data[off:off + length])
        off += length
    return Container(model_id, height, width, tuple(streams), pos, variant, version)
