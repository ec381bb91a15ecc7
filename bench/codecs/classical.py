"""Classical anchors (JPEG, WebP, AVIF through Pillow; JPEG XL through imagecodecs) and the
null codec that measures the harness's own overhead. Each is a few lines: the library does
the coding, the harness does everything else."""

from __future__ import annotations

import io
import struct
import zlib
from typing import Any

import numpy as np
from PIL import Image as PILImage
from PIL import features

from bench.codec import BitstreamError, Codec


class PillowCodec(Codec):
    """Any Pillow format with a ``quality`` knob; ``params`` are passed to ``Image.save``."""

    format: str = ""
    magic: tuple[bytes, ...] = ()

    def encode(self, image: np.ndarray, point: Any) -> bytes:
        buf = io.BytesIO()
        PILImage.fromarray(image, "RGB").save(buf, format=self.format, quality=int(point), **self.params)
        return buf.getvalue()

    def decode(self, data: bytes) -> np.ndarray:
        if not any(data.startswith(m) or m in data[:16] for m in self.magic):
            raise BitstreamError(f"not a {self.format} file (bad magic)")
        try:
            with PILImage.open(io.BytesIO(data), formats=[self.format]) as im:
                im.load()
                return np.asarray(im.convert("RGB"), dtype=np.uint8)
        except (OSError, SyntaxError, ValueError, EOFError, struct.error, RuntimeError,
                PILImage.DecompressionBombError) as e:   # AVIF reports bad data as RuntimeError
            raise BitstreamError(f"{self.format} decoding failed: {e}") from None

    def versions(self) -> dict[str, str]:
        return {"pillow": PILImage.__version__}


class JpegCodec(PillowCodec):
    format = "JPEG"
    magic = (b"\xff\xd8\xff",)

    def versions(self) -> dict[str, str]:
        return super().versions() | {"libjpeg_turbo": str(features.version("libjpeg_turbo"))}


class WebPCodec(PillowCodec):
    format = "WEBP"
    magic = (b"WEBP",)

    def versions(self) -> dict[str, str]:
        return super().versions() | {"libwebp": str(features.version("webp"))}


class AvifCodec(PillowCodec):
    format = "AVIF"
    magic = (b"ftypavif",)

    def versions(self) -> dict[str, str]:
        return super().versions() | {"libavif": str(features.version("avif"))}


class JpegXlCodec(Codec):
    """JPEG XL through imagecodecs; the knob is the Butteraugli ``distance`` (larger: fewer bits)."""

    def encode(self, image: np.ndarray, point: Any) -> bytes:
        import imagecodecs

        return bytes(imagecodecs.jpegxl_encode(image, distance=float(point), **self.params))

    def decode(self, data: bytes) -> np.ndarray:
        import imagecodecs

        if not (data.startswith(b"\xff\x0a") or data.startswith(b"\x00\x00\x00\x0cJXL ")):
            raise BitstreamError("not a JPEG XL file (bad magic)")
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
    MAX_PIXELS = 2**28    # what a header may claim (Pillow refuses images past ~1.8e8 pixels too)

    def encode(self, image: np.ndarray, point: Any) -> bytes:
        h, w, _ = image.shape
        payload = zlib.compress(np.ascontiguousarray(image).tobytes(), level=1)
        return self.MAGIC + struct.pack(">III", h, w, zlib.crc32(payload)) + payload

    def decode(self, data: bytes) -> np.ndarray:
        if len(data) < 16 or data[:4] != self.MAGIC:
            raise BitstreamError("not a null-codec file (bad magic or shorter than its header)")
        h, w, crc = struct.unpack(">III", data[4:16])
        payload = data[16:]
        if zlib.crc32(payload) != crc:
            raise BitstreamError("null-codec payload CRC mismatch: the file is truncated or corrupted")
        expected = h * w * 3
        if not 0 < h * w <= self.MAX_PIXELS:
            raise BitstreamError(f"null-codec header says {h}×{w}: not a plausible image size")
        try:   # never inflate more than the header's size (+1 to see an overlong payload): no zlib bombs
            inflater = zlib.decompressobj()
            raw = inflater.decompress(payload, expected + 1)
        except zlib.error as e:
            raise BitstreamError(f"null-codec payload is not valid zlib data: {e}") from None
        if len(raw) != expected or not inflater.eof:
            raise BitstreamError(f"null-codec payload does not hold exactly the {h}×{w}×3 bytes its header says")
        return np.frombuffer(raw, dtype=np.uint8).reshape(h, w, 3).copy()
