"""Datasets (bench/data.py, bench/dataspec.py): lookup order, pinned checksums, folders and
pixel conversions. (The Hugging Face hub loader and the CLIC names: tests/test_hub.py.)

Everything runs offline: the network-failure tests only talk to 127.0.0.1.
"""

from __future__ import annotations

import dataclasses
import io
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

import bench.data as data
from bench.data import (
    CHECKSUMS_DIR,
    decode_image,
    load_image,
    locate_dataset_dir,
    open_dataset,
    read_checksums,
)
from bench.dataspec import DATASETS, DatasetError, ImageError
from bench.paths import SHARED_DATA_DIR
from tests.helpers.images import noise_image, png_bytes
from tests.helpers.network import free_port

KODAK_MIRROR = SHARED_DATA_DIR / "kodak"
PINNED = read_checksums(CHECKSUMS_DIR / "kodak.sha256")
KODAK_NAMES = [f"kodim{i:02d}.png" for i in range(1, 25)]

needs_mirror = pytest.mark.skipif(not KODAK_MIRROR.is_dir(), reason=f"no Kodak mirror at {KODAK_MIRROR}")
pytestmark = pytest.mark.usefixtures("offline_datasets")


def _kodak_copy(folder: Path, names=KODAK_NAMES) -> Path:
    """A kodak/ folder of symlinks to the mirror (cheap; reads follow them)."""
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        (folder / n).symlink_to(KODAK_MIRROR / n)
    return folder


# --- Kodak from the mirror, found without configuration ---------------------------------------

@needs_mirror
def test_kodak_found_in_the_shared_mirror_with_pinned_sums(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "LOCAL_DATA_DIR", tmp_path / "nothing-here")   # a checkout's data/kodak
    assert locate_dataset_dir("kodak") == KODAK_MIRROR
    assert sorted(PINNED) == KODAK_NAMES
    assert read_checksums(KODAK_MIRROR / "SHA256SUMS") == PINNED          # mirror agrees with the pin

    ds = open_dataset("kodak")
    assert len(ds) == 24 and [p.name for p in ds.files] == KODAK_NAMES
    assert all(p.parent == KODAK_MIRROR for p in ds.files)

    imgs = list(open_dataset("kodak", limit=2).images())
    assert [i.id for i in imgs] == ["kodim01", "kodim02"]
    for img in imgs:
        assert img.sha256 == PINNED[img.id + ".png"]
        assert img.pixels.dtype == np.uint8 and img.pixels.shape in {(512, 768, 3), (768, 512, 3)}
        assert img.notes == ()


# --- Lookup order ------------------------------------------------------------------------------

def test_lookup_order_bench_data_then_local_then_mirror(dataset_dirs, monkeypatch):
    for root in ("bench", "local", "shared"):
        (dataset_dirs[root] / "cid22-train").mkdir()
        (dataset_dirs[root] / "cid22-train" / "x.png").write_bytes(png_bytes(noise_image()))
    monkeypatch.setenv("BENCH_DATA", str(dataset_dirs["bench"]))
    assert locate_dataset_dir("cid22-train") == dataset_dirs["bench"] / "cid22-train"
    monkeypatch.delenv("BENCH_DATA")
    assert locate_dataset_dir("cid22-train") == dataset_dirs["local"] / "cid22-train"
    shutil.rmtree(dataset_dirs["local"] / "cid22-train")
    (dataset_dirs["local"] / "cid22-train").mkdir()                  # an empty folder does not count
    assert locate_dataset_dir("cid22-train") == dataset_dirs["shared"] / "cid22-train"
    explicit = dataset_dirs["bench"] / "cid22-train"
    assert locate_dataset_dir("cid22-train", explicit=explicit) == explicit


def test_missing_dataset_without_download_names_where_it_looked(dataset_dirs, monkeypatch):
    monkeypatch.setenv("BENCH_DATA", str(dataset_dirs["bench"]))
    with pytest.raises(DatasetError) as e:
        open_dataset("cid22-train")
    msg = str(e.value)
    assert "not found" in msg
    for root in ("bench", "local", "shared"):
        assert str(dataset_dirs[root] / "cid22-train") in msg


@pytest.mark.timeout(60)
def test_download_from_unreachable_url_says_where_it_looked_and_that_it_failed(dataset_dirs, monkeypatch):
    monkeypatch.setattr(data, "KODAK_URL", f"http://127.0.0.1:{free_port()}/{{name}}")  # refused
    with pytest.raises(DatasetError) as e:
        locate_dataset_dir("kodak")
    msg = str(e.value)
    assert "download failed" in msg and "127.0.0.1" in msg
    assert str(dataset_dirs["local"] / "kodak") in msg and str(dataset_dirs["shared"] / "kodak") in msg
    assert not list((dataset_dirs["local"] / "kodak").glob("*.png"))   # nothing half-written


