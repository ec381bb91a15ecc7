"""The ECG + BM hyperprior (bench/models/ecg.py): gates, the modulator, channel gathering and
initialisation from a scale hyperprior. Tiny models (N, M ≤ 32, tests/helpers/vr_models.py),
real Kodak crops and compressai's real rANS coder; no mocks.

(The effective MAC counts are in tests/test_complexity.py, the λ-indexed codec in
tests/codecs/test_variable_rate.py, the gating table in tests/studies/test_gating.py, the
variable-rate recipes in tests/train/test_loop_variable_rate.py.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from compressai.layers import GDN
from compressai.models import ScaleHyperprior
from compressai.models.utils import conv

import bench.train.loop as loop
from bench.codecs.learned import to_image, to_tensor
from bench.models.ecg import ChannelGate, ECGHyperprior, init_from_hyperprior
from bench.paths import REPO_ROOT
from tests.helpers.images import kodak_crop
from tests.helpers.vr_models import (
    HI,
    LO,
    M,
    N,
    calibrated_ecg,
    grow_modulator,
    likelihood_bits,
)


# --------------------------------------------------------------------------- gate
def test_raising_alpha_gates_more_channels_with_a_straight_through_gradient():
    torch.manual_seed(0)
    feats = GDN(16)(conv(3, 16)(to_tensor(kodak_crop())[0])).detach()
    gate = ChannelGate(16)
    zeros = []
    for alpha in (0.0, 0.5, 1.0, 2.0):
        gate.alpha.data.fill_(alpha)
        gated = feats * gate(feats)[:, :, None, None]
        zeros.append(int((gated.abs().amax(dim=(2, 3)) == 0).sum()))
    assert zeros[0] == 0                                  # α = 0: every channel with energy passes
    assert zeros == sorted(zeros) and zeros[-1] > zeros[1] > 0
    gate.train()
    gate.alpha.data.fill_(0.8)
    g = gate(feats)
    assert set(g.unique().tolist()) <= {0.0, 1.0}        # hard in the forward pass
    (feats * g[:, :, None, None]).pow(2).sum().backward()
    assert gate.alpha.grad.item() < 0                     # the surrogate: a lower α keeps more energy
    assert gate.mix.weight.grad.abs().sum() > 0


# --------------------------------------------------------------------------- modulator
def test_modulator_gives_more_bits_at_larger_lambda():
    """With the modulator set so that m(λ) grows with λ (0.5 at λ_min to 2 at λ_max), the
    estimated and the real coded bits of a Kodak crop grow with λ."""
    model = calibrated_ecg(gated=False)
    assert torch.allclose(model.bm(torch.tensor([LO, HI])), torch.ones(1), atol=1e-6)   # untrained: m = 1
    grow_modulator(model).update(force=True)
    assert torch.allclose(model.bm(torch.tensor([LO, HI])).flatten(1)[:, 0], torch.tensor([0.5, 2.0]), atol=1e-4)
    x = to_tensor(kodak_crop("kodim23.png", (200, 100, 392, 228)))[0]
    est, real = [], []
    with torch.no_grad():
        for lmbda in (LO, (LO * HI) ** 0.5, HI):
            est.append(likelihood_bits(model(x, torch.tensor([lmbda]))))
            real.append(sum(len(s[0]) for s in model.compress(x, lmbda)["strings"]) * 8)
    assert est[0] < est[1] < est[2] and real[0] < real[1] < real[2]
    assert est[2] > 2 * est[0]


# --------------------------------------------------------------------------- channel gathering
def test_channel_gathering_gives_the_masked_dense_reconstruction():
    model = calibrated_ecg(gated=True, alpha=0.4)
    x = to_tensor(kodak_crop("kodim07.png", (100, 100, 228, 228)))[0]
    outs, fractions = {}, {}
    with torch.no_grad():
        for sparse in (True, False):
            model.set_sparse_inference(sparse)
            outs[sparse] = model(x, torch.tensor([6.0]))
            fractions[sparse] = model.active_fractions()
    model.set_sparse_inference(True)
    assert fractions[True] == fractions[False] and min(fractions[True].values()) < 1
    for name in ("y", "z"):
        assert torch.allclose(outs[True]["likelihoods"][name], outs[False]["likelihoods"][name], atol=1e-5)
    assert torch.allclose(outs[True]["x_hat"], outs[False]["x_hat"], atol=1e-4)
    assert np.array_equal(to_image(outs[True]["x_hat"], 128, 128), to_image(outs[False]["x_hat"], 128, 128))


# --------------------------------------------------------------------------- init from a hyperprior
def test_init_from_hyperprior_fills_everything_but_modulator_and_gates():
    torch.manual_seed(1)
    src = ScaleHyperprior(N, M)
    model = ECGHyperprior(N, M, LO, HI, gated=True)
    left = init_from_hyperprior(model, src.state_dict())
    assert set(left) == {k for k in model.state_dict() if k.startswith("bm.") or ".gate" in k}
    assert torch.equal(model.g_s.layer(4).weight, src.g_s[4].weight)
    for m in (src, model):
        m.update(force=True)
        m.eval()
    x = to_tensor(kodak_crop())[0]
    with torch.no_grad():   # α = 0 and m(λ) = 1: the scale hyperprior itself
        a, b = src(x), model(x, torch.tensor([3.0]))
    assert torch.allclose(a["x_hat"], b["x_hat"], atol=1e-4) and \
        likelihood_bits(a) == pytest.approx(likelihood_bits(b), rel=1e-5)
    with pytest.raises(RuntimeError, match="size mismatch"):
        init_from_hyperprior(ECGHyperprior(N, M + 8, LO, HI), src.state_dict())
    with pytest.raises(ValueError, match="keys the model lacks"):
        init_from_hyperprior(model, src.state_dict() | {"context.weight": torch.zeros(1)})


def test_the_project_base_weights_load():
    path = REPO_ROOT / "submissions" / "noise_hyperprior" / "weights" / "base.pt"
    if not path.exists():
        pytest.skip("no noise_hyperprior base weights in this checkout")
    meta = torch.load(path, weights_only=True)["meta"]
    model = ECGHyperprior(meta["N"], meta["M"], LO, HI)
    left = init_from_hyperprior(model, loop.load_state(path))
    assert left and all(k.startswith("bm.") or ".gate" in k for k in left)
