"""Shared fixtures: tiny real images and a throw-away submissions folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from bench.paths import SHARED_DATA_DIR

KODAK = SHARED_DATA_DIR / "kodak"


def kodak_crop(name: str = "kodim23.png", box=(200, 100, 328, 196)) -> np.ndarray:
    """A real photographic crop (128×96 by default) from the Kodak mirror."""
    with PILImage.open(KODAK / name) as im:
        return np.asarray(im.convert("RGB").crop(box)).copy()


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """Three small real Kodak crops as PNGs in a folder (a ``folder:`` dataset)."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, name in enumerate(["kodim01.png", "kodim07.png", "kodim23.png"]):
        PILImage.fromarray(kodak_crop(name, (64 * i, 32, 64 * i + 192, 32 + 176))).save(folder / f"img{i}.png")
    return folder
