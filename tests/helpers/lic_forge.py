"""Forge LIC containers field by field (bench/container.py, version 3), independently of
``pack``: values ``pack`` would refuse, raw varint bytes, and a CRC that is fixed up or not."""

from __future__ import annotations

import struct
import zlib

from bench.container import MAGIC, VERSION, unpack, uvarint

Field = int | bytes      # an int is written as a varint; bytes raw


def forge(data: bytes, *, model_id: Field | None = None, height: Field | None = None, width: Field | None = None,
          n_streams: int | None = None, variant: int | None = None, lengths: list[Field] | None = None,
          version: int = VERSION, fix_crc: bool = True) -> bytes:
    """``data`` (a valid container) with the given header fields replaced and the streams kept;
    ``lengths`` are those written (all streams but the last, unless forged otherwise); the CRC
    is recomputed over the new bytes unless ``fix_crc`` is False."""
    c = unpack(data)

    def enc(value: Field) -> bytes:
        return value if isinstance(value, bytes) else uvarint(value)
    count = len(c.streams) if n_streams is None else n_streams
    layout = (count - 1) | (c.variant if variant is None else variant) << 3
    head = [enc(c.model_id if model_id is None else model_id), enc(c.height if height is None else height),
            enc(c.width if width is None else width), bytes([layout]),
            *(enc(n) for n in (lengths if lengths is not None else [len(s) for s in c.streams[:-1]]))]
    out = MAGIC + bytes([version]) + data[4:8] + b"".join(head) + b"".join(c.streams)
    return with_crc(out) if fix_crc else out


def with_crc(data: bytes) -> bytes:
    """``data`` with its CRC field recomputed over the bytes after it."""
    return data[:4] + struct.pack(">I", zlib.crc32(data[8:])) + data[8:]
