"""Classical anchors (JPEG, WebP, AVIF through Pillow; JPEG XL and JPEG 2000 through imagecodecs;
HEVC intra through pillow-heif) and the null codec that measures the harness's own overhead.
Each is a few lines: the library does the coding, the harness does everything else.

The libraries trust the size in a file's header, so each decoder reads it first and refuses a
claim above the pixel cap (:mod:`bench.limits`) before the library allocates for it; Pillow's
own decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``) stays on as well."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

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


# --------------------------------------------------------------------------- HEVC intra (HEIF)
HEIF_BRANDS = (b"ftypheic", b"ftypheix")      # at byte 4: HEVC still-image brands (libheif writes heix)


def _isobmff_boxes(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload start, payload end) of each box in ``data[start:end]``; BitstreamError for
    a box whose size is impossible or runs past its parent."""
    pos = start
    while pos < end:
        if pos + 8 > end:
            raise BitstreamError(f"ISOBMFF box header at byte {pos} cut off")
        size, kind, head = int.from_bytes(data[pos:pos + 4], "big"), data[pos + 4:pos + 8], 8
        if size == 1:
            if pos + 16 > end:
                raise BitstreamError(f"ISOBMFF box {kind!r} at byte {pos}: 64-bit size cut off")
            size, head = int.from_bytes(data[pos + 8:pos + 16], "big"), 16
        elif size == 0:
            size = end - pos
        if size < head or pos + size > end:
            raise BitstreamError(f"ISOBMFF box {kind!r} at byte {pos} has an impossible size {size}")
        yield kind, pos + head, pos + size
        pos += size


class _RbspBits:
    """MSB-first bit reader over an HEVC RBSP, with exp-Golomb codes."""

    def __init__(self, data: bytes) -> None:
        self.value, self.end, self.pos = int.from_bytes(data, "big"), 8 * len(data), 0

    def u(self, n: int) -> int:
        if self.pos + n > self.end:
            raise BitstreamError("HEVC parameter set cut off")
        self.pos += n
        return self.value >> (self.end - self.pos) & ((1 << n) - 1)

    def ue(self) -> int:
        zeros = 0
        while not self.u(1):
            zeros += 1
            if zeros > 31:
                raise BitstreamError("HEVC parameter set: exp-Golomb code longer than 32 bits")
        return (1 << zeros) - 1 + self.u(zeros)


#: How far an SPS's coded picture may extend past the image its ``ispe`` box declares:
#: encoders pad to whole coding blocks, at most one 64-px CTU per side.
MAX_HEVC_PADDING = 64


def hevc_sps_size(nal: bytes) -> tuple[int, int]:
    """(height, width) of the coded picture an HEVC SPS NAL unit declares (what the decoder
    allocates: it can exceed the image's ispe, which crops it)."""
    rbsp = nal[2:].replace(b"\x00\x00\x03", b"\x00\x00")      # drop the emulation-prevention bytes
    r = _RbspBits(rbsp[:160])                      # up to 7 sub-layers' profiles come first
    r.u(4)                                         # sps_video_parameter_set_id
    sub_layers = r.u(3)                            # sps_max_sub_layers_minus1
    r.u(1)
    r.u(96)                                        # general profile, tier and level
    flags = [(r.u(1), r.u(1)) for _ in range(sub_layers)]
    if sub_layers:
        r.u(2 * (8 - sub_layers))
    for profile, level in flags:
        r.u(88 * profile + 8 * level)
    r.ue()                                         # sps_seq_parameter_set_id
    if r.ue() == 3:                                # chroma_format_idc 4:4:4: separate_colour_plane_flag
        r.u(1)
    width = r.ue()
    return r.ue(), width


def check_heif_sizes(sizes: list[tuple[str, int, int]], image: tuple[int, int] | None = None) -> None:
    """Without ``image``: every declared size (``ispe``, SPS) under the pixel cap give or take
    one coding block per side, before libheif parses the file. With ``image`` (libheif's
    (height, width) of the picture it shows, after its crop): that size under the cap, and no
    declared size more than :data:`MAX_HEVC_PADDING` px per side larger (the padding to whole
    coding blocks), so the cap bounds what the decoder allocates."""
    if image is None:
        for what, h, w in sizes:
            check_pixels(max(1, h - MAX_HEVC_PADDING), max(1, w - MAX_HEVC_PADDING), what)
        return
    check_pixels(*image, "HEIF primary image")
    for what, h, w in sizes:
        if h > image[0] + MAX_HEVC_PADDING or w > image[1] + MAX_HEVC_PADDING:
            raise BitstreamError(f"{what}: a {h}×{w} coded picture for a {image[0]}×{image[1]} image: more padding "
                                 f"than whole coding blocks need ({MAX_HEVC_PADDING} px per side): forged or "
                                 "corrupted")


