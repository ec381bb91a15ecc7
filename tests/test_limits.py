"""Forged files with a valid checksum: header fields rewritten and the CRC recomputed.

tests/codecs/test_fuzz.py mutates bytes, which a checksum catches; a forger recomputes it. Here
every shipped learned codec kind (fixed-rate hyperprior: ``noise_hyperprior``; variable-rate:
``ecg_hyperprior``) gets ≥ 1,000 forgeries of a real file of a 64×48 Kodak crop: the size
(small claims that decode cheaply, and claims above the pixel cap such as 30,000² and
65,536²), the model id, the stream count and lengths, the coding variant, the version,
truncated, extended, swapped and random payloads, and random combinations, each with a
valid CRC. The classical decoders get headers claiming huge sizes (JPEG SOF, WebP VP8 / VP8L /
VP8X, AVIF ispe, PNG IHDR with its CRC, JPEG XL SizeHeader bare and in its container, the
null codec's header, HEIF ispe, JPEG 2000 SIZ).

A child process per batch builds the forgeries from a real encode, then decodes them under an
address-space limit (RLIMIT_AS) and a per-file alarm, printing one JSON line per file; the
parent has a timeout. So a crash, a hang or an out-of-memory is counted and named, never
fatal. The children start with the module and run side by side while the harness tests run.
Each learned forgery must end in BitstreamError or a uint8 image of the size it claims; a
claim above the cap must be refused before any decoding, in milliseconds; every classical
forgery must be refused. The counts are printed and emitted as a warning (visible
in pytest's summary).

The other tests go through the harness: the pixel cap's boundary, declared sizes, ``bench
decode`` on a forged 30,000² file, and a run with an image above the cap and one that hits
the per-job memory ceiling (both named in run.json's errors, the others published).
"""

from __future__ import annotations

import io
import json
import os
import re
import struct
import subprocess
import sys
import time
import warnings
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image as PILImage

from bench.codec import BitstreamError, Codec
from bench.codecs.classical import PillowCodec
from bench.container import MAGIC, VERSION, pack, unpack, uvarint
from bench.limits import (
    DEFAULT_MAX_PIXELS,
    JOB_MEMORY_ENV,
    MAX_PIXELS_ENV,
    address_space,
    check_declared_size,
    set_max_pixels,
)
from bench.paths import REPO_ROOT, SHARED_DATA_DIR, SUBMISSIONS_DIR
from bench.results import read_csv
from tests.helpers.coding import decode, encode

LEARNED = ["noise_hyperprior", "ecg_hyperprior"]      # one per shipped learned codec class
POINTS = {"noise_hyperprior": "base", "ecg_hyperprior": 4.0, "jpeg": 60, "webp": 60, "avif": 60, "jpegxl": 2.0,
          "null": "lossless", "hevc": 40, "jpeg2000": 32.0}
CROP = (300, 200, 364, 248)          # 64 × 48 real photo
SEED = 20250118
PER_FILE_ALARM_S = 20                # one decode running this long is a hang
CHILD_TIMEOUT_S = 400                # the whole batch
CAP_REFUSAL_S = 0.25                 # a claim above the cap is refused before any work
HEADROOM = {"learned": 2**30, "classical": 2**27}   # address space a child may add while decoding


def crop(name: str = "kodim23.png", box: tuple[int, int, int, int] = CROP) -> np.ndarray:
    with PILImage.open(SHARED_DATA_DIR / "kodak" / name) as im:
        return np.asarray(im.convert("RGB").crop(box)).copy()


class PngCodec(PillowCodec):
    """PNG through the same Pillow path as the shipped anchors (datasets are PNGs, and
    Pillow's PNG decoder trusts IHDR): not a submission, a decoder under test."""

    format = "PNG"
    magic = (b"\x89PNG\r\n\x1a\n",)


def make_codec(name: str) -> Codec:
    from bench.submission import load_manifest

    if name == "png":
        return PngCodec({})
    return load_manifest(SUBMISSIONS_DIR / name / "submission.toml").make_codec()


