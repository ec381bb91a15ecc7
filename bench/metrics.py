"""Quality metrics on 8-bit RGB images, per image and as CLIC set aggregates.

Per image: sum of squared errors over all RGB values (so sets can pool it), PSNR and
MS-SSIM (pytorch-msssim's ``ms_ssim``: data_range 255, 11-px Gaussian window σ = 1.5, 5
scales, K = (0.01, 0.03)).

Small images: MS-SSIM's 5 scales need a shorter side of at least 161 px. Below that the
harness uses as many scales as fit (weights of the first scales renormalised; recorded in
``msssim_scales``); below 11 px no window fits and MS-SSIM is NaN (``msssim_scales`` = 0).
Set aggregates skip NaN images in the MS-SSIM mean and say how many were skipped.

MS-SSIM is computed here, not by calling pytorch-msssim, with its float32 operations in its
order, so the values are its values (bit-identical with one thread on every pair measured but
one, off by one float32 ulp; the test suite compares them). Every point of an image is
compared with the same original, so the original's side (its pyramid and, per scale, its
filtered mean and variance maps: two of the five filtered maps) is made once per image and
process and kept in a small cache keyed by a hash of its pixels (:data:`REFERENCE_CACHE_BYTES`).
The Gaussian filter is pytorch-msssim's separable 11-tap correlation (two depthwise
convolutions: vertical, then horizontal) as 11 fused multiply-adds of shifted views per
direction, the sequence torch's convolution kernel computes per output pixel, run strip by
strip of rows so that each strip's passes stay in the CPU's caches, with one torch thread.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

MSSSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
WIN = 11


def msssim_scales(height: int, width: int) -> int:
    """How many MS-SSIM scales fit an image (5 for ≥161 px; 0 when not even one window fits)."""
    side = min(height, width)
    if side < WIN:
        return 0
    return max(s for s in range(1, 6) if side > (WIN - 1) * 2 ** (s - 1))


#: The originals' MS-SSIM sides kept per process (a 3.1 MP photo's takes 186 MiB, a Kodak image's 23 MiB);
#: the least recently used are dropped beyond this.
REFERENCE_CACHE_BYTES = 512 * 2**20
_C1, _C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2      # pytorch-msssim's (K1·data_range)², (K2·data_range)²
STRIP_ROWS = 32           # output rows per strip (a 2048-px-wide strip's maps: 0.8 MB each)


def _to_tensor(img: np.ndarray):
    """uint8 H×W×3 → 1×3×H×W float32, contiguous (row strips of a channel are then contiguous)."""
    import torch

    a = np.ascontiguousarray(img)
    a = a if a.flags.writeable else a.copy()          # torch wraps only writable arrays without a warning
    return torch.from_numpy(a).permute(2, 0, 1)[None].to(torch.float32, memory_format=torch.contiguous_format)


@lru_cache(maxsize=1)
def _taps() -> tuple[float, ...]:
    """pytorch-msssim's 11-tap Gaussian (σ = 1.5), float32 values."""
    from pytorch_msssim.ssim import _fspecial_gauss_1d

    return tuple(_fspecial_gauss_1d(WIN, 1.5).flatten().tolist())


def _empty_like_rows(x, rows: int, cols: int):
    """An uninitialised contiguous 1×C×rows×cols float32 tensor."""
    import torch

    return torch.empty(1, x.shape[1], rows, cols)


def _blur_into(x, tmp, out) -> None:
    """pytorch-msssim's ``gaussian_filter`` (valid correlation, vertical then horizontal) of a
    1×C×(R+10)×W float32 strip into ``out`` (1×C×R×(W−10); ``tmp``: 1×C×R×W), as shifted fused
    multiply-adds: tap 0 times the first view, then ``add_(view_k, alpha=g_k)`` for k = 1..10,
    the per-pixel sequence torch's depthwise convolution computes."""
    import torch

    g = _taps()
    r, ow = out.shape[-2], out.shape[-1]
    torch.mul(x[..., 0:r, :], g[0], out=tmp)
    for k in range(1, WIN):
        tmp.add_(x[..., k:k + r, :], alpha=g[k])
    torch.mul(tmp[..., 0:ow], g[0], out=out)
    for k in range(1, WIN):
        out.add_(tmp[..., k:k + ow], alpha=g[k])


def _strips(out_rows: int):
    """(first, last) output rows of each strip: a strip's inputs stay in the CPU's caches while
    all its passes run (whole maps would stream each pass through memory)."""
    return [(r, min(r + STRIP_ROWS, out_rows)) for r in range(0, out_rows, STRIP_ROWS)]


