"""Hostile images, datasets and submissions, end to end through real runs.

(tests/test_data.py checks the pixel conversions one by one; here they go through
``run_benchmark`` and the CLI together, with real codecs, to check what a run does with them.)

Defined behaviour, image by image:

=====================  ===================================================================
1×1, 7×5, 65×33        coded and reported like any image; MS-SSIM NaN below 11 px (left
4096×16 (very wide)    out of the MS-SSIM mean, the row's note counts them), fewer scales
                       below 161 px
greyscale, palette     converted to RGB, the run log / run.json ``image_notes`` say so
RGBA                   alpha dropped, said so
16-bit PNG             refused by name (``--allow-16bit`` is the explicit conversion)
truncated PNG          refused by name
not an image (.png)    refused by name
duplicate bytes        counted once, the duplicate named
too big for the codec  (WebP's 16383 px limit) the codec's error is named, the image left
                       out, the other images still run
empty folder           DatasetError, exit code 2, no traceback
only bad images        DatasetError naming them, exit code 2
=====================  ===================================================================

Submissions: entry points that are not ``module:Class`` or reach outside the submission
folder, wrong field types and values, and weight files that are not checkpoints (including
a pickle that would run code: weights load with ``torch.load(weights_only=True)``).
"""

from __future__ import annotations

import ast
import io
import json
import math
import pickle
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from bench.cli import main
from bench.dataspec import DatasetError
from bench.paths import SUBMISSIONS_DIR
from bench.results import read_csv
from bench.run import run_benchmark
from bench.submission import SubmissionError, load_manifest
from tests.helpers.coding import decode, encode
from tests.helpers.fuzz import KINDS
from tests.helpers.images import kodak_crop
from tests.helpers.manifests import continuous, manifest_text, write_submission

SIZES = [(1, 1), (5, 7), (33, 65), (16, 4096)]      # (height, width): 1×1, 7×5, 65×33, 4096×16