# --------------------------------------------------------------------------- learned forgeries
Forgery = tuple[str, str, bytes, tuple[int, int] | None]   # codec, description, bytes, claimed (h, w)


def lic(model_id: int | bytes, height: int | bytes, width: int | bytes, layout: int, lengths: list[int | bytes],
        body: bytes, version: int = VERSION) -> bytes:
    """A LIC container written field by field (ints as varints, bytes as they are), CRC recomputed."""
    def enc(v: int | bytes) -> bytes:
        return v if isinstance(v, bytes) else uvarint(v)
    rest = b"".join([enc(model_id), enc(height), enc(width), bytes([layout]), *map(enc, lengths), body])
    return MAGIC + bytes([version]) + struct.pack(">I", zlib.crc32(rest)) + rest


SIDES = [0, 1, 2, 7, 47, 48, 49, 63, 64, 65, 100, 127, 128, 129]
HUGE = [(30000, 30000), (65536, 65536), (65536, 1025), (1025, 65536), (8193, 8192), (8192, 8193),
        (4097, 16384), (65537, 1), (1, 65537), (2**32 - 1, 2**32 - 1), (2**40, 1), (40000, 40000)]


def learned_forgeries(codec_name: str, data: bytes) -> list[Forgery]:
    """≥ 1,000 forgeries of one real file, every one with a valid CRC."""
    rng = np.random.default_rng(SEED)
    c = unpack(data)
    z, y = c.streams
    body = z + y
    out: list[Forgery] = []

    def f(desc: str, model_id: Any = c.model_id, height: Any = c.height, width: Any = c.width, n: int = 2,
          variant: int = c.variant, lengths: list | None = None, payload: bytes = body, version: int = VERSION) -> None:
        claim = (height, width) if isinstance(height, int) and isinstance(width, int) else None
        lens = [len(z)] if lengths is None else lengths
        out.append((codec_name, desc, lic(model_id, height, width, (n - 1) | variant << 3, lens, payload, version),
                    claim))

    for h in SIDES:                                       # sizes the decoder can afford
        for w in SIDES:
            f(f"size {h}x{w}", height=h, width=w)
    for h, w in [(256, 256), (1024, 64), (64, 1024), (8, 512), (300, 7)]:
        f(f"size {h}x{w}", height=h, width=w)
    for h, w in HUGE:                                     # above the cap or the format
        f(f"huge size {h}x{w}", height=h, width=w)
    for raw in (b"\x80\x00", b"\xb0\x80\x00", b"\xff" * 12, b"\x80" * 8 + b"\x01"):
        f(f"height raw {raw.hex()}", height=raw)
        f(f"width raw {raw.hex()}", width=raw)
    ids = sorted({*range(24), *rng.integers(24, 2**14, 16).tolist(), 127, 128, 255, 256, 1000, 2**14 - 1, 2**14,
                  2**16 - 1})
    for i in ids:
        f(f"model id {i}", model_id=i)
    for raw in (b"\x80\x80\x04", b"\xff\xff\xff\xff\x0f", b"\x84\x00", b"\xff" * 10):
        f(f"model id raw {raw.hex()}", model_id=raw)
    for v in range(32):
        f(f"variant {v}", variant=v)
    for n in range(1, 9):                                 # stream count, random splits of the payload
        for _ in range(8):
            cuts = sorted(rng.integers(0, len(body) + 1, n - 1).tolist())
            f(f"{n} streams split {cuts}", n=n, lengths=[b - a for a, b in zip([0, *cuts], cuts)])
    for k in range(len(body) + 1):                        # every z length, y runs to the end
        f(f"z length {k}", lengths=[k])
    for k in (len(body) + 1, len(body) + 1000, 2**32 - 1):
        f(f"z length {k} past the end", lengths=[k])
    for raw in (b"\x80\x00", b"\xff" * 6):
        f(f"z length raw {raw.hex()}", lengths=[raw])
    for k in range(len(body)):                            # truncated payload
        f(f"payload cut to {k}", payload=body[:k])
    for k in (1, 2, 16, 1000):
        f(f"payload + {k} random bytes", payload=body + rng.bytes(k))
    f("z and y swapped", lengths=[len(y)], payload=y + z)
    f("y empty", lengths=[len(z)], payload=z)
    f("z empty, y only", lengths=[0], payload=y)
    f("z twice", lengths=[len(z)], payload=z + z)
    for k in range(10):
        f(f"random payload {k}", payload=rng.bytes(len(body)))
    for v in range(256):
        if v != VERSION:
            f(f"version {v}", version=v)
    for k in range(240):                                  # everything at once
        n = 2 if rng.random() < 0.6 else int(rng.integers(1, 9))
        cuts = sorted(rng.integers(0, len(body) + 1, n - 1).tolist())
        h, w = (int(rng.choice(SIDES[1:])) for _ in range(2))
        mid = int(rng.choice(ids))
        var = int(rng.integers(0, 32)) if rng.random() < 0.5 else c.variant
        f(f"combo {k}: id {mid} size {h}x{w} variant {var} streams {n} {cuts}", model_id=mid, height=h, width=w,
          n=n, variant=var, lengths=[b - a for a, b in zip([0, *cuts], cuts)])
    return out


