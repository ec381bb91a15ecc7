import io
import math

import numpy as np
import pytest
import torch
from PIL import Image as PILImage
from pytorch_msssim import ms_ssim, ssim

from bench import metrics
from bench.metrics import MSSSIM_WEIGHTS, WIN, aggregate, image_metrics, msssim, msssim_db, msssim_scales
from tests.helpers.images import kodak_crop


def test_psnr_and_sse_by_hand():
    a = np.zeros((4, 5, 3), np.uint8)
    b = a.copy()
    b[0, 0, 0] = 10       # one value off by 10, one by 3
    b[3, 4, 2] = 3
    m = image_metrics(a, b)
    assert m["sse"] == 109
    assert m["mse"] == pytest.approx(109 / 60)
    assert m["psnr"] == pytest.approx(10 * math.log10(255**2 * 60 / 109))


def test_msssim_matches_pytorch_msssim_on_a_real_image():
    a = kodak_crop(box=(0, 0, 256, 200))
    b = np.clip(a.astype(int) + np.random.default_rng(0).integers(-12, 13, a.shape), 0, 255).astype(np.uint8)
    val, scales = msssim(a, b)
    ref = ms_ssim(*(torch.from_numpy(v).permute(2, 0, 1)[None].float() for v in (a, b)), data_range=255)
    assert scales == 5 and val == pytest.approx(float(ref), abs=1e-6)