def test_download_step_failing_is_reported(dataset_dirs, monkeypatch):
    def boom(dest: Path) -> None:
        raise DatasetError("simulated outage")
    monkeypatch.setitem(DATASETS._items, "kodak", dataclasses.replace(DATASETS.get("kodak"), download=boom))
    with pytest.raises(DatasetError, match=r"looked in: .*shared.*download failed: simulated outage"):
        open_dataset("kodak")


def test_successful_download_lands_in_local_data(dataset_dirs, monkeypatch):
    def fetch(dest: Path) -> None:
        dest.mkdir(parents=True, exist_ok=True)
        (dest / "a.png").write_bytes(png_bytes(noise_image()))
    monkeypatch.setitem(DATASETS._items, "cid22-train",
                        dataclasses.replace(DATASETS.get("cid22-train"), download=fetch))
    assert locate_dataset_dir("cid22-train") == dataset_dirs["local"] / "cid22-train"


# --- Pinned checksums -------------------------------------------------------------------------

@needs_mirror
def test_altered_file_fails_its_checksum_even_when_errors_are_collected(dataset_dirs, monkeypatch):
    folder = _kodak_copy(dataset_dirs["bench"] / "kodak", [n for n in KODAK_NAMES if n != "kodim02.png"])
    with PILImage.open(KODAK_MIRROR / "kodim02.png") as im:
        im.save(folder / "kodim02.png", compress_level=1)   # same pixels, other bytes
    assert np.array_equal(load_image(folder / "kodim02.png").pixels, load_image(KODAK_MIRROR / "kodim02.png").pixels)
    monkeypatch.setenv("BENCH_DATA", str(dataset_dirs["bench"]))

    ds = open_dataset("kodak", limit=2)
    with pytest.raises(DatasetError, match=r"kodim02\.png.*does not match"):
        list(ds.images())
    errors: list[str] = []
    it = ds.images(errors=errors)
    assert next(it).id == "kodim01"
    with pytest.raises(DatasetError, match="does not match"):   # not skipped: the set is not Kodak
        next(it)
    assert errors == []


@needs_mirror
def test_missing_pinned_images_are_refused_and_extra_files_ignored(dataset_dirs, monkeypatch):
    monkeypatch.setenv("BENCH_DATA", str(dataset_dirs["bench"]))
    folder = _kodak_copy(dataset_dirs["bench"] / "kodak", KODAK_NAMES[:-1])
    with pytest.raises(DatasetError, match=r"1 of the 24 pinned images are missing \(kodim24\.png"):
        open_dataset("kodak")
    (folder / "kodim24.png").symlink_to(KODAK_MIRROR / "kodim24.png")
    (folder / "extra.png").write_bytes(png_bytes(noise_image()))
    assert [p.name for p in open_dataset("kodak").files] == KODAK_NAMES


# --- folder:PATH ------------------------------------------------------------------------------

