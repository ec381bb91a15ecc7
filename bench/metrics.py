"""Quality metrics on 8-bit RGB images, per image and as CLIC set aggregates.

Per image: sum of squared errors over all RGB values (so sets can pool it), PSNR and
MS-SSIM (pytorch-msssim, data_range 255, 11-px window, 5 scales).

Small images: MS-SSIM's 5 scales need a shorter side of at least 161 px. Below that the
harness uses as many scales as fit (weights of the first scales renormalised; recorded in
``msssim_scales``); below 11 px no window fits and MS-SSIM is NaN (``msssim_scales`` = 0).
Set aggregates skip NaN images in the MS-SSIM mean and say how many were skipped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import numpy as np

MSSSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
WIN = 11


def msssim_scales(height: int, width: int) -> int:
    """How many MS-SSIM scales fit an image (5 for ≥161 px; 0 when not even one window fits)."""
    side = min(height, width)
    if side < WIN:
        return 0
    return max(s for s in range(1, 6) if side > (WIN - 1) * 2 ** (s - 1))


def _to_tensor(img: np.ndarray):
    import torch

    return torch.from_numpy(np.array(img, dtype=np.float32)).permute(2, 0, 1).unsqueeze(0)


def msssim(a: np.ndarray, b: np.ndarray) -> tuple[float, int]:
    """MS-SSIM of two uint8 H×W×3 images and the number of scales used (see module doc)."""
    scales = msssim_scales(a.shape[0], a.shape[1])
    if scales == 0:
        return math.nan, 0
    import torch  # imported here: a fully cached run computes no metric and skips torch's start-up
    from pytorch_msssim import ms_ssim, ssim

    x, y = _to_tensor(a), _to_tensor(b)
    with torch.no_grad():
        if scales == 5:
            val = ms_ssim(x, y, data_range=255, win_size=WIN)
        elif scales == 1:
            val = ssim(x, y, data_range=255, win_size=WIN)
        else:
            val = _msssim_fewer_scales(x, y, scales)
    return float(val), scales


def _msssim_fewer_scales(x, y, scales: int):
    """MS-SSIM over the first ``scales`` scales with renormalised weights (pytorch-msssim's
    ms_ssim insists on room for 5 scales, so the product is built from its ssim pieces)."""
    import torch
    from pytorch_msssim.ssim import _fspecial_gauss_1d, _ssim

    w = torch.tensor(MSSSIM_WEIGHTS[:scales], dtype=x.dtype)
    w = w / w.sum()
    win = _fspecial_gauss_1d(WIN, 1.5).repeat([x.shape[1], 1, 1, 1]).to(x.dtype)
    mcs = []
    for i in range(scales):
        ssim_per_channel, cs = _ssim(x, y, data_range=255, win=win, size_average=False, K=(0.01, 0.03))
        if i < scales - 1:
            mcs.append(torch.relu(cs))
            pad = [s % 2 for s in x.shape[2:]]
            x = torch.nn.functional.avg_pool2d(x, kernel_size=2, padding=pad)
            y = torch.nn.functional.avg_pool2d(y, kernel_size=2, padding=pad)
    ssim_per_channel = torch.relu(ssim_per_channel)
    stack = torch.stack(mcs + [ssim_per_channel], dim=0)
    return torch.prod(stack ** w.view(-1, 1, 1), dim=0).mean()


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
    """Per-image metrics; both images must be uint8 H×W×3 of the same shape."""
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
