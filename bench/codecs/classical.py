"""Classical anchors (JPEG, WebP, AVIF through Pillow; JPEG XL through imagecodecs) and the
null codec that measures the harness's own overhead. Each is a few lines: the library does
the coding, the harness does everything else.

The libraries trust the size in a file's header, so each decoder reads it first and refuses a
claim above the pixel cap (:mod:`bench.limits`) before the library allocates for it; Pillow's
own decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``) stays on as well."""

from __future__ import annotations

import io
import struct
import zlib
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Iterator

import numpy as np
from PIL import Image as PILImage
from PIL import features

from bench.codec import BitstreamError, Codec
from bench.limits import check_pixels

_PILLOW_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, RuntimeError,
                  PILImage.DecompressionBombError)   # AVIF reports bad data as RuntimeError


class PillowCodec(Codec):
    """Any Pillow format with a ``quality`` knob; ``params`` are passed to ``Image.save``."""

    format: str = ""
    magic: tuple[bytes, ...] = ()

    def encode(self, image: np.ndarray, point: Any) -> bytes:
        buf = io.BytesIO()
        PILImage.fromarray(image, "RGB").save(buf, format=self.format, quality=int(point), **self.params)
        return buf.getvalue()

    @contextmanager
    def _opened(self, data: bytes) -> Iterator[PILImage.Image]:
        """The file opened by Pillow (header parsed, pixels not decoded yet) with its size under
        the pixel cap; the library's errors inside the block become BitstreamError."""
        if not any(data.startswith(m) or m in data[:16] for m in self.magic):
            raise BitstreamError(f"not a {self.format} file (bad magic)")
        try:
            with PILImage.open(io.BytesIO(data), formats=[self.format]) as im:
                check_pixels(im.height, im.width, f"{self.format} header")
                yield im
        except BitstreamError:
            raise
        except _PILLOW_ERRORS as e:
            raise BitstreamError(f"{self.format} decoding failed: {e}") from None

    def declared_size(self, data: bytes) -> tuple[int, int]:
        with self._opened(data) as im:
            return im.height, im.width

    def decode(self, data: bytes) -> np.ndarray:
        with self._opened(data) as im:
            im.load()
            return np.asarray(im.convert("RGB"), dtype=np.uint8)

    def versions(self) -> dict[str, str]:
        return {"pillow": PILImage.__version__}


class JpegCodec(PillowCodec):
    format = "JPEG"
    magic = (b"\xff\xd8\xff",)

    def versions(self) -> dict[str, str]:
        return super().versions() | {"libjpeg_turbo": str(features.version("libjpeg_turbo"))}


def webp_size(data: bytes) -> tuple[int, int] | None:
    """(height, width) from a WebP file's first chunk (VP8X canvas, VP8 frame or VP8L header);
    None when the file does not start with one of them (Pillow then judges it)."""
    if len(data) < 30 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return None
    chunk = data[12:16]
    if chunk == b"VP8X":
        return 1 + int.from_bytes(data[27:30], "little"), 1 + int.from_bytes(data[24:27], "little")
    if chunk == b"VP8 ":
        width, height = struct.unpack_from("<HH", data, 26)
        return height & 0x3FFF, width & 0x3FFF
    if chunk == b"VP8L" and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return 1 + (bits >> 14 & 0x3FFF), 1 + (bits & 0x3FFF)
    return None


class WebPCodec(PillowCodec):
    format = "WEBP"
    magic = (b"WEBP",)

    def _opened(self, data: bytes) -> AbstractContextManager[PILImage.Image]:
        """libwebp allocates its canvas as soon as Pillow opens the file: check the size first."""
        size = webp_size(data)
        if size is not None:
            check_pixels(*size, "WEBP header")
        return super()._opened(data)

    def versions(self) -> dict[str, str]:
        return super().versions() | {"libwebp": str(features.version("webp"))}


class AvifCodec(PillowCodec):
    format = "AVIF"
    magic = (b"ftypavif",)

    def versions(self) -> dict[str, str]:
        return super().versions() | {"libavif": str(features.version("avif"))}


JXL_CODESTREAM = b"\xff\x0a"
JXL_CONTAINER = b"\x00\x00\x00\x0cJXL \r\n\x87\n"
_JXL_RATIOS = {1: (1, 1), 2: (12, 10), 3: (4, 3), 4: (3, 2), 5: (16, 9), 6: (5, 4), 7: (2, 1)}


def _jxl_codestream(data: bytes) -> bytes:
    """The codestream's first bytes: the file itself, or the payload of the ISOBMFF container's
    ``jxlc`` box (or its ``jxlp`` parts, each after a 4-byte index)."""
    if data.startswith(JXL_CODESTREAM):
        return data
    out, pos = b"", 0
    while pos + 8 <= len(data) and len(out) < 64:
        size, kind, head = int.from_bytes(data[pos:pos + 4], "big"), data[pos + 4:pos + 8], 8
        if size == 1:
            size, head = int.from_bytes(data[pos + 8:pos + 16], "big"), 16
        elif size == 0:
            size = len(data) - pos
        if size < head:
            raise BitstreamError(f"JPEG XL container: box {kind!r} at byte {pos} has an impossible size {size}")
        if kind == b"jxlc":
            return data[pos + head:pos + size]
        if kind == b"jxlp":
            out += data[pos + head + 4:pos + size]
        pos += size
    if not out:
        raise BitstreamError("JPEG XL container without a codestream box (jxlc or jxlp)")
    return out


