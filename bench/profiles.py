"""Benchmark profiles for the regression gate (``make regress``, :mod:`bench.regress`).

A profile fixes everything a gate run depends on besides the submission itself: which images
(and how they are cropped), which targets, rate-control mode and objective. The gate re-runs
every submission on its profile and compares with ``reports/baselines/<profile>/<submission>.json``.

``fast`` (the CI profile)
    Images: 4 fixed Kodak images (``kodim01`` mill texture, ``kodim05`` motorbikes detail,
    ``kodim15`` face, ``kodim23`` parrots colour), read from the ``kodak`` dataset (so SHA-256
    checked against ``bench/checksums/kodak.sha256``) and centre-cropped to 384×384; written as
    PNGs to ``reports/.tmp/regress/fast/images/kodak-fast/`` and run as a ``folder:`` dataset.
    Targets: the CLIC targets 0.075 / 0.15 / 0.3 bpp, ``mode=clic``, ``objective=msssim``, 1 job.
    Operating points: each submission's own (its first sweep, e.g. 10–12 knob values for the
    classical codecs, plus rate control's refinement near the targets). No override is needed:
    the five shipped submissions take ≈50 s together on the 2-core CI machine. The RD curve the
    gate compares is the run's ``rd.csv`` (the first sweep on the 4 crops); the target results
    are its ``rows.csv``.
    On crops this small every classical codec is ``infeasible`` at 0.075 bpp (its lowest point
    costs more); that is expected, is stored in the baseline and compared like any other status.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from bench.atomic import atomic_write
from bench.registry import Registry


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    source: str                       # a named dataset (bench.data.open_dataset)
    images: tuple[str, ...]           # file stems in that dataset, in order
    crop: int | None                  # centre crop to crop×crop pixels; None keeps the image whole
    targets: tuple[float, ...] = (0.075, 0.15, 0.3)
    mode: str = "clic"
    objective: str = "msssim"
    jobs: int = 1
    folder_name: str = field(default="", compare=False)   # the folder: dataset's name (its report folder)

    @property
    def dataset_name(self) -> str:
        return self.folder_name or f"{self.source}-{self.name}"

    def as_dict(self) -> dict:
        d = asdict(self)
        d["images"], d["targets"] = list(self.images), list(self.targets)
        d["folder_name"] = self.dataset_name
        return d


PROFILES: Registry[Profile] = Registry("profile")
PROFILES.add("fast", Profile(
    "fast", "CI gate: 4 Kodak images centre-cropped to 384×384, CLIC targets, clic mode, MS-SSIM objective",
    source="kodak", images=("kodim01", "kodim05", "kodim15", "kodim23"), crop=384))


def pixel_sha256(pixels: np.ndarray) -> str:
    """Hash of the decoded pixels and their shape (independent of how the PNG was compressed)."""
    h = hashlib.sha256(repr(pixels.shape).encode())
    h.update(np.ascontiguousarray(pixels, dtype=np.uint8).tobytes())
    return h.hexdigest()


def centre_crop(pixels: np.ndarray, size: int | None) -> np.ndarray:
    if size is None:
        return pixels
    h, w = pixels.shape[:2]
    if h < size or w < size:
        raise ValueError(f"image {w}×{h} is smaller than the profile crop {size}×{size}")
    y, x = (h - size) // 2, (w - size) // 2
    return np.ascontiguousarray(pixels[y:y + size, x:x + size])


def materialise(profile: Profile, work_dir: Path) -> tuple[Path, dict[str, dict]]:
    """Write the profile's images as PNGs into ``work_dir/images/<dataset name>/`` (only those
    whose pixels differ from what is there) and return the folder and, per image id, its
    pixel hash and size. Files in the folder that are not in the profile are removed."""
    from bench.data import load_image, open_dataset

    ds = open_dataset(profile.source)
    by_stem = {p.stem: p for p in ds.files}
    missing = [s for s in profile.images if s not in by_stem]
    if missing:
        raise ValueError(f"profile {profile.name}: {missing} not in dataset {profile.source}")
    folder = Path(work_dir) / "images" / profile.dataset_name
    folder.mkdir(parents=True, exist_ok=True)
    info: dict[str, dict] = {}
    for stem in profile.images:
        pixels = centre_crop(ds.load(by_stem[stem]).pixels, profile.crop)
        digest = pixel_sha256(pixels)
        out = folder / f"{stem}.png"
        if not (out.exists() and pixel_sha256(load_image(out).pixels) == digest):
            atomic_write(out, partial(PILImage.fromarray(pixels, "RGB").save, format="PNG"))
        info[stem] = {"pixels_sha256": digest, "height": int(pixels.shape[0]), "width": int(pixels.shape[1])}
    for p in folder.iterdir():
        if p.is_file() and p.stem not in info:
            p.unlink()
    return folder, info