def test_folder_dataset_with_png_and_jpeg_ignores_other_files(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    png = noise_image(10, 14, 1)
    (folder / "b.png").write_bytes(png_bytes(png))
    yy, xx = np.mgrid[0:32, 0:48]
    smooth = np.stack([xx * 5, yy * 7, (xx + yy) * 3], -1).astype(np.uint8)
    PILImage.fromarray(smooth).save(folder / "a.JPG", quality=95)
    (folder / "notes.txt").write_text("not an image")
    (folder / "c.webp").write_bytes(b"RIFF")                      # not a benchmark format

    ds = open_dataset(f"folder:{folder}")
    assert ds.name == "mine" and [p.name for p in ds.files] == ["a.JPG", "b.png"]
    a, b = list(ds.images())
    assert a.id == "a" and a.pixels.shape == (32, 48, 3)
    assert np.abs(a.pixels.astype(int) - smooth).mean() < 3   # JPEG: close, not equal
    assert b.id == "b" and np.array_equal(b.pixels, png) and b.notes == ()


def test_folder_without_images_or_missing_folder_is_an_error(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match="no PNG or JPEG"):
        open_dataset(f"folder:{empty}")
    (empty / "readme.txt").write_text("x")
    with pytest.raises(DatasetError, match="no PNG or JPEG"):
        open_dataset(f"folder:{empty}")
    with pytest.raises(DatasetError, match="does not exist"):
        open_dataset(f"folder:{tmp_path / 'nope'}")


# --- Conversions to 8-bit RGB -----------------------------------------------------------------

def test_greyscale_becomes_rgb_with_a_note():
    grey = np.arange(48, dtype=np.uint8).reshape(6, 8) * 5
    px, notes = decode_image(png_bytes(grey), "g.png")
    assert px.dtype == np.uint8 and px.shape == (6, 8, 3)
    assert all(np.array_equal(px[..., c], grey) for c in range(3))
    assert notes == ("converted L to RGB",)


def test_palette_becomes_rgb_through_its_palette():
    idx = (np.arange(30).reshape(5, 6) % 3).astype(np.uint8)
    im = PILImage.fromarray(idx, mode="L").convert("P")
    palette = [255, 0, 0, 0, 255, 0, 10, 20, 30] + [0] * (768 - 9)
    im.putpalette(palette)
    out = io.BytesIO()
    im.save(out, format="PNG")
    px, notes = decode_image(out.getvalue(), "p.png")
    lut = np.array(palette[:9], np.uint8).reshape(3, 3)
    assert np.array_equal(px, lut[idx]) and notes == ("converted P to RGB",)


def test_palette_with_transparency_says_alpha_dropped():
    im = PILImage.fromarray(np.zeros((4, 4), np.uint8), mode="L").convert("P")
    out = io.BytesIO()
    im.save(out, format="PNG", transparency=0)
    _, notes = decode_image(out.getvalue(), "pt.png")
    assert notes == ("converted P to RGB (alpha dropped)",)


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_is_dropped_not_composited(mode):
    rgb = noise_image(6, 7, 2)
    alpha = np.linspace(0, 255, 42, dtype=np.uint8).reshape(6, 7)
    if mode == "RGBA":
        arr, want = np.dstack([rgb, alpha]), rgb
    else:
        arr, want = np.dstack([rgb[..., 0], alpha]), np.repeat(rgb[..., :1], 3, axis=2)
    px, notes = decode_image(png_bytes(arr), f"{mode}.png")
    assert px.dtype == np.uint8 and np.array_equal(px, want)
    assert notes == (f"converted {mode} to RGB (alpha dropped)",)


def _png_rgb16(arr: np.ndarray) -> bytes:
    """A 16-bit RGB PNG written by hand (Pillow cannot write one)."""
    h, w, _ = arr.shape
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_16bit_greyscale_refused_unless_allowed_then_high_byte():
    arr = np.array([[0x0000, 0x12FF, 0xFF00, 0xFFFF], [0x0100, 0x80FF, 0x7F00, 0x00FF]], np.uint16)
    png = png_bytes(arr)
    assert PILImage.open(io.BytesIO(png)).mode == "I;16" and png[24] == 16
    with pytest.raises(ImageError, match=r"deep\.png: 16-bit"):
        decode_image(png, "deep.png")
    px, notes = decode_image(png, "deep.png", allow_16bit=True)
    assert px.dtype == np.uint8 and px.shape == (2, 4, 3)
    assert np.array_equal(px[..., 0], (arr >> 8).astype(np.uint8)) and np.array_equal(px[..., 2], px[..., 0])
    assert any("16-bit" in n for n in notes)


def test_16bit_rgb_refused_unless_allowed_then_high_byte():
    arr = (np.arange(2 * 3 * 3, dtype=np.uint32).reshape(2, 3, 3) * 3677 + 0x00FF).astype(np.uint16)
    png = _png_rgb16(arr)
    with pytest.raises(ImageError, match="16-bit"):
        decode_image(png, "rgb16.png")
    px, notes = decode_image(png, "rgb16.png", allow_16bit=True)
    assert np.array_equal(px, (arr >> 8).astype(np.uint8))     # truncated, not rounded
    assert any("16-bit" in n for n in notes)


def test_truncated_png_and_non_image_name_the_file(tmp_path):
    good = png_bytes(noise_image(64, 64, 3))
    trunc = tmp_path / "cut.png"
    trunc.write_bytes(good[: len(good) // 2])
    with pytest.raises(ImageError, match=r"cut\.png"):
        load_image(trunc)
    fake = tmp_path / "fake.png"
    fake.write_text("hello, not a PNG")
    with pytest.raises(ImageError, match=r"fake\.png: not a readable image"):
        load_image(fake)


def test_images_with_errors_list_skips_the_bad_one(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "a.png").write_bytes(png_bytes(noise_image(seed=4)))
    (folder / "b.png").write_bytes(b"\x89PNG\r\n\x1a\ngarbage")
    (folder / "c.png").write_bytes(png_bytes(noise_image(seed=5)))
    ds = open_dataset(f"folder:{folder}")
    with pytest.raises(ImageError, match=r"b\.png"):
        list(ds.images())
    errors: list[str] = []
    assert [i.id for i in ds.images(errors=errors)] == ["a", "c"]
    assert len(errors) == 1 and "b.png" in errors[0]
