"""Datasets: where to find them, how to check them, and how images become 8-bit RGB arrays.

Lookup order for a named dataset: an explicit folder (``open_dataset(name, explicit=PATH)``), ``$BENCH_DATA/<name>``,
``data/<name>`` in the checkout, the shared mirror ``../shared/data/<name>``, and last a
download from the public source into ``data/<name>``, checked against the pinned SHA-256 sums
in ``bench/checksums/``. Hub datasets (CLIC 2020/2021) load through Hugging Face ``datasets``.
"""

from __future__ import annotations

import hashlib
import io
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from bench.atomic import atomic_write_bytes
from bench.dataspec import DATASETS, DatasetError, DatasetSpec, ImageError
from bench.hub import materialise_hub_dataset  # also registers the CLIC sets on the hub
from bench.paths import LOCAL_DATA_DIR, SHARED_DATA_DIR

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
CHECKSUMS_DIR = Path(__file__).parent / "checksums"


@dataclass(frozen=True)
class Image:
    """One evaluation image: 8-bit RGB pixels plus what identifies them."""

    id: str
    sha256: str          # of the source file's bytes
    pixels: np.ndarray   # uint8, H×W×3
    notes: tuple[str, ...] = ()   # conversions applied, for the run log

    @property
    def height(self) -> int:
        return self.pixels.shape[0]

    @property
    def width(self) -> int:
        return self.pixels.shape[1]

    @property
    def num_pixels(self) -> int:
        return self.height * self.width


def _png_bit_depth(data: bytes) -> int | None:
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 25 and data[12:16] == b"IHDR":
        return data[24]
    return None


def decode_image(data: bytes, name: str, allow_16bit: bool = False) -> tuple[np.ndarray, tuple[str, ...]]:
    """Bytes of a PNG/JPEG → uint8 H×W×3 and the conversions applied.

    Greyscale, palette and alpha images become RGB (alpha dropped) and say so. 16-bit PNGs
    are refused unless ``allow_16bit``, which keeps the 8 most significant bits.
    """
    depth = _png_bit_depth(data)
    if depth == 16 and not allow_16bit:
        raise ImageError(f"{name}: 16-bit PNG; the benchmark measures 8-bit images. "
                         "Convert it explicitly (e.g. --allow-16bit keeps the high 8 bits) or remove it.")
    try:
        with PILImage.open(io.BytesIO(data)) as im:
            im.load()
            mode = im.mode
            transparency = "transparency" in im.info   # palette/grey/RGB with a transparent colour
            if depth == 16:
                arr = np.asarray(im)
                arr = (arr.astype(np.uint32) >> 8).astype(np.uint8) if arr.dtype != np.uint8 else arr
                im = PILImage.fromarray(arr if arr.ndim == 3 else arr, mode="RGB" if arr.ndim == 3 else "L")
            rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (OSError, SyntaxError, ValueError, PILImage.DecompressionBombError) as e:
        raise ImageError(f"{name}: not a readable image ({e})") from None
    notes = []
    if depth == 16:
        notes.append("16-bit PNG reduced to 8 bits (--allow-16bit)")
    if mode not in ("RGB", "I;16", "I;16B", "I"):
        notes.append(f"converted {mode} to RGB" + (" (alpha dropped)" if "A" in mode or transparency else ""))
    if rgb.ndim != 3 or rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ImageError(f"{name}: empty image")
    return np.ascontiguousarray(rgb), tuple(notes)


def load_image(path: Path, allow_16bit: bool = False) -> Image:
    data = Path(path).read_bytes()
    pixels, notes = decode_image(data, str(path), allow_16bit)
    return Image(id=Path(path).stem, sha256=hashlib.sha256(data).hexdigest(), pixels=pixels, notes=notes)


def read_checksums(path: Path) -> dict[str, str]:
    """``sha256sum`` format: '<hex>  <file name>' per line → {file name: hex}."""
    out = {}
    for line in path.read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            out[name.lstrip("*").strip()] = digest.lower()
    return out


