"""Variable-rate ECG + BM hyperprior: gates, modulator, effective MACs, channel gathering,
the λ-indexed codec, variable-rate training and initialisation from a scale hyperprior.
Tiny models (N, M ≤ 32), real Kodak crops and compressai's real rANS coder; no mocks."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from compressai.layers import GDN
from compressai.models import ScaleHyperprior
from compressai.models.utils import conv, deconv
from PIL import Image as PILImage

import bench.train.loop as loop
from bench.codec import BitstreamError
from bench.codecs.learned import to_image, to_tensor
from bench.codecs.variable_rate import LEVELS, VariableRateCodec, index_lmbda, lmbda_index
from bench.complexity import ENCODER_PARTS, encoder_decoder_macs, gated_costs, hyperprior_costs, sequence_costs
from bench.container import unpack
from bench.models.ecg import ChannelGate, ECGHyperprior, GatedSequential, build_variable_rate, init_from_hyperprior
from bench.paths import REPO_ROOT, SHARED_DATA_DIR
from bench.submission import load_manifest
from bench.train.recipe import DataSpec, LossSpec, ModelSpec, Recipe, RecipeError, RunSpec, load_recipe
from tests.conftest import kodak_crop
from tests.lic_forge import forge

LO, HI = 1.2, 16.64
N, M = 16, 24
MANIFEST = f'''name = "{{name}}"
description = "variable-rate test codec"
codec = "bench.codecs.variable_rate:VariableRateCodec"
[params]
weights = "{{weights}}"
[operating_points]
kind = "continuous"
low = {LO}
high = {HI}
direction = "quality-up"
grid = 3
'''


def _calibrated(gated: bool = True, alpha: float = 0.3) -> ECGHyperprior:
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


def _grow_modulator(model: ECGHyperprior) -> ECGHyperprior:
    """Set m(λ) to grow with λ, from 0.5 at λ_min to 2 at λ_max, as training makes it."""
    with torch.no_grad():
        model.bm.fc1.weight.fill_(1.0)
        model.bm.fc1.bias.zero_()
        lo, hi = np.log(np.expm1(0.5 - 1e-3)), np.log(np.expm1(2.0 - 1e-3))
        model.bm.fc2.weight.fill_((hi - lo) / model.bm.fc2.in_features)
        model.bm.fc2.bias.fill_(lo)
    return model


def _bits(out: dict) -> float:
    return float(sum(-torch.log2(v).sum() for v in out["likelihoods"].values()))


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
    model = _calibrated(gated=False)
    assert torch.allclose(model.bm(torch.tensor([LO, HI])), torch.ones(1), atol=1e-6)   # untrained: m = 1
    _grow_modulator(model).update(force=True)
    assert torch.allclose(model.bm(torch.tensor([LO, HI])).flatten(1)[:, 0], torch.tensor([0.5, 2.0]), atol=1e-4)
    x = to_tensor(kodak_crop("kodim23.png", (200, 100, 392, 228)))[0]
    est, real = [], []
    with torch.no_grad():
        for lmbda in (LO, (LO * HI) ** 0.5, HI):
            est.append(_bits(model(x, torch.tensor([lmbda]))))
            real.append(sum(len(s[0]) for s in model.compress(x, lmbda)["strings"]) * 8)
    assert est[0] < est[1] < est[2] and real[0] < real[1] < real[2]
    assert est[2] > 2 * est[0]


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
    model = _calibrated(gated=True, alpha=0.5)
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


# --------------------------------------------------------------------------- channel gathering
def test_channel_gathering_gives_the_masked_dense_reconstruction():
    model = _calibrated(gated=True, alpha=0.4)
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


# --------------------------------------------------------------------------- codec
def _export(root: Path, name: str, arch: str, model: torch.nn.Module) -> Path:
    recipe = Recipe(name, root / name / "train.toml", ModelSpec(arch, N, M, LO, HI), DataSpec(), LossSpec(),
                    (RunSpec("vr", steps=0),))
    loop.export(recipe, recipe.runs[0], model, 0, 0.0)
    path = root / name / "submission.toml"
    path.write_text(MANIFEST.format(name=name, weights="vr.pt"))
    return path


@pytest.fixture(scope="module")
def subs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("vrsubs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BENCH_CHECKPOINTS", str(root.parent / "checkpoints"))
        _export(root, "ecg", "ecg_hyperprior", _grow_modulator(_calibrated(gated=True, alpha=0.3)))
        _export(root, "bm", "bm_hyperprior", _grow_modulator(_calibrated(gated=False)))
    return root


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
    data = codec.encode(img, 5.0)
    c = unpack(data)
    assert c.model_id == lmbda_index(5.0, codec.lmbda_min, codec.lmbda_max)
    lmbda = index_lmbda(c.model_id, codec.lmbda_min, codec.lmbda_max)
    assert lmbda == pytest.approx(5.0, rel=1e-4)
    fresh = VariableRateCodec({"weights": "vr.pt"}, subs / "ecg")   # nothing but the bytes passes
    out = fresh.decode(data)
    x, h, w = to_tensor(img)
    with torch.no_grad():   # the encoder's own reconstruction: rounded latents at the coded λ
        ref = to_image(codec.model(x, torch.tensor([lmbda]))["x_hat"], h, w)
    assert out.shape == img.shape and np.array_equal(out, ref)
    assert len(codec.encode(img, HI)) > len(data) > len(codec.encode(img, LO))
    m = codec.measure(img, 5.0, data)
    assert m["est_bits"] > 0 and m["file_bits"] == len(data) * 8
    assert 0 < m["eff_enc_macs"] < m["dense_enc_macs"] and 0 < m["eff_dec_macs"] < m["dense_dec_macs"]
    assert m["dense_enc_macs"] == codec.complexity(5.0, 45, 67)["enc_macs"]
    bad = bytearray(data)
    bad[-3] ^= 0x10
    with pytest.raises(BitstreamError, match="CRC32"):
        codec.decode(bytes(bad))
    with pytest.raises(BitstreamError):
        codec.decode(data[:-1])
    with pytest.raises(ValueError, match="outside"):
        codec.encode(img, 20.0)


def test_decode_is_identical_in_another_process(subs, tmp_path):
    """What ``bench verify`` relies on: a fresh process decodes the same pixels (gathered
    convolutions, modulator and all) from the bytes alone."""
    import subprocess
    import sys

    codec = load_manifest(subs / "ecg" / "submission.toml").make_codec()
    data = codec.encode(kodak_crop(box=(100, 60, 229, 157)), 3.3)       # 129 × 97: padded
    (tmp_path / "a.bin").write_bytes(data)
    proc = subprocess.run([sys.executable, str(Path(__file__).parent / "decode_worker.py"),
                           str(subs / "ecg" / "submission.toml"), str(tmp_path / "a.bin"), str(tmp_path / "a.npy"),
                           str(torch.get_num_threads())], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert np.array_equal(np.load(tmp_path / "a.npy"), codec.decode(data))


def test_another_lambda_id_decodes_to_another_image(subs):
    """The id is the decoder's only source of λ: the same streams under another (CRC-valid)
    id decode to a different image."""
    codec = load_manifest(subs / "ecg" / "submission.toml").make_codec()
    img = kodak_crop(box=(0, 0, 64, 64))
    data = codec.encode(img, 3.0)
    forged = forge(data, model_id=lmbda_index(12.0, LO, HI))
    assert not np.array_equal(codec.decode(forged), codec.decode(data))
    with pytest.raises(BitstreamError, match="λ index 16384"):
        codec.decode(forge(data, model_id=16384))


def test_variable_rate_submission_runs_end_to_end_with_effective_columns(subs, tmp_path):
    from bench.run import run_benchmark

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(2):
        PILImage.fromarray(kodak_crop(box=(40 * i, 0, 40 * i + 128, 96))).save(folder / f"im{i}.png")
    res = run_benchmark("ecg", f"folder:{folder}", targets=[8.0], reports_dir=tmp_path / "r", progress=False,
                        report=False, submissions_root=subs)
    row = res.rows[0]
    assert row["status"] == "ok"
    assert 0 < row["eff_enc_kmac_px"] < row["enc_kmac_px"] and 0 < row["eff_dec_kmac_px"] < row["dec_kmac_px"]
    assert row["uncounted_ops"] == "none" and row["params"] > 0 and row["decoder_bytes"] > 0


def test_gating_table_compares_gated_and_dense_through_real_files(subs, tmp_path):
    """The seed's table on two crops and three λ: both models coded through the runner, the
    gated one's reduction and unused weights counted, masked and gathered decodes equal."""
    from bench.report.gating import gating_table, to_markdown, write_gating

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(2):
        PILImage.fromarray(kodak_crop(box=(64 * i, 0, 64 * i + 128, 64))).save(folder / f"im{i}.png")
    res = gating_table("ecg", "bm", f"folder:{folder}", n_lambdas=3, reports_dir=tmp_path / "r",
                       submissions_root=subs, log=lambda *_: None)
    rows, layers, s = res["rows"], res["layers"], res["summary"]
    assert [r["lmbda"] for r in rows] == pytest.approx([LO, (LO * HI) ** 0.5, HI], rel=1e-4)
    knob = replace(load_manifest(subs / "ecg" / "submission.toml").points, log=True)
    assert [r["lmbda"] for r in rows] == knob.initial()       # the first sweep of a log-knob run: cached
    assert [r["gated_bpp"] for r in rows] == sorted(r["gated_bpp"] for r in rows)    # BM: rate grows with λ
    for r in rows:
        assert r["identical"] and (r["values_differing"], r["max_abs_diff"]) == (0, 0)
        assert (r["synth_values_differing"], r["synth_max_abs_diff"]) == (0, 0)
        assert r["dec_s_masked"] > 0 and r["dec_s_gathered"] > 0
        assert r["total_reduction"] > 1 and r["dense_enc_kmac_px"] > r["gated_enc_kmac_px"]
        assert r["psnr_drop_pct"] == pytest.approx(100 * (1 - r["gated_psnr"] / r["dense_psnr"]))
    # each gated conv is listed (an all-zero z, as here, leaves h_s.0 nothing to read); α = 0.3
    # leaves some channels of some layer unused on two crops
    gated_layers = [r for r in layers if r["layer"].replace(".", ".gate") in ECGHyperprior(N, M, LO, HI).named_gates()]
    assert len(gated_layers) == 13 and all(0 <= r["active_mean"] <= 1 for r in gated_layers)
    assert any(0 < r["active_mean"] < 1 for r in gated_layers)
    assert s["weights_never_used"] == sum(r["weights_never_used"] for r in layers) > 0
    assert all(r["never_active"] == 0 for r in layers if r not in gated_layers)
    assert 0 < s["storage_saving_pct"] < 100 and isinstance(s["claim_2x_at_1pct"], bool)
    paths = write_gating(res, tmp_path)
    assert [p.name for p in paths] == ["gating_ecg_vs_bm.csv", "gating_ecg_vs_bm_layers.csv",
                                       "gating_ecg_vs_bm.json", "gating_ecg_vs_bm.md"]
    assert "BD-rate of ECG against dense" in to_markdown(res)
    again = gating_table("ecg", "bm", f"folder:{folder}", n_lambdas=3, reports_dir=tmp_path / "r",
                         submissions_root=subs, log=lambda *_: None)      # from the runs' caches
    assert [r["gated_bpp"] for r in again["rows"]] == [r["gated_bpp"] for r in rows]
    with pytest.raises(ValueError, match="not a variable-rate"):
        gating_table("jpeg", "webp", f"folder:{folder}", n_lambdas=3, reports_dir=tmp_path / "r",
                     submissions_root=REPO_ROOT / "submissions", log=lambda *_: None)


