"""A minimal codec: each value quantised to a step, the result zlib-compressed."""

import struct
import zlib

import numpy as np

from bench.codec import BitstreamError, Codec


class TemplateCodec(Codec):
    def encode(self, image: np.ndarray, point: int) -> bytes:   # uint8 H×W×3 → the whole file
        q = (image // point).astype(np.uint8)
        return struct.pack(">HHB", *image.shape[:2], point) + zlib.compress(q.tobytes(), self.params["level"])

    def declared_size(self, data: bytes) -> tuple[int, int]:    # optional: checked before decode
        if len(data) < 5:
            raise BitstreamError("shorter than its 5-byte header")
        return struct.unpack(">HH", data[:4])

    def decode(self, data: bytes) -> np.ndarray:                # the file's bytes → uint8 H×W×3
        (h, w), step = self.declared_size(data), data[4]
        try:   # never inflate more than the header's size (+1 to see an overlong payload)
            q = np.frombuffer(zlib.decompressobj().decompress(data[5:], h * w * 3 + 1), np.uint8)
        except zlib.error as e:
            raise BitstreamError(f"not zlib data: {e}") from None
        if q.size != h * w * 3 or step == 0:
            raise BitstreamError("the payload does not match the header")
        return (q.reshape(h, w, 3).astype(np.uint16) * step + step // 2).clip(0, 255).astype(np.uint8)
