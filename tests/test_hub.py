"""The Hugging Face hub loader and the CLIC names on it (bench/hub.py): the real loader on a
tiny parquet dataset built in tmp_path and loaded through ``datasets.load_dataset``, then
offline and unreachable hubs (the failure tests only talk to 127.0.0.1).
"""

from __future__ import annotations

import io
import socket
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

import bench.hub as hub
from bench.data import open_dataset
from bench.dataspec import DATASETS, DatasetError
from tests.helpers.images import noise_image, png_bytes
from tests.helpers.network import free_port

CLIC_VALID_REPO = "SCU-VIP-Lab/compression-eval-datasets"
pytestmark = pytest.mark.usefixtures("offline_datasets")


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
    originals = {"sky": noise_image(9, 11, 7), "sea": noise_image(5, 13, 8), "sand": noise_image(7, 7, 9)}
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
    rgba = np.dstack([noise_image(4, 5, 10), np.full((4, 5), 128, np.uint8)])
    src = tmp_path / "noname"
    _parquet_dataset(src, "test", {"image": [{"bytes": jpeg.getvalue(), "path": None},
                                             {"bytes": png_bytes(rgba), "path": None}]})

    folder = hub.materialise_hub_dataset(str(src))
    assert sorted(p.name for p in folder.glob("*.png")) == ["0000.png", "0001.png"]
    assert (folder / "0000.png").read_bytes()[:8] == hub.PNG_SIGNATURE
    assert (folder / "0001.png").read_bytes() == png_bytes(rgba)                 # PNG kept byte for byte
    decoded_jpeg = np.asarray(PILImage.open(io.BytesIO(jpeg.getvalue())).convert("RGB"))
    imgs = list(open_dataset(f"folder:{folder}").images())
    assert np.array_equal(imgs[0].pixels, decoded_jpeg)
    assert np.array_equal(imgs[1].pixels, rgba[..., :3]) and "alpha dropped" in imgs[1].notes[0]


def test_hub_loader_splits(tmp_path):
    _datasets()
    src = tmp_path / "two-splits"
    _parquet_dataset(src, "train", {"image": [PILImage.fromarray(noise_image(4, 4, 1))], "id": ["t0"]})
    _parquet_dataset(src, "test", {"image": [PILImage.fromarray(noise_image(4, 4, 2))], "id": ["e0"]})
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


def test_friendly_name_materialises_into_data_via_override(dataset_dirs, tmp_path, monkeypatch):
    _datasets()
    src = tmp_path / "c20"
    arr = noise_image(6, 6, 11)
    _parquet_dataset(src, "test", {"image": [PILImage.fromarray(arr)], "id": ["img-1"]})
    monkeypatch.setenv("BENCH_HUB_REPO_CLIC2020_TEST", f"{src}:test")
    ds = open_dataset("clic2020-test")
    assert ds.name == "clic2020-test" and ds.files == [dataset_dirs["local"] / "clic2020-test" / "img-1.png"]
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
def test_offline_hub_name_fails_fast_with_instructions(dataset_dirs):
    t = time.monotonic()
    with pytest.raises(DatasetError) as e:
        open_dataset("clic2021-valid")
    assert time.monotonic() - t < 5
    msg = str(e.value)
    assert CLIC_VALID_REPO in msg and "could not be reached" in msg
    assert "HF_HUB_OFFLINE=0" in msg and "folder:PATH" in msg
    assert str(dataset_dirs["shared"] / "clic2021-valid") in msg            # where it looked first
    local = dataset_dirs["local"] / "clic2021-valid"
    assert not local.exists() or not any(local.iterdir())


@pytest.mark.timeout(30)
def test_offline_hf_repo_fails_fast():
    t = time.monotonic()
    with pytest.raises(DatasetError, match=r"could not be reached.*'someone/clic-2020'.*HF_HUB_OFFLINE=0"):
        open_dataset("hf:someone/clic-2020:test")
    assert time.monotonic() - t < 5


def test_unconfirmed_name_says_no_repo_is_pinned(dataset_dirs):
    with pytest.raises(DatasetError, match=r"no Hugging Face repo id is pinned for clic2021-test.*folder:PATH"):
        open_dataset("clic2021-test")


def test_clic_name_found_on_the_search_path_needs_no_hub(dataset_dirs, monkeypatch):
    folder = dataset_dirs["bench"] / "clic2021-test"
    folder.mkdir()
    (folder / "x.png").write_bytes(png_bytes(noise_image()))
    monkeypatch.setenv("BENCH_DATA", str(dataset_dirs["bench"]))
    assert [i.id for i in open_dataset("clic2021-test").images()] == ["x"]


@pytest.mark.timeout(30)
def test_unreachable_hub_connection_refused_fails_fast(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{free_port()}")
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