def _photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Real photo content at any size: a Kodak crop, tiled when the image is wider than Kodak."""
    base = kodak_crop(f"kodim0{1 + seed % 9}.png", (0, 0, 768, 512))
    reps = (math.ceil(h / 512), math.ceil(w / 768), 1)
    return np.ascontiguousarray(np.tile(base, reps)[:h, :w])


def _png16(arr: np.ndarray) -> bytes:
    """A 16-bit RGB PNG written by hand (Pillow cannot write one)."""
    h, w, _ = arr.shape
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


@pytest.fixture
def hostile_folder(tmp_path: Path) -> Path:
    f = tmp_path / "hostile"
    f.mkdir()
    for h, w in SIZES:
        PILImage.fromarray(_photo(h, w, h + w)).save(f / f"size_{w}x{h}.png")
    PILImage.fromarray(kodak_crop("kodim07.png", (0, 0, 96, 80))).save(f / "photo.png")
    PILImage.fromarray(kodak_crop("kodim05.png", (0, 0, 80, 64))).convert("L").save(f / "grey.png")
    PILImage.fromarray(kodak_crop("kodim03.png", (0, 0, 80, 64))).convert("P").save(f / "palette.png")
    rgba = np.dstack([kodak_crop("kodim04.png", (0, 0, 64, 48)), np.full((48, 64), 90, np.uint8)])
    PILImage.fromarray(rgba, "RGBA").save(f / "rgba.png")
    (f / "deep16.png").write_bytes(_png16(_photo(24, 32).astype(np.uint16) * 257))
    good = (f / "photo.png").read_bytes()
    (f / "cut.png").write_bytes(good[: len(good) // 2])
    (f / "notes.png").write_text("this is not an image\n")
    shutil.copyfile(f / "grey.png", f / "grey_copy.png")
    (f / "readme.txt").write_text("not a benchmark file type: ignored")
    return f


GOOD = {"size_1x1", "size_7x5", "size_65x33", "size_4096x16", "photo", "grey", "palette", "rgba"}


@pytest.mark.parametrize("submission", ["jpeg", "null"])
def test_hostile_folder_runs_and_names_every_bad_image(hostile_folder, tmp_path, submission):
    res = run_benchmark(submission, f"folder:{hostile_folder}", targets=[3.0] if submission == "jpeg" else [30.0],
                        reports_dir=tmp_path / "r", progress=False, log=lambda *_: None)
    errors = "\n".join(res.errors)
    for bad, why in [("deep16.png", "16-bit"), ("cut.png", "not a readable image"),
                     ("notes.png", "not a readable image"), ("grey_copy", "duplicate of grey")]:
        assert sum(bad in e for e in res.errors) == 1 and why in errors, (bad, errors)
    assert len(res.errors) == 4

    row = res.rows[0]
    assert row["status"] == "ok" and row["images"] == len(GOOD)
    assert "2 images too small for MS-SSIM" in row["note"]          # 1×1 and 7×5; 4096×16 has one scale
    assert math.isfinite(row["msssim"])
    assert math.isinf(row["psnr"]) if submission == "null" else math.isfinite(row["psnr"])
    per_image = {r["image_id"]: r for r in read_csv(res.run_dir / "per_image.csv")}
    assert set(per_image) == GOOD
    assert sorted(p.stem for p in next((res.run_dir / "bitstreams").iterdir()).iterdir()) == sorted(GOOD)
    recs = {json.loads(ln)["image_id"]: json.loads(ln) for ln in (res.run_dir / "records.jsonl").open()}
    for h, w in SIZES:
        r = recs[f"size_{w}x{h}"]
        assert (r["height"], r["width"]) == (h, w)
        assert r["bpp"] == pytest.approx(r["bytes"] * 8 / (h * w))
        assert math.isnan(r["msssim"]) == (min(h, w) < 11)

    notes = json.loads((res.run_dir / "run.json").read_text())["image_notes"]
    assert "grey: converted L to RGB" in notes and "palette: converted P to RGB" in notes
    assert "rgba: converted RGBA to RGB (alpha dropped)" in notes


def test_an_image_the_codec_cannot_code_is_left_out_and_named(image_folder, tmp_path):
    """WebP cannot code a side over 16383 px: that image's jobs fail, it is named and left
    out, the other images are rate-controlled and published as usual."""
    PILImage.fromarray(_photo(2, 20000)).save(image_folder / "toolong.png")
    res = run_benchmark("webp", f"folder:{image_folder}", targets=[0.6], reports_dir=tmp_path / "r",
                        progress=False, log=lambda *_: None)
    assert any("toolong" in e and "16383" in e for e in res.errors)
    assert any(e.startswith("toolong: left out") for e in res.errors)
    row = res.rows[0]
    assert row["status"] == "ok" and row["images"] == 3
    assert row["budget_bytes"] == math.floor(0.6 * 3 * 192 * 176 / 8)     # the budget of the images that ran
    assert sorted(p.stem for p in (res.run_dir / "bitstreams" / "clic-0.6").iterdir()) == ["img0", "img1", "img2"]
    assert any("toolong" in e for e in json.loads((res.run_dir / "run.json").read_text())["errors"])


def test_empty_and_all_bad_folders_are_clear_errors(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["run", "-s", "jpeg", "-d", f"folder:{empty}", "--reports", str(tmp_path / "r"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "no PNG or JPEG images" in err and "Traceback" not in err

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.png").write_text("nope")
    (bad / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 30)
    with pytest.raises(DatasetError, match=r"no usable images \(2 rejected: .*a\.png.*b\.png"):
        run_benchmark("jpeg", f"folder:{bad}", reports_dir=tmp_path / "r", progress=False, log=lambda *_: None)
    assert main(["run", "-s", "jpeg", "-d", f"folder:{bad}", "--reports", str(tmp_path / "r"), "--no-progress"]) == 2
    assert "no usable images" in capsys.readouterr().err


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for h, w in SIZES])
@pytest.mark.parametrize("kind", KINDS, ids=[k.name for k in KINDS])
def test_every_codec_kind_round_trips_odd_sizes(kind, size, tmp_path_factory):
    """Each kind codes 1×1, 7×5, 65×33 and 4096×16 to a file and back to the same shape."""
    root = tmp_path_factory.getbasetemp() / "kinds"
    manifest = SUBMISSIONS_DIR / kind.manifest / "submission.toml" if isinstance(kind.manifest, str) \
        else (root / _built_name(kind, root))
    codec = load_manifest(manifest).make_codec()
    img = _photo(*size)
    out = np.asarray(decode(codec, encode(codec, img, kind.point)))
    assert out.shape == img.shape and out.dtype == np.uint8
    if kind.name == "null":
        assert np.array_equal(out, img)
    elif not kind.checked and min(size) >= 8:                # classical lossy (the learned ones are untrained)
        assert np.abs(out.astype(int) - img).mean() < 30      # a picture of the input, not noise


def _built_name(kind, root: Path) -> str:
    """Build a kind's submission once per session under ``root``; its manifest path relative to root."""
    marker = root / f".{kind.name}"
    if not marker.exists():
        root.mkdir(exist_ok=True)
        manifest = kind.manifest(root)
        marker.write_text(str(manifest.relative_to(root)))
    return marker.read_text()


