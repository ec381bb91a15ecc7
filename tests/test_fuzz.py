"""Hostile bitstreams: every submission kind's decoder against mutated files, in a subprocess.

For each kind (the classical anchors, the null codec, and the learned codecs on small random
models) one real file is encoded from a Kodak crop, then mutated: truncations, appended
bytes, every bit of the header and random bits of the rest flipped, spans overwritten, random
files (with and without the right magic), wrong magic and version, and format-specific length
and size fields pushed past the end of the file. For the formats with a checksum (the null
codec's and the learned container's CRC32) the fields are also forged with the CRC fixed up,
so the structural checks behind the CRC are reached too.

Every mutation is decoded in a child process (``python -c`` running :func:`decode_all`), so
a crash (segfault, abort) or a hang (the parent's timeout; a per-file alarm in the child) is
caught and named instead of taking the test run down. Each outcome must be one of:

* ``BitstreamError`` (the documented exception; any other exception type is a failure);
* for formats without a checksum (JPEG, WebP, AVIF, JPEG XL), where a flipped payload bit is
  a different valid file, a well-formed uint8 H×W×3 image; and where bytes were only cut
  off or added at the end, or a length points past the end, the very image the intact file
  gives (a decoder may ignore a trailing EOI or junk, never invent pixels).

For checksummed formats everything but a CRC-forged payload must raise: a corrupted file
never becomes a silently wrong image. The counts per kind and outcome are printed (``-s``)
and written to ``$BENCH_FUZZ_REPORT`` when set.

Adding a kind is one line in ``KINDS``.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from bench.paths import REPO_ROOT, SUBMISSIONS_DIR
from tests.conftest import kodak_crop

PER_FILE_ALARM_S = 20        # a decode that runs this long in Python is a hang
CHILD_TIMEOUT_S = 240        # the whole kind; a hang inside C code is caught here
CROP = (300, 200, 364, 248)  # 64 × 48 real photo
SEED = 20250101

# expectations
RAISE = "raise"                  # BitstreamError, nothing else
SAME = "raise_or_same"           # BitstreamError, or exactly the intact file's image
IMAGE = "raise_or_image"         # BitstreamError, or a well-formed uint8 H×W×3 image


# --------------------------------------------------------------------------- format fields
Mutation = tuple[str, bytes, str]      # (description, bytes, expectation)


def _put(data: bytes, off: int, fmt: str, value: int) -> bytes:
    return data[:off] + struct.pack(fmt, value) + data[off + struct.calcsize(fmt):]


def jpeg_fields(data: bytes) -> list[Mutation]:
    """Every marker segment's 2-byte length (0, 1, 2, ±1, 0xFFFF) and the frame's size."""
    out, i = [], 2
    while i + 4 <= len(data) and data[i] == 0xFF:
        marker = data[i + 1]
        length = struct.unpack_from(">H", data, i + 2)[0]
        for v in {0, 1, 2, length - 1, length + 1, 0xFFFF}:
            out.append((f"segment FF{marker:02X}@{i} length {v}", _put(data, i + 2, ">H", v & 0xFFFF),
                        SAME if v > length else IMAGE))
        if marker in (0xC0, 0xC1, 0xC2):           # SOFn: precision, height, width
            for h, w in ((0, 64), (0xFFFF, 0xFFFF), (1, 1), (0xFFFF, 1)):
                out.append((f"SOF size {h}x{w}", _put(_put(data, i + 5, ">H", h), i + 7, ">H", w), IMAGE))
        if marker == 0xDA:
            break
        i += 2 + length
    return out


def webp_fields(data: bytes) -> list[Mutation]:
    n = len(data)
    out = [(f"RIFF size {v}", _put(data, 4, "<I", v), SAME if v > n - 8 else IMAGE)
           for v in (0, 4, n - 9, n + 100, 0xFFFFFFFF)]
    out += [(f"chunk size {v}", _put(data, 16, "<I", v), SAME if v > n - 20 else IMAGE)
            for v in (0, 1, n - 21, n + 100, 0xFFFFFFFF)]
    out += [(f"chunk fourcc {c!r}", data[:12] + c + data[16:], IMAGE) for c in (b"VP8X", b"VP8L", b"ABCD")]
    if data[12:16] == b"VP8 ":                     # frame header: 3 bytes tag, start code, 14-bit sizes
        for w, h in ((0x3FFF, 0x3FFF), (0, 0), (1, 1)):
            out.append((f"VP8 size {w}x{h}", _put(_put(data, 26, "<H", w), 28, "<H", h), IMAGE))
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
            out.append((f"box {kind!r}@{off} size {v}", _put(data, off, ">I", v), SAME if v > n - off else IMAGE))
        if kind == b"meta":
            for c_off, c_kind, c_size in _boxes(data, off + 12, off + size):
                for v in (0, 7, c_size + 100, 0xFFFFFFFF):
                    out.append((f"meta/{c_kind!r} size {v}", _put(data, c_off, ">I", v), IMAGE))
    k = data.find(b"ispe")
    if k > 0:
        for w, h in ((0, 0), (0xFFFFFFFF, 0xFFFFFFFF), (1, 1), (65536, 65536)):
            out.append((f"ispe {w}x{h}", _put(_put(data, k + 8, ">I", w), k + 12, ">I", h), IMAGE))
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


def null_fields(data: bytes) -> list[Mutation]:
    h, w, crc = struct.unpack_from(">III", data, 4)
    payload = data[16:]

    def forge(ph: int, pw: int, body: bytes) -> bytes:
        return b"NUL1" + struct.pack(">III", ph, pw, zlib.crc32(body)) + body
    out = [(f"size {a}x{b}", _put(_put(data, 4, ">I", a), 8, ">I", b), RAISE)
           for a, b in ((0, 0), (h + 1, w), (h, 0), (0xFFFFFFFF, 0xFFFFFFFF), (w, h + 1))]
    out += [(f"crc {v:#x}", _put(data, 12, ">I", v), RAISE) for v in (0, crc ^ 1, 0xFFFFFFFF)]
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
    from tests.lic_forge import forge, with_crc

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
    out += [(f"version {v}", _put(data, 3, ">B", v), RAISE) for v in (0, 1, 2, 4, 255)]
    # valid files by construction: the decoder cannot tell them from real ones (the latent
    # shape follows from the size, and rANS does not know where its stream should end)
    out += [("forged crc: z length 0", forge(data, lengths=[0]), IMAGE),
            ("forged crc: z length +1", forge(data, lengths=[z_len + 1]), IMAGE),
            ("forged crc: another coding variant", forge(data, variant=(c.variant + 1) % 7), IMAGE),
            ("forged crc: height +64", forge(data, height=c.height + 64), IMAGE),
            ("height +64", forge(data, height=c.height + 64, fix_crc=False), RAISE)]
    rng = np.random.default_rng(SEED)
    for k in rng.integers(c.header_size, len(data), 12):
        out.append((f"forged crc: payload bit @{k}", with_crc(_flip(data, int(k) * 8 + int(rng.integers(8)))), IMAGE))
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


def _tiny_hyperprior(root: Path) -> Path:
    """A submission with an untrained N=32, M=48 scale hyperprior (g_a's last layer scaled so
    y carries a real stream), saved as an exported fp32 weight file."""
    import torch

    from bench.models.hyperprior import build_model

    torch.manual_seed(0)
    model = build_model("scale_hyperprior", 32, 48)
    with torch.no_grad():
        model.g_a[-1].weight.mul_(10)
    (root / "fuzzlic" / "weights").mkdir(parents=True)
    torch.save({"state_dict": model.state_dict(), "meta": {"arch": "scale_hyperprior", "N": 32, "M": 48}},
               root / "fuzzlic" / "weights" / "base.pt")
    return _manifest(root, "fuzzlic", "bench.codecs.learned:HyperpriorCodec", 'models = ["base"]', '["base"]')


def _zoo_random(root: Path) -> Path:
    return _manifest(root, "fuzzzoo", "bench.codecs.learned:ZooCodec",
                     'arch = "bmshj2018-hyperprior"\nmetric = "mse"\npretrained = false', "[1]")


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
    (root / "fuzzvr" / "weights").mkdir(parents=True)
    torch.save({"state_dict": model.state_dict(),
                "meta": {"arch": "ecg_hyperprior", "N": 32, "M": 48, "lmbda_min": 0.5, "lmbda_max": 16.0}},
               root / "fuzzvr" / "weights" / "vr.pt")
    return _manifest(root, "fuzzvr", "bench.codecs.variable_rate:VariableRateCodec", 'weights = "vr.pt"',
                     'kind = "continuous"\nlow = 0.5\nhigh = 16.0\nscale = "log"')


def _manifest(root: Path, name: str, codec: str, params: str, points: str) -> Path:
    """``points``: a discrete list, or a whole [operating_points] body."""
    (root / name).mkdir(parents=True, exist_ok=True)
    path = root / name / "submission.toml"
    table = points if "=" in points else f'kind = "discrete"\npoints = {points}'
    path.write_text(f'name = "{name}"\ndescription = "fuzz"\ncodec = "{codec}"\n[params]\n{params}\n'
                    f'[operating_points]\n{table}\n')
    return path


KINDS = [
    Kind("jpeg", "jpeg", 60, (0, 3), False, jpeg_fields),
    Kind("webp", "webp", 60, (8, 4), False, webp_fields),
    Kind("avif", "avif", 60, (4, 8), False, isobmff_fields),
    Kind("jpegxl", "jpegxl", 2.0, (0, 2), False, jxl_fields),
    Kind("null", "null", "lossless", (0, 4), True, null_fields),
    Kind("learned-hyperprior", _tiny_hyperprior, "base", (0, 3), True, lic_fields),
    Kind("learned-zoo", _zoo_random, 1, (0, 3), True, lic_fields),
    Kind("learned-variable-rate", _variable_rate, 4.0, (0, 3), True, lambda data: lic_fields(data, ids_in_range=True)),
]


# --------------------------------------------------------------------------- generic mutations
def _flip(data: bytes, bit: int) -> bytes:
    b = bytearray(data)
    b[bit // 8] ^= 1 << (bit % 8)
    return bytes(b)


def mutations(data: bytes, kind: Kind) -> list[Mutation]:
    rng = np.random.default_rng(SEED)
    n = len(data)
    cut = RAISE if kind.checked else SAME
    bits = RAISE if kind.checked else IMAGE
    out: list[Mutation] = []
    lengths = {0, 1, 2, 3, 4, 7, 8, 12, 16, 24, 32, 40, n // 4, n // 2, 3 * n // 4, n - 64, n - 16, n - 8,
               n - 4, n - 2, n - 1, *rng.integers(1, n, 16).tolist()}
    out += [(f"truncated to {k}", data[:k], RAISE if k < 16 else cut) for k in sorted(lengths) if 0 <= k < n]
    out += [("append 1 zero", data + b"\0", cut), ("append 100 random", data + rng.bytes(100), cut),
            ("file twice", data + data, cut), ("append own header", data + data[:32], cut)]
    header_bits = range(min(n, 32) * 8)
    other_bits = rng.integers(min(n, 32) * 8, n * 8, 120) if n > 32 else []
    out += [(f"bit {b} flipped", _flip(data, int(b)), bits) for b in [*header_bits, *other_bits]]
    for _ in range(24):
        at, span = int(rng.integers(0, n)), int(rng.integers(1, 33))
        out.append((f"bytes {at}..{at + span} overwritten", data[:at] + rng.bytes(span) + data[at + span:], bits))
    for length in (1, 5, 16, 64, 500, n, 4 * n):
        out.append((f"random {length} bytes", rng.bytes(length), RAISE))
    off, mlen = kind.magic
    prefix = data[:off + mlen]
    for length in (0, 8, 64, n):
        out.append((f"magic + random {length} bytes", prefix + rng.bytes(length), bits))
    for other in (b"\0" * mlen, b"\xff" * mlen, b"NUL1LIC\x01\xff\xd8\xff\x00"[:mlen], bytes(reversed(prefix[off:]))):
        if other != prefix[off:]:
            out.append((f"magic {other!r}", data[:off] + other + data[off + mlen:], RAISE))
    out += kind.fields(data)
    return out


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
            img = codec.decode(f.read_bytes())
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


CHILD = ("import sys; sys.path.insert(0, sys.argv[1]); from tests.test_fuzz import decode_all; "
         "decode_all(sys.argv[2], sys.argv[3])")


def _run_child(manifest: Path, folder: Path) -> tuple[dict[str, dict], str | None]:
    """Decode the folder in a child; results by file stem, and what went wrong with the child."""
    env = {**os.environ, "BENCH_THREADS": "1", "OMP_NUM_THREADS": "1"}
    try:
        p = subprocess.run([sys.executable, "-c", CHILD, str(REPO_ROOT), str(manifest), str(folder)],
                           capture_output=True, text=True, timeout=CHILD_TIMEOUT_S, env=env, cwd=REPO_ROOT)
        out, problem = p.stdout, None if p.returncode == 0 else f"child exited with {p.returncode}: {p.stderr[-1500:]}"
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        problem = f"child hung (no end after {CHILD_TIMEOUT_S} s)"
    results, last = {}, None
    for line in out.splitlines():
        msg = json.loads(line)
        if "start" in msg:
            last = msg["start"]
        else:
            results[msg.pop("done")] = msg
    if problem and last is not None and last not in results:
        problem += f"; while decoding mutation {last}"
    return results, problem


# --------------------------------------------------------------------------- the test
TALLY: dict[str, Counter] = {}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzzsubs")
    return root


@pytest.mark.timeout(CHILD_TIMEOUT_S + 120)
@pytest.mark.parametrize("kind", KINDS, ids=[k.name for k in KINDS])
def test_hostile_bitstreams(kind: Kind, built, tmp_path):
    from bench.submission import load_manifest

    manifest = SUBMISSIONS_DIR / kind.manifest / "submission.toml" if isinstance(kind.manifest, str) \
        else kind.manifest(built)
    codec = load_manifest(manifest).make_codec()
    img = kodak_crop("kodim23.png", CROP)
    data = codec.encode(img, kind.point)
    clean = np.asarray(codec.decode(data))
    assert clean.shape == img.shape and clean.dtype == np.uint8
    clean_digest = zlib.crc32(clean.tobytes())

    muts = [(d, b, e) for d, b, e in mutations(data, kind) if b != data]
    folder = tmp_path / "mutations"
    folder.mkdir()
    for i, (_, b, _) in enumerate(muts):
        (folder / f"{i:05d}.bin").write_bytes(b)
    (folder / f"{len(muts):05d}.bin").write_bytes(data)          # the intact file, last: the child got to the end
    results, problem = _run_child(manifest, folder)
    assert problem is None, f"{kind.name}: {problem}"
    intact = results.pop(f"{len(muts):05d}")
    assert intact["ok"] and intact["digest"] == clean_digest, "the child decodes the intact file differently"
    assert len(results) == len(muts)

    failures, tally = [], Counter()
    for i, (desc, _, expect) in enumerate(muts):
        r = results[f"{i:05d}"]
        if not r["ok"]:
            outcome = "BitstreamError" if r["error"] == "BitstreamError" else "other exception"
        elif r["dtype"] != "uint8" or len(r["shape"]) != 3 or r["shape"][2] != 3 or 0 in r["shape"]:
            outcome = "malformed image"
        else:
            outcome = "same image" if r["digest"] == clean_digest and r["shape"] == list(clean.shape) else "other image"
        tally[outcome] += 1
        ok = (outcome == "BitstreamError" or (expect == SAME and outcome == "same image")
              or (expect == IMAGE and outcome in ("same image", "other image")))
        if not ok:
            failures.append(f"{desc!r} (expected {expect}) → {outcome}: {r.get('error', '')} {r.get('message', '')}"
                            f"{r.get('shape', '')}")
    TALLY[kind.name] = tally | Counter(mutations=len(muts))
    print(f"\n[fuzz] {kind.name}: {len(muts)} mutations of a {len(data)}-byte file: {dict(tally)}")
    if os.environ.get("BENCH_FUZZ_REPORT"):
        with open(os.environ["BENCH_FUZZ_REPORT"], "a") as f:
            f.write(json.dumps({"kind": kind.name, "bytes": len(data), "mutations": len(muts), **tally}) + "\n")
    assert not failures, f"{kind.name}: {len(failures)} of {len(muts)} mutations misbehaved:\n" + "\n".join(failures[:40])
    if kind.checked:
        assert tally["other image"] + tally["same image"] <= sum(1 for d, _, e in muts if e == IMAGE)


def test_decode_command_names_the_bad_file(tmp_path, capsys):
    """The CLI path: ``bench decode`` over a folder with a truncated file fails with exit 2 and
    the file's name, no traceback."""
    from bench.cli import main
    from bench.submission import get_submission

    data = get_submission("webp").make_codec().encode(kodak_crop("kodim23.png", CROP), 60)
    folder = tmp_path / "bits"
    folder.mkdir()
    (folder / "a.bin").write_bytes(data)
    (folder / "b.bin").write_bytes(data[: len(data) // 2])
    assert main(["decode", str(folder), "--submission", "webp", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "b.bin" in err and "Traceback" not in err
