"""Perceptual metrics of the chosen points: SSIMULACRA 2.1 and FLIP, beside MS-SSIM and PSNR.

They run once per chosen point of every row, after rate control (never inside its search):
each published file is decoded again by the run's sandboxed decoder and compared with the
original here, in the harness, :data:`WORKERS` images at a time. Neither needs downloaded weights.

Per image:

- ``ssimulacra2``: SSIMULACRA 2.1 (Cloudinary; −∞..100, higher is better; 90 is visually
  lossless, 70 high quality, 30 low). This module's port of the reference C++
  (``cloudinary/ssimulacra2``, the same code as libjxl's ``tools/ssimulacra2``): XYB at six
  scales, SSIM and two edge maps, 1- and 4-norms, the 108 published weights. It keeps the
  reference's float32 arithmetic and its recursive Gaussian (Charalampidis 2016), because at
  the coarse scales the SSIM terms of smooth areas are float32 rounding, and the reference's
  score includes it. The PyPI package ``ssimulacra2`` (0.3.0) blurs with a true Gaussian and
  reflects at the edges; it scores 2.6 points off on a JPEG (tests/test_perceptual.py), so it
  is not used.
- ``flip``: mean LDR-FLIP error (NVIDIA; 0..1, lower is better) from ``flip-evaluator``, the
  authors' own C++ behind Python, at its default 67 pixels per degree (a 0.7 m wide 4K display
  seen from 0.7 m).

Set level (rows.csv, leaderboard.csv), images weighted by their pixel count as CLIC weights
MS-SSIM, so a set value is the average over the set's pixels, not over its files:

- ``ssimulacra2``: pixel-weighted mean of the per-image scores.
- ``flip``: pixel-weighted mean of the per-image means, which is the mean FLIP error over every
  pixel of the set.

Images where a metric is undefined (SSIMULACRA 2 needs 8 × 8 px) are left out of its set
value, as MS-SSIM's are.

Two entry points: :func:`add_to_run` (one call in :func:`bench.run.run_benchmark`) and
:func:`row_metrics` (an existing row from its files alone).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import numpy as np

#: The per-image and set-level columns this module adds, in order.
COLUMNS = ("ssimulacra2", "flip")
#: Changes whenever a metric's values would change; cached values of another version are recomputed.
VERSION = "1"
PPD = 0.7 * 3840 / 0.7 * math.pi / 180   # FLIP's default, 67.02: 0.7 m from a 0.7 m wide 3840-px display
MIN_SIDE = 8        # SSIMULACRA 2's smallest image
#: Images measured at once by :func:`row_metrics` (reports/load/PERCEPTUAL.md: the pass with 1 and 2).
WORKERS = 2

F32 = np.float32


# ----------------------------------------------------------------------------- SSIMULACRA 2.1
def _recursive_gaussian(sigma: float = 1.5) -> tuple[int, np.ndarray, np.ndarray]:
    """(radius N, n2, d1) of libjxl's CreateRecursiveGaussian: three second-order recursions
    whose sum is a 9-tap Gaussian-like kernel (Charalampidis 2016, eqs. 33–57)."""
    radius = float(round(3.2795 * sigma + 0.2546))
    omega = np.pi / (2 * radius) * np.array([1.0, 3.0, 5.0])
    p = np.array([1 / np.tan(0.5 * omega[0]), -1 / np.tan(0.5 * omega[1]), 1 / np.tan(0.5 * omega[2])])
    r = np.array([p[0] ** 2 / np.sin(omega[0]), -p[1] ** 2 / np.sin(omega[1]), p[2] ** 2 / np.sin(omega[2])])
    rho = np.exp(-0.5 * sigma * sigma * omega * omega) / radius
    d13 = p[0] * r[1] - r[0] * p[1]
    zeta15, zeta35 = (p[1] * r[2] - r[1] * p[2]) / d13, (p[2] * r[0] - r[2] * p[0]) / d13
    a = np.array([p, r, [zeta15, zeta35, 1.0]])
    beta = np.linalg.solve(a, np.array([1.0, radius * radius - sigma * sigma,
                                        zeta15 * rho[0] + zeta35 * rho[1] + rho[2]]))
    n2 = (-beta * np.cos(omega * (radius + 1.0))).astype(F32)
    d1 = (-2.0 * np.cos(omega)).astype(F32)
    return int(radius), n2, d1


_N, _N2, _D1 = _recursive_gaussian()
_N2_64, _D1_64 = _N2.astype(np.float64), _D1.astype(np.float64)


def _recursion(x: np.ndarray) -> np.ndarray:
    """The recursive blur along axis 0 in float32, zero outside the image, as libjxl's
    vertical pass: y_k[n] = n2_k·(x[n−N−1] + x[n+N−1]) − d1_k·y_k[n−1] − y_k[n−2], summed over
    k; each multiply-add rounded once to float32, as the reference's fused instructions do
    (float64 holds a float32 product exactly). The three k run side by side (axis 0 of the state)."""
    length, taps = x.shape[0], _N
    out = np.empty_like(x)
    shape = x.shape[1:]
    k_shape = (3,) + (1,) * len(shape)
    neg_d1, n2 = -_D1_64.reshape(k_shape), _N2_64.reshape(k_shape)
    s32, s64 = np.zeros(shape, F32), np.zeros(shape, np.float64)
    prev, prev2 = np.zeros((3, *shape), np.float64), np.zeros((3, *shape), np.float64)
    t64, r32 = np.empty((3, *shape), np.float64), np.empty((3, *shape), F32)
    for n in range(-taps + 1, length):
        top, bottom = n - taps - 1, n + taps - 1
        if top >= 0 and bottom < length:
            np.add(x[top], x[bottom], out=s32)
        elif bottom < length:
            s32[...] = x[bottom]
        elif top >= 0:
            s32[...] = x[top]
        else:
            s32[...] = 0
        np.copyto(s64, s32)
        np.multiply(prev, neg_d1, out=t64)          # NegMulSub: −d1·y[n−1] − y[n−2], rounded once
        np.subtract(t64, prev2, out=t64)
        np.copyto(r32, t64, casting="same_kind")
        np.copyto(t64, r32)
        np.multiply(n2, s64, out=prev2)             # MulAdd: n2·s + that, rounded once; prev2 becomes y[n]
        np.add(prev2, t64, out=prev2)
        np.copyto(r32, prev2, casting="same_kind")
        np.copyto(prev2, r32)
        prev, prev2 = prev2, prev
        if n >= 0:
            np.add(r32[1], r32[2], out=out[n])
            np.add(r32[0], out[n], out=out[n])
    return out


def _blur(a: np.ndarray) -> np.ndarray:
    """Separable recursive Gaussian (σ = 1.5) of an H × W × C float32 array: rows, then columns."""
    rows = np.ascontiguousarray(np.swapaxes(a, 0, 1))
    return _recursion(np.ascontiguousarray(np.swapaxes(_recursion(rows), 0, 1)))


_OPSIN = np.array([[0.30, 1 - 0.078 - 0.30, 0.078], [0.23, 1 - 0.078 - 0.23, 0.078],
                   [0.24342268924547819, 0.20476744424496821, 1 - 0.24342268924547819 - 0.20476744424496821]],
                  dtype=F32)
_BIAS = F32(0.0037930732552754493)
_BIAS_CBRT = F32(np.cbrt(np.float64(_BIAS)))
_SRGB_TO_LINEAR = np.array([v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4
                            for v in np.arange(256) / 255.0], dtype=F32)


def _xyb(linear: np.ndarray) -> np.ndarray:
    """Linear sRGB → XYB made positive (SSIMULACRA 2's MakePositiveXYB), float32."""
    r, g, b = (linear[..., i].astype(np.float64) for i in range(3))
    mixed = []
    for row in _OPSIN.astype(np.float64):
        m = (row[2] * b + np.float64(_BIAS)).astype(F32).astype(np.float64)   # fused multiply-adds, inner first
        m = (row[1] * g + m).astype(F32).astype(np.float64)
        m = (row[0] * r + m).astype(F32)
        mixed.append((np.cbrt(np.maximum(m, 0).astype(np.float64)).astype(F32) - _BIAS_CBRT).astype(F32))
    x = F32(0.5) * (mixed[0] - mixed[1])
    y = F32(0.5) * (mixed[0] + mixed[1])
    return np.stack([x * F32(14) + F32(0.42), y + F32(0.01), (mixed[2] - y) + F32(0.55)], axis=-1)


def _downsample(linear: np.ndarray) -> np.ndarray:
    """2 × 2 box average in linear light; an odd last row or column is repeated (the reference clamps)."""
    h, w = linear.shape[:2]
    if h % 2:
        linear = np.concatenate([linear, linear[-1:]], axis=0)
    if w % 2:
        linear = np.concatenate([linear, linear[:, -1:]], axis=1)
    total = ((linear[0::2, 0::2] + linear[0::2, 1::2]) + linear[1::2, 0::2]) + linear[1::2, 1::2]
    return total * F32(0.25)


def _norms(err: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per channel: the mean (1-norm) and the 4-norm of an H × W × 3 error map (double sums)."""
    err = err.reshape(-1, 3)
    sq = err * err
    return err.mean(axis=0), np.sqrt(np.sqrt((sq * sq).mean(axis=0)))


# The reference's 108 weights: for each channel (X, Y, B), scale (1:1 … 1:32) and norm (1, 4):
# SSIM, ringing (artifact), blurring (detail lost).
_WEIGHTS = np.array([
    0.0, 0.0007376606707406586, 0.0, 0.0, 0.0007793481682867309, 0.0, 0.0, 0.0004371155730107379, 0.0,
    1.1041726426657346, 0.00066284834129271, 0.00015231632783718752, 0.0, 0.0016406437456599754, 0.0,
    1.8422455520539298, 11.441172603757666, 0.0, 0.0007989109436015163, 0.000176816438078653, 0.0,
    1.8787594979546387, 10.94906990605142, 0.0, 0.0007289346991508072, 0.9677937080626833, 0.0,
    0.00014003424285435884, 0.9981766977854967, 0.00031949755934435053, 0.0004550992113792063, 0.0, 0.0,
    0.0013648766163243398, 0.0, 0.0, 0.0, 0.0, 0.0, 7.466890328078848, 0.0, 17.445833984131262,
    0.0006235601634041466, 0.0, 0.0, 6.683678146179332, 0.00037724407979611296, 1.027889937768264,
    225.20515300849274, 0.0, 0.0, 19.213238186143016, 0.0011401524586618361, 0.001237755635509985,
    176.39317598450694, 0.0, 0.0, 24.43300999870476, 0.28520802612117757, 0.0004485436923833408, 0.0, 0.0, 0.0,
    34.77906344483772, 44.835625328877896, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0008680556573291698, 0.0,
    0.0, 0.0, 0.0, 0.0, 0.0005313191874358747, 0.0, 0.00016533814161379112, 0.0, 0.0, 0.0, 0.0, 0.0,
    0.0004179171803251336, 0.0017290828234722833, 0.0, 0.0020827005846636437, 0.0, 0.0, 8.826982764996862,
    23.19243343998926, 0.0, 95.1080498811086, 0.9863978034400682, 0.9834382792465353, 0.0012286405048278493,
    171.2667255897307, 0.9807858872435379, 0.0, 0.0, 0.0, 0.0005130064588990679, 0.0, 0.00010854057858411537])
_C2 = F32(0.0009)
SCALES = 6


def ssimulacra2(original: np.ndarray, decoded: np.ndarray) -> float:
    """SSIMULACRA 2.1 of two uint8 H × W × 3 sRGB images (NaN below 8 × 8 px); see the module doc."""
    if original.shape != decoded.shape:
        raise ValueError(f"images differ in shape: {original.shape} vs {decoded.shape}")
    if min(original.shape[:2]) < MIN_SIDE:
        return math.nan
    lin1, lin2 = _SRGB_TO_LINEAR[original], _SRGB_TO_LINEAR[decoded]
    # per scale: (ssim, ringing, blurring), each (1-norms, 4-norms) per channel
    parts: list[tuple[tuple[np.ndarray, np.ndarray], ...]] = []
    for scale in range(SCALES):
        if scale:
            lin1, lin2 = _downsample(lin1), _downsample(lin2)
        if min(lin1.shape[:2]) < MIN_SIDE:
            break
        x1, x2 = _xyb(lin1), _xyb(lin2)
        blurred = _blur(np.concatenate([x1 * x1, x2 * x2, x1 * x2, x1, x2], axis=-1))
        s11, s22, s12, mu1, mu2 = (blurred[..., 3 * i:3 * i + 3] for i in range(5))
        num_m = (1.0 - ((mu1 - mu2) * (mu1 - mu2)).astype(np.float64)).astype(F32)
        num_s = F32(2) * (s12 - mu1 * mu2) + _C2
        denom_s = (s11 - mu1 * mu1) + (s22 - mu2 * mu2) + _C2
        ssim = np.maximum(1.0 - (num_m * num_s / denom_s).astype(np.float64), 0.0)
        edge = (1.0 + np.abs(x2 - mu2).astype(np.float64)) / (1.0 + np.abs(x1 - mu1).astype(np.float64)) - 1.0
        parts.append((_norms(ssim), _norms(np.maximum(edge, 0.0)), _norms(np.maximum(-edge, 0.0))))
    score, i = 0.0, 0
    for c in range(3):
        for scale in range(SCALES):
            for norm in range(2):
                if scale < len(parts):
                    score += sum(_WEIGHTS[i + m] * abs(float(parts[scale][m][norm][c])) for m in range(3))
                i += 3
    score *= 0.9562382616834844
    score = 2.326765642916932 * score - 0.020884521182843837 * score ** 2 + 6.248496625763138e-05 * score ** 3
    return 100.0 - 10.0 * score ** 0.6276336467831387 if score > 0 else 100.0


# ----------------------------------------------------------------------------- FLIP
def flip(original: np.ndarray, decoded: np.ndarray, ppd: float = PPD) -> float:
    """Mean LDR-FLIP error of two uint8 H × W × 3 sRGB images (NVIDIA's flip-evaluator)."""
    import flip_evaluator

    if original.shape != decoded.shape:
        raise ValueError(f"images differ in shape: {original.shape} vs {decoded.shape}")
    ref = np.ascontiguousarray(original, dtype=F32) / F32(255)
    test = np.ascontiguousarray(decoded, dtype=F32) / F32(255)
    _, mean, _ = flip_evaluator.evaluate(ref, test, "LDR", applyMagma=False, parameters={"ppd": ppd})
    return float(mean)


# ----------------------------------------------------------------------------- per image, per set
def image_perceptual(original: np.ndarray, decoded: np.ndarray) -> dict[str, float]:
    """Both metrics of one image and the seconds they took (``perceptual_s``)."""
    t0 = time.perf_counter()
    out = {"ssimulacra2": ssimulacra2(original, decoded), "flip": flip(original, decoded)}
    return out | {"perceptual_s": time.perf_counter() - t0}


def set_level(per_image: Iterable[Mapping]) -> dict[str, float]:
    """The set values of :data:`COLUMNS` from per-image values and their ``pixels`` (module doc)."""
    rows = list(per_image)
    out = {}
    for col in COLUMNS:
        pairs = [(float(r[col]), float(r["pixels"])) for r in rows
                 if r.get(col) is not None and not math.isnan(float(r[col]))]
        weight = sum(w for _, w in pairs)
        out[col] = sum(v * w for v, w in pairs) / weight if weight else math.nan
    return out


Decode = Callable[[bytes, tuple[int, int]], np.ndarray]


def row_metrics(files_by_image_id: Mapping[str, Path], originals: Mapping[str, np.ndarray], decode: Decode,
                known: Mapping[str, Mapping] | None = None, workers: int = WORKERS,
                on_measured: Callable[[str, dict], None] | None = None) -> tuple[dict[str, dict], dict[str, float]]:
    """The metrics of one row from its files alone: each file decoded by ``decode(bytes, (h, w))``
    (the row's sandboxed decoder) and compared with its original. Returns (per image id: the
    metrics and ``decoded_sha256`` of what was decoded, set level). ``known``: values already
    measured, by image id (a cache), used instead of decoding again.

    ``workers`` images are in hand at once (threads): one's decode, which waits on the codec's
    process, overlaps another's metrics, and SSIMULACRA 2's numpy work runs in both (FLIP holds
    the GIL but uses every core itself); ``decode`` must take calls from several threads.
    ``on_measured(image_id, values)`` is called in this thread as each image is measured, so a
    caller can keep it before the row is done."""
    from bench.job import decoded_hash

    def measure(image_id: str, path: Path) -> dict:
        original = originals[image_id]
        pixels = decode(Path(path).read_bytes(), original.shape[:2])
        if pixels.shape != original.shape:
            raise ValueError(f"{path}: decoded {pixels.shape}, the original is {original.shape}")
        return image_perceptual(original, pixels) | {"decoded_sha256": decoded_hash(pixels)}

    values = {i: dict(known[i]) for i in files_by_image_id if known and i in known}
    pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="perceptual")
    try:
        pending = {pool.submit(measure, i, p): i for i, p in files_by_image_id.items() if i not in values}
        for future in as_completed(pending):
            values[pending[future]] = future.result()
            if on_measured:
                on_measured(pending[future], values[pending[future]])
    finally:
        pool.shutdown(cancel_futures=True)      # a failed image stops the row: the rest are not started
    per_image = {i: values[i] | {"pixels": originals[i].shape[0] * originals[i].shape[1]} for i in files_by_image_id}
    return per_image, set_level(per_image.values())


def threads_of(device_label: str) -> int:
    """N of a row's ``cpu (N threads)``: learned codecs decode bit-exactly only with the thread
    count they were coded with; 1 for any other label."""
    m = re.search(r"\((\d+) threads?\)", device_label or "")
    return int(m.group(1)) if m else 1


def _key(r: Mapping) -> tuple:
    return (str(r.get("mode")), str(r.get("objective") or "msssim"), round(float(r["target_bpp"]), 6))


def _cache_key(image_sha256: str, decoded_sha256: str) -> tuple[str, str, str]:
    """The metrics are a function of the original and the decoded pixels alone: cached by both."""
    return f"perceptual-{VERSION}", image_sha256, decoded_sha256


def add_to_run(remote, device: str, images: list, rows: list[dict], per_image: list[dict], run_dir: Path,
               log: Callable[[str], None] = print) -> None:
    """Add :data:`COLUMNS` to a run's feasible rows and their per-image rows, in place.

    Every published file (``per_image``'s ``file``) is decoded again by ``remote`` (the run's
    :class:`~bench.sandbox.client.RemoteCodec`) on ``device`` with the row's thread count; a
    decoded image whose fingerprint differs from the one the run recorded is named in the
    row's note. Values are cached in ``run_dir/perceptual.jsonl`` by (original, decoded
    fingerprint) as each image is measured, so a re-run of cached rows decodes nothing and a
    failure loses none measured before it."""
    from bench.results import RecordStore

    originals = {im.id: im.pixels for im in images}
    sha = {im.id: im.sha256 for im in images}
    store = RecordStore(Path(run_dir) / "perceptual.jsonl")
    by_row: dict[tuple, list[dict]] = {}
    for r in per_image:
        by_row.setdefault(_key(r), []).append(r)
    t0, measured = time.perf_counter(), 0
    for row in rows:
        if row.get("status") != "ok" or _key(row) not in by_row:
            continue
        lines = {r["image_id"]: r for r in by_row[_key(row)] if r["image_id"] in originals}
        differ, new = _measure_row(remote, device, row, lines, originals, sha, store)
        measured += new
        if differ:
            note = (f"decoded again for the perceptual metrics, {len(differ)} image(s) differ from the run's "
                    f"decode ({', '.join(sorted(differ)[:3])}{'…' if len(differ) > 3 else ''})")
            row["note"] = "; ".join(n for n in (row.get("note"), note) if n)
            log(f"[perceptual] {row.get('submission')} @ {row.get('target_bpp')}: {note}")
    if measured:
        log(f"[perceptual] {measured} chosen points decoded again and measured in {time.perf_counter() - t0:.1f} s")


def _measure_row(remote, device: str, row: dict, lines: dict[str, dict], originals: Mapping[str, np.ndarray],
                 sha: Mapping[str, str], store) -> tuple[list[str], int]:
    """One row of :func:`add_to_run`: its lines and the row filled in; (image ids whose decode
    differs from the run's, images measured here rather than read from ``store``)."""
    from bench.paths import REPO_ROOT

    known = {}
    for image_id, r in lines.items():
        hit = store.get(*_cache_key(sha[image_id], str(r.get("decoded_sha256") or "")))
        if hit is not None:
            known[image_id] = {k: hit.get(k) for k in (*COLUMNS, "perceptual_s", "decoded_sha256")}
    threads, what = threads_of(row.get("device", "")), f"{row.get('submission')}: perceptual metrics"

    def decode(data: bytes, hw: tuple[int, int]) -> np.ndarray:
        return remote.decode(data, hw, threads, device, what).pixels

    differ: list[str] = []

    def keep(image_id: str, v: dict) -> None:
        store.append(dict(zip(("content_hash", "image_sha256", "point_key"),
                              _cache_key(sha[image_id], v["decoded_sha256"])))
                     | {k: v[k] for k in (*COLUMNS, "perceptual_s", "decoded_sha256")})
        if lines[image_id].get("decoded_sha256") and v["decoded_sha256"] != lines[image_id]["decoded_sha256"]:
            differ.append(image_id)

    files = {i: (Path(r["file"]) if Path(r["file"]).is_absolute() else REPO_ROOT / r["file"])
             for i, r in lines.items()}
    values, total = row_metrics(files, originals, decode, known, on_measured=keep)
    for image_id, v in values.items():
        lines[image_id].update({k: v[k] for k in COLUMNS})     # their seconds stay in the cache: timings vary
    row.update(total)
    return differ, len(values) - len(known)