def jxl_size(data: bytes) -> tuple[int, int]:
    """(height, width) of the decoded image, from the codestream's SizeHeader and the
    orientation in its ImageMetadata (orientations 5-8 swap the sides); no pixels decoded."""
    stream = _jxl_codestream(data)
    if not stream.startswith(JXL_CODESTREAM):
        raise BitstreamError("JPEG XL codestream does not start with its signature FF 0A")
    bits = int.from_bytes(stream[2:20], "little")
    pos, end = 0, 8 * len(stream[2:20])

    def read(n: int) -> int:
        nonlocal pos
        if pos + n > end:
            raise BitstreamError("JPEG XL file truncated inside its size header")
        value = bits >> pos & ((1 << n) - 1)
        pos += n
        return value

    def side(small: bool) -> int:
        if small:
            return 8 * (read(5) + 1)
        return read((9, 13, 18, 30)[read(2)]) + 1

    small = bool(read(1))
    height = side(small)
    ratio = read(3)
    width = side(small) if ratio == 0 else height * _JXL_RATIOS[ratio][0] // _JXL_RATIOS[ratio][1]
    if not read(1) and read(1) and read(3) >= 4:     # not all_default, extra_fields, orientation 5..8
        height, width = width, height
    return height, width


class JpegXlCodec(Codec):
    """JPEG XL through imagecodecs; the knob is the Butteraugli ``distance`` (larger: fewer bits)."""

    def encode(self, image: np.ndarray, point: Any) -> bytes:
        import imagecodecs

        return bytes(imagecodecs.jpegxl_encode(image, distance=float(point), **self.params))

    def declared_size(self, data: bytes) -> tuple[int, int]:
        if not (data.startswith(JXL_CODESTREAM) or data.startswith(JXL_CONTAINER)):
            raise BitstreamError("not a JPEG XL file (bad magic)")
        return jxl_size(data)

    def decode(self, data: bytes) -> np.ndarray:
        import imagecodecs

        check_pixels(*self.declared_size(data), "JPEG XL header")   # imagecodecs allocates what the header says
        try:
            out = imagecodecs.jpegxl_decode(data)
        except Exception as e:  # imagecodecs raises its own JpegxlError (a RuntimeError subclass)
            raise BitstreamError(f"JPEG XL decoding failed: {e}") from None
        if out.ndim != 3 or out.shape[2] != 3 or out.dtype != np.uint8:
            raise BitstreamError(f"JPEG XL decoded to {out.dtype} {out.shape}, not 8-bit RGB")
        return out

    def versions(self) -> dict[str, str]:
        import imagecodecs

        return {"imagecodecs": imagecodecs.__version__, "libjxl": str(imagecodecs.jpegxl_version())}


class NullCodec(Codec):
    """Stores the pixels losslessly (zlib level 1) behind a 16-byte header with a CRC.

    The codec does almost nothing, so a run of it measures the harness's own overhead
    (file I/O, metrics, bookkeeping) per image.
    """

    MAGIC = b"NUL1"

    def encode(self, image: np.ndarray, point: Any) -> bytes:
        h, w, _ = image.shape
        payload = zlib.compress(np.ascontiguousarray(image).tobytes(), level=1)
        return self.MAGIC + struct.pack(">III", h, w, zlib.crc32(payload)) + payload

    def declared_size(self, data: bytes) -> tuple[int, int]:
        if len(data) < 16 or data[:4] != self.MAGIC:
            raise BitstreamError("not a null-codec file (bad magic or shorter than its header)")
        h, w = struct.unpack(">II", data[4:12])
        return h, w

    def decode(self, data: bytes) -> np.ndarray:
        h, w = self.declared_size(data)
        (crc,), payload = struct.unpack_from(">I", data, 12), data[16:]
        if zlib.crc32(payload) != crc:
            raise BitstreamError("null-codec payload CRC mismatch: the file is truncated or corrupted")
        expected = h * w * 3
        if not h * w:
            raise BitstreamError(f"null-codec header says {h}×{w}: not a plausible image size")
        check_pixels(h, w, "null-codec header")
        try:   # never inflate more than the header's size (+1 to see an overlong payload): no zlib bombs
            inflater = zlib.decompressobj()
            raw = inflater.decompress(payload, expected + 1)
        except zlib.error as e:
            raise BitstreamError(f"null-codec payload is not valid zlib data: {e}") from None
        if len(raw) != expected or not inflater.eof:
            raise BitstreamError(f"null-codec payload does not hold exactly the {h}×{w}×3 bytes its header says")
        return np.frombuffer(raw, dtype=np.uint8).reshape(h, w, 3).copy()