def _blur(x):
    """:func:`_blur_into` over a whole 1×C×H×W map, strip by strip."""
    oh, ow = x.shape[-2] - WIN + 1, x.shape[-1] - WIN + 1
    out, tmp = _empty_like_rows(x, oh, ow), _empty_like_rows(x, STRIP_ROWS, x.shape[-1])
    for r0, r1 in _strips(oh):
        _blur_into(x[..., r0:r1 + WIN - 1, :], tmp[..., :r1 - r0, :], out[..., r0:r1, :])
    return out


@dataclass(frozen=True)
class _Level:
    """The original at one scale and its filtered statistics: mean μ1, μ1² and variance σ1²."""

    x: object
    mu: object
    mu_sq: object
    sigma_sq: object

    @classmethod
    def of(cls, x) -> _Level:
        mu = _blur(x)
        mu_sq = mu.pow(2)
        return cls(x, mu, mu_sq, _blur(x * x).sub_(mu_sq))

    def ssim_cs(self, y):
        """(SSIM, contrast-structure) per channel of ``y`` against this level: pytorch-msssim's
        ``_ssim`` (the same float32 operations on every pixel) with the original's maps made
        already, strip by strip into whole maps, whose means are then taken as it takes them."""
        import torch

        oh, ow = self.mu.shape[-2:]
        cs_map, ssim_map = _empty_like_rows(y, oh, ow), _empty_like_rows(y, oh, ow)
        rows_in = STRIP_ROWS + WIN - 1
        yy, xy, tmp = (_empty_like_rows(y, rows_in, y.shape[-1]) for _ in range(3))
        mu2, s22, s12, a, b = (_empty_like_rows(y, STRIP_ROWS, ow) for _ in range(5))
        for r0, r1 in _strips(oh):
            n, rows = r1 - r0, slice(r0, r1)
            ys, xs = y[..., r0:r1 + WIN - 1, :], self.x[..., r0:r1 + WIN - 1, :]
            yy_, xy_, tmp_ = yy[..., :n + WIN - 1, :], xy[..., :n + WIN - 1, :], tmp[..., :n, :]
            mu2_, s22_, s12_, a_, b_ = (t[..., :n, :] for t in (mu2, s22, s12, a, b))
            torch.mul(ys, ys, out=yy_)
            torch.mul(xs, ys, out=xy_)
            _blur_into(ys, tmp_, mu2_)
            _blur_into(yy_, tmp_, s22_)
            _blur_into(xy_, tmp_, s12_)
            mu1, mu1_sq, sigma1_sq = self.mu[..., rows, :], self.mu_sq[..., rows, :], self.sigma_sq[..., rows, :]
            torch.mul(mu1, mu2_, out=a_)                                   # μ1μ2
            s22_.sub_(mu2_.pow_(2))                                        # σ2² (mu2_ is μ2² from here)
            s12_.sub_(a_)                                                  # σ12
            torch.add(sigma1_sq, s22_, out=b_).add_(_C2)
            torch.div(s12_.mul_(2).add_(_C2), b_, out=cs_map[..., rows, :])
            torch.add(mu1_sq, mu2_, out=b_).add_(_C1)
            torch.div(a_.mul_(2).add_(_C1), b_, out=ssim_map[..., rows, :]).mul_(cs_map[..., rows, :])
        return ssim_map.flatten(2).mean(-1), cs_map.flatten(2).mean(-1)


class _Reference:
    """The original's side of MS-SSIM at ``scales`` scales (pytorch-msssim's pyramid: 2×2
    average pooling, padded by one where a side is odd)."""

    def __init__(self, original: np.ndarray, scales: int) -> None:
        import torch.nn.functional as F

        x = _to_tensor(original)
        self.levels = [_Level.of(x)]
        for _ in range(scales - 1):
            x = F.avg_pool2d(x, kernel_size=2, padding=[s % 2 for s in x.shape[2:]])
            self.levels.append(_Level.of(x))
        self.nbytes = sum(t.nbytes for lv in self.levels for t in (lv.x, lv.mu, lv.mu_sq, lv.sigma_sq))

    def msssim(self, decoded: np.ndarray) -> float:
        import torch
        import torch.nn.functional as F

        y = _to_tensor(decoded)
        mcs = []
        for i, level in enumerate(self.levels):
            ssim_per_channel, cs = level.ssim_cs(y)
            if i < len(self.levels) - 1:
                mcs.append(torch.relu(cs))
                y = F.avg_pool2d(y, kernel_size=2, padding=[s % 2 for s in y.shape[2:]])
        if len(self.levels) == 1:                  # pytorch-msssim's ssim
            return float(ssim_per_channel.mean())
        w = torch.tensor(MSSSIM_WEIGHTS[:len(self.levels)], dtype=torch.float32)
        if len(self.levels) < 5:
            w = w / w.sum()
        stack = torch.stack(mcs + [torch.relu(ssim_per_channel)], dim=0)
        return float(torch.prod(stack ** w.view(-1, 1, 1), dim=0).mean())


