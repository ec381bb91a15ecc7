"""The λ-indexed variable-rate codec (bench/codecs/variable_rate.py) on tiny ECG and BM
models (tests/helpers/vr_models.py): the λ index, round trips through bytes, decoding in
another process, the id as the decoder's only source of λ, and a whole run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from bench.codec import BitstreamError
from bench.codecs.learned import to_image, to_tensor
from bench.codecs.variable_rate import (
    LEVELS,
    VariableRateCodec,
    index_lmbda,
    lmbda_index,
)
from bench.complexity import last_forward_costs
from bench.container import unpack
from bench.submission import load_manifest
from tests.helpers import DECODE_WORKER
from tests.helpers.coding import decode, encode, round_trip_measures
from tests.helpers.images import kodak_crop
from tests.helpers.lic_forge import forge
from tests.helpers.vr_models import HI, LO, vr_submissions


@pytest.fixture(scope="module")
def subs(tmp_path_factory) -> Path:
    """Exported ``ecg`` (gated) and ``bm`` (dense) submissions."""
    return vr_submissions(tmp_path_factory.mktemp("vrsubs"))


def test_lambda_index_scheme():
    assert lmbda_index(LO, LO, HI) == 0 and lmbda_index(HI, LO, HI) == LEVELS
    for lmbda in (1.3, 4.58, 8.73, 16.0):
        assert index_lmbda(lmbda_index(lmbda, LO, HI), LO, HI) == pytest.approx(lmbda, rel=1e-4)
    for bad in (1.0, 17.0, 0.0, -2.0):
        with pytest.raises(ValueError, match="outside"):
            lmbda_index(bad, LO, HI)


def test_codec_roundtrips_through_bytes_with_lambda_in_the_header(subs):
    codec = load_manifest(subs / "ecg" / "submission.toml").make_codec()
    assert isinstance(codec, VariableRateCodec)
    assert (codec.lmbda_min, codec.lmbda_max) == pytest.approx((LO, HI))
    img = kodak_crop(box=(200, 100, 267, 145))              # 67 × 45: padded to 128 × 64
    data = encode(codec, img, 5.0)
    c = unpack(data)
    assert c.model_id == lmbda_index(5.0, codec.lmbda_min, codec.lmbda_max)
    lmbda = index_lmbda(c.model_id, codec.lmbda_min, codec.lmbda_max)
    assert lmbda == pytest.approx(5.0, rel=1e-4)
    fresh = VariableRateCodec({"weights": "vr.pt"}, subs / "ecg")   # nothing but the bytes passes
    out = decode(fresh, data)
    x, h, w = to_tensor(img)
    with torch.no_grad():   # the encoder's own reconstruction: rounded latents at the coded λ
        ref = to_image(codec.model(x, torch.tensor([lmbda]))["x_hat"], h, w)
    assert out.shape == img.shape and np.array_equal(out, ref)
    assert len(encode(codec, img, HI)) > len(data) > len(encode(codec, img, LO))
    passes = []
    hook = codec.model.g_a.register_forward_hook(lambda *a: passes.append(1))
    try:
        _, m = round_trip_measures(codec, img, 5.0)     # one job: what its encode and decode measured
    finally:
        hook.remove()
    assert passes == [1]                   # the encode's own pass, none besides
    with torch.no_grad():                  # close to what an eval-mode forward at λ gives: the
        out = codec.model(x, torch.tensor([lmbda]))      # gates see the same tensors up to rounding
    ref = last_forward_costs(codec.model).totals()
    assert m.est_bits == pytest.approx(float(sum(-torch.log2(v).sum() for v in out["likelihoods"].values())), rel=1e-5)
    for k in ("eff_enc_macs", "eff_dec_macs", "dense_enc_macs", "dense_dec_macs"):
        assert getattr(m, k) == pytest.approx(ref[k], rel=0.01), k
    assert 0 < m.eff_enc_macs < m.dense_enc_macs and 0 < m.eff_dec_macs < m.dense_dec_macs
    assert m.dense_enc_macs == codec.complexity(5.0, 45, 67).enc_macs
    bad = bytearray(data)
    bad[-3] ^= 0x10
    with pytest.raises(BitstreamError, match="CRC32"):
        decode(codec, bytes(bad))
    with pytest.raises(BitstreamError):
        decode(codec, data[:-1])
    with pytest.raises(ValueError, match="outside"):
        encode(codec, img, 20.0)


def test_decode_is_identical_in_another_process(subs, tmp_path):
    """What ``bench verify`` relies on: a fresh process decodes the same pixels (gathered
    convolutions, modulator and all) from the bytes alone."""
    import subprocess
    import sys

    codec = load_manifest(subs / "ecg" / "submission.toml").make_codec()
    data = encode(codec, kodak_crop(box=(100, 60, 229, 157)), 3.3)       # 129 × 97: padded
    (tmp_path / "a.bin").write_bytes(data)
    proc = subprocess.run([sys.executable, str(DECODE_WORKER),
                           str(subs / "ecg" / "submission.toml"), str(tmp_path / "a.bin"), str(tmp_path / "a.npy"),
                           str(torch.get_num_threads())], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert np.array_equal(np.load(tmp_path / "a.npy"), decode(codec, data))


def test_another_lambda_id_decodes_to_another_image(subs):
    """The id is the decoder's only source of λ: the same streams under another (CRC-valid)
    id decode to a different image."""
    codec = load_manifest(subs / "ecg" / "submission.toml").make_codec()
    img = kodak_crop(box=(0, 0, 64, 64))
    data = encode(codec, img, 3.0)
    forged = forge(data, model_id=lmbda_index(12.0, LO, HI))
    assert not np.array_equal(decode(codec, forged), decode(codec, data))
    with pytest.raises(BitstreamError, match="λ index 16384"):
        decode(codec, forge(data, model_id=16384))


def test_variable_rate_submission_runs_end_to_end_with_effective_columns(subs, tmp_path):
    from bench.run import run_benchmark

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(2):
        PILImage.fromarray(kodak_crop(box=(40 * i, 0, 40 * i + 128, 96))).save(folder / f"im{i}.png")
    res = run_benchmark("ecg", f"folder:{folder}", targets=[8.0], reports_dir=tmp_path / "r", progress=False,
                        submissions_root=subs)
    row = res.rows[0]
    assert row["status"] == "ok"
    assert 0 < row["eff_enc_kmac_px"] < row["enc_kmac_px"] and 0 < row["eff_dec_kmac_px"] < row["dec_kmac_px"]
    assert row["uncounted_ops"] == "none" and row["params"] > 0 and row["decoder_bytes"] > 0
