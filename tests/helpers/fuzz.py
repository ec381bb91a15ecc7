"""The fuzz library of tests/codecs/test_fuzz.py, shared with tests/test_hostile_inputs.py:

* ``KINDS``: every submission kind (the classical anchors, the null codec, the learned codecs
  on small random models), each with the format-specific field mutations of its files;
  adding a kind is one line there;
* the expectations a mutated file's decode must meet (``RAISE``, ``SAME``, ``IMAGE``);
* :func:`decode_all`, the child process that decodes a folder of mutated files.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tests.helpers.coding import decode
from tests.helpers.manifests import continuous, write_submission

PER_FILE_ALARM_S = 20        # a decode that runs this long in Python is a hang
SEED = 20250101

# expectations
RAISE = "raise"                  # BitstreamError, nothing else
SAME = "raise_or_same"           # BitstreamError, or exactly the intact file's image
IMAGE = "raise_or_image"         # BitstreamError, or a well-formed uint8 H×W×3 image


# --------------------------------------------------------------------------- format fields
Mutation = tuple[str, bytes, str]      # (description, bytes, expectation)


def put(data: bytes, off: int, fmt: str, value: int) -> bytes:
    return data[:off] + struct.pack(fmt, value) + data[off + struct.calcsize(fmt):]


def flip(data: bytes, bit: int) -> bytes:
    b = bytearray(data)
    b[bit // 8] ^= 1 << (bit % 8)
    return bytes(b)


def jpeg_fields(data: bytes) -> list[Mutation]:
    """Every marker segment's 2-byte length (0, 1, 2, ±1, 0xFFFF) and the frame's size."""
    out, i = [], 2
    while i + 4 <= len(data) and data[i] == 0xFF:
        marker = data[i + 1]
        length = struct.unpack_from(">H", data, i + 2)[0]
        for v in {0, 1, 2, length - 1, length + 1, 0xFFFF}:
            out.append((f"segment FF{marker:02X}@{i} length {v}", put(data, i + 2, ">H", v & 0xFFFF),
                        SAME if v > length else IMAGE))
        if marker in (0xC0, 0xC1, 0xC2):           # SOFn: precision, height, width
            for h, w in ((0, 64), (0xFFFF, 0xFFFF), (1, 1), (0xFFFF, 1)):
                out.append((f"SOF size {h}x{w}", put(put(data, i + 5, ">H", h), i + 7, ">H", w), IMAGE))
        if marker == 0xDA:
            break
        i += 2 + length
    return out


def webp_fields(data: bytes) -> list[Mutation]:
    n = len(data)
    out = [(f"RIFF size {v}", put(data, 4, "<I", v), SAME if v > n - 8 else IMAGE)
           for v in (0, 4, n - 9, n + 100, 0xFFFFFFFF)]
    out += [(f"chunk size {v}", put(data, 16, "<I", v), SAME if v > n - 20 else IMAGE)
            for v in (0, 1, n - 21, n + 100, 0xFFFFFFFF)]
    out += [(f"chunk fourcc {c!r}", data[:12] + c + data[16:], IMAGE) for c in (b"VP8X", b"VP8L", b"ABCD")]
    if data[12:16] == b"VP8 ":                     # frame header: 3 bytes tag, start code, 14-bit sizes
        for w, h in ((0x3FFF, 0x3FFF), (0, 0), (1, 1)):
            out.append((f"VP8 size {w}x{h}", put(put(data, 26, "<H", w), 28, "<H", h), IMAGE))
    return out


def _boxes(data: bytes, start: int, end: int):
    i = start
    while i + 8 <= end:
        size = struct.unpack_from(">I", data, i)[0]
        yield i, data[i + 4:i + 8], size
        if size < 8:
            return
        i += size


def isobmff_fields(data: bytes) -> list[Mutation]:
    """AVIF: every top-level box size and every box inside ``meta``, and the ispe size."""
    n, out = len(data), []
    for off, kind, size in _boxes(data, 0, n):
        for v in (0, 1, 7, size + 100, n + 1000, 0xFFFFFFFF):
            out.append((f"box {kind!r}@{off} size {v}", put(data, off, ">I", v), SAME if v > n - off else IMAGE))
        if kind == b"meta":
            for c_off, c_kind, c_size in _boxes(data, off + 12, off + size):
                for v in (0, 7, c_size + 100, 0xFFFFFFFF):
                    out.append((f"meta/{c_kind!r} size {v}", put(data, c_off, ">I", v), IMAGE))
    k = data.find(b"ispe")
    if k > 0:
        for w, h in ((0, 0), (0xFFFFFFFF, 0xFFFFFFFF), (1, 1), (65536, 65536)):
            out.append((f"ispe {w}x{h}", put(put(data, k + 8, ">I", w), k + 12, ">I", h), IMAGE))
    return out


JXL_SIGNATURE_BOX = b"\x00\x00\x00\x0cJXL \r\n\x87\n"
JXL_FTYP = b"\x00\x00\x00\x14ftypjxl \x00\x00\x00\x00jxl "


def jxl_fields(data: bytes) -> list[Mutation]:
    """The bare codestream wrapped in the ISOBMFF container, the jxlc box size valid and past the end."""
    def wrap(size: int) -> bytes:
        return JXL_SIGNATURE_BOX + JXL_FTYP + struct.pack(">I", size) + b"jxlc" + data
    n = len(data) + 8
    return [(f"container jxlc size {v}", wrap(v), SAME) for v in (n, 0, n + 1, n + 1000, 0xFFFFFFFF)] + \
        [("container jxlc size 3", wrap(3), IMAGE), ("container only", JXL_SIGNATURE_BOX + JXL_FTYP, RAISE)]


def j2k_fields(data: bytes) -> list[Mutation]:
    """JPEG 2000 codestream: every main-header marker segment's length, the SIZ marker's sizes,
    offsets, tile size, component count, depth and sampling, and the first tile-part's Psot."""
    out, i = [], 2
    while i + 4 <= len(data) and data[i] == 0xFF and data[i + 1] != 0x90:
        marker, length = data[i + 1], struct.unpack_from(">H", data, i + 2)[0]
        out += [(f"segment FF{marker:02X}@{i} length {v}", put(data, i + 2, ">H", v & 0xFFFF), IMAGE)
                for v in {0, 1, 2, length - 1, length + 1, 0xFFFF}]
        i += 2 + length
    for w, h in ((0, 0), (1, 1), (30000, 30000), (65536, 65536), (0xFFFFFFFF, 0xFFFFFFFF), (64, 0xFFFFFFFF)):
        out.append((f"SIZ size {w}x{h}", put(put(data, 8, ">I", w), 12, ">I", h), IMAGE))
    xsiz = struct.unpack_from(">I", data, 8)[0]
    out += [(f"SIZ offset {v}", put(put(data, 16, ">I", v), 20, ">I", v), IMAGE)
            for v in (1, xsiz - 1, xsiz, 0xFFFFFFFF)]
    out += [(f"SIZ tile {v}x{v}", put(put(data, 24, ">I", v), 28, ">I", v), IMAGE) for v in (0, 1, 7, 0xFFFFFFFF)]
    out += [(f"SIZ components {v}", put(data, 40, ">H", v), IMAGE) for v in (0, 1, 2, 4, 16384, 0xFFFF)]
    out += [(f"SIZ depth {v:#x}", put(data, 42, ">B", v), IMAGE) for v in (0x00, 0x0F, 0x87, 0x25, 0xFF)]
    out += [(f"SIZ sampling {v}", put(put(data, 43, ">B", v), 44, ">B", v), IMAGE) for v in (0, 2, 255)]
    if i + 10 <= len(data):                        # the first SOT: Psot is the tile-part's length
        out += [(f"Psot {v}", put(data, i + 6, ">I", v), IMAGE) for v in (0, 1, 14, len(data) - i, 0xFFFFFFFF)]
    return out