# --------------------------------------------------------------------------- classical forgeries
def _put(data: bytes, off: int, fmt: str, *values: int) -> bytes:
    return data[:off] + struct.pack(fmt, *values) + data[off + struct.calcsize(fmt):]


def jpeg_sized(data: bytes, h: int, w: int) -> bytes:
    i = 2
    while data[i + 1] not in (0xC0, 0xC1, 0xC2):
        i += 2 + struct.unpack_from(">H", data, i + 2)[0]
    return _put(data, i + 5, ">HH", h, w)


def png_sized(data: bytes, h: int, w: int) -> bytes:
    ihdr = struct.pack(">II", w, h) + data[24:29]
    return data[:16] + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)) + data[33:]


def webp_vp8_sized(data: bytes, h: int, w: int) -> bytes:
    return _put(data, 26, "<HH", w, h)


def webp_vp8l_sized(data: bytes, h: int, w: int) -> bytes:
    bits = int.from_bytes(data[21:25], "little") & ~((1 << 28) - 1) | (h - 1) << 14 | (w - 1)
    return data[:21] + bits.to_bytes(4, "little") + data[25:]


def webp_vp8x_sized(data: bytes, h: int, w: int) -> bytes:
    """The lossy file with a VP8X chunk in front claiming an h × w canvas."""
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\0\0\0\0" + (w - 1).to_bytes(3, "little") + (h - 1).to_bytes(3, "little")
    rest = b"WEBP" + vp8x + data[12:]
    return b"RIFF" + struct.pack("<I", len(rest)) + rest


class _Bits:
    """LSB-first bit reader, as JPEG XL codestreams are read."""

    def __init__(self, data: bytes) -> None:
        self.value, self.pos = int.from_bytes(data, "little"), 0

    def read(self, n: int) -> int:
        v = self.value >> self.pos & ((1 << n) - 1)
        self.pos += n
        return v


def _u32_side(v: int) -> tuple[int, int]:
    """(bits, nbits) of a JPEG XL SizeHeader side as U32(Bits(9/13/18/30) + 1)."""
    for sel, n in enumerate((9, 13, 18, 30)):
        if v - 1 < 2**n:
            return sel | (v - 1) << 2, 2 + n
    raise ValueError(v)


