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

Adding a kind is one line in ``KINDS`` (tests/helpers/fuzz.py, with the format-field
mutations and the child).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from bench.paths import REPO_ROOT, SUBMISSIONS_DIR
from tests.helpers.coding import decode, encode
from tests.helpers.fuzz import IMAGE, KINDS, RAISE, SAME, SEED, Kind, Mutation, flip
from tests.helpers.images import kodak_crop

CHILD_TIMEOUT_S = 240        # the whole kind; a hang inside C code is caught here
CROP = (300, 200, 364, 248)  # 64 × 48 real photo


# --------------------------------------------------------------------------- generic mutations
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
    out += [(f"bit {b} flipped", flip(data, int(b)), bits) for b in [*header_bits, *other_bits]]
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


CHILD = ("import sys; sys.path.insert(0, sys.argv[1]); from tests.helpers.fuzz import decode_all; "
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
    data = encode(codec, img, kind.point)
    clean = np.asarray(decode(codec, data))
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
    assert not failures, (f"{kind.name}: {len(failures)} of {len(muts)} mutations misbehaved:\n"
                          + "\n".join(failures[:40]))
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
