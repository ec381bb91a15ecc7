"""The codec contract: a codec only turns 8-bit RGB images into bytes and bytes back.

Rate, metrics, files, timing and rate control belong to the harness; a codec knows nothing
of them. Operating points are either a discrete list of labels or a continuous knob
(a float range with a direction), described by :class:`OperatingPoints`.
"""

from __future__ import annotations

import math

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np


class BitstreamError(ValueError):
    """A bitstream that cannot be decoded: truncated, corrupted, wrong format or version.

    Every codec raises this (and only this) for bad input bytes, so a caller can tell a bad
    file from a harness bug.
    """


@dataclass(frozen=True)
class OperatingPoints:
    """What a codec can be asked for.

    ``kind="discrete"``: ``points`` lists the labels, ordered from lowest to highest rate.
    ``kind="continuous"``: a knob in ``[low, high]``; ``rate_increases`` says whether a larger
    value gives more bits (quality ↑) or fewer (e.g. JPEG XL's distance); ``integer`` knobs are
    rounded; ``grid`` is how many evenly spaced values the first sweep encodes, and ``log``
    spaces them (and the bisection's midpoints) evenly in log(value), for knobs such as λ
    whose rate moves with their logarithm.
    """

    kind: str
    points: tuple[Any, ...] = ()
    low: float = 0.0
    high: float = 0.0
    rate_increases: bool = True
    integer: bool = False
    grid: int = 8
    log: bool = False

    def initial(self) -> list[Any]:
        """The first sweep: every discrete point, or ``grid`` values across the knob's range."""
        if self.kind == "discrete":
            return list(self.points)
        vals = (np.geomspace if self.log else np.linspace)(self.low, self.high, self.grid)
        return sorted({self.snap(v) for v in vals})

    def midpoint(self, a: Any, b: Any) -> Any | None:
        """The snapped knob value halfway between ``a`` and ``b`` (geometric mean on a log
        knob), or None when they are adjacent."""
        mid = math.sqrt(float(a) * float(b)) if self.log else (float(a) + float(b)) / 2
        m = self.snap(mid)
        return None if m in (a, b) else m

    def snap(self, value: float) -> float | int:
        """A knob value as the codec receives it (rounded for integer knobs, clipped to range)."""
        v = min(max(float(value), self.low), self.high)
        return int(round(v)) if self.integer else round(v, 6)

    def rate_order(self, value: Any) -> float:
        """A number that grows with rate, for sorting points from low to high rate."""
        if self.kind == "discrete":
            return float(self.points.index(value))
        return float(value) if self.rate_increases else -float(value)


class Codec(ABC):
    """Base class of every submission's codec (template: subclasses fill two methods).

    ``params`` are the manifest's ``[params]`` table; ``root`` is the submission folder (for
    weights). Subclasses must decode from the bytes alone: no state may pass from encode to
    decode except through the bitstream.
    """

    def __init__(self, params: dict[str, Any], root: Any = None) -> None:
        self.params = dict(params)
        self.root = root

    @abstractmethod
    def encode(self, image: np.ndarray, point: Any) -> bytes:
        """uint8 H×W×3 RGB → the complete file's bytes at operating point ``point``."""

    @abstractmethod
    def decode(self, data: bytes) -> np.ndarray:
        """The file's bytes → uint8 H×W×3 RGB; raises :class:`BitstreamError` on bad bytes."""

    def versions(self) -> dict[str, str]:
        """Library versions that change the bitstream; part of the results cache key."""
        return {}

    def measure(self, image: np.ndarray, point: Any, data: bytes) -> dict[str, float]:
        """Optional extra per-image numbers (e.g. estimated bits); harness stores them as is."""
        return {}

    def complexity(self, point: Any, height: int, width: int) -> dict[str, Any]:
        """Optional: the cost of coding one height×width image at ``point``: ``enc_macs``,
        ``dec_macs``, ``params``, ``decoder_bytes``, ``model`` (which network the point uses)
        and ``uncounted`` (ops the counter skipped). Empty when the codec cannot say."""
        return {}