_REFERENCES: OrderedDict[tuple, _Reference] = OrderedDict()


def _reference(original: np.ndarray, scales: int) -> _Reference:
    """The original's MS-SSIM side, from the cache when this process has made it already (keyed
    by a hash of the pixels and the shape, so a changed image is a new entry)."""
    a = np.ascontiguousarray(original)
    key = (a.shape, scales, hashlib.sha256(a.data).hexdigest())
    ref = _REFERENCES.pop(key, None) or _Reference(a, scales)
    _REFERENCES[key] = ref
    while len(_REFERENCES) > 1 and sum(r.nbytes for r in _REFERENCES.values()) > REFERENCE_CACHE_BYTES:
        _REFERENCES.popitem(last=False)
    return ref


def msssim(a: np.ndarray, b: np.ndarray) -> tuple[float, int]:
    """MS-SSIM of two uint8 H×W×3 images (``a`` the original) and the number of scales used
    (see module doc)."""
    scales = msssim_scales(a.shape[0], a.shape[1])
    if scales == 0:
        return math.nan, 0
    import torch  # imported here: a fully cached run computes no metric and skips torch's start-up

    threads = torch.get_num_threads()
    torch.set_num_threads(1)     # thousands of small strip operations: with more, each pays a thread-pool sync
    try:
        with torch.no_grad():
            return _reference(a, scales).msssim(b), scales
    finally:
        torch.set_num_threads(threads)


def sse(a: np.ndarray, b: np.ndarray) -> float:
    """Sum of squared errors over all values (8-bit scale)."""
    d = a.astype(np.int64) - b.astype(np.int64)
    return float((d * d).sum())


def psnr_from_mse(mse: float) -> float:
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def msssim_db(value: float) -> float:
    """MS-SSIM in dB: −10·log10(1 − MS-SSIM)."""
    if math.isnan(value):
        return math.nan
    return math.inf if value >= 1 else -10 * math.log10(1 - value)


def image_metrics(original: np.ndarray, decoded: np.ndarray) -> dict[str, float]:
    """Per-image metrics; both images must be uint8 H×W×3 of the same shape. The original's
    MS-SSIM side is made on its first call and reused for its other points (see module doc)."""
    if original.shape != decoded.shape:
        raise ValueError(f"decoded image is {decoded.shape}, the original {original.shape}")
    if decoded.dtype != np.uint8:
        raise ValueError(f"decoded image must be uint8 (rounded and clamped), got {decoded.dtype}")
    e = sse(original, decoded)
    ms, scales = msssim(original, decoded)
    return {"sse": e, "mse": e / original.size, "psnr": psnr_from_mse(e / original.size),
            "msssim": ms, "msssim_db": msssim_db(ms), "msssim_scales": scales}


@dataclass(frozen=True)
class SetScores:
    """CLIC aggregates of a set plus per-image means."""

    images: int
    bytes: int
    pixels: int
    bpp: float
    psnr: float          # from one MSE pooled over every RGB value of the set
    msssim: float        # pixel-count-weighted mean over images with a defined MS-SSIM
    msssim_db: float
    psnr_mean: float     # plain mean of per-image PSNR
    msssim_mean: float   # plain mean of per-image MS-SSIM
    msssim_skipped: int  # images too small for MS-SSIM


def aggregate(records: Iterable[dict]) -> SetScores:
    """CLIC set scores from per-image records (keys: bytes, height, width, sse, psnr, msssim)."""
    recs = list(records)
    if not recs:
        raise ValueError("no records to aggregate")
    pixels = sum(r["height"] * r["width"] for r in recs)
    total_bytes = sum(int(r["bytes"]) for r in recs)
    pooled_mse = sum(r["sse"] for r in recs) / (3 * pixels)
    ms = [(r["msssim"], r["height"] * r["width"]) for r in recs if not math.isnan(r["msssim"])]
    ms_w = sum(v * w for v, w in ms) / sum(w for _, w in ms) if ms else math.nan
    finite_psnr = [min(r["psnr"], 100.0) for r in recs]
    return SetScores(
        images=len(recs), bytes=total_bytes, pixels=pixels, bpp=total_bytes * 8 / pixels,
        psnr=psnr_from_mse(pooled_mse), msssim=ms_w, msssim_db=msssim_db(ms_w),
        psnr_mean=float(np.mean(finite_psnr)),
        msssim_mean=float(np.mean([v for v, _ in ms])) if ms else math.nan,
        msssim_skipped=len(recs) - len(ms),
    )
