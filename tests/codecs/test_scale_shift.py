"""The per-image scale shift (bench/codecs/scale_shift.py) on the shipped noise_hyperprior
models and real Kodak pixels: compressai's indexes at shift 0, a cost model that predicts
the rANS length, the encoder's choice is the shortest file, and the decoder needs the
variant the file names."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from compressai.entropy_models import GaussianConditional
from compressai.models.base import get_scale_table

from bench.codec import BitstreamError
from bench.codecs import scale_shift
from bench.codecs.learned import HyperpriorCodec, to_tensor
from bench.container import pack, unpack
from bench.models.hyperprior import build_model
from bench.paths import SUBMISSIONS_DIR
from tests.helpers.coding import decode, encode
from tests.helpers.images import kodak_crop
from tests.helpers.lic_forge import forge

ROOT = SUBMISSIONS_DIR / "noise_hyperprior"
pytestmark = pytest.mark.skipif(not (ROOT / "weights" / "l05.pt").exists(), reason="no shipped weights")
BOX = (256, 128, 512, 384)          # 256 × 256 from the middle of the image


@pytest.fixture(scope="module")
def codec() -> HyperpriorCodec:
    return HyperpriorCodec({"models": ["l05", "base"]}, ROOT)


def _streams(model, x: torch.Tensor, shift: int) -> tuple[list, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(z and y strings coded with this shift, y, its symbols, the predicted scales)."""
    gc = model.gaussian_conditional
    with torch.no_grad():
        y = model.g_a(x)
        z = model.h_a(torch.abs(y))
        z_strings = model.entropy_bottleneck.compress(z)
        scales = model.h_s(model.entropy_bottleneck.decompress(z_strings, z.shape[-2:]))
        y_strings = GaussianConditional.compress(gc, y, gc._indexes(scales, shift))
    return [z_strings[0], y_strings[0]], y, gc.quantize(y, "symbols"), scales


def test_shift_zero_is_compressais_lookup_bit_for_bit():
    gc = GaussianConditional(None)
    gc.update_scale_table(get_scale_table(levels=64))
    table = gc.scale_table
    log_uniform = torch.exp(torch.empty(20000).uniform_(-2.1, 5.3, generator=torch.Generator().manual_seed(0)))
    scales = torch.cat([log_uniform, table,
                        table * (1 + 1e-6), table * (1 - 1e-6), torch.tensor([0.0, 1e-5, 0.05, 1e4])]).reshape(1, 1, -1)
    reference = gc.build_indexes(scales)
    scale_shift.install(torch.nn.ModuleDict({"gc": gc}))
    assert isinstance(gc, scale_shift.ShiftedScales)
    assert torch.equal(gc.build_indexes(scales), reference)
    up, down = gc._indexes(scales, 2), gc._indexes(scales, -1)
    assert (up >= reference).all() and ((up - reference) == 1).float().mean() > 0.9   # two half steps: one table step
    assert (down <= reference).all() and (down < reference).any()


@pytest.mark.parametrize("name", ["l05", "base"])
def test_table_cost_predicts_the_rans_length(codec, name):
    model = codec.models[codec.names.index(name)]
    x = to_tensor(kodak_crop("kodim09.png", BOX))[0]
    for shift in (-3, 0, 3):
        streams, y, symbols, scales = _streams(model, x, shift)
        predicted = scale_shift.table_bits(model.gaussian_conditional, symbols,
                                           model.gaussian_conditional._indexes(scales, shift))
        real = len(streams[1]) * 8
        assert 0 <= real - predicted <= 64, (shift, real, predicted)   # the flush: 32-bit state, word alignment


def test_escaped_symbols_are_costed_like_the_coder():
    """Values far outside every CDF's range go through compressai's bypass chunks."""
    torch.manual_seed(0)
    gc = GaussianConditional(None)
    gc.update_scale_table(get_scale_table(levels=64))
    gc.update()
    scale_shift.install(torch.nn.ModuleDict({"gc": gc}))
    y = torch.cat([torch.randn(1, 2, 16, 16) * 0.3, torch.randn(1, 2, 16, 16) * 5000]).reshape(1, 4, 16, 16)
    indexes = gc.build_indexes(torch.full_like(y, 0.2))
    symbols = gc.quantize(y, "symbols")
    assert (symbols.abs() > 1000).sum() > 100
    real = len(gc.compress(y, indexes)[0]) * 8
    assert 0 <= real - scale_shift.table_bits(gc, symbols, indexes) <= 64


@pytest.mark.parametrize("name", ["l05", "base"])
def test_encoder_writes_the_shortest_variant_and_every_variant_decodes_alike(codec, name):
    img = kodak_crop("kodim09.png", BOX)
    data = encode(codec, img, name)
    c = unpack(data)
    model_id, model = codec._for_point(name)
    x, h, w = to_tensor(img)
    sizes = {}
    for variant, shift in enumerate(scale_shift.SHIFTS):
        streams, *_ = _streams(model, x, shift)
        forced = pack(model_id, h, w, streams, variant)
        sizes[variant] = len(forced)
        assert np.array_equal(decode(codec, forced), decode(codec, data))
    assert len(data) == sizes[c.variant]
    assert len(data) <= min(sizes.values()) + 4          # chosen by the cost model: within the flush
    assert len(set(sizes.values())) > 1                  # the shift does change the file


def test_the_decoder_uses_the_variant_the_file_names(codec):
    img = kodak_crop("kodim09.png", BOX)
    data = encode(codec, img, "l05")
    c = unpack(data)
    other = (c.variant + 1) % len(scale_shift.SHIFTS)
    wrong = decode(codec, forge(data, variant=other))     # a valid CRC, the wrong tables: garbage, no error
    assert not np.array_equal(wrong, decode(codec, data))
    with pytest.raises(BitstreamError, match="coding variant 9"):
        decode(codec, forge(data, variant=9))


def test_models_without_a_shiftable_conditional_write_variant_zero():
    model = build_model("scale_hyperprior", 32, 48).eval()     # not prepared: compressai's own class
    with scale_shift.searching(model) as variant:
        pass
    assert variant == [0]
    with pytest.raises(BitstreamError, match="coding variant 1"):
        with scale_shift.decoding(model, 1):
            pass
