"""Training images in memory and random crops from them (never Kodak or CLIC)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image as PILImage

from bench.data import locate_dataset_dir
from bench.train.recipe import DataSpec

EVALUATION_SETS = ("kodak", "clic")


def training_dir(spec: DataSpec) -> Path:
    """``TRAIN_DATA`` if set, else the recipe's dataset found like any other dataset."""
    path = Path(os.environ["TRAIN_DATA"]) if os.environ.get("TRAIN_DATA") else locate_dataset_dir(spec.train)
    if any(tag in path.name.lower() for tag in EVALUATION_SETS):
        raise ValueError(f"refusing to train on {path}: Kodak and CLIC are evaluation sets")
    return path


def load_training_images(spec: DataSpec) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """All images of the training folder as uint8 C×H×W tensors; the last ``val_images`` by
    name are held out for validation. Images smaller than a crop are skipped."""
    files = sorted(p for p in training_dir(spec).iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg"})
    imgs = []
    for f in files:
        with PILImage.open(f) as im:
            arr = np.asarray(im.convert("RGB"))
        if min(arr.shape[:2]) >= spec.crop:
            imgs.append(torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous())
    if len(imgs) <= spec.val_images:
        raise ValueError(f"{training_dir(spec)}: only {len(imgs)} usable images for {spec.val_images} held out")
    return imgs[: len(imgs) - spec.val_images], imgs[len(imgs) - spec.val_images :]


class CropSampler:
    """Random crops with random horizontal flips, as float batches in [0, 1]."""

    def __init__(self, images: list[torch.Tensor], crop: int, batch: int, seed: int) -> None:
        self.images, self.crop, self.size = images, crop, batch
        self.rng = np.random.default_rng(seed)

    def batch(self) -> torch.Tensor:
        out = torch.empty(self.size, 3, self.crop, self.crop)
        for i in range(self.size):
            img = self.images[self.rng.integers(len(self.images))]
            _, h, w = img.shape
            top, left = self.rng.integers(h - self.crop + 1), self.rng.integers(w - self.crop + 1)
            c = img[:, top : top + self.crop, left : left + self.crop]
            if self.rng.random() < 0.5:
                c = c.flip(-1)
            out[i] = c.float() / 255
        return out
