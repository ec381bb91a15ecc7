"""The codec contract: a codec only turns 8-bit RGB images into bytes and bytes back.

Rate, metrics, files, timing and rate control belong to the harness; a codec knows nothing
of them. Operating points are either a discrete list of labels or a continuous knob
(a float range with a direction), described by :class:`OperatingPoints`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
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
    spaces them (and the bisection's midpoints) evenly in log(value + ``log_offset``), for
    knobs such as λ whose rate moves with their logarithm (offset 0), or quality scales from 0
    whose low end holds the low rates (offset 1: WebP's bpp at quality 0, 10 and 90 on Kodak
    is 0.10, 0.27 and 1.9).
    """

    kind: str
    points: tuple[Any, ...] = ()
    low: float = 0.0
    high: float = 0.0
    rate_increases: bool = True
    integer: bool = False
    grid: int = 8
    log: bool = False
    log_offset: float = 0.0

    def initial(self) -> list[Any]:
        """The first sweep: every discrete point, or ``grid`` values across the knob's range."""
        if self.kind == "discrete":
            return list(self.points)
        if self.log:
            off = self.log_offset
            vals = np.geomspace(self.low + off, self.high + off, self.grid) - off
        else:
            vals = np.linspace(self.low, self.high, self.grid)
        return sorted({self.snap(v) for v in vals})

    def midpoint(self, a: Any, b: Any) -> Any | None:
        """The snapped knob value halfway between ``a`` and ``b`` (geometric mean on a log
        knob), or None when they are adjacent."""
        off = self.log_offset
        mid = math.sqrt((float(a) + off) * (float(b) + off)) - off if self.log else (float(a) + float(b)) / 2
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


