"""How sure the leaderboard's numbers are, from the stored per_image.csv alone: 95 % bootstrap
intervals over images, paired comparisons of adjacent rows with per-image win counts, and
BD-rate intervals. Pure and seeded, so the same files give the same page.

Why over images: a set's score is an average over a few dozen photos, and another few dozen
would give another score. Resampling the images with replacement and recomputing the set
value the way the leaderboard does (pixel-weighted mean MS-SSIM; PSNR of the MSE pooled over
every pixel) shows how much a score owes to which photos are in the set. Two rows are compared
on the same resampled images (a paired bootstrap): their difference is significant when its
95 % interval leaves out zero.

What it cannot show: the operating points stay the ones chosen. Under the CLIC budget rule they
were chosen together for the whole set, so a resampled set neither meets its budget exactly nor
gets the points rate control would have chosen for it: the interval is about the images, not a
re-run of rate control (:data:`BUDGET_CAVEAT`). Rows of per-image mode have no such caveat.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

RESAMPLES = 2000
BD_RESAMPLES = 1000
LEVEL = 0.95
SEED = 33
BUDGET_CAVEAT = ("the chosen operating points are held fixed: under the CLIC budget rule they were chosen "
                 "for the whole set together, so a resampled set neither meets its budget exactly nor gets "
                 "the points rate control would choose for it; the interval is about which images are in the "
                 "set, not a re-run of rate control")
#: Set values computed here from per-image values (the leaderboard's own definitions).
METRICS = ("msssim", "msssim_db", "psnr")


@dataclass(frozen=True)
class RowImages:
    """One row's per-image values, in image-id order: what the bootstrap resamples."""

    ids: tuple[str, ...]
    pixels: np.ndarray
    bpp: np.ndarray
    msssim: np.ndarray
    mse: np.ndarray

    def take(self, ids: Iterable[str]) -> RowImages:
        pos = {i: k for k, i in enumerate(self.ids)}
        idx = np.array([pos[i] for i in ids], dtype=int)
        return RowImages(tuple(self.ids[k] for k in idx), self.pixels[idx], self.bpp[idx], self.msssim[idx],
                         self.mse[idx])


def row_images(df: pd.DataFrame) -> RowImages | None:
    """A row's per-image values from its per_image.csv lines (pixels from bytes × 8 / bpp); None
    without usable lines."""
    if df is None or df.empty or not {"image_id", "bytes", "bpp", "psnr", "msssim"} <= set(df.columns):
        return None
    df = df.dropna(subset=["bytes", "bpp"]).drop_duplicates("image_id", keep="last").sort_values("image_id")
    df = df[pd.to_numeric(df["bpp"], errors="coerce") > 0]
    if df.empty:
        return None
    bpp = pd.to_numeric(df["bpp"], errors="coerce").to_numpy(float)
    pixels = np.round(pd.to_numeric(df["bytes"], errors="coerce").to_numpy(float) * 8 / bpp)
    psnr = pd.to_numeric(df["psnr"], errors="coerce").to_numpy(float)
    with np.errstate(over="ignore"):
        mse = 255.0 ** 2 / np.power(10.0, psnr / 10)          # psnr = inf (lossless) → 0
    return RowImages(tuple(df["image_id"].astype(str)), pixels, bpp,
                     pd.to_numeric(df["msssim"], errors="coerce").to_numpy(float), mse)


def _indices(n: int, resamples: int, seed: int = SEED) -> np.ndarray:
    """resamples × n image indices drawn with replacement (the same draw for every row of n images)."""
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def set_values(r: RowImages, metric: str, idx: np.ndarray | None = None) -> np.ndarray | float:
    """The set value of ``metric`` as the leaderboard defines it, for each resample in ``idx``
    (rows of image indices), or for the set itself when ``idx`` is None."""
    one = idx is None
    idx = np.arange(len(r.ids))[None, :] if one else idx
    px = r.pixels[idx]
    if metric in ("msssim", "msssim_db"):
        v = r.msssim[idx]
        ok = ~np.isnan(v)
        weight = np.where(ok, px, 0).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out = np.where(ok, v * px, 0).sum(axis=1) / weight
            if metric == "msssim_db":
                out = -10 * np.log10(1 - out)
    elif metric == "psnr":
        with np.errstate(divide="ignore"):
            out = 10 * np.log10(255.0 ** 2 / ((r.mse[idx] * px).sum(axis=1) / px.sum(axis=1)))
    elif metric == "bpp":
        out = (r.bpp[idx] * px).sum(axis=1) / px.sum(axis=1)
    else:
        raise ValueError(f"unknown metric {metric!r}; known: {METRICS + ('bpp',)}")
    return float(out[0]) if one else out