def _download_files(urls: dict[str, str], dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for name, url in urls.items():
        target = dest / name
        if target.exists():
            continue
        try:
            with urllib.request.urlopen(url, timeout=30) as r:
                data = r.read()
        except (urllib.error.URLError, OSError) as e:
            raise DatasetError(f"cannot download {url}: {e}. This machine may be offline; "
                               f"put the files in {dest} or set BENCH_DATA") from None
        atomic_write_bytes(target, data)


KODAK_URL = "https://r0k.us/graphics/kodak/kodak/{name}"

DATASETS.add("kodak", DatasetSpec(
    "kodak", "Kodak Lossless True Color Image Suite: 24 PNG, 768×512 (the evaluation set)",
    checksums=CHECKSUMS_DIR / "kodak.sha256",
    download=lambda dest: _download_files(
        {n: KODAK_URL.format(name=n) for n in read_checksums(CHECKSUMS_DIR / "kodak.sha256")}, dest),
    source="https://r0k.us/graphics/kodak/",
))
DATASETS.add("clic2025-valid", DatasetSpec(
    "clic2025-valid", "CLIC 2025 image validation set: the mirror's 26 PNG, up to 2048 px",
    checksums=CHECKSUMS_DIR / "clic2025-valid.sha256",
    source="https://clic2025.compression.cc/ (validation images; place the PNGs in data/clic2025-valid)",
))
DATASETS.add("cid22-train", DatasetSpec(
    "cid22-train", "CID22-512 training split (training only, never evaluation): 209 PNG",
    checksums=CHECKSUMS_DIR / "cid22-train.sha256",
    source="https://github.com/Cloudinary/CID22 (512 px training split; place the PNGs in data/cid22-train)",
))


def search_path(name: str) -> list[Path]:
    """The folders tried for dataset ``name``, in order."""
    paths = []
    if os.environ.get("BENCH_DATA"):
        paths.append(Path(os.environ["BENCH_DATA"]) / name)
    paths += [LOCAL_DATA_DIR / name, SHARED_DATA_DIR / name]
    return paths


def locate_dataset_dir(name: str, explicit: Path | None = None) -> Path:
    """The folder holding dataset ``name``; downloads it when it is nowhere on the search path."""
    if name.startswith("folder:"):
        explicit = Path(name.split(":", 1)[1])
    if explicit is not None:
        if not Path(explicit).is_dir():
            raise DatasetError(f"dataset folder {explicit} does not exist")
        return Path(explicit)
    spec = DATASETS.get(name)
    tried = search_path(name)
    for p in tried:
        if p.is_dir() and any(p.iterdir()):
            return p
    if spec.download is None:
        raise DatasetError(f"dataset {name!r} not found; looked in: {', '.join(map(str, tried))}. "
                           f"Get it from {spec.source} or set BENCH_DATA to a folder holding {name}/")
    dest = LOCAL_DATA_DIR / name
    try:
        spec.download(dest)
    except DatasetError as e:
        raise DatasetError(f"dataset {name!r} not found (looked in: {', '.join(map(str, tried))}) "
                           f"and the download failed: {e}") from None
    return dest


@dataclass
class Dataset:
    """A named list of image files, checked against pinned sums where the dataset has them."""

    name: str
    files: list[Path]
    expected: dict[str, str] = field(default_factory=dict)
    allow_16bit: bool = False

    def __len__(self) -> int:
        return len(self.files)

    def load(self, path: Path) -> Image:
        img = load_image(path, self.allow_16bit)
        want = self.expected.get(path.name)
        if want and want != img.sha256:
            raise DatasetError(f"{path}: SHA-256 {img.sha256[:16]}… does not match the pinned "
                               f"{want[:16]}…; the file is altered or corrupt: delete it to re-fetch")
        return img

    def images(self, errors: list[str] | None = None) -> Iterator[Image]:
        """Yield the images; with ``errors`` a bad image is recorded there (by name) and skipped
        instead of stopping the run. Checksum mismatches always stop: the set is not what it claims."""
        for f in self.files:
            try:
                yield self.load(f)
            except ImageError as e:
                if errors is None:
                    raise
                errors.append(str(e))


def open_dataset(name: str, explicit: Path | None = None, limit: int | None = None,
                 allow_16bit: bool = False) -> Dataset:
    """A dataset by registry name, ``folder:PATH`` or ``hf:REPO[:SPLIT]``."""
    if name.startswith("hf:"):
        folder = materialise_hub_dataset(name[3:])
        return open_dataset(f"folder:{folder}", limit=limit, allow_16bit=allow_16bit)
    folder = locate_dataset_dir(name, explicit)
    expected: dict[str, str] = {}
    if not name.startswith("folder:") and name in DATASETS and DATASETS.get(name).checksums:
        expected = read_checksums(DATASETS.get(name).checksums)
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if expected:
        missing = sorted(set(expected) - {p.name for p in files})
        if missing:
            raise DatasetError(f"{folder}: {len(missing)} of the {len(expected)} pinned images are missing "
                               f"({', '.join(missing[:3])}…); restore them or delete the folder to re-fetch")
        files = [p for p in files if p.name in expected]
    if not files:
        raise DatasetError(f"{folder}: no PNG or JPEG images in this folder")
    display = name if not name.startswith("folder:") else folder.name
    return Dataset(display, files[:limit] if limit else files, expected, allow_16bit)