# --------------------------------------------------------------------------- submissions
MANIFEST = manifest_text("sub", "bench.codecs.classical:WebPCodec", continuous(0, 100))   # edited below


def _write(tmp_path: Path, text: str, name: str = "sub") -> Path:
    return write_submission(tmp_path / "subs", name, text=text)


@pytest.mark.parametrize("text,message", [
    (MANIFEST.replace('"bench.codecs.classical:WebPCodec"', "5"), "field 'codec' must be str"),
    (MANIFEST.replace("[operating_points]", 'params = "fast"\n[operating_points]'), "field 'params' must be dict"),
    (MANIFEST.split("[operating_points]")[0] + 'operating_points = "fast"\n', "field 'operating_points' must be dict"),
    (MANIFEST.replace("codec =", 'rate_control = "shared"\ncodec ='), "field 'rate_control' must be dict"),
    (MANIFEST.replace('description = "test codec"', 'description = ["a"]'), "field 'description' must be str"),
    (MANIFEST.replace("high = 100", "high = inf"), "'operating_points.high' must be a finite number"),
    (MANIFEST.replace("low = 0", "low = nan"), "'operating_points.low' must be a finite number"),
    (MANIFEST.replace("high = 100", 'high = 100\ninteger = "yes"'), "'operating_points.integer' must be bool"),
    (MANIFEST.replace("high = 100", "high = 100\ngrid = 1000000000"), "'operating_points.grid' must be 2..256"),
    (MANIFEST.replace('kind = "continuous"\nlow = 0\nhigh = 100', 'kind = "discrete"\npoints = []'),
     "'operating_points.points' must be a non-empty list"),
    (MANIFEST.replace("bench.codecs.classical:WebPCodec", "bench.codecs.classical"), "must look like 'module:Class'"),
    (MANIFEST.replace("bench.codecs.classical:WebPCodec", "bench.codecs.classical:"), "must look like 'module:Class'"),
    (MANIFEST.replace("bench.codecs.classical:WebPCodec", "../evil:Codec"), "no paths"),
    (MANIFEST.replace("bench.codecs.classical:WebPCodec", "..evil:Codec"), "no relative imports"),
    (MANIFEST.replace("bench.codecs.classical:WebPCodec", "codec:Mine()"), "must look like 'module:Class'"),
    ("\x00\x01binary", "not valid TOML"),
])
def test_bad_manifest_fields_are_named(tmp_path, text, message):
    with pytest.raises(SubmissionError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        load_manifest(_write(tmp_path, text))


def test_entry_point_cannot_load_code_outside_the_submission(tmp_path):
    """'.tmp.x.evil' used to become the absolute path /tmp/x/evil.py and be executed; a
    symlinked codec.py that points outside the folder is refused too."""
    evil = tmp_path / "outside" / "evil.py"
    evil.parent.mkdir()
    marker = tmp_path / "ran"
    evil.write_text(f"open({str(marker)!r}, 'w').close()\nfrom bench.codecs.classical import NullCodec as Codec\n")
    dotted = "." + ".".join(evil.with_suffix("").parts[1:])
    with pytest.raises(SubmissionError, match="must look like 'module:Class'"):
        load_manifest(_write(tmp_path, MANIFEST.replace("bench.codecs.classical:WebPCodec", f"{dotted}:Codec")))
    path = _write(tmp_path, MANIFEST.replace("bench.codecs.classical:WebPCodec", "codec:Codec"), "linked")
    path.write_text(path.read_text().replace('name = "sub"', 'name = "linked"'))
    (path.parent / "codec.py").symlink_to(evil)
    with pytest.raises(SubmissionError, match="outside the submission folder"):
        load_manifest(path).make_codec()
    assert not marker.exists()


# --------------------------------------------------------------------------- checkpoints
class _RunsCode:
    """A pickle that would create a file when unpickled without weights_only."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _learned_manifest(tmp_path: Path) -> tuple[Path, Path]:
    path = write_submission(tmp_path / "subs", "lic", "bench.codecs.learned:HyperpriorCodec", description="learned",
                            params={"models": ["base"]}, points=["base"])
    (path.parent / "weights").mkdir(exist_ok=True)
    return path, path.parent / "weights" / "base.pt"


def test_a_pickle_that_runs_code_is_refused_and_never_run(tmp_path):
    import torch

    manifest, weights = _learned_manifest(tmp_path)
    marker = tmp_path / "pwned"
    with weights.open("wb") as f:
        pickle.dump({"state_dict": _RunsCode(marker), "meta": {"arch": "scale_hyperprior", "N": 8, "M": 8}}, f)
    with pytest.raises(SubmissionError, match=r"not a valid weight file.*base\.pt|base\.pt.*not a valid weight file"):
        load_manifest(manifest).make_codec()
    torch.save({"state_dict": {"x": _RunsCode(marker)}, "meta": {}}, weights)     # the zip format, same payload
    with pytest.raises(SubmissionError, match="not a valid weight file"):
        load_manifest(manifest).make_codec()
    assert not marker.exists()


def test_truncated_and_mismatched_checkpoints_are_named(tmp_path):
    import torch

    from bench.models.hyperprior import build_model

    manifest, weights = _learned_manifest(tmp_path)
    model = build_model("scale_hyperprior", 16, 24)
    buf = io.BytesIO()
    torch.save({"state_dict": model.state_dict(), "meta": {"arch": "scale_hyperprior", "N": 16, "M": 24}}, buf)
    weights.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(SubmissionError, match="not a valid weight file"):
        load_manifest(manifest).make_codec()
    torch.save({"state_dict": model.state_dict(), "meta": {"arch": "scale_hyperprior", "N": 32, "M": 24}}, weights)
    with pytest.raises(SubmissionError, match="do not fit scale_hyperprior N=32"):
        load_manifest(manifest).make_codec()
    torch.save({"state_dict": model.state_dict(), "meta": {"arch": "transformer", "N": 16, "M": 24}}, weights)
    with pytest.raises(SubmissionError, match="transformer"):
        load_manifest(manifest).make_codec()


def test_every_torch_load_in_the_package_uses_weights_only():
    """Static check over bench/: each torch.load call passes weights_only=True."""
    calls = []
    for py in sorted(Path(__file__).resolve().parents[1].joinpath("bench").rglob("*.py")):
        for node in ast.walk(ast.parse(py.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load" \
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch":
                kw = {k.arg: k.value for k in node.keywords}
                ok = isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True
                calls.append((f"{py.name}:{node.lineno}", ok))
    assert calls, "no torch.load calls found: the check is looking in the wrong place"
    assert all(ok for _, ok in calls), [c for c, ok in calls if not ok]
