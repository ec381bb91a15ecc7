"""What a dataset is, before any image is read: its registry entry and the errors a user can fix.

A leaf module (no image decoding, no network), so both the local loaders (``bench/data.py``)
and the Hugging Face hub loader (``bench/hub.py``) register and raise through it without
importing each other in a circle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.registry import Registry


class DatasetError(Exception):
    """A dataset that cannot be used as asked: missing, incomplete, altered or empty."""


class ImageError(DatasetError):
    """One image that cannot be used (corrupt, 16-bit, not an image); names the file."""


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    description: str
    checksums: Path | None = None                      # pinned sums: the set is exactly these files
    download: Callable[[Path], None] | None = None     # fetches the files into a folder
    source: str = ""                                   # where a person can get it


DATASETS: Registry[DatasetSpec] = Registry("dataset")