def heif_coded_sizes(data: bytes) -> list[tuple[str, int, int]]:
    """Every size the file's item properties declare: each ``ispe`` box and each ``hvcC`` box's
    SPS, as (what, height, width), found by walking meta → iprp → ipco."""
    out: list[tuple[str, int, int]] = []
    for kind, start, end in _isobmff_boxes(data, 0, len(data)):
        if kind != b"meta":
            continue
        for k2, s2, e2 in _isobmff_boxes(data, start + 4, end):      # meta is a full box
            if k2 != b"iprp":
                continue
            for k3, s3, e3 in _isobmff_boxes(data, s2, e2):
                if k3 != b"ipco":
                    continue
                for k4, s4, e4 in _isobmff_boxes(data, s3, e3):
                    if k4 == b"ispe":
                        if e4 - s4 < 12:
                            raise BitstreamError("HEIF ispe box shorter than its fields")
                        w, h = struct.unpack_from(">II", data, s4 + 4)
                        out.append(("HEIF ispe", h, w))
                    elif k4 == b"hvcC":
                        out += [("HEVC SPS", *hevc_sps_size(nal)) for nal in _hvcc_sps(data[s4:e4])]
    return out


def _hvcc_sps(box: bytes) -> list[bytes]:
    """The SPS NAL units (type 33) of an HEVCDecoderConfigurationRecord."""
    if len(box) < 23:
        raise BitstreamError("HEVC hvcC box shorter than its fixed fields")
    pos, out = 23, []
    for _ in range(box[22]):
        if pos + 3 > len(box):
            raise BitstreamError("HEVC hvcC box cut off inside its NAL unit arrays")
        nal_type, count = box[pos] & 0x3F, int.from_bytes(box[pos + 1:pos + 3], "big")
        pos += 3
        for _ in range(count):
            if pos + 2 > len(box):
                raise BitstreamError("HEVC hvcC box cut off inside its NAL unit arrays")
            n = int.from_bytes(box[pos:pos + 2], "big")
            if pos + 2 + n > len(box):
                raise BitstreamError("HEVC hvcC NAL unit runs past its box")
            if nal_type == 33:
                out.append(box[pos + 2:pos + 2 + n])
            pos += 2 + n
    return out


class HevcCodec(Codec):
    """HEVC intra (x265 through libheif, pillow-heif) in a HEIF file. The knob is x265's constant
    QP, the rate control BPG uses (``bpgenc -q Q`` codes at x265 QP Q + 1). ``params``:
    ``chroma`` ("444", "422", "420"), and ``encoder``: libheif's x265 parameters (``preset``,
    ``tune``, ``tu-intra-depth``) and raw x265 options as ``"x265:name"``.

    libx265 and libde265 trust the sizes in the item properties and the SPS, so every ``ispe``
    and SPS size and libheif's own reading of the primary image are checked against the pixel
    cap before anything is decoded."""

    def encode(self, image: np.ndarray, point: Any) -> bytes:
        import pillow_heif

        h, w, _ = image.shape
        heif = pillow_heif.from_bytes("RGB", (w, h), np.ascontiguousarray(image).tobytes())
        enc = {k: str(v) for k, v in self.params.get("encoder", {}).items()} | {"x265:qp": str(int(point))}
        if min(h, w) < 32:   # libheif codes these with 16-px CTUs, where x265 refuses TU quadtrees deeper than 3
            enc |= {"tu-intra-depth": str(min(int(enc.get("tu-intra-depth", 2)), 3)), "x265:tu-inter-depth": "3"}
        buf = io.BytesIO()
        heif.save(buf, format="HEIF", chroma=str(self.params.get("chroma", "444")), enc_params=enc)
        return buf.getvalue()

    def _open(self, data: bytes) -> Any:
        """The file opened by libheif (headers parsed, nothing decoded), every size it declares
        under the pixel cap."""
        import pillow_heif

        if data[4:12] not in HEIF_BRANDS:
            raise BitstreamError("not an HEVC HEIF file (bad magic)")
        sizes = heif_coded_sizes(data)
        check_heif_sizes(sizes)
        try:
            heif = pillow_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=True)
            w, h = heif.size
        except Exception as e:  # noqa: BLE001 — pillow-heif reports libheif's errors as ValueError, RuntimeError
            raise BitstreamError(f"HEIF parsing failed: {e}") from None
        check_heif_sizes(sizes, (h, w))
        return heif

    def declared_size(self, data: bytes) -> tuple[int, int]:
        w, h = self._open(data).size
        return h, w

    def decode(self, data: bytes) -> np.ndarray:
        heif = self._open(data)
        try:
            out = np.asarray(heif.to_pillow().convert("RGB"), dtype=np.uint8)
        except Exception as e:  # noqa: BLE001 — as above, for libde265's errors
            raise BitstreamError(f"HEVC decoding failed: {e}") from None
        w, h = heif.size
        if out.shape != (h, w, 3):
            raise BitstreamError(f"HEIF decoded to {out.shape}, not the {h}×{w} its header says")
        return out

    def versions(self) -> dict[str, str]:
        import pillow_heif

        info = pillow_heif.libheif_info()
        return {"pillow_heif": pillow_heif.__version__, "libheif": str(info["libheif"]),
                "x265": str(info["encoders"].get("x265")), "libde265": str(info["decoders"].get("libde265"))}