def _coded(a: np.ndarray, fmt: str, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    PILImage.fromarray(a).save(buf, fmt, quality=quality)
    return np.asarray(PILImage.open(buf).convert("RGB"))


def _pytorch_msssim(a: np.ndarray, b: np.ndarray, scales: int) -> float:
    """pytorch-msssim itself: ms_ssim for 5 scales, ssim for 1, and for 2-4 the product of its
    _ssim pieces with the first weights renormalised (ms_ssim insists on room for 5 scales)."""
    from pytorch_msssim.ssim import _fspecial_gauss_1d, _ssim

    x, y = (torch.tensor(v).permute(2, 0, 1)[None].float() for v in (a, b))
    if scales == 5:
        return float(ms_ssim(x, y, data_range=255))
    if scales == 1:
        return float(ssim(x, y, data_range=255))
    w = torch.tensor(MSSSIM_WEIGHTS[:scales])
    w = w / w.sum()
    win = _fspecial_gauss_1d(WIN, 1.5).repeat([3, 1, 1, 1])
    mcs = []
    for i in range(scales):
        ssim_per_channel, cs = _ssim(x, y, data_range=255, win=win, size_average=False, K=(0.01, 0.03))
        if i < scales - 1:
            mcs.append(torch.relu(cs))
            pad = [s % 2 for s in x.shape[2:]]
            x, y = (torch.nn.functional.avg_pool2d(v, kernel_size=2, padding=pad) for v in (x, y))
    stack = torch.stack(mcs + [torch.relu(ssim_per_channel)], dim=0)
    return float(torch.prod(stack ** w.view(-1, 1, 1), dim=0).mean())


@pytest.mark.parametrize("name,box,scales", [
    ("kodim05.png", (101, 60, 101 + 320, 60 + 207), 5), ("kodim23.png", (37, 11, 37 + 203, 11 + 170), 5),
    ("kodim01.png", (5, 9, 5 + 301, 9 + 100), 4), ("kodim13.png", (0, 0, 65, 33), 2),
    ("kodim23.png", (3, 3, 43, 14), 1)])
def test_msssim_equals_pytorch_msssim_on_coded_kodak_crops(name, box, scales):
    """Real pairs (JPEG and WebP from very low to high quality, odd sides, every scale count):
    within 1e-6 of pytorch-msssim (measured: bit-identical but one pair in 122, 1 ulp). The
    original's side is cached from the first point on."""
    a = kodak_crop(name, box)
    for fmt, quality in [("JPEG", 2), ("JPEG", 30), ("JPEG", 90), ("WEBP", 5), ("WEBP", 75)]:
        b = _coded(a, fmt, quality)
        val, n = msssim(a, b)
        assert n == scales and val == pytest.approx(_pytorch_msssim(a, b, scales), abs=1e-6), (fmt, quality)


def test_the_originals_side_is_made_once_and_follows_its_pixels(monkeypatch):
    """Every point of an image reuses its original's statistics; a changed original is a new
    cache entry (the key hashes the pixels), and the cache keeps to its byte budget."""
    made = []
    original_init = metrics._Reference.__init__

    def counting(self, image, scales):
        made.append(image.shape)
        original_init(self, image, scales)

    monkeypatch.setattr(metrics._Reference, "__init__", counting)
    monkeypatch.setattr(metrics, "_REFERENCES", type(metrics._REFERENCES)())
    a = kodak_crop(box=(0, 0, 200, 180))
    points = [_coded(a, "JPEG", q) for q in (5, 40, 90)]
    first = [image_metrics(a, b)["msssim"] for b in points]
    assert len(made) == 1 and [image_metrics(a, b)["msssim"] for b in points] == first
    changed = a.copy()
    changed[90, 100] ^= 0xFF
    assert image_metrics(changed, points[0])["msssim"] != first[0] and len(made) == 2
    assert image_metrics(a, points[0])["msssim"] == first[0] and len(made) == 2   # both kept: far below the budget
    monkeypatch.setattr(metrics, "REFERENCE_CACHE_BYTES", 1)
    image_metrics(kodak_crop(box=(0, 0, 190, 170)), kodak_crop(box=(1, 1, 191, 171)))
    assert len(metrics._REFERENCES) == 1                                        # the newest alone


@pytest.mark.parametrize("shape,scales", [((1, 1), 0), ((7, 5), 0), ((11, 11), 1), ((33, 65), 2), ((100, 300), 4),
                                          ((161, 161), 5), ((16, 4096), 1)])
def test_small_images_use_fewer_scales_and_never_crash(shape, scales):
    a = np.random.default_rng(1).integers(0, 256, (*shape, 3), dtype=np.uint8)
    m = image_metrics(a, a)
    assert msssim_scales(*shape) == m["msssim_scales"] == scales
    if scales == 0:
        assert math.isnan(m["msssim"])
    else:
        assert m["msssim"] == pytest.approx(1.0, abs=1e-5)


def test_clic_aggregates_by_hand():
    recs = [  # a 10×10 image with MSE 4 and a 10×30 image with MSE 1
        {"bytes": 100, "height": 10, "width": 10, "sse": 4 * 300, "psnr": 10 * math.log10(255**2 / 4), "msssim": 0.9},
        {"bytes": 50, "height": 10, "width": 30, "sse": 1 * 900, "psnr": 10 * math.log10(255**2 / 1), "msssim": 0.98},
    ]
    s = aggregate(recs)
    assert s.bpp == pytest.approx(150 * 8 / 400)
    assert s.psnr == pytest.approx(10 * math.log10(255**2 / (2100 / 1200)))      # pooled MSE
    assert s.msssim == pytest.approx((0.9 * 100 + 0.98 * 300) / 400)             # pixel-weighted
    assert s.msssim_db == pytest.approx(-10 * math.log10(1 - s.msssim))
    assert s.psnr_mean == pytest.approx((recs[0]["psnr"] + recs[1]["psnr"]) / 2)
    assert s.msssim_mean == pytest.approx(0.94)


def test_aggregate_skips_nan_msssim_and_counts_it():
    recs = [{"bytes": 1, "height": 1, "width": 1, "sse": 0.0, "psnr": math.inf, "msssim": math.nan},
            {"bytes": 9, "height": 20, "width": 20, "sse": 1200.0, "psnr": 48.1, "msssim": 0.97}]
    s = aggregate(recs)
    assert s.msssim == pytest.approx(0.97) and s.msssim_skipped == 1


def test_msssim_db():
    assert msssim_db(0.99) == pytest.approx(20.0)
    assert math.isnan(msssim_db(math.nan))