def null_fields(data: bytes) -> list[Mutation]:
    h, w, crc = struct.unpack_from(">III", data, 4)
    payload = data[16:]

    def forge(ph: int, pw: int, body: bytes) -> bytes:
        return b"NUL1" + struct.pack(">III", ph, pw, zlib.crc32(body)) + body
    out = [(f"size {a}x{b}", put(put(data, 4, ">I", a), 8, ">I", b), RAISE)
           for a, b in ((0, 0), (h + 1, w), (h, 0), (0xFFFFFFFF, 0xFFFFFFFF), (w, h + 1))]
    out += [(f"crc {v:#x}", put(data, 12, ">I", v), RAISE) for v in (0, crc ^ 1, 0xFFFFFFFF)]
    out += [("version NUL2", b"NUL2" + data[4:], RAISE), ("version NUL0", b"NUL0" + data[4:], RAISE)]
    rng = np.random.default_rng(SEED)
    out += [("forged crc: random payload", forge(h, w, rng.bytes(len(payload))), RAISE),
            ("forged crc: truncated zlib", forge(h, w, payload[: len(payload) // 2]), RAISE),
            ("forged crc: one pixel too many", forge(h, w, zlib.compress(b"\0" * (h * w * 3 + 1))), RAISE),
            ("forged crc: empty payload", forge(h, w, b""), RAISE),
            ("forged crc: 64 MiB zlib bomb", forge(h, w, zlib.compress(b"\0" * 2**26, 9)), RAISE)]
    return out


def lic_fields(data: bytes, ids_in_range: bool = False) -> list[Mutation]:
    """The learned container (bench/container.py): each header field rewritten with the CRC
    left as it was (the CRC catches it) and fixed up (the structural checks must); payload
    flips with a forged CRC are valid files by construction and may decode to an image, as
    may a forged id that names another operating point (``ids_in_range``: a λ index)."""
    from bench.container import unpack
    from tests.helpers.lic_forge import forge, with_crc

    c = unpack(data)
    z_len, y_len = (len(s) for s in c.streams)
    fields = [("model id 9", {"model_id": 9}), ("model id 65535", {"model_id": 65535}),
              ("model id 2^16", {"model_id": 2**16}), ("model id overlong", {"model_id": b"\x80\x00"}),
              ("height 0", {"height": 0}), ("height 2^32-1", {"height": 2**32 - 1}),
              ("width 2^16+1", {"width": 2**16 + 1}),
              ("width endless varint", {"width": b"\xff" * 40}),
              ("streams 3", {"n_streams": 3}), ("streams 8", {"n_streams": 8}),
              ("coding variant 31", {"variant": 31}),
              ("z length past end", {"lengths": [z_len + y_len + 1]}),
              ("z length 2^32-1", {"lengths": [2**32 - 1]}), ("z length 2^32", {"lengths": [2**32]}),
              ("one stream", {"n_streams": 1, "lengths": []})]
    out = [(name, forge(data, fix_crc=False, **f), RAISE) for name, f in fields]
    out += [(f"forged crc: {name}", forge(data, **f), IMAGE if ids_in_range and name == "model id 9" else RAISE)
            for name, f in fields]
    out += [(f"version {v}", put(data, 3, ">B", v), RAISE) for v in (0, 1, 2, 4, 255)]
    # valid files by construction: the decoder cannot tell them from real ones (the latent
    # shape follows from the size, and rANS does not know where its stream should end)
    out += [("forged crc: z length 0", forge(data, lengths=[0]), IMAGE),
            ("forged crc: z length +1", forge(data, lengths=[z_len + 1]), IMAGE),
            ("forged crc: another coding variant", forge(data, variant=(c.variant + 1) % 7), IMAGE),
            ("forged crc: height +64", forge(data, height=c.height + 64), IMAGE),
            ("height +64", forge(data, height=c.height + 64, fix_crc=False), RAISE)]
    rng = np.random.default_rng(SEED)
    for k in rng.integers(c.header_size, len(data), 12):
        out.append((f"forged crc: payload bit @{k}", with_crc(flip(data, int(k) * 8 + int(rng.integers(8)))), IMAGE))
    out.append(("forged crc: random payload", with_crc(data[:c.header_size] + rng.bytes(len(data) - c.header_size)),
                IMAGE))
    return out


# --------------------------------------------------------------------------- kinds
@dataclass(frozen=True)
class Kind:
    name: str
    manifest: str | Callable[[Path], Path]   # a folder under submissions/, or a builder of one (tmp root)
    point: object
    magic: tuple[int, int]                   # (offset, length) of the bytes the decoder checks first
    checked: bool                            # the format carries a checksum over everything it trusts
    fields: Callable[[bytes], list[Mutation]] = lambda data: []


def _export(folder: Path, name: str, model, meta: dict) -> None:
    """An exported weight file (fp32 state dict + meta) in ``folder/weights/``."""
    import torch

    (folder / "weights").mkdir(parents=True)
    torch.save({"state_dict": model.state_dict(), "meta": meta}, folder / "weights" / name)


def _tiny_hyperprior(root: Path) -> Path:
    """A submission with an untrained N=32, M=48 scale hyperprior (g_a's last layer scaled so
    y carries a real stream), saved as an exported fp32 weight file."""
    import torch

    from bench.models.hyperprior import build_model

    torch.manual_seed(0)
    model = build_model("scale_hyperprior", 32, 48)
    with torch.no_grad():
        model.g_a[-1].weight.mul_(10)
    _export(root / "fuzzlic", "base.pt", model, {"arch": "scale_hyperprior", "N": 32, "M": 48})
    return write_submission(root, "fuzzlic", "bench.codecs.learned:HyperpriorCodec", description="fuzz",
                            params={"models": ["base"]}, points=["base"])


def _zoo_random(root: Path) -> Path:
    return write_submission(root, "fuzzzoo", "bench.codecs.learned:ZooCodec", description="fuzz",
                            params={"arch": "bmshj2018-hyperprior", "metric": "mse", "pretrained": False}, points=[1])


def _variable_rate(root: Path) -> Path:
    """A submission with an untrained N=32, M=48 ECG + BM model (λ 0.5–16, gates at α = 0.3)."""
    import torch

    from bench.models.ecg import ECGHyperprior

    torch.manual_seed(0)
    model = ECGHyperprior(32, 48, 0.5, 16.0)
    with torch.no_grad():
        model.g_a.layer(6).weight.mul_(10)
        for g in model.named_gates().values():
            g.alpha.fill_(0.3)
    _export(root / "fuzzvr", "vr.pt", model,
            {"arch": "ecg_hyperprior", "N": 32, "M": 48, "lmbda_min": 0.5, "lmbda_max": 16.0})
    return write_submission(root, "fuzzvr", "bench.codecs.variable_rate:VariableRateCodec", description="fuzz",
                            params={"weights": "vr.pt"}, points=continuous(0.5, 16.0, scale="log"))


def _context3d(root: Path) -> Path:
    """A submission with an untrained N=M=8 3-D context model (two groups, GMM, RPE; y scaled
    up so its symbols span a few dozen values, as a trained model's do)."""
    import torch

    from bench.models.context3d import build_context_model

    torch.manual_seed(0)
    model = build_context_model("context3d_gmm", 8, 8)
    with torch.no_grad():
        model.g_a[-1].weight.mul_(40)
    _export(root / "fuzzctx", "m.pt", model, {"arch": "context3d_gmm", "N": 8, "M": 8})
    return write_submission(root, "fuzzctx", "bench.codecs.context3d:Context3DCodec", description="fuzz",
                            params={"models": ["m"]}, points=["m"])


KINDS = [
    Kind("jpeg", "jpeg", 60, (0, 3), False, jpeg_fields),
    Kind("webp", "webp", 60, (8, 4), False, webp_fields),
    Kind("avif", "avif", 60, (4, 8), False, isobmff_fields),
    Kind("jpegxl", "jpegxl", 2.0, (0, 2), False, jxl_fields),
    Kind("hevc", "hevc", 40, (4, 8), False, isobmff_fields),
    Kind("jpeg2000", "jpeg2000", 32.0, (0, 4), False, j2k_fields),
    Kind("null", "null", "lossless", (0, 4), True, null_fields),
    Kind("learned-hyperprior", _tiny_hyperprior, "base", (0, 3), True, lic_fields),
    Kind("learned-zoo", _zoo_random, 1, (0, 3), True, lic_fields),
    Kind("learned-variable-rate", _variable_rate, 4.0, (0, 3), True, lambda data: lic_fields(data, ids_in_range=True)),
    Kind("learned-context3d", _context3d, "m", (0, 3), True, lic_fields),
]


# --------------------------------------------------------------------------- the child
def decode_all(manifest: str, folder: str) -> None:
    """Child process: decode every ``NNNNN.bin`` of ``folder``; one JSON line per file, flushed,
    preceded by a 'start' line so a crash or hang names its file."""
    import signal

    from bench.codec import BitstreamError
    from bench.submission import load_manifest

    class Hang(Exception):
        pass

    def alarm(*_):
        raise Hang(f"decode ran over {PER_FILE_ALARM_S} s")

    signal.signal(signal.SIGALRM, alarm)
    codec = load_manifest(Path(manifest)).make_codec()
    for f in sorted(Path(folder).glob("*.bin")):
        print(json.dumps({"start": f.stem}), flush=True)
        signal.alarm(PER_FILE_ALARM_S)
        try:
            img = decode(codec, f.read_bytes())
            arr = np.asarray(img)
            res = {"ok": True, "dtype": str(arr.dtype), "shape": list(arr.shape),
                   "digest": zlib.crc32(np.ascontiguousarray(arr).tobytes()) if arr.dtype == np.uint8 else None}
        except BitstreamError as e:
            res = {"ok": False, "error": "BitstreamError", "message": str(e)[:200]}
        except BaseException as e:  # noqa: BLE001 — anything else is what the test reports
            res = {"ok": False, "error": f"{type(e).__module__}.{type(e).__name__}", "message": str(e)[:200]}
        finally:
            signal.alarm(0)
        print(json.dumps({"done": f.stem, **res}), flush=True)