@dataclass(frozen=True)
class JobMeasures:
    """What a codec can say about one coded image beyond its bytes; every field is optional.

    ``est_bits``: −log2 of the model's likelihoods for the coded symbols (the file's ideal
    size, for the rate-overhead columns). ``*_net_s`` / ``*_coder_s``: encode and decode time
    split into the network and the entropy coder (seconds; the harness times the whole
    call itself). ``*_copy_s``: the image's copies to and from a GPU, timed apart from both
    (None on the CPU). ``eff_*_macs``: MACs this image really cost (a channel-gated model skips
    channels); ``dense_*_macs``: the same network with every channel active. An encoder
    fills the ``enc`` fields and ``est_bits``, a decoder the ``dec`` ones.
    """

    est_bits: float | None = None
    enc_net_s: float | None = None
    enc_coder_s: float | None = None
    dec_net_s: float | None = None
    dec_coder_s: float | None = None
    enc_copy_s: float | None = None
    dec_copy_s: float | None = None
    eff_enc_macs: float | None = None
    eff_dec_macs: float | None = None
    dense_enc_macs: float | None = None
    dense_dec_macs: float | None = None

    def as_record(self) -> dict[str, float]:
        """The fields the codec filled, under their own names (a job record's columns)."""
        return {k: float(v) for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_record(cls, rec: Mapping[str, Any]) -> JobMeasures:
        """The measures stored in a job record (absent fields stay None)."""
        return cls(**{f.name: rec[f.name] for f in fields(cls) if rec.get(f.name) is not None})

    def merged(self, other: JobMeasures) -> JobMeasures:
        """These measures with ``other``'s filled fields on top (an encode's and its decode's)."""
        return replace(self, **{k: v for k, v in asdict(other).items() if v is not None})


@dataclass(frozen=True)
class Encoded:
    """What :meth:`Codec.encode` may return instead of bare bytes: the file and what the
    encoder measured on the way."""

    data: bytes
    measures: JobMeasures = JobMeasures()


@dataclass(frozen=True)
class Decoded:
    """What :meth:`Codec.decode` may return instead of a bare array: the uint8 H×W×3 pixels
    and what the decoder measured on the way."""

    pixels: np.ndarray
    measures: JobMeasures = JobMeasures()


def as_encoded(result: bytes | bytearray | Encoded, who: str) -> Encoded:
    """An encode's result as :class:`Encoded` (TypeError naming ``who`` for anything else)."""
    if isinstance(result, (bytes, bytearray)):
        result = Encoded(bytes(result))
    if not isinstance(result, Encoded) or not isinstance(result.data, (bytes, bytearray)) or not result.data:
        raise TypeError(f"{who}: encode must return non-empty bytes or bench.codec.Encoded, "
                        f"got {type(result).__name__}")
    if not isinstance(result.measures, JobMeasures):
        raise TypeError(f"{who}: Encoded.measures must be bench.codec.JobMeasures, "
                        f"got {type(result.measures).__name__}")
    return result if isinstance(result.data, bytes) else Encoded(bytes(result.data), result.measures)


def as_decoded(result: np.ndarray | Decoded, who: str) -> Decoded:
    """A decode's result as :class:`Decoded` with uint8 pixels (other dtypes rounded and
    clipped, as an 8-bit image would be written)."""
    if not isinstance(result, Decoded):
        result = Decoded(result)
    if not isinstance(result.measures, JobMeasures):
        raise TypeError(f"{who}: Decoded.measures must be bench.codec.JobMeasures, "
                        f"got {type(result.measures).__name__}")
    pixels = np.asarray(result.pixels)
    if pixels.dtype != np.uint8:
        pixels = np.clip(np.round(pixels.astype(np.float64)), 0, 255).astype(np.uint8)
    return Decoded(pixels, result.measures)


@dataclass(frozen=True)
class Estimate:
    """What an operating point would give, without entropy coding or a file: the estimated
    file size (bytes) and the reconstruction (uint8 H×W×3). Rate control may sweep and bracket
    with estimates; every reported number comes from real files."""

    bytes: int
    decoded: np.ndarray


@dataclass(frozen=True)
class Complexity:
    """The cost of one network on one padded image size: MACs (``uncounted`` names the ops the
    counter skipped), parameters and the bytes a decoder must hold; ``model`` says which
    network of the codec the point uses (a row sums parameters over distinct models)."""

    model: Any
    enc_macs: float
    dec_macs: float
    params: int
    decoder_bytes: int
    uncounted: tuple[str, ...] = ()


def measure_columns(costs: Sequence[Complexity | None], measures: Sequence[JobMeasures], file_bytes: Sequence[int],
                    pixels: int) -> dict[str, Any]:
    """A leaderboard row's complexity and rate-accounting columns from its images' measures.

    kMAC/pixel is summed over the images (each at its padded size) per original pixel; params
    and decoder bytes add up over the distinct models the row uses (a multi-model decoder
    must hold them all); rate overhead compares the whole files with ``est_bits``. A column
    appears only when every image has what it needs.
    """
    cols: dict[str, Any] = {}
    if costs and all(costs):
        models = {c.model: c for c in costs}
        cols |= {"enc_kmac_px": sum(c.enc_macs for c in costs) / pixels / 1000,
                 "dec_kmac_px": sum(c.dec_macs for c in costs) / pixels / 1000,
                 "params": sum(m.params for m in models.values()),
                 "decoder_bytes": sum(m.decoder_bytes for m in models.values()), "models_used": len(models),
                 "uncounted_ops": " ".join(sorted({op for c in costs for op in c.uncounted})) or "none"}
    if measures and all(m.est_bits for m in measures):
        est = sum(m.est_bits for m in measures)
        cols |= {"rate_overhead_pct": 100 * (sum(file_bytes) * 8 - est) / est,
                 "rate_overhead_max_pct": max(overhead_pct(m.est_bits, n) for m, n in zip(measures, file_bytes))}
    if measures and all(m.eff_enc_macs is not None and m.eff_dec_macs is not None for m in measures):
        cols |= {"eff_enc_kmac_px": sum(m.eff_enc_macs for m in measures) / pixels / 1000,
                 "eff_dec_kmac_px": sum(m.eff_dec_macs for m in measures) / pixels / 1000}
    for split in ("enc_net_s", "enc_coder_s", "dec_net_s", "dec_coder_s", "enc_copy_s", "dec_copy_s"):
        if measures and all(getattr(m, split) is not None for m in measures):
            cols[split] = sum(getattr(m, split) for m in measures)
    return cols


def overhead_pct(est_bits: float, file_bytes: int) -> float:
    """How much bigger the whole file is than the model's ideal size, in percent."""
    return 100.0 * (file_bytes * 8 - est_bits) / est_bits if est_bits > 0 else float("inf")


class Codec(ABC):
    """Base class of every submission's codec (template: subclasses fill two methods).

    ``params`` are the manifest's ``[params]`` table; ``root`` is the submission folder (for
    weights). The contract is stateless: ``encode`` and ``decode`` run in different processes
    (each sandboxed, :mod:`bench.sandbox`), so nothing passes from an encode to its decode
    except the file's bytes, and what a call measured travels back in its result
    (:class:`Encoded`, :class:`Decoded`). ``docs/codec-contract.md`` lists every hook.
    A subclass's ``__init__`` calls ``super().__init__(params, root)`` first.
    """

    #: Device kinds the codec's networks can run on (:mod:`bench.device`); the harness calls
    #: :meth:`place` with one of them before the first job of a run.
    devices: tuple[str, ...] = ("cpu",)

    def __init__(self, params: dict[str, Any], root: Any = None) -> None:
        self.params = dict(params)
        self.root = root
        self.device = "cpu"

    def place(self, device: str) -> None:
        """Run from now on with the networks on ``device`` (a kind in :attr:`devices`, checked
        by the harness); codecs with networks override it to move them."""
        self.device = device

    @abstractmethod
    def encode(self, image: np.ndarray, point: Any) -> bytes | Encoded:
        """uint8 H×W×3 RGB → the complete file's bytes at operating point ``point`` (or an
        :class:`Encoded`: the bytes with what the encoder measured)."""

    @abstractmethod
    def decode(self, data: bytes) -> np.ndarray | Decoded:
        """The file's bytes → uint8 H×W×3 RGB (or a :class:`Decoded`: the pixels with what the
        decoder measured); raises :class:`BitstreamError` on bad bytes."""

    def declared_size(self, data: bytes) -> tuple[int, int] | None:
        """Optional: the (height, width) the file claims, read from its header without decoding
        (BitstreamError when the header is bad), or None when the codec cannot tell. The harness
        refuses a claim above the pixel cap or unlike the original's size before ``decode``
        allocates for it (:mod:`bench.limits`)."""
        return None

    def versions(self) -> dict[str, str]:
        """Library versions that change the bitstream; part of the results cache key."""
        return {}

    def estimate(self, image: np.ndarray, point: Any) -> Estimate | None:
        """Optional: a cheap estimate of ``point`` on ``image`` (e.g. one network pass with
        rounded latents, the bytes from the likelihoods); None when the codec offers none."""
        return None

    def complexity(self, point: Any, height: int, width: int) -> Complexity | None:
        """Optional: the cost of coding one height×width image at ``point``; None when the
        codec cannot say."""
        return None
