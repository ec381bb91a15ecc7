"""Tiny variable-rate models (ECG + BM hyperprior, N=16, M=24, λ in [LO, HI]) that code real
streams, and the submissions they export to. Used by the tests of bench/models/ecg.py,
bench/complexity.py, bench/codecs/variable_rate.py, bench/studies/gating.py and the
variable-rate training recipes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import bench.train.loop as loop
from bench.codecs.learned import to_tensor
from bench.models.ecg import ECGHyperprior
from bench.train.recipe import DataSpec, LossSpec, ModelSpec, Recipe, RunSpec
from tests.helpers.images import kodak_crop
from tests.helpers.manifests import continuous, write_submission

LO, HI = 1.2, 16.64
N, M = 16, 24


def calibrated_ecg(gated: bool = True, alpha: float = 0.3) -> ECGHyperprior:
    """Untrained ECG/BM model whose latents carry a real stream (g_a's last layer scaled up)
    and whose prior fits them (h_s outputs each channel's measured std), as a trained one's
    would; every gate at threshold ``alpha``."""
    torch.manual_seed(0)
    m = ECGHyperprior(N, M, LO, HI, gated=gated)
    with torch.no_grad():
        m.g_a.layer(6).weight.mul_(30)
        for g in m.named_gates().values():
            g.alpha.fill_(alpha)
        y = m.g_a(to_tensor(kodak_crop("kodim01.png", (0, 0, 256, 256)))[0])
        last = m.h_s.layer(4)
        last.weight.zero_()
        last.bias.copy_(y.std(dim=(0, 2, 3)).clamp_min(0.12))
    return m.eval()


def grow_modulator(model: ECGHyperprior) -> ECGHyperprior:
    """Set m(λ) to grow with λ, from 0.5 at λ_min to 2 at λ_max, as training makes it."""
    with torch.no_grad():
        model.bm.fc1.weight.fill_(1.0)
        model.bm.fc1.bias.zero_()
        lo, hi = np.log(np.expm1(0.5 - 1e-3)), np.log(np.expm1(2.0 - 1e-3))
        model.bm.fc2.weight.fill_((hi - lo) / model.bm.fc2.in_features)
        model.bm.fc2.bias.fill_(lo)
    return model


def likelihood_bits(out: dict) -> float:
    """The estimated bits of a forward pass: −log2 of every likelihood, summed."""
    return float(sum(-torch.log2(v).sum() for v in out["likelihoods"].values()))


def write_vr_manifest(root: Path, name: str, weights: str = "vr.pt") -> Path:
    """``root/name/submission.toml`` for a VariableRateCodec over λ in [LO, HI] (grid 3)."""
    return write_submission(root, name, "bench.codecs.variable_rate:VariableRateCodec",
                            description="variable-rate test codec", params={"weights": weights},
                            points=continuous(LO, HI, direction="quality-up", grid=3))


def export_vr(root: Path, name: str, arch: str, model: torch.nn.Module) -> Path:
    """Export ``model`` with the real ``export()`` as ``root/name/weights/vr.pt`` and write its
    manifest; the manifest's path."""
    recipe = Recipe(name, root / name / "train.toml", ModelSpec(arch, N, M, LO, HI), DataSpec(), LossSpec(),
                    (RunSpec("vr", steps=0),))
    loop.export(recipe, recipe.runs[0], model, 0, 0.0)
    return write_vr_manifest(root, name)


def vr_submissions(root: Path) -> Path:
    """A submissions folder with ``ecg`` (gated, α = 0.3) and ``bm`` (dense), both with the
    growing modulator; export's checkpoints go beside ``root``."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BENCH_CHECKPOINTS", str(root.parent / "checkpoints"))
        export_vr(root, "ecg", "ecg_hyperprior", grow_modulator(calibrated_ecg(gated=True, alpha=0.3)))
        export_vr(root, "bm", "bm_hyperprior", grow_modulator(calibrated_ecg(gated=False)))
    return root
