"""The training loop (bench/train/loop.py) on a tiny real recipe (bench/train/recipe.py): steps
run, checkpoints resume, weights export as fp16 with logs; the CLI, and recipe errors.
(Variable-rate recipes: tests/train/test_loop_variable_rate.py.)"""

import csv
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image as PILImage

from bench.models.hyperprior import build_model
from bench.paths import REPO_ROOT, SHARED_DATA_DIR
from bench.train.loop import load_state, train_run
from bench.train.recipe import RecipeError, load_recipe

RECIPE = """
[model]
arch = "scale_hyperprior"
N = 16
M = 16
[data]
val_images = 2
crop = 64
batch = 2
[loss]
distortion = "ms-ssim"
msssim_win = 3
[[runs]]
name = "base"
lmbda = 8.0
steps = 6
log_every = 1
val_every = 3
save_every = 3
"""


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    train = tmp_path / "train-images"
    train.mkdir()
    for f in sorted((SHARED_DATA_DIR / "cid22-train").glob("*.png"))[:5]:
        PILImage.open(f).convert("RGB").resize((96, 96)).save(train / f.name)
    sub = tmp_path / "subs" / "tiny"
    sub.mkdir(parents=True)
    (sub / "train.toml").write_text(RECIPE)
    monkeypatch.setenv("TRAIN_DATA", str(train))
    monkeypatch.setenv("BENCH_CHECKPOINTS", str(tmp_path / "ckpt"))
    return sub


def _steps(path: Path) -> list[int]:
    with path.open() as f:
        return [int(r["step"]) for r in csv.DictReader(f)]


def test_train_resume_and_export(tiny, tmp_path):
    recipe = load_recipe(tiny / "train.toml")
    train_run(recipe, "base", max_steps=3, threads=1)
    assert (tmp_path / "ckpt" / "tiny" / "base" / "last.pt").exists()
    first = load_state(tiny / "weights" / "base.pt")
    train_run(recipe, "base", threads=1)               # resumes at step 3, ends at 6
    assert _steps(tiny / "weights" / "base.train.csv") == [1, 2, 3, 4, 5, 6]
    assert _steps(tiny / "weights" / "base.val.csv") == [3, 6]
    saved = torch.load(tiny / "weights" / "base.pt", weights_only=True)
    assert saved["meta"]["steps"] == 6 and saved["meta"]["train_seconds"] > 0
    params = {n for n, _ in build_model("scale_hyperprior", 16, 16).named_parameters()}
    assert all(saved["state_dict"][k].dtype == torch.float16 for k in params)     # parameters: fp16
    assert saved["state_dict"]["entropy_bottleneck.likelihood_lower_bound.bound"].item() > 0  # buffers kept
    assert any(not torch.equal(first[k], v) for k, v in load_state(tiny / "weights" / "base.pt").items())
    with (tiny / "weights" / "base.train.csv").open() as f:
        assert set(next(csv.DictReader(f))) >= {"step", "loss", "bpp", "distortion", "lr", "seconds"}


def test_fresh_checkout_continues_from_the_committed_export(tiny, tmp_path, capsys):
    """Checkpoints are not committed: without one, a run goes on from its exported weights."""
    import shutil

    recipe = load_recipe(tiny / "train.toml")
    train_run(recipe, "base", max_steps=3, threads=1)
    exported = load_state(tiny / "weights" / "base.pt")
    shutil.rmtree(tmp_path / "ckpt")                    # what a fresh clone looks like
    capsys.readouterr()
    train_run(recipe, "base", max_steps=4, threads=1)
    assert "warm restart of tiny/base from its exported weights at step 3" in capsys.readouterr().out
    assert _steps(tiny / "weights" / "base.train.csv") == [1, 2, 3, 4]     # old rows kept, no restart at 1
    saved = torch.load(tiny / "weights" / "base.pt", weights_only=True)
    assert saved["meta"]["steps"] == 4
    assert any(not torch.equal(exported[k], v) for k, v in load_state(tiny / "weights" / "base.pt").items())


def test_train_command_line(tiny, tmp_path):
    out = subprocess.run([sys.executable, "-m", "bench", "train", "--recipe", str(tiny / "train.toml"),
                          "--max-steps", "2", "--threads", "1"], cwd=REPO_ROOT, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert (tiny / "weights" / "base.pt").exists()


def test_refuses_to_train_on_evaluation_sets(tiny, monkeypatch):
    monkeypatch.setenv("TRAIN_DATA", str(SHARED_DATA_DIR / "kodak"))
    with pytest.raises(ValueError, match="evaluation sets"):
        train_run(load_recipe(tiny / "train.toml"), "base", max_steps=1)


def test_bad_recipe_names_the_field(tmp_path):
    (tmp_path / "train.toml").write_text(RECIPE.replace("crop = 64", "crop = 64\ncrops = 3"))
    with pytest.raises(RecipeError, match="crops"):
        load_recipe(tmp_path / "train.toml")


def test_stage2_freezes_the_encoder_side_and_tunes_the_decoder_side(tiny, tmp_path):
    (tiny / "train.toml").write_text(RECIPE + """
[[runs]]
name = "sth"
init = "base"
stage = 2
lmbda = 8.0
steps = 3
val_every = 100
save_every = 100
""")
    recipe = load_recipe(tiny / "train.toml")
    train_run(recipe, "base", max_steps=2, threads=1)
    # Two steps leave a model whose latents all round to 0 (no gradient reaches h_s): scale the
    # last analysis layers up so that y and z carry information, as in a trained model.
    ckpt_path = tmp_path / "ckpt" / "tiny" / "base" / "last.pt"
    ckpt = torch.load(ckpt_path, weights_only=True)
    for k in ("g_a.6.weight", "g_a.6.bias", "h_a.4.weight", "h_a.4.bias"):
        ckpt["model"][k] *= 30
    torch.save(ckpt, ckpt_path)
    before = load_state(ckpt_path)   # fp32: fp16 would hide small steps
    train_run(recipe, "sth", threads=1)
    after = load_state(tmp_path / "ckpt" / "tiny" / "sth" / "last.pt")
    params = {n for n, _ in build_model("scale_hyperprior", 16, 16).named_parameters()}
    encoder = [k for k in params if k.startswith(("g_a.", "h_a."))]
    decoder = [k for k in params if k.startswith(("g_s.", "h_s."))]
    assert encoder and decoder
    assert all(torch.equal(before[k], after[k]) for k in encoder)
    unchanged = [k for k in decoder if torch.equal(before[k], after[k])]
    assert unchanged == [], f"{len(unchanged)} of {len(decoder)} unchanged: {unchanged}"