# --------------------------------------------------------------------------- init and training
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
    assert torch.allclose(a["x_hat"], b["x_hat"], atol=1e-4) and _bits(a) == pytest.approx(_bits(b), rel=1e-5)
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


RECIPE = """
[model]
arch = "{arch}"
N = 16
M = 16
{range}
[data]
val_images = 2
crop = 64
batch = 2
[loss]
distortion = "ms-ssim"
msssim_win = 3
[[runs]]
name = "{run}"
{extra}
steps = 3
lr = 1e-4
log_every = 1
val_every = 3
save_every = 3
"""


@pytest.fixture
def tiny(tmp_path, monkeypatch) -> Path:
    train = tmp_path / "train-images"
    train.mkdir()
    for f in sorted((SHARED_DATA_DIR / "cid22-train").glob("*.png"))[:5]:
        PILImage.open(f).convert("RGB").resize((96, 96)).save(train / f.name)
    monkeypatch.setenv("TRAIN_DATA", str(train))
    monkeypatch.setenv("BENCH_CHECKPOINTS", str(tmp_path / "ckpt"))
    return tmp_path / "subs"


def _recipe(root: Path, sub: str, arch: str, run: str, extra: str = "", lrange: bool = True) -> Path:
    (root / sub).mkdir(parents=True, exist_ok=True)
    path = root / sub / "train.toml"
    path.write_text(RECIPE.format(arch=arch, run=run, extra=extra,
                                  range=f"lmbda_min = {LO}\nlmbda_max = {HI}" if lrange else ""))
    return path