def _percentiles(values: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    v = values[np.isfinite(values)]
    if len(v) < len(values) * 0.9:
        return math.nan, math.nan
    lo, hi = np.percentile(v, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


def interval(r: RowImages, metric: str, resamples: int = RESAMPLES, seed: int = SEED) -> tuple[float, float]:
    """95 % percentile bootstrap interval of a row's set value over its images."""
    if len(r.ids) < 2:
        return math.nan, math.nan
    return _percentiles(set_values(r, metric, _indices(len(r.ids), resamples, seed)))


@dataclass(frozen=True)
class Comparison:
    """Row A against row B on the images both have: A − B at set level with its paired-bootstrap
    interval, and on how many images A's own value is higher (MS-SSIM) than B's."""

    metric: str
    diff: float
    lo: float
    hi: float
    wins: int       # images where A is better
    losses: int     # images where B is better
    images: int     # images both rows have

    @property
    def significant(self) -> bool:
        return math.isfinite(self.lo) and (self.lo > 0 or self.hi < 0)

    def sentence(self, a: str, b: str) -> str:
        """'A better on 19 of 24 images; MS-SSIM +0.0012 [+0.0004, +0.0020], significant'."""
        name = {"msssim": "MS-SSIM", "psnr": "PSNR", "msssim_db": "MS-SSIM dB"}.get(self.metric, self.metric)
        d = 4 if self.metric == "msssim" else 2
        verdict = "significant" if self.significant else "not significant"
        return (f"{a} better than {b} on {self.wins} of {self.images} images (worse on {self.losses}); "
                f"{name} {self.diff:+.{d}f}, 95 % paired interval [{self.lo:+.{d}f}, {self.hi:+.{d}f}]: {verdict}")


def compare(a: RowImages, b: RowImages, metric: str = "msssim", resamples: int = RESAMPLES,
            seed: int = SEED) -> Comparison | None:
    """A − B over the images both rows have, resampling the same images for both (paired); None
    when they share fewer than two images."""
    common = sorted(set(a.ids) & set(b.ids))
    if len(common) < 2:
        return None
    a, b = a.take(common), b.take(common)
    idx = _indices(len(common), resamples, seed)
    diffs = set_values(a, metric, idx) - set_values(b, metric, idx)
    lo, hi = _percentiles(diffs)
    own = {"msssim": (a.msssim, b.msssim), "msssim_db": (a.msssim, b.msssim), "psnr": (-a.mse, -b.mse)}[metric]
    return Comparison(metric, set_values(a, metric) - set_values(b, metric), lo, hi,
                      int(np.sum(own[0] > own[1])), int(np.sum(own[0] < own[1])), len(common))


# ----------------------------------------------------------------------------- BD-rate
def _pchip_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Derivatives at the knots as scipy's PchipInterpolator sets them (Fritsch–Butland, its end
    conditions), for many curves at once: x, y are resamples × points."""
    h = np.diff(x, axis=1)
    m = np.diff(y, axis=1) / h
    n = x.shape[1]
    d = np.zeros_like(x)
    if n == 2:
        d[:, 0] = d[:, 1] = m[:, 0]
        return d
    w1, w2 = 2 * h[:, 1:] + h[:, :-1], h[:, 1:] + 2 * h[:, :-1]
    same = (np.sign(m[:, 1:]) == np.sign(m[:, :-1])) & (m[:, 1:] != 0) & (m[:, :-1] != 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        inner = (w1 + w2) / (w1 / m[:, :-1] + w2 / m[:, 1:])
    d[:, 1:-1] = np.where(same, inner, 0.0)

    def edge(h0, h1, m0, m1):
        e = ((2 * h0 + h1) * m0 - h0 * m1) / (h0 + h1)
        e = np.where(np.sign(e) != np.sign(m0), 0.0, e)
        return np.where((np.sign(m0) != np.sign(m1)) & (np.abs(e) > np.abs(3 * m0)), 3 * m0, e)

    d[:, 0] = edge(h[:, 0], h[:, 1], m[:, 0], m[:, 1])
    d[:, -1] = edge(h[:, -1], h[:, -2], m[:, -1], m[:, -2])
    return d


def _pchip_integral(x: np.ndarray, y: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """∫ from lo to hi of each curve's pchip interpolant (lo, hi inside its knots)."""
    d = _pchip_slopes(x, y)

    def upto(t: np.ndarray) -> np.ndarray:      # ∫ from x[0] to t
        total = np.zeros(len(x))
        for k in range(x.shape[1] - 1):
            x0, h = x[:, k], x[:, k + 1] - x[:, k]
            u = np.clip((t - x0) / h, 0, 1)
            u2, u3, u4 = u * u, u ** 3, u ** 4
            total += h * (y[:, k] * (u - u3 + u4 / 2) + h * d[:, k] * (u2 / 2 - 2 * u3 / 3 + u4 / 4)
                          + y[:, k + 1] * (u3 - u4 / 2) + h * d[:, k + 1] * (u4 / 4 - u3 / 3))
        return total

    return upto(hi) - upto(lo)


def bd_rates(base_bpp: np.ndarray, base_q: np.ndarray, cur_bpp: np.ndarray, cur_q: np.ndarray) -> np.ndarray:
    """BD-rate in per cent of each ``cur`` curve against its ``base`` curve (rows: curves,
    columns: points by rising rate), as :func:`bench.rd.bd_rate` computes it (log-rate over
    quality, pchip, over the quality range both cover); NaN where a curve does not rise or the
    curves do not overlap."""
    out = np.full(len(base_bpp), np.nan)
    rising = (np.all(np.diff(base_q, axis=1) > 0, axis=1) & np.all(np.diff(cur_q, axis=1) > 0, axis=1)
              & np.all(base_bpp > 0, axis=1) & np.all(cur_bpp > 0, axis=1))
    lo = np.maximum(base_q.min(axis=1), cur_q.min(axis=1))
    hi = np.minimum(base_q.max(axis=1), cur_q.max(axis=1))
    ok = rising & (hi > lo)
    if not ok.any():
        return out
    b, c = _pchip_integral(base_q[ok], np.log10(base_bpp[ok]), lo[ok], hi[ok]), \
        _pchip_integral(cur_q[ok], np.log10(cur_bpp[ok]), lo[ok], hi[ok])
    out[ok] = (10 ** ((c - b) / (hi[ok] - lo[ok])) - 1) * 100
    return out


def bd_interval(base: Mapping[float, RowImages], cur: Mapping[float, RowImages], metric: str,
                resamples: int = BD_RESAMPLES, seed: int = SEED) -> tuple[float, float, float, int]:
    """BD-rate of ``cur`` against ``base`` from their rows' chosen points (target → per-image
    values; each curve is its rows' set values, by target) and its 95 % bootstrap interval over
    the images all those rows share: (BD-rate, low, high, images). NaN when either has fewer than
    two feasible targets or the curves do not overlap."""
    if len(base) < 2 or len(cur) < 2:
        return math.nan, math.nan, math.nan, 0
    common = sorted(set.intersection(*(set(r.ids) for r in (*base.values(), *cur.values()))))
    if len(common) < 2:
        return math.nan, math.nan, math.nan, len(common)
    idx = _indices(len(common), resamples, seed)

    def curve(rows: Mapping[float, RowImages], ix: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        pts = [(set_values(r.take(common), "bpp", ix), set_values(r.take(common), metric, ix))
               for _, r in sorted(rows.items())]
        bpp, q = (np.atleast_2d(np.array(v, dtype=float)).T if ix is not None else np.array([v], dtype=float)
                  for v in zip(*pts))
        order = np.argsort(bpp, axis=1)
        return np.take_along_axis(bpp, order, 1), np.take_along_axis(q, order, 1)

    point = float(bd_rates(*curve(base, None), *curve(cur, None))[0])
    lo, hi = _percentiles(bd_rates(*curve(base, idx), *curve(cur, idx)))
    return point, lo, hi, len(common)