# --------------------------------------------------------------------------- JPEG 2000
J2K_SOC_SIZ = b"\xff\x4f\xff\x51"          # a raw codestream starts with SOC then SIZ


def j2k_size(data: bytes) -> tuple[int, int]:
    """(height, width) of the image a JPEG 2000 codestream's SIZ marker declares (the
    reference grid less the image offset), no pixels decoded."""
    if not data.startswith(J2K_SOC_SIZ):
        raise BitstreamError("not a JPEG 2000 codestream (bad magic: no SOC and SIZ markers)")
    if len(data) < 4 + 38:
        raise BitstreamError("JPEG 2000 codestream cut off inside its SIZ marker")
    lsiz, _, xsiz, ysiz, xo, yo = struct.unpack_from(">HHIIII", data, 4)
    csiz = struct.unpack_from(">H", data, 4 + 36)[0]
    if lsiz != 38 + 3 * csiz or len(data) < 4 + lsiz:
        raise BitstreamError(f"JPEG 2000 SIZ marker: length {lsiz} does not fit its {csiz} components")
    if xo >= xsiz or yo >= ysiz:
        raise BitstreamError(f"JPEG 2000 SIZ marker: image offset ({xo}, {yo}) outside the grid {xsiz}×{ysiz}")
    return ysiz - yo, xsiz - xo


def j2k_check_tile_parts(data: bytes) -> None:
    """BitstreamError unless the codestream's tile-parts run back to back from the first SOT to
    an EOC at the very end: OpenJPEG decodes a truncated codestream to a blurred image
    without an error (JPEG 2000 is embedded), so a cut or padded file is caught here."""
    pos = 4 + struct.unpack_from(">H", data, 4)[0]
    while pos + 4 <= len(data) and data[pos] == 0xFF and data[pos + 1] != 0x90:   # main-header markers
        pos += 2 + struct.unpack_from(">H", data, pos + 2)[0]
    if data[pos:pos + 2] != b"\xff\x90":
        raise BitstreamError("JPEG 2000 codestream: no tile-part (SOT) after the main header")
    while data[pos:pos + 2] == b"\xff\x90":
        if pos + 10 > len(data):
            raise BitstreamError("JPEG 2000 codestream cut off inside a tile-part header")
        psot = struct.unpack_from(">I", data, pos + 6)[0]
        pos = len(data) - 2 if psot == 0 else pos + psot
    if pos != len(data) - 2 or data[pos:] != b"\xff\xd9":
        raise BitstreamError("JPEG 2000 codestream is truncated or padded: its tile-parts do not end at an "
                             "EOC marker at the end of the file")


class Jpeg2000Codec(Codec):
    """JPEG 2000 (OpenJPEG through imagecodecs) as a raw codestream (.j2k: no JP2 boxes). The
    knob is OpenJPEG's fixed-quality target, the PSNR in dB its rate allocation aims at
    (larger: more bits); ``params`` go to ``imagecodecs.jpeg2k_encode`` (``resolutions``,
    ``mct``, ``reversible``)."""

    def encode(self, image: np.ndarray, point: Any) -> bytes:
        import imagecodecs

        return bytes(imagecodecs.jpeg2k_encode(np.ascontiguousarray(image), level=float(point), codecformat="J2K",
                                               **self.params))

    def declared_size(self, data: bytes) -> tuple[int, int]:
        return j2k_size(data)

    def decode(self, data: bytes) -> np.ndarray:
        import imagecodecs

        check_pixels(*j2k_size(data), "JPEG 2000 SIZ marker")   # OpenJPEG allocates what SIZ says
        j2k_check_tile_parts(data)
        try:
            out = imagecodecs.jpeg2k_decode(data)
        except Exception as e:  # noqa: BLE001 — Jpeg2kError, NotImplementedError (subsampled components)
            raise BitstreamError(f"JPEG 2000 decoding failed: {e}") from None
        if out.ndim != 3 or out.shape[2] != 3 or out.dtype != np.uint8:
            raise BitstreamError(f"JPEG 2000 decoded to {out.dtype} {out.shape}, not 8-bit RGB")
        return out

    def versions(self) -> dict[str, str]:
        import imagecodecs

        return {"imagecodecs": imagecodecs.__version__, "openjpeg": str(imagecodecs.jpeg2k_version())}
