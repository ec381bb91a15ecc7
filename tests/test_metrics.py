import math

import numpy as np
import pytest
import torch
from pytorch_msssim import ms_ssim

from bench.metrics import aggregate, image_metrics, msssim, msssim_db, msssim_scales
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
    ref = ms_ssim(torch.from_numpy(a).permute(2, 0, 1)[None].float(), torch.from_numpy(b).permute(2, 0, 1)[None].float(),
                  data_range=255)
    assert scales == 5 and val == pytest.approx(float(ref), abs=1e-6)


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
