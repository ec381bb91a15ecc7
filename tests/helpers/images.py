"""Pixels for tests: real crops of the Kodak images in the shared data mirror, and small
synthetic images as PNG bytes."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from bench.data import search_path

#: The Kodak images as the harness finds them ($BENCH_DATA, data/, then the shared mirror).
KODAK = next((p for p in search_path("kodak") if (p / "kodim01.png").is_file()), search_path("kodak")[-1])
KODAK_MISSING = (f"needs the Kodak images (looked in {', '.join(str(p) for p in search_path('kodak'))}): "
                 "set BENCH_DATA to a folder holding kodak/, or run `python -m bench run -s null --limit 1` "
                 "once on a machine with the network to fetch them into data/kodak")


def kodak_crop(name: str = "kodim23.png", box=(200, 100, 328, 196)) -> np.ndarray:
    """A real photographic crop (128×96 by default) from the Kodak mirror."""
    with PILImage.open(KODAK / name) as im:
        return np.asarray(im.convert("RGB").crop(box)).copy()


def crop_folder(folder: Path) -> Path:
    """Three 192×176 Kodak crops (kodim01, 07, 23) as ``img0.png``..``img2.png`` in ``folder``
    (created): a small ``folder:`` dataset of real photos."""
    folder.mkdir(parents=True)
    for i, name in enumerate(["kodim01.png", "kodim07.png", "kodim23.png"]):
        PILImage.fromarray(kodak_crop(name, (64 * i, 32, 64 * i + 192, 32 + 176))).save(folder / f"img{i}.png")
    return folder


def noise_image(h: int = 12, w: int = 16, seed: int = 0) -> np.ndarray:
    """Random 8-bit RGB pixels (for tests about files and names, not about picture content)."""
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def png_bytes(arr: np.ndarray, mode: str | None = None, **save) -> bytes:
    """``arr`` as PNG file bytes, converted to Pillow ``mode`` first when given."""
    out = io.BytesIO()
    im = PILImage.fromarray(arr) if mode is None else PILImage.fromarray(arr).convert(mode)
    im.save(out, format="PNG", **save)
    return out.getvalue()
