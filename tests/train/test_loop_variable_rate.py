"""The training loop and recipes (bench/train/loop.py, recipe.py) for variable-rate models: an
ECG recipe trained from a scale hyperprior and exported to a working codec, the BM
modulator's own learning rate, recipe checks, the shipped recipes, the learning-rate
groups, and a run that widens a trained model's λ range (bench/train/widen.py)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch
from compressai.models import ScaleHyperprior
from PIL import Image as PILImage

import bench.train.loop as loop
from bench.models.ecg import build_variable_rate
from bench.paths import REPO_ROOT, SHARED_DATA_DIR
from bench.submission import load_manifest
from bench.train.recipe import RecipeError, RunSpec, load_recipe
from bench.train.widen import init_from_variable_rate
from tests.helpers.coding import decode, encode
from tests.helpers.images import kodak_crop
from tests.helpers.vr_models import HI, LO, write_vr_manifest

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
    write_vr_manifest(tiny, "ecg", weights="vr.pt")
    codec = load_manifest(tiny / "ecg" / "submission.toml").make_codec()
    img = kodak_crop(box=(0, 0, 64, 64))
    assert decode(codec, encode(codec, img, 2.0)).shape == (64, 64, 3)


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


def test_a_run_widens_the_range_of_a_variable_rate_model(tiny, capsys):
    """A run over a wider λ range starts from the narrower model: m(λ) is the source's at every
    λ it was trained on, the new model keeps the new range, and the export records it."""
    torch.manual_seed(3)
    narrow = build_variable_rate("ecg_hyperprior", 16, 16, LO, HI)
    torch.nn.init.normal_(narrow.bm.fc2.weight, std=0.5)     # a modulator that is not flat in λ
    narrow_recipe = load_recipe(_recipe(tiny, "ecg", "ecg_hyperprior", "vr"))
    loop.export(narrow_recipe, narrow_recipe.runs[0], narrow, 3, 1.0)
    wide_hi = HI * 8
    wide = build_variable_rate("ecg_hyperprior", 16, 16, LO, wide_hi)
    left = init_from_variable_rate(wide, loop.load_state(tiny / "ecg" / "weights" / "vr.pt"))
    assert left == [] and float(wide.bm.lmbda_max) == pytest.approx(wide_hi)
    lams = torch.tensor([LO, 1.0, HI])
    with torch.no_grad():
        src = build_variable_rate("ecg_hyperprior", 16, 16, LO, HI)
        src.load_state_dict(loop.load_state(tiny / "ecg" / "weights" / "vr.pt"), strict=False)
        assert torch.allclose(wide.bm(lams), src.bm(lams), rtol=1e-5, atol=1e-6)
        assert not torch.allclose(wide.bm(torch.tensor([wide_hi])), src.bm(torch.tensor([HI])))
    with pytest.raises(ValueError, match="not a variable-rate model"):
        init_from_variable_rate(wide, ScaleHyperprior(16, 16).state_dict())
    dense = build_variable_rate("bm_hyperprior", 16, 16, LO, HI)
    with pytest.raises(ValueError, match="keys the model lacks"):
        init_from_variable_rate(dense, loop.load_state(tiny / "ecg" / "weights" / "vr.pt"))

    path = _recipe(tiny, "ecg", "ecg_hyperprior", "vr")
    path.write_text(path.read_text() + f'[[runs]]\nname = "wide"\ninit = "vr"\nlmbda_max = {wide_hi}\n'
                                       'steps = 1\nval_every = 1\n')
    recipe = load_recipe(path)
    assert recipe.lambda_range(recipe.run("wide")) == (LO, wide_hi)
    assert recipe.lambda_range(recipe.run("vr")) == (LO, HI)
    loop.train_run(recipe, "wide", threads=1)
    assert "starts from" in capsys.readouterr().out
    meta = torch.load(tiny / "ecg" / "weights" / "wide.pt", weights_only=True)["meta"]
    assert (meta["lmbda_min"], meta["lmbda_max"], meta["steps"]) == (LO, wide_hi, 1)
    with (tiny / "ecg" / "weights" / "wide.val.csv").open() as f:
        assert [float(r["lmbda"]) for r in csv.DictReader(f)] == pytest.approx([LO, (LO * wide_hi) ** 0.5, wide_hi])
    with pytest.raises(RecipeError, match="0 < lmbda_min < lmbda_max"):
        load_recipe(_recipe(tiny, "bad", "ecg_hyperprior", "vr", "lmbda_max = 0.01"))
    with pytest.raises(RecipeError, match="for variable-rate archs"):
        load_recipe(_recipe(tiny, "bad", "scale_hyperprior", "vr", "lmbda = 4.0\nlmbda_max = 64.0", lrange=False))


def test_a_log_balanced_run_weighs_every_lambda_alike(tiny):
    """balance = "log": each sample's gradient divided by its own loss, so a sample at the top of
    the range (loss 40× larger) pulls no harder than one at the bottom; "none" averages."""
    losses = torch.tensor([0.3, 12.0], requires_grad=True)
    loop.combine_samples(losses, "log").backward()
    assert (losses.grad * losses.detach()).tolist() == pytest.approx([0.5, 0.5])
    losses.grad = None
    loop.combine_samples(losses, "none").backward()
    assert losses.grad.tolist() == pytest.approx([0.5, 0.5])

    recipe = load_recipe(_recipe(tiny, "bm", "bm_hyperprior", "vr", 'balance = "log"'))
    loop.train_run(recipe, "vr", max_steps=2, threads=1)
    with (tiny / "bm" / "weights" / "vr.train.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and all(math.isfinite(float(r["loss"])) for r in rows)
    with pytest.raises(RecipeError, match="balance 'sqrt'"):
        load_recipe(_recipe(tiny, "bad", "bm_hyperprior", "vr", 'balance = "sqrt"'))
    with pytest.raises(RecipeError, match="balance are for variable-rate"):
        load_recipe(_recipe(tiny, "bad", "scale_hyperprior", "vr", 'lmbda = 4.0\nbalance = "log"', lrange=False))
