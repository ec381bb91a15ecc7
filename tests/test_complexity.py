"""Effective MAC counts (bench/complexity.py) of the gated ECG layers: a hand count on one
gated convolution, and the dense totals against fvcore's count of the scale hyperprior."""

from __future__ import annotations

import pytest
import torch
from compressai.models import ScaleHyperprior
from compressai.models.utils import conv, deconv

from bench.codecs.learned import to_tensor
from bench.complexity import (
    ENCODER_PARTS,
    encoder_decoder_macs,
    gated_costs,
    hyperprior_costs,
    sequence_costs,
)
from bench.models.ecg import GatedSequential
from tests.helpers.images import kodak_crop
from tests.helpers.vr_models import M, N, calibrated_ecg


# --------------------------------------------------------------------------- effective MACs
@pytest.mark.parametrize("transposed", [False, True])
def test_effective_macs_match_a_hand_count(transposed):
    """8 input channels, 3 of them loud: the gate keeps those 3 and the count says so."""
    layer = deconv(8, 4) if transposed else conv(8, 4, stride=1, kernel_size=3)
    seq = GatedSequential([layer], gated=(0,)).eval()
    seq.gate(0).alpha.data.fill_(0.5)
    level = torch.tensor([2.0, 2, 2, 0.1, 0.1, 0.1, 0.1, 0.1])
    x = level[None, :, None, None] * torch.randn(1, 8, 6, 6).sign()
    with torch.no_grad():
        sparse = seq(x)
        (cost,) = sequence_costs(seq, "toy")
        seq.sparse = False
        dense = seq(x)
    if transposed:   # 36 input pixels, each spread over 4 outputs × 5×5 taps per input channel
        assert sparse.shape == (1, 4, 12, 12)
        assert (cost.dense_macs, cost.eff_macs) == (36 * 8 * 4 * 25, 36 * 3 * 4 * 25)
    else:            # 4×6×6 outputs, each a 3×3 window over the input channels
        assert sparse.shape == (1, 4, 6, 6)
        assert (cost.dense_macs, cost.eff_macs) == (144 * 8 * 9, 144 * 3 * 9)
    assert cost.active_in == 3 and cost.gate_macs == 8 * 36 + 3 * 8
    assert torch.allclose(sparse, dense, atol=1e-5)
    masked = x.clone()
    masked[:, 3:] = 0
    assert torch.allclose(sparse, layer(masked), atol=1e-5)


def test_dense_totals_equal_fvcore_and_gates_cut_the_effective_ones():
    model = calibrated_ecg(gated=True, alpha=0.5)
    x = to_tensor(kodak_crop())[0]                          # 96×128
    costs = gated_costs(model, x, 4.0)
    t = costs.totals()
    ref = ScaleHyperprior(N, M)
    enc, dec = encoder_decoder_macs(hyperprior_costs(ref, *x.shape[-2:]))
    assert (t["dense_enc_macs"] - costs.bm_macs, t["dense_dec_macs"] - costs.bm_macs) == (enc, dec)
    assert t["eff_enc_macs"] < t["dense_enc_macs"] and t["eff_dec_macs"] < t["dense_dec_macs"]
    assert len([c for p in ENCODER_PARTS for c in costs.layers[p] if c.gate_macs]) == 9
    fractions = model.active_fractions()
    assert len(fractions) == 13 and min(fractions.values()) < 1
