"""Datasets: lookup order, pinned checksums, folders, pixel conversions, and the hub loader.

Everything runs offline: the hub tests build a tiny parquet dataset in tmp_path and load it
through ``datasets.load_dataset``; the network-failure tests only talk to 127.0.0.1.
"""

from __future__ import annotations

import dataclasses
import io
import shutil
import socket
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

import bench.data as data
import bench.hub as hub
from bench.data import (CHECKSUMS_DIR, DATASETS, DatasetError, ImageError, decode_image, load_image,
                        locate_dataset_dir, open_dataset, read_checksums)
from bench.paths import SHARED_DATA_DIR

KODAK_MIRROR = SHARED_DATA_DIR / "kodak"
PINNED = read_checksums(CHECKSUMS_DIR / "kodak.sha256")
KODAK_NAMES = [f"kodim{i:02d}.png" for i in range(1, 25)]
CLIC_VALID_REPO = "SCU-VIP-Lab/compression-eval-datasets"

needs_mirror = pytest.mark.skipif(not KODAK_MIRROR.is_dir(), reason=f"no Kodak mirror at {KODAK_MIRROR}")


@pytest.fixture(autouse=True)
def _no_network_no_stray_files(tmp_path, monkeypatch):
    """No test reads a developer's BENCH_DATA, writes hub caches outside tmp_path or goes online."""
    monkeypatch.delenv("BENCH_DATA", raising=False)
    monkeypatch.setenv("BENCH_HUB_CACHE", str(tmp_path / "hubcache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for var in ("BENCH_HUB_REPO_CLIC2020_TEST", "BENCH_HUB_REPO_CLIC2021_TEST", "HF_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    """Empty stand-ins for data/ and the shared mirror, plus a BENCH_DATA root (not yet set)."""
    d = {"bench": tmp_path / "bench", "local": tmp_path / "local", "shared": tmp_path / "shared"}
    for p in d.values():
        p.mkdir()
    monkeypatch.setattr(data, "LOCAL_DATA_DIR", d["local"])
    monkeypatch.setattr(data, "SHARED_DATA_DIR", d["shared"])
    return d


def _png(arr: np.ndarray, mode: str | None = None, **save) -> bytes:
    out = io.BytesIO()
    im = PILImage.fromarray(arr) if mode is None else PILImage.fromarray(arr).convert(mode)
    im.save(out, format="PNG", **save)
    return out.getvalue()


def _noise(h=12, w=16, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


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

def test_lookup_order_bench_data_then_local_then_mirror(dirs, monkeypatch):
    for root in ("bench", "local", "shared"):
        (dirs[root] / "cid22-train").mkdir()
        (dirs[root] / "cid22-train" / "x.png").write_bytes(_png(_noise()))
    monkeypatch.setenv("BENCH_DATA", str(dirs["bench"]))
    assert locate_dataset_dir("cid22-train") == dirs["bench"] / "cid22-train"
    monkeypatch.delenv("BENCH_DATA")
    assert locate_dataset_dir("cid22-train") == dirs["local"] / "cid22-train"
    shutil.rmtree(dirs["local"] / "cid22-train")
    (dirs["local"] / "cid22-train").mkdir()                  # an empty folder does not count
    assert locate_dataset_dir("cid22-train") == dirs["shared"] / "cid22-train"
    explicit = dirs["bench"] / "cid22-train"
    assert locate_dataset_dir("cid22-train", explicit=explicit) == explicit


def test_missing_dataset_without_download_names_where_it_looked(dirs, monkeypatch):
    monkeypatch.setenv("BENCH_DATA", str(dirs["bench"]))
    with pytest.raises(DatasetError) as e:
        open_dataset("cid22-train")
    msg = str(e.value)
    assert "not found" in msg
    for root in ("bench", "local", "shared"):
        assert str(dirs[root] / "cid22-train") in msg


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(60)
def test_download_from_unreachable_url_says_where_it_looked_and_that_it_failed(dirs, monkeypatch):
    monkeypatch.setattr(data, "KODAK_URL", f"http://127.0.0.1:{_free_port()}/{{name}}")  # refused
    with pytest.raises(DatasetError) as e:
        locate_dataset_dir("kodak")
    msg = str(e.value)
    assert "download failed" in msg and "127.0.0.1" in msg
    assert str(dirs["local"] / "kodak") in msg and str(dirs["shared"] / "kodak") in msg
    assert not list((dirs["local"] / "kodak").glob("*.png"))   # nothing half-written


def test_download_step_failing_is_reported(dirs, monkeypatch):
    def boom(dest: Path) -> None:
        raise DatasetError("simulated outage")
    monkeypatch.setitem(DATASETS._items, "kodak", dataclasses.replace(DATASETS.get("kodak"), download=boom))
    with pytest.raises(DatasetError, match=r"looked in: .*shared.*download failed: simulated outage"):
        open_dataset("kodak")


def test_successful_download_lands_in_local_data(dirs, monkeypatch):
    def fetch(dest: Path) -> None:
        dest.mkdir(parents=True, exist_ok=True)
        (dest / "a.png").write_bytes(_png(_noise()))
    monkeypatch.setitem(DATASETS._items, "cid22-train",
                        dataclasses.replace(DATASETS.get("cid22-train"), download=fetch))
    assert locate_dataset_dir("cid22-train") == dirs["local"] / "cid22-train"


# --- Pinned checksums -------------------------------------------------------------------------

@needs_mirror
def test_altered_file_fails_its_checksum_even_when_errors_are_collected(dirs, monkeypatch):
    folder = _kodak_copy(dirs["bench"] / "kodak", [n for n in KODAK_NAMES if n != "kodim02.png"])
    with PILImage.open(KODAK_MIRROR / "kodim02.png") as im:
        im.save(folder / "kodim02.png", compress_level=1)   # same pixels, other bytes
    assert np.array_equal(load_image(folder / "kodim02.png").pixels, load_image(KODAK_MIRROR / "kodim02.png").pixels)
    monkeypatch.setenv("BENCH_DATA", str(dirs["bench"]))

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
def test_missing_pinned_images_are_refused_and_extra_files_ignored(dirs, monkeypatch):
    monkeypatch.setenv("BENCH_DATA", str(dirs["bench"]))
    folder = _kodak_copy(dirs["bench"] / "kodak", KODAK_NAMES[:-1])
    with pytest.raises(DatasetError, match=r"1 of the 24 pinned images are missing \(kodim24\.png"):
        open_dataset("kodak")
    (folder / "kodim24.png").symlink_to(KODAK_MIRROR / "kodim24.png")
    (folder / "extra.png").write_bytes(_png(_noise()))
    assert [p.name for p in open_dataset("kodak").files] == KODAK_NAMES


# --- folder:PATH ------------------------------------------------------------------------------

def test_folder_dataset_with_png_and_jpeg_ignores_other_files(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    png = _noise(10, 14, 1)
    (folder / "b.png").write_bytes(_png(png))
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
    px, notes = decode_image(_png(grey), "g.png")
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
    rgb = _noise(6, 7, 2)
    alpha = np.linspace(0, 255, 42, dtype=np.uint8).reshape(6, 7)
    if mode == "RGBA":
        arr, want = np.dstack([rgb, alpha]), rgb
    else:
        arr, want = np.dstack([rgb[..., 0], alpha]), np.repeat(rgb[..., :1], 3, axis=2)
    px, notes = decode_image(_png(arr), f"{mode}.png")
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
    png = _png(arr)
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
    good = _png(_noise(64, 64, 3))
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
    (folder / "a.png").write_bytes(_png(_noise(seed=4)))
    (folder / "b.png").write_bytes(b"\x89PNG\r\n\x1a\ngarbage")
    (folder / "c.png").write_bytes(_png(_noise(seed=5)))
    ds = open_dataset(f"folder:{folder}")
    with pytest.raises(ImageError, match=r"b\.png"):
        list(ds.images())
    errors: list[str] = []
    assert [i.id for i in ds.images(errors=errors)] == ["a", "c"]
    assert len(errors) == 1 and "b.png" in errors[0]


# --- Hub: the real loader on a local parquet dataset --------------------------------------------

def _datasets():
    try:
        import datasets
        datasets.Dataset.from_dict({"x": [1]})
    except Exception as e:   # e.g. pyarrow 26 with numpy<2 (compressai pins numpy<2)
        pytest.skip(f"Hugging Face datasets is unusable in this environment: {type(e).__name__}: {e}")
    return datasets


def _parquet_dataset(root: Path, split: str, columns: dict) -> None:
    datasets = _datasets()
    feats = {k: (datasets.Image() if k == "image" else datasets.Value("string")) for k in columns}
    ds = datasets.Dataset.from_dict(columns, features=datasets.Features(feats))
    (root / "data").mkdir(parents=True, exist_ok=True)
    ds.to_parquet(str(root / "data" / f"{split}-00000-of-00001.parquet"))


def test_hub_loader_on_local_parquet_keeps_pixels_and_names(tmp_path, monkeypatch):
    datasets = _datasets()
    originals = {"sky": _noise(9, 11, 7), "sea": _noise(5, 13, 8), "sand": _noise(7, 7, 9)}
    src = tmp_path / "clic-mini"
    _parquet_dataset(src, "test", {"image": [PILImage.fromarray(a) for a in originals.values()],
                                   "filename": [f"{k}.png" for k in originals]})

    ds = open_dataset("hf:" + str(src))
    folder = ds.files[0].parent
    assert folder.parent.parent == tmp_path / "hubcache" and folder.name == "test"
    imgs = {i.id: i for i in ds.images()}
    assert set(imgs) == set(originals)
    for k, arr in originals.items():
        assert np.array_equal(imgs[k].pixels, arr) and imgs[k].notes == ()

    def no_reload(*a, **k):
        raise AssertionError("load_dataset called again")
    monkeypatch.setattr(datasets, "load_dataset", no_reload)
    assert hub.materialise_hub_dataset(str(src)) == folder
    assert hub.materialise_hub_dataset(f"{src}:test") == folder
    assert len(open_dataset("hf:" + str(src))) == 3


def test_hub_loader_without_names_uses_index_and_reencodes_jpeg_losslessly(tmp_path):
    _datasets()
    yy, xx = np.mgrid[0:16, 0:24]
    smooth = np.stack([xx * 9, yy * 11, (xx + yy) * 5], -1).astype(np.uint8)
    jpeg = io.BytesIO()
    PILImage.fromarray(smooth).save(jpeg, format="JPEG", quality=90)
    rgba = np.dstack([_noise(4, 5, 10), np.full((4, 5), 128, np.uint8)])
    src = tmp_path / "noname"
    _parquet_dataset(src, "test", {"image": [{"bytes": jpeg.getvalue(), "path": None},
                                             {"bytes": _png(rgba), "path": None}]})

    folder = hub.materialise_hub_dataset(str(src))
    assert sorted(p.name for p in folder.glob("*.png")) == ["0000.png", "0001.png"]
    assert (folder / "0000.png").read_bytes()[:8] == hub.PNG_SIGNATURE
    assert (folder / "0001.png").read_bytes() == _png(rgba)                 # PNG kept byte for byte
    decoded_jpeg = np.asarray(PILImage.open(io.BytesIO(jpeg.getvalue())).convert("RGB"))
    imgs = list(open_dataset(f"folder:{folder}").images())
    assert np.array_equal(imgs[0].pixels, decoded_jpeg)
    assert np.array_equal(imgs[1].pixels, rgba[..., :3]) and "alpha dropped" in imgs[1].notes[0]


def test_hub_loader_splits(tmp_path):
    _datasets()
    src = tmp_path / "two-splits"
    _parquet_dataset(src, "train", {"image": [PILImage.fromarray(_noise(4, 4, 1))], "id": ["t0"]})
    _parquet_dataset(src, "test", {"image": [PILImage.fromarray(_noise(4, 4, 2))], "id": ["e0"]})
    assert [p.stem for p in open_dataset(f"hf:{src}:train").files] == ["t0"]
    assert [p.stem for p in open_dataset(f"hf:{src}").files] == ["e0"]      # test preferred
    with pytest.raises(DatasetError, match="nope"):
        hub.materialise_hub_dataset(f"{src}:nope")


def test_hub_loader_needs_an_image_column(tmp_path):
    _datasets()
    src = tmp_path / "text-only"
    _parquet_dataset(src, "test", {"caption": ["a", "b"]})
    with pytest.raises(DatasetError, match="no image column"):
        hub.materialise_hub_dataset(str(src))


def test_friendly_name_materialises_into_data_via_override(dirs, tmp_path, monkeypatch):
    _datasets()
    src = tmp_path / "c20"
    arr = _noise(6, 6, 11)
    _parquet_dataset(src, "test", {"image": [PILImage.fromarray(arr)], "id": ["img-1"]})
    monkeypatch.setenv("BENCH_HUB_REPO_CLIC2020_TEST", f"{src}:test")
    ds = open_dataset("clic2020-test")
    assert ds.name == "clic2020-test" and ds.files == [dirs["local"] / "clic2020-test" / "img-1.png"]
    assert np.array_equal(next(ds.images()).pixels, arr)


# --- Hub: offline and unreachable ------------------------------------------------------------

def test_spec_parsing():
    assert hub.parse_spec("owner/name") == hub.HubRef("owner/name")
    assert hub.parse_spec("owner/name:test") == hub.HubRef("owner/name", "test")
    assert hub.parse_spec(f"{CLIC_VALID_REPO}/clic2021_valid:train") == \
        hub.HubRef(CLIC_VALID_REPO, "train", "clic2021_valid")
    for bad in ("justaname", "./missing-folder", ""):
        with pytest.raises(DatasetError):
            hub.parse_spec(bad)


def test_clic_names_are_registered():
    for name in ("clic2020-test", "clic2020-valid", "clic2021-test", "clic2021-valid"):
        assert name in DATASETS and DATASETS.get(name).download is not None
    assert hub.hub_spec_for("clic2021-valid").startswith(CLIC_VALID_REPO + "/")


@pytest.mark.timeout(30)
def test_offline_hub_name_fails_fast_with_instructions(dirs):
    t = time.monotonic()
    with pytest.raises(DatasetError) as e:
        open_dataset("clic2021-valid")
    assert time.monotonic() - t < 5
    msg = str(e.value)
    assert CLIC_VALID_REPO in msg and "could not be reached" in msg
    assert "HF_HUB_OFFLINE=0" in msg and "folder:PATH" in msg
    assert str(dirs["shared"] / "clic2021-valid") in msg            # where it looked first
    assert not (dirs["local"] / "clic2021-valid").exists() or not any((dirs["local"] / "clic2021-valid").iterdir())


@pytest.mark.timeout(30)
def test_offline_hf_repo_fails_fast():
    t = time.monotonic()
    with pytest.raises(DatasetError, match=r"could not be reached.*'someone/clic-2020'.*HF_HUB_OFFLINE=0"):
        open_dataset("hf:someone/clic-2020:test")
    assert time.monotonic() - t < 5


def test_unconfirmed_name_says_no_repo_is_pinned(dirs):
    with pytest.raises(DatasetError, match=r"no Hugging Face repo id is pinned for clic2021-test.*folder:PATH"):
        open_dataset("clic2021-test")


def test_clic_name_found_on_the_search_path_needs_no_hub(dirs, monkeypatch):
    folder = dirs["bench"] / "clic2021-test"
    folder.mkdir()
    (folder / "x.png").write_bytes(_png(_noise()))
    monkeypatch.setenv("BENCH_DATA", str(dirs["bench"]))
    assert [i.id for i in open_dataset("clic2021-test").images()] == ["x"]


@pytest.mark.timeout(30)
def test_unreachable_hub_connection_refused_fails_fast(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_free_port()}")
    t = time.monotonic()
    with pytest.raises(DatasetError, match=r"could not be reached for dataset repo 'someone/clic'"):
        hub.materialise_hub_dataset("someone/clic:test")
    assert time.monotonic() - t < 10


@pytest.mark.timeout(30)
def test_unreachable_hub_silent_server_times_out(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    with socket.socket() as srv:            # accepts connections (backlog), never answers
        srv.bind(("127.0.0.1", 0))
        srv.listen(8)
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{srv.getsockname()[1]}")
        monkeypatch.setenv("BENCH_HUB_TIMEOUT", "1")
        t = time.monotonic()
        with pytest.raises(DatasetError, match="could not be reached"):
            hub.materialise_hub_dataset("someone/clic")
        assert time.monotonic() - t < 10