def jxl_sized(data: bytes, h: int, w: int) -> bytes:
    """A bare JPEG XL codestream whose SizeHeader says h × w, the rest of its bits kept."""
    r = _Bits(data[2:])
    small = r.read(1)
    r.read(5) if small else r.read((9, 13, 18, 30)[r.read(2)])
    if r.read(3) == 0:
        r.read(5) if small else r.read((9, 13, 18, 30)[r.read(2)])
    (hb, hn), (wb, wn) = _u32_side(h), _u32_side(w)
    head, n = 0 | hb << 1, 1 + hn                 # small = 0, height
    head |= 0 << n                                 # ratio = 0: width follows
    n += 3
    head |= wb << n
    n += wn
    bits = head | (r.value >> r.pos) << n
    return data[:2] + bits.to_bytes((n + 8 * (len(data) - 2) - r.pos + 7) // 8, "little")


def jxl_boxed(codestream: bytes) -> bytes:
    return (b"\x00\x00\x00\x0cJXL \r\n\x87\n" + b"\x00\x00\x00\x14ftypjxl \x00\x00\x00\x00jxl "
            + struct.pack(">I", len(codestream) + 8) + b"jxlc" + codestream)


def null_sized(data: bytes, h: int, w: int) -> bytes:
    return _put(data, 4, ">II", h, w)


CLASSICAL_HUGE = {
    "jpeg": [(65535, 65535), (9000, 9000), (8193, 8192), (65535, 1025)],
    "webp": [(16383, 16383), (12000, 12000), (8193, 8192)],
    "png": [(30000, 30000), (65536, 65536), (9000, 9000), (8193, 8192), (2**31 - 1, 2**31 - 1)],
    "jpegxl": [(30000, 30000), (65536, 65536), (9000, 9000), (8193, 8192), (2**30, 2**30)],
    "null": [(30000, 30000), (65536, 65536), (8193, 8192), (2**32 - 1, 2**32 - 1)],
    "avif": [(30000, 30000), (16384, 16384), (9000, 9000), (8193, 8192)],
    "hevc": [(30000, 30000), (65536, 65536), (9000, 9000), (8193, 8192), (2**32 - 1, 2**32 - 1)],
    "jpeg2000": [(30000, 30000), (65536, 65536), (9000, 9000), (8193, 8192), (2**32 - 1, 2**32 - 1)],
}


def classical_forgeries(reals: dict[str, bytes]) -> list[Forgery]:
    out: list[Forgery] = []
    for h, w in CLASSICAL_HUGE["jpeg"]:
        out.append(("jpeg", f"SOF {h}x{w}", jpeg_sized(reals["jpeg"], h, w), (h, w)))
    for h, w in CLASSICAL_HUGE["webp"]:
        out.append(("webp", f"VP8 {h}x{w}", webp_vp8_sized(reals["webp"], h, w), (h, w)))
        out.append(("webp", f"VP8L {h}x{w}", webp_vp8l_sized(reals["webp-lossless"], h, w), (h, w)))
    for h, w in [(30000, 30000), (2**24, 2**24), (8193, 8192)]:
        out.append(("webp", f"VP8X canvas {h}x{w}", webp_vp8x_sized(reals["webp"], h, w), (h, w)))
    for h, w in CLASSICAL_HUGE["png"]:
        out.append(("png", f"IHDR {h}x{w}", png_sized(reals["png"], h, w), (h, w)))
    for h, w in CLASSICAL_HUGE["jpegxl"]:
        bare = jxl_sized(reals["jpegxl"], h, w)
        out += [("jpegxl", f"SizeHeader {h}x{w}", bare, (h, w)),
                ("jpegxl", f"jxlc box {h}x{w}", jxl_boxed(bare), (h, w))]
    for h, w in CLASSICAL_HUGE["null"]:
        out.append(("null", f"header {h}x{w}", null_sized(reals["null"], h, w), (h, w)))
    ispe = reals["avif"].find(b"ispe") + 8
    for h, w in CLASSICAL_HUGE["avif"]:
        out.append(("avif", f"ispe {h}x{w}", _put(reals["avif"], ispe, ">II", w, h), (h, w)))
    ispe = reals["hevc"].find(b"ispe") + 8
    for h, w in CLASSICAL_HUGE["hevc"]:
        out.append(("hevc", f"ispe {h}x{w}", _put(reals["hevc"], ispe, ">II", w, h), (h, w)))
    for h, w in CLASSICAL_HUGE["jpeg2000"]:                 # SIZ: Xsiz, Ysiz at byte 8 (image offset 0)
        out.append(("jpeg2000", f"SIZ {h}x{w}", _put(reals["jpeg2000"], 8, ">II", w, h), (h, w)))
    return out


def classical_reals() -> dict[str, bytes]:
    img = crop()
    reals = {name: encode(make_codec(name), img, POINTS[name]) for name in ("jpeg", "webp", "avif", "jpegxl", "null",
                                                                         "hevc", "jpeg2000")}
    for key, kwargs in (("png", {"format": "PNG"}), ("webp-lossless", {"format": "WEBP", "lossless": True})):
        buf = io.BytesIO()
        PILImage.fromarray(img).save(buf, **kwargs)
        reals[key] = buf.getvalue()
    return reals


# --------------------------------------------------------------------------- the child
def run_batch(batch: str, folder: str) -> None:
    """Child: build the batch's forgeries from real encodes, print the plan, then decode each
    under RLIMIT_AS (the address space after a warm-up decode + HEADROOM) and an alarm."""
    import resource
    import signal

    if batch == "classical":
        reals = classical_reals()
        forged = classical_forgeries(reals)
        codecs = {name: make_codec(name) for name in {c for c, *_ in forged}}
        warm = [(codecs[n], reals[n]) for n in codecs]
    else:
        codecs = {batch: make_codec(batch)}
        real = encode(codecs[batch], crop(), POINTS[batch])
        forged = learned_forgeries(batch, real)
        warm = [(codecs[batch], real)]
    for i, (_, _, data, _) in enumerate(forged):
        (Path(folder) / f"{i:05d}.bin").write_bytes(data)      # kept for a post-mortem
    print(json.dumps({"plan": [[c, d, claim] for c, d, _, claim in forged]}), flush=True)
    for codec, data in warm:
        decode(codec, data)
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    headroom = HEADROOM["classical" if batch == "classical" else "learned"]
    resource.setrlimit(resource.RLIMIT_AS, (address_space() + headroom, hard))

    def alarm(*_):
        raise TimeoutError(f"decode ran over {PER_FILE_ALARM_S} s")

    signal.signal(signal.SIGALRM, alarm)
    for i, (name, _, data, _) in enumerate(forged):
        print(json.dumps({"start": i}), flush=True)
        signal.alarm(PER_FILE_ALARM_S)
        t0 = time.perf_counter()
        try:
            arr = np.asarray(decode(codecs[name], data))
            res = {"shape": list(arr.shape), "dtype": str(arr.dtype)}
        except BitstreamError as e:
            res = {"error": "BitstreamError", "message": str(e)[:300]}
        except BaseException as e:  # noqa: BLE001 — anything else is what the test reports
            res = {"error": f"{type(e).__module__}.{type(e).__name__}", "message": str(e)[:300]}
        finally:
            signal.alarm(0)
        print(json.dumps({"done": i, "s": time.perf_counter() - t0, **res}), flush=True)


CHILD = "import sys; sys.path.insert(0, sys.argv[1]); from tests.test_limits import run_batch; run_batch(*sys.argv[2:])"
BATCHES = [*LEARNED, "classical"]


@pytest.fixture(scope="module", autouse=True)
def _batches_in_background(request, tmp_path_factory) -> Iterator[dict[str, tuple[subprocess.Popen, Path]]]:
    """Every batch's child, started before the module's first test when a selected test needs
    them (``children``), so they decode side by side while the harness tests run."""
    if not any("children" in item.fixturenames for item in request.session.items if item.module is request.module):
        yield {}
        return
    env = {**os.environ, "BENCH_THREADS": "1", "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    env.pop(MAX_PIXELS_ENV, None)
    out = {}
    for batch in BATCHES:
        folder = tmp_path_factory.mktemp(f"forged-{batch}")
        with (folder / "child.jsonl").open("w") as log, (folder / "child.err").open("w") as err:
            proc = subprocess.Popen([sys.executable, "-c", CHILD, str(REPO_ROOT), batch, str(folder)], stdout=log,
                                    stderr=err, env=env, cwd=REPO_ROOT)
        out[batch] = (proc, folder)
    yield out
    for proc, _ in out.values():
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def children(_batches_in_background) -> dict[str, tuple[subprocess.Popen, Path]]:
    return _batches_in_background


def collect(proc: subprocess.Popen, folder: Path) -> tuple[list, dict[int, dict], str | None]:
    """(plan, results by index, what went wrong with the child or None: a crash or an OOM kill
    (a signal), a hang (no end within the timeout), any other non-zero exit)."""
    try:
        proc.wait(timeout=CHILD_TIMEOUT_S)
        problem = None if proc.returncode == 0 else \
            f"child exited with {proc.returncode}: {(folder / 'child.err').read_text()[-1500:]}"
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        problem = f"child hung (no end after {CHILD_TIMEOUT_S} s)"
    plan, results, last = [], {}, None
    for line in (folder / "child.jsonl").read_text().splitlines():
        msg = json.loads(line)
        if "plan" in msg:
            plan = msg["plan"]
        elif "start" in msg:
            last = msg["start"]
        else:
            results[msg.pop("done")] = msg
    if problem and last is not None and last not in results:
        problem += f"; while decoding forgery {last}: {plan[last][1] if plan else '?'}"
    return plan, results, problem


def above_cap(claim: list | None) -> bool:
    return claim is not None and claim[0] * claim[1] > DEFAULT_MAX_PIXELS


def outcome(claim: list | None, r: dict | None) -> str:
    if r is None:
        return "not run (child died)"
    if r.get("error") == "BitstreamError":
        return "refused by the cap" if "above the pixel limit" in r["message"] else "refused"
    if r.get("error"):
        return "out of memory" if "MemoryError" in r["error"] else "hang" if "Timeout" in r["error"] else \
            "other exception"
    if claim is not None and r["dtype"] == "uint8" and r["shape"] == [claim[0], claim[1], 3]:
        return "decoded at the claimed size"
    return "wrong image"


def report(name: str, tally: Counter, results: dict[int, dict], plan: list, problem: str | None,
           record_property) -> None:
    """The counts, on stdout, in the JUnit properties and as a warning (shown in pytest's summary)."""
    huge = [results[i]["s"] for i, (_, _, claim) in enumerate(plan) if above_cap(claim) and i in results]
    line = (f"[forged] {name}: {sum(tally.values())} forged files: "
            + ", ".join(f"{k} {v}" for k, v in sorted(tally.items()))
            + f"; child: {problem or 'exit 0, no crash, hang or OOM kill'}; "
            f"{sum(r['s'] for r in results.values()):.1f} s of decoding in all, claims above the cap refused in "
            f"≤ {1000 * max(huge, default=0):.2f} ms")
    print("\n" + line)
    record_property(f"forged_{name}", dict(tally))
    warnings.warn(UserWarning(line), stacklevel=2)


# --------------------------------------------------------------------------- through the harness
@pytest.fixture(scope="module")
def real_files() -> dict[str, bytes]:
    img = crop()
    return {name: encode(make_codec(name), img, POINTS[name]) for name in POINTS}


@pytest.mark.parametrize("name", list(POINTS))
def test_declared_size_and_the_cap_boundary(name, real_files, monkeypatch):
    """Every shipped kind says its size without decoding; a cap of exactly that many pixels
    decodes, one pixel less refuses with a message naming the size, the cap and the knob."""
    codec, data = make_codec(name), real_files[name]
    assert codec.declared_size(data) == (48, 64)
    monkeypatch.setenv(MAX_PIXELS_ENV, str(48 * 64))
    assert np.asarray(decode(codec, data)).shape == (48, 64, 3)
    monkeypatch.setenv(MAX_PIXELS_ENV, str(48 * 64 - 1))
    with pytest.raises(BitstreamError,
                       match=r"48×64 = 3,072 pixels, above the pixel limit of 3,071: .*BENCH_MAX_PIXELS=N"):
        decode(codec, data)


def test_the_cli_flag_reaches_worker_processes(monkeypatch):
    """``--max-pixels`` calls set_max_pixels, which travels as the environment variable, so the
    loky workers a run starts afterwards apply the same cap."""
    monkeypatch.setenv(MAX_PIXELS_ENV, "")        # restored after the test
    set_max_pixels(12345)
    out = subprocess.run([sys.executable, "-c", "from bench.limits import max_pixels; print(max_pixels())"],
                         capture_output=True, text=True, cwd=REPO_ROOT, check=True).stdout
    assert out.strip() == "12345"
    with pytest.raises(ValueError, match="positive"):
        set_max_pixels(0)


def test_a_claim_unlike_the_original_is_refused_before_decoding(real_files):
    codec = make_codec("noise_hyperprior")
    c = unpack(real_files["noise_hyperprior"])
    forged = pack(c.model_id, 64, 48, c.streams, c.variant)
    assert check_declared_size(codec, real_files["noise_hyperprior"], (48, 64), "a.bin") == (48, 64)
    with pytest.raises(BitstreamError, match=r"a\.bin: the file claims 64×48 pixels, the original image is 48×64"):
        check_declared_size(codec, forged, (48, 64), "a.bin")


def test_pillow_keeps_its_decompression_bomb_limit():
    """Nothing in the harness switches Pillow's own limit off (``MAX_IMAGE_PIXELS = None``)."""
    import bench.cli  # noqa: F401 — imports every command's modules
    import bench.codecs.learned  # noqa: F401
    import bench.codecs.variable_rate  # noqa: F401
    import bench.run  # noqa: F401

    assert PILImage.MAX_IMAGE_PIXELS is not None and PILImage.MAX_IMAGE_PIXELS >= DEFAULT_MAX_PIXELS
    hits = [p for p in [*(REPO_ROOT / "bench").rglob("*.py"), *SUBMISSIONS_DIR.rglob("*.py")]
            if re.search(r"MAX_IMAGE_PIXELS\s*=[^=]|setattr\([^)]*MAX_IMAGE_PIXELS", p.read_text())]
    assert not hits, f"Pillow's bomb limit is touched in {hits}"


def test_bench_decode_refuses_a_forged_30000_square_file(real_files, tmp_path, capsys):
    """The CLI path: exit 2, the file, the claimed size, the cap and how to raise it; no traceback."""
    from bench.cli import main

    c = unpack(real_files["noise_hyperprior"])
    folder = tmp_path / "bits"
    folder.mkdir()
    (folder / "kodim23.bin").write_bytes(pack(c.model_id, 30000, 30000, c.streams, c.variant))
    t0 = time.perf_counter()
    assert main(["decode", str(folder), "--submission", "noise_hyperprior", "--out", str(tmp_path / "out")]) == 2
    elapsed = time.perf_counter() - t0
    err = capsys.readouterr().err
    assert "kodim23.bin" in err and "30000×30000 = 900,000,000 pixels" in err and "67,108,864" in err
    assert MAX_PIXELS_ENV in err and "Traceback" not in err
    assert elapsed < 30      # model loading included; the refusal itself is timed in the fuzz batches


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_run_names_the_image_above_the_cap_and_the_one_over_its_memory_ceiling(tmp_path, jobs):
    """A real run (the CLI, in its own process: the ceiling is a process limit) over three small
    crops, one image above the pixel cap and one whose jobs need more memory than the ceiling
    allows: the run completes, run.json's errors name both with the reason, the rest is published.

    In the run's own process and in loky workers: a job that ran out of memory inside oneDNN
    broke every later job in its process ("could not create a primitive", the small crops
    included) until such a process took no more jobs (now the codec's worker process ends after
    such a job: bench/sandbox/worker.py). Whether the
    memory runs out inside oneDNN depends on the allocation pattern, which the hash seed
    changes: seed 4 broke both settings, and without a pinned seed about one run in three broke."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, name in enumerate(["kodim01.png", "kodim07.png", "kodim23.png"]):
        PILImage.fromarray(crop(name, (64 * i, 32, 64 * i + 64, 80))).save(folder / f"small{i}.png")
    kodak = crop("kodim05.png", (0, 0, 768, 512))
    PILImage.fromarray(np.tile(kodak, (2, 2, 1))[:1024, :1024]).save(folder / "hungry.png")     # 1 MP
    PILImage.fromarray(np.tile(kodak, (3, 3, 1))[:1200, :1500]).save(folder / "toobig.png")    # 1.8 MP
    env = {**os.environ, MAX_PIXELS_ENV: "1500000", JOB_MEMORY_ENV: "200M", "BENCH_THREADS": "1",
           "PYTHONHASHSEED": "4"}
    p = subprocess.run([sys.executable, "-m", "bench", "run", "-s", "noise_hyperprior", "-d", f"folder:{folder}",
                        "--targets", "0.3", "--jobs", str(jobs), "--reports", str(tmp_path / "r"), "--no-progress"],
                       capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    run = json.loads(next((tmp_path / "r").rglob("runs/noise_hyperprior/run.json")).read_text())
    errors = "\n".join(run["errors"])
    assert "toobig @ " in errors
    assert "toobig: 1200×1500 = 1,800,000 pixels, above the pixel limit of 1,500,000" in errors
    assert "hungry @ " in errors
    assert "MemoryError: noise_hyperprior: hungry @ l05: ran out of memory under the job's ceiling" in errors
    assert JOB_MEMORY_ENV in errors
    assert "toobig: left out" in errors and "hungry: left out" in errors
    assert not any(f"small{i}" in errors for i in range(3)) and "could not create a primitive" not in errors
    rows = read_csv(next((tmp_path / "r").rglob("runs/noise_hyperprior/rows.csv")))
    assert rows and all(r["status"] == "ok" and int(r["images"]) == 3 for r in rows)


# --------------------------------------------------------------------------- the batches' verdicts
@pytest.mark.timeout(CHILD_TIMEOUT_S + 120)
@pytest.mark.parametrize("batch", LEARNED)
def test_forged_learned_files_are_refused_or_decode_at_their_claimed_size(batch, children, record_property):
    plan, results, problem = collect(*children[batch])
    tally, bad = Counter(), []
    for i, (_, desc, claim) in enumerate(plan):
        r = results.get(i)
        what = outcome(claim, r)
        tally[what] += 1
        if what not in ("refused by the cap", "refused", "decoded at the claimed size"):
            bad.append(f"{desc} (claims {claim}) → {what}: {r}")
        elif above_cap(claim) and (what == "decoded at the claimed size" or r["s"] > CAP_REFUSAL_S):
            bad.append(f"{desc} → {what} in {r['s']:.3f} s: a claim above the cap must be refused at once")
        elif above_cap(claim) and max(claim) <= 2**16 and what != "refused by the cap":
            bad.append(f"{desc} → {r['message']}: not the pixel cap's refusal")
    report(batch, tally, results, plan, problem, record_property)
    assert problem is None, f"{batch}: {problem}"
    assert len(plan) >= 1000
    assert not bad, f"{batch}: {len(bad)} of {len(plan)} forgeries misbehaved:\n" + "\n".join(bad[:30])
    assert tally["refused by the cap"] == sum(1 for h, w in HUGE if max(h, w) <= 2**16)
    assert tally["decoded at the claimed size"] > 100          # the decoder was reached, not only the parser


@pytest.mark.timeout(CHILD_TIMEOUT_S + 120)
def test_forged_classical_headers_claiming_huge_sizes_are_refused(children, record_property):
    """BitstreamError within a second, under an address-space limit smaller than any claimed
    image (so nothing was allocated for the claim): by the pixel cap, or where it speaks first by
    Pillow's bomb limit or the library's own (libavif refuses sides above 16384)."""
    plan, results, problem = collect(*children["classical"])
    tally, bad = Counter(), []
    for i, (codec, desc, _) in enumerate(plan):
        r = results.get(i, {})
        msg = r.get("message", "")
        by = "the cap" if "above the pixel limit" in msg or "forged or corrupted" in msg \
            else "Pillow's bomb limit" if "decompression bomb" in msg else "the library"
        refused = r.get("error") == "BitstreamError"
        tally[f"{codec} refused by {by}" if refused else f"{codec} NOT refused"] += 1
        if not refused or r["s"] > 1.0 or (codec != "avif" and by == "the library"):
            bad.append(f"{codec} {desc} → {r}")
    report("classical", tally, results, plan, problem, record_property)
    assert problem is None, f"classical: {problem}"
    assert len(plan) >= 30 and not bad, "\n".join(bad)