def test_variable_rate_recipe_trains_from_a_hyperprior_and_exports_a_codec(tiny, capsys):
    torch.manual_seed(2)
    base = ScaleHyperprior(16, 16)
    base_recipe = load_recipe(_recipe(tiny, "hp", "scale_hyperprior", "base", "lmbda = 8.0", lrange=False))
    loop.export(base_recipe, base_recipe.runs[0], base, 0, 0.0)
    recipe = load_recipe(_recipe(tiny, "ecg", "ecg_hyperprior", "vr",
                                 'init = "hp/base"\ngamma = 2.0\nalpha_target = 0.3\nalpha_lr = 1e-2'))
    loop.train_run(recipe, "vr", threads=1)
    assert "starts from" in capsys.readouterr().out
    weights = tiny / "ecg" / "weights"
    saved = torch.load(weights / "vr.pt", weights_only=True)
    meta, state = saved["meta"], saved["state_dict"]
    assert (meta["arch"], meta["lmbda_min"], meta["lmbda_max"], meta["gated"], meta["steps"]) == \
        ("ecg_hyperprior", LO, HI, True, 3)
    # three steps at lr 1e-4 from the hyperprior: its weights, nudged; α pulled up towards α_t
    assert 0 < (state["g_s.2.weight"].float() - base.g_s[2].weight).abs().max() < 1e-2
    assert all(0 < state[k].float() < 0.3 for k in state if k.endswith(".alpha"))
    with (weights / "vr.train.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [1, 2, 3]
    assert {"gate_penalty", "active", "alpha", "bpp", "loss"} <= set(rows[0]) and float(rows[0]["gate_penalty"]) > 0
    with (weights / "vr.val.csv").open() as f:
        val = list(csv.DictReader(f))
    assert [float(r["lmbda"]) for r in val] == pytest.approx([LO, (LO * HI) ** 0.5, HI])
    assert all(0 < float(r["eff_dec_frac"]) <= 1 for r in val)
    (tiny / "ecg" / "submission.toml").write_text(MANIFEST.format(name="ecg", weights="vr.pt"))
    codec = load_manifest(tiny / "ecg" / "submission.toml").make_codec()
    img = kodak_crop(box=(0, 0, 64, 64))
    assert codec.decode(codec.encode(img, 2.0)).shape == (64, 64, 3)


def test_bm_recipe_trains_and_recipes_are_checked(tiny):
    recipe = load_recipe(_recipe(tiny, "bm", "bm_hyperprior", "vr", "bm_lr = 1e-2"))
    start = build_variable_rate("bm_hyperprior", 16, 16, LO, HI).bm.fc2.bias.clone()
    loop.train_run(recipe, "vr", max_steps=2, threads=1)
    saved = torch.load(tiny / "bm" / "weights" / "vr.pt", weights_only=True)
    meta, state = saved["meta"], saved["state_dict"]
    assert (meta["arch"], meta["gated"], meta["steps"]) == ("bm_hyperprior", False, 2)
    # the modulator at its own lr: Adam's first steps move each parameter by about lr
    moved = (state["bm.fc2.bias"].float() - start).abs()
    assert moved.max() > 5e-3 and moved.max() < 3e-2
    bad = {"lmbda = 4.0": "drop lmbda", "gamma = 1.0": "gamma needs a gated arch", "stage = 2": "stage 2"}
    for extra, message in bad.items():
        with pytest.raises(RecipeError, match=message):
            load_recipe(_recipe(tiny, "bad", "bm_hyperprior", "vr", extra))
    with pytest.raises(RecipeError, match="lmbda_min < lmbda_max"):
        load_recipe(_recipe(tiny, "bad", "ecg_hyperprior", "vr", lrange=False))
    with pytest.raises(RecipeError, match="variable-rate"):
        load_recipe(_recipe(tiny, "bad", "scale_hyperprior", "vr", "lmbda = 4.0"))
    with pytest.raises(RecipeError, match="needs lmbda"):
        load_recipe(_recipe(tiny, "bad", "scale_hyperprior", "vr", lrange=False))


def test_shipped_recipes_parse():
    for sub in ("ecg_hyperprior", "bm_hyperprior"):
        r = load_recipe(REPO_ROOT / "submissions" / sub / "train.toml")
        assert (r.model.N, r.model.M, r.model.lmbda_min, r.model.lmbda_max) == (96, 128, 0.08, 32.0)
        assert r.runs[0].init == "noise_hyperprior/base" and r.runs[0].steps == 1500
        assert (r.runs[0].lr, r.runs[0].bm_lr, r.runs[0].lr_drop_at) == (1e-4, 1e-2, 1350)


def test_learning_rate_groups_and_the_drop():
    model = build_variable_rate("ecg_hyperprior", 16, 16, LO, HI)
    opt, _ = loop._optimizers(model, RunSpec("vr", steps=1, lr=1e-4, bm_lr=1e-2, alpha_lr=1e-3))
    assert [g["name"] for g in opt.param_groups] == ["net", "bm", "alpha"]
    assert loop._set_lr(opt, dropped=False) == 1e-4
    assert [g["lr"] for g in opt.param_groups] == [1e-4, 1e-2, 1e-3]
    assert loop._set_lr(opt, dropped=True) == pytest.approx(1e-5)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([1e-5, 1e-3, 1e-3])   # the gates keep theirs
    opt, _ = loop._optimizers(model, RunSpec("vr", steps=1, lr=1e-4))
    assert [g["name"] for g in opt.param_groups] == ["net", "alpha"]               # no bm_lr: with the net
