"""The training loop: R + λ·D with additive-noise quantisation, padding-aware batches,
the entropy bottleneck's auxiliary loss, resumable checkpoints and CSV logs.

Variable-rate architectures (:mod:`bench.models.ecg`) draw one λ per sample, log-uniformly
in the model's [λ_min, λ_max], and minimise mean_i(R_i + λ_i·D_i) + γ·Σ_n (α_n − α_t)²
with per-sample rate and distortion; they are validated at λ_min, the geometric middle
and λ_max, and start from a scale hyperprior's weights through ``init_from_hyperprior``, or
from a variable-rate model over a narrower range through ``init_from_variable_rate``.

A run's state lives in ``checkpoints/<submission>/<run>/`` (``last.pt`` with optimiser and
RNG state, ``train.csv``, ``val.csv``); every save also exports fp16 weights and the logs to
``submissions/<submission>/weights/`` so the committed files are always the latest.
"""

from __future__ import annotations

import csv
import json
import math
import random
import time
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F
from pytorch_msssim import ms_ssim

from bench.atomic import atomic_write
from bench.complexity import DECODER_PARTS, ENCODER_PARTS, last_forward_costs
from bench.models.context3d import build_context_model, warm_start
from bench.models.ecg import build_variable_rate, init_from_hyperprior
from bench.models.hyperprior import build_model, hard_forward
from bench.paths import checkpoints_dir
from bench.train.data import CropSampler, load_training_images
from bench.train.recipe import Recipe, RunSpec
from bench.train.widen import init_from_variable_rate

MSSSIM_WEIGHTS = [0.0448, 0.2856, 0.3001, 0.2363, 0.1333]
TRAIN_COLUMNS = ["step", "loss", "bpp", "distortion", "msssim", "psnr", "aux_loss", "lr", "seconds"]
VAL_COLUMNS = ["step", "loss", "bpp", "distortion", "msssim", "psnr", "seconds"]
VR_TRAIN_COLUMNS = TRAIN_COLUMNS + ["gate_penalty", "active", "alpha"]
VR_VAL_COLUMNS = VAL_COLUMNS + ["lmbda", "eff_enc_frac", "eff_dec_frac"]


def run_dir(submission: str, run: str) -> Path:
    return checkpoints_dir() / submission / run


def weights_path(submission_dir: Path, run: str) -> Path:
    """Exported weights live beside the recipe: ``<submission>/weights/<run>.pt``."""
    return Path(submission_dir) / "weights" / f"{run}.pt"


def sample_distortion(x_hat: torch.Tensor, x: torch.Tensor, recipe: Recipe) -> tuple[torch.Tensor, dict]:
    """Per-sample D, shape (B,) (1 − MS-SSIM or MSE on [0, 255]), plus the batch's MS-SSIM and
    pooled PSNR for the log."""
    x_hat = x_hat.clamp(0, 1)
    mse = (x_hat - x).pow(2).mean(dim=(1, 2, 3))
    w = MSSSIM_WEIGHTS[: recipe.loss.msssim_scales]
    ms = ms_ssim(x_hat, x, data_range=1.0, win_size=recipe.loss.msssim_win, weights=w, size_average=False)
    d = 1 - ms if recipe.loss.distortion == "ms-ssim" else mse * 255**2
    return d, {"msssim": ms.mean().item(), "psnr": (10 * math.log10(1 / max(mse.mean().item(), 1e-12)))}


def distortion(x_hat: torch.Tensor, x: torch.Tensor, recipe: Recipe) -> tuple[torch.Tensor, dict]:
    """D of the batch (the mean of the per-sample values) plus both metrics for the log."""
    d, m = sample_distortion(x_hat, x, recipe)
    return d.mean(), m


def sample_bits(likelihoods: dict) -> torch.Tensor:
    """Bits of every latent, per sample: shape (B,)."""
    return sum(-torch.log2(lik).flatten(1).sum(dim=1) for lik in likelihoods.values())


def rate_bpp(likelihoods: dict, real_pixels: int) -> torch.Tensor:
    """Bits per real (unpadded) pixel from the likelihoods of all latents."""
    return sample_bits(likelihoods).sum() / real_pixels


def pad_batch(x: torch.Tensor, pad_prob: float, pad_max: int, rng: random.Random) -> tuple[torch.Tensor, int, int]:
    """Padding-aware training (CLIC 2020 Algorithm 1): with probability ``pad_prob`` keep only the
    top-left (H−h_pad)×(W−w_pad) of the batch and zero-fill the rest, so the network sees the
    zero borders that inference padding creates. Returns the input and the real height/width."""
    _, _, h, w = x.shape
    if pad_max <= 0 or rng.random() >= pad_prob:
        return x, h, w
    hp, wp = rng.randint(0, pad_max), rng.randint(0, pad_max)
    real = x[..., : h - hp, : w - wp]
    return F.pad(real, (0, wp, 0, hp)), h - hp, w - wp


def _optimizers(model: torch.nn.Module, run: RunSpec):
    """Adam for the network, with the bit-rate modulator at ``bm_lr`` and the gate thresholds
    at ``alpha_lr`` when set (Adam moves a parameter about lr per step whatever the gradient's
    size, so lr sets how fast m(λ) can spread and α can ramp), and Adam for the entropy
    bottleneck's quantiles. Each group is named; the lr drop divides all but the gates'."""
    main, bm, alphas, aux = [], [], [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if name.endswith(".quantiles"):
            aux.append(p)
        elif name.endswith(".alpha"):
            alphas.append(p)
        elif name.startswith("bm.") and run.bm_lr is not None:
            bm.append(p)
        else:
            main.append(p)
    groups = [{"params": main, "name": "net", "base_lr": run.lr}]
    if bm:
        groups.append({"params": bm, "lr": run.bm_lr, "name": "bm", "base_lr": run.bm_lr})
    if alphas:
        groups.append({"params": alphas, "lr": run.alpha_lr, "name": "alpha", "base_lr": run.alpha_lr})
    return torch.optim.Adam(groups, lr=run.lr), torch.optim.Adam(aux, lr=1e-3)


def _set_lr(opt: torch.optim.Optimizer, dropped: bool) -> float:
    """Each group at its base lr, ÷10 after the drop (not the gates'); the network's lr."""
    for g in opt.param_groups:
        g["lr"] = g["base_lr"] / 10 if dropped and g["name"] != "alpha" else g["base_lr"]
    return opt.param_groups[0]["lr"]


def new_model(recipe: Recipe, run: RunSpec) -> torch.nn.Module:
    """The untrained model a recipe's run trains."""
    m = recipe.model
    if m.variable_rate:
        return build_variable_rate(m.arch, m.N, m.M, *recipe.lambda_range(run))
    if m.context:
        return build_context_model(m.arch, m.N, m.M)
    return build_model(m.arch, m.N, m.M)


def rounded_forward(model: torch.nn.Module, x: torch.Tensor) -> dict:
    """Forward pass on rounded latents: the model's own (context models), else the hyperprior's."""
    own = getattr(model, "hard_forward", None)
    return own(x) if own is not None else hard_forward(model, x)


def val_lambdas(recipe: Recipe, run: RunSpec) -> list[float]:
    """λ values a variable-rate run is validated at: both ends and the geometric middle."""
    lo, hi = recipe.lambda_range(run)
    return [lo, math.sqrt(lo * hi), hi]


def combine_samples(per_sample: torch.Tensor, balance: str) -> torch.Tensor:
    """The batch's rate-distortion loss from its samples' R_i + λ_i·D_i (:data:`bench.train.recipe.BALANCES`)."""
    return (per_sample.log() if balance == "log" else per_sample).mean()


def _variable_rate_loss(model, x: torch.Tensor, x_in: torch.Tensor, rh: int, rw: int, recipe: Recipe,
                        run: RunSpec, rng: random.Random) -> tuple[torch.Tensor, dict]:
    """mean_i(R_i + λ_i·D_i) + γ·Σ_n (α_n − α_t)², one log-uniform λ_i per sample (with
    ``balance = "log"``, mean_i log(R_i + λ_i·D_i): see :data:`bench.train.recipe.BALANCES`)."""
    lo, hi = (math.log(v) for v in recipe.lambda_range(run))
    lmbda = torch.tensor([math.exp(rng.uniform(lo, hi)) for _ in range(x.shape[0])])
    out = model(x_in, lmbda)
    bpp = sample_bits(out["likelihoods"]) / (rh * rw)
    d, m = sample_distortion(out["x_hat"][..., :rh, :rw], x[..., :rh, :rw], recipe)
    penalty = model.gate_penalty(run.alpha_target)
    loss = combine_samples(bpp + lmbda * d, run.balance) + run.gamma * penalty
    active = list(model.active_fractions().values())
    alphas = [g.alpha.item() for g in model.named_gates().values()]
    return loss, {"bpp": bpp.mean().item(), "distortion": d.mean().item(), **m, "gate_penalty": penalty.item(),
                  "active": sum(active) / len(active) if active else 1.0,
                  "alpha": sum(alphas) / len(alphas) if alphas else 0.0}


def _freeze_encoder_side(model: torch.nn.Module) -> None:
    """Stage 2 (soft-then-hard): g_a and h_a are frozen so the latents the decoder side is tuned
    on are exactly those the encoder will send; only g_s, h_s and the entropy models learn."""
    for part in (model.g_a, model.h_a):
        for p in part.parameters():
            p.requires_grad_(False)


def _resolve_init(recipe: Recipe, run: RunSpec) -> Path:
    sub, _, name = run.init.rpartition("/")
    sub = sub or recipe.submission
    ckpt = run_dir(sub, name) / "last.pt"
    return ckpt if ckpt.exists() else weights_path(recipe.path.parent.parent / sub, name)


def _exported_progress(recipe: Recipe, run: RunSpec) -> tuple[dict, int, float] | None:
    """Weights, step and seconds of this run's committed export, with its logs restored.

    Checkpoints live in an ignored folder and do not survive a fresh checkout; the export
    (committed) does, so a later session continues from it instead of starting over.
    """
    path = weights_path(recipe.path.parent, run.name)
    if not path.exists():
        return None
    meta = torch.load(path, map_location="cpu", weights_only=True)["meta"]
    if meta.get("run", {}).get("name") != run.name or not meta.get("steps"):
        return None
    step = int(meta["steps"])
    out_dir = run_dir(recipe.submission, run.name)
    for log in ("train.csv", "val.csv"):
        exported_log = path.parent / f"{run.name}.{log}"
        if exported_log.exists():
            (out_dir / log).write_bytes(exported_log.read_bytes())
            _truncate_log(out_dir / log, step)
    return load_state(path), step, float(meta.get("train_seconds", 0.0))


def load_state(path: Path) -> dict:
    """Model weights from a checkpoint or an exported weight file (fp16 is cast back to fp32)."""
    obj = torch.load(path, map_location="cpu", weights_only=True)
    state = obj["model"] if "model" in obj else obj["state_dict"]
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def _truncate_log(path: Path, step: int) -> None:
    if path.exists():
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
        if rows and int(rows[-1]["step"]) > step:
            with path.open("w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=list(rows[0]))
                w.writeheader()
                w.writerows(r for r in rows if int(r["step"]) <= step)


def _append_csv(path: Path, columns: list[str], row: dict) -> None:
    new = not path.exists()
    with path.open("a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns)
        if new:
            w.writeheader()
        w.writerow({k: row[k] for k in columns})


def _val_crop(img: torch.Tensor) -> torch.Tensor:
    """The centre crop validation uses: up to 256 px, a multiple of 64."""
    _, h, w = img.shape
    s = min(256, h, w) // 64 * 64
    top, left = (h - s) // 2, (w - s) // 2
    return img[:, top : top + s, left : left + s].unsqueeze(0).float() / 255


@torch.no_grad()
def validate(model, images: list[torch.Tensor], recipe: Recipe, run: RunSpec) -> dict:
    """Real-quantisation (rounded) loss on held-out training-folder images, centre 256 crops."""
    model.eval()
    tot = {"loss": 0.0, "bpp": 0.0, "distortion": 0.0, "msssim": 0.0, "psnr": 0.0}
    for img in images:
        x = _val_crop(img)
        out = rounded_forward(model, x)
        bpp = rate_bpp(out["likelihoods"], x.shape[-2] * x.shape[-1])
        d, m = distortion(out["x_hat"], x, recipe)
        for k, v in {"loss": (bpp + run.lmbda * d).item(), "bpp": bpp.item(), "distortion": d.item(), **m}.items():
            tot[k] += v / len(images)
    model.train()
    return tot


@torch.no_grad()
def validate_variable_rate(model, images: list[torch.Tensor], recipe: Recipe, run: RunSpec) -> list[dict]:
    """One row per validation λ: rounded-latent loss, metrics and effective / dense MACs (as
    the codec runs it: eval mode, gated convs on active channels)."""
    model.eval()
    rows = []
    for lmbda in val_lambdas(recipe, run):
        tot = dict.fromkeys(["loss", "bpp", "distortion", "msssim", "psnr", "eff_enc_frac", "eff_dec_frac"], 0.0)
        for img in images:
            x = _val_crop(img)
            out = model(x, torch.tensor([lmbda]))
            bpp = rate_bpp(out["likelihoods"], x.shape[-2] * x.shape[-1])
            d, m = distortion(out["x_hat"], x, recipe)
            costs = last_forward_costs(model)
            row = {"loss": (bpp + lmbda * d).item(), "bpp": bpp.item(), "distortion": d.item(), **m,
                   "eff_enc_frac": costs.effective(ENCODER_PARTS) / costs.dense(ENCODER_PARTS),
                   "eff_dec_frac": costs.effective(DECODER_PARTS) / costs.dense(DECODER_PARTS)}
            for k, v in row.items():
                tot[k] += v / len(images)
        rows.append(tot | {"lmbda": lmbda})
    model.train()
    return rows


def _start(recipe: Recipe, run: RunSpec, model, opt, aux_opt, rng: random.Random, out_dir: Path) -> tuple[int, float]:
    """Where a run begins: its checkpoint (full resume), else its exported weights (warm
    restart, Adam afresh), else its ``init`` weights, else a seeded fresh model. Returns
    (step, training seconds so far)."""
    ckpt_path = out_dir / "last.pt"
    if ckpt_path.exists():
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        model.load_state_dict(ck["model"])
        recipe_lrs = [{k: g[k] for k in ("name", "base_lr")} for g in opt.param_groups]
        opt.load_state_dict(ck["opt"])                 # Adam state; the lrs stay the recipe's
        for g, own in zip(opt.param_groups, recipe_lrs):
            g.update(own)
        aux_opt.load_state_dict(ck["aux_opt"])
        rng.setstate(ck["py_rng"])
        torch.set_rng_state(ck["torch_rng"])
        print(f"[train] resumed {recipe.submission}/{run.name} at step {ck['step']} ({ck['seconds'] / 3600:.2f} h)")
        for log in ("train.csv", "val.csv"):   # rows logged after the checkpoint will be logged again
            _truncate_log(out_dir / log, ck["step"])
        return ck["step"], ck["seconds"]
    if (exported := _exported_progress(recipe, run)) is not None:
        state, step, seconds = exported
        model.load_state_dict(state)
        rng.seed(run.seed + step)
        torch.manual_seed(run.seed + step)
        print(f"[train] no checkpoint in {out_dir}: warm restart of {recipe.submission}/{run.name} from its "
              f"exported weights at step {step} (optimiser state is not exported: Adam starts afresh)")
        return step, seconds
    if run.init:
        src = _resolve_init(recipe, run)
        if recipe.model.variable_rate:
            state = load_state(src)
            left = (init_from_variable_rate if "bm.lmbda_min" in state else init_from_hyperprior)(model, state)
            print(f"[train] {recipe.submission}/{run.name} starts from {src}; {len(left)} tensors keep their "
                  f"initial values: {sorted({k.rsplit('.', 1)[0] for k in left})}")
        elif recipe.model.context:
            left = warm_start(model, load_state(src))
            print(f"[train] {recipe.submission}/{run.name} starts from {src}; {len(left)} tensors keep their "
                  f"initial values: {sorted({k.split('.', 2)[0] + '.' + k.split('.', 2)[1] for k in left})}")
        else:
            model.load_state_dict(load_state(src))
            print(f"[train] {recipe.submission}/{run.name} starts from {src}")
    else:
        torch.manual_seed(run.seed)
    return 0, 0.0


def _frozen_loss(model, x: torch.Tensor, x_in: torch.Tensor, rh: int, rw: int, recipe: Recipe, run: RunSpec,
                 log: bool) -> tuple[torch.Tensor, dict]:
    """The loss while a context model's transforms are frozen: only the rate depends on a trained
    weight, so the synthesis and the distortion run (without gradients) on the steps that are
    logged only; the other steps log ``None`` for them, which the averages skip."""
    out = model.rate_forward(x_in)
    bpp = rate_bpp(out["likelihoods"], x.shape[0] * rh * rw)
    logs = {"bpp": bpp.item(), "loss": None, "distortion": None}
    if log:
        with torch.no_grad():
            d, m = distortion(model.g_s(out["y_hat"])[..., :rh, :rw], x[..., :rh, :rw], recipe)
        logs |= {"loss": bpp.item() + run.lmbda * d.item(), "distortion": d.item(), **m}
    return bpp, logs


def _step(model, opt, aux_opt, x: torch.Tensor, recipe: Recipe, run: RunSpec, rng: random.Random,
          frozen: bool = False, log: bool = True) -> dict[str, float | None]:
    """One optimiser step on a batch (padding-aware); the logged values (``None``: not computed
    on this step). ``frozen``: a context model's transforms are frozen (see :func:`_frozen_loss`)."""
    pad_max = recipe.data.pad_max if recipe.data.pad_max is not None else round(20 * recipe.data.crop / 256)
    x_in, rh, rw = pad_batch(x, recipe.data.pad_prob, pad_max, rng)
    if recipe.model.variable_rate:
        loss, logs = _variable_rate_loss(model, x, x_in, rh, rw, recipe, run, rng)
    elif frozen:
        loss, logs = _frozen_loss(model, x, x_in, rh, rw, recipe, run, log)
    else:
        out = rounded_forward(model, x_in) if run.stage == 2 else model(x_in)
        bpp = rate_bpp(out["likelihoods"], x.shape[0] * rh * rw)
        d, m = distortion(out["x_hat"][..., :rh, :rw], x[..., :rh, :rw], recipe)
        loss = bpp + run.lmbda * d
        logs = {"bpp": bpp.item(), "distortion": d.item(), **m}
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if run.clip:
        torch.nn.utils.clip_grad_norm_(opt.param_groups[0]["params"], run.clip)
    opt.step()
    aux = model.aux_loss()
    aux_opt.zero_grad(set_to_none=True)
    aux.backward()
    aux_opt.step()
    return {"loss": loss.item(), "aux_loss": aux.item(), **logs}


def _log_train(out_dir: Path, run: RunSpec, vr: bool, acc: dict[str, tuple[float, int]], step: int, lr: float,
               seconds: float) -> None:
    row = {k: s / n for k, (s, n) in acc.items()} | {"step": step, "lr": lr, "seconds": round(seconds, 1)}
    _append_csv(out_dir / "train.csv", VR_TRAIN_COLUMNS if vr else TRAIN_COLUMNS, row)
    print(f"[train] {run.name} step {step} loss {row['loss']:.4f} bpp {row['bpp']:.3f} ms-ssim {row['msssim']:.4f} "
          f"psnr {row['psnr']:.2f} ({seconds / step if step else 0:.2f} s/step avg)", flush=True)


def _log_val(model, val_imgs: list, recipe: Recipe, run: RunSpec, out_dir: Path, step: int, seconds: float) -> None:
    vr = recipe.model.variable_rate
    rows = validate_variable_rate(model, val_imgs, recipe, run) if vr else [validate(model, val_imgs, recipe, run)]
    for v in rows:
        v |= {"step": step, "seconds": round(seconds, 1)}
        _append_csv(out_dir / "val.csv", VR_VAL_COLUMNS if vr else VAL_COLUMNS, v)
        at = f" λ {v['lmbda']:.3g}" if vr else ""
        print(f"[val]   {run.name} step {step}{at} bpp {v['bpp']:.3f} ms-ssim {v['msssim']:.4f} "
              f"psnr {v['psnr']:.2f}", flush=True)


def train_run(recipe: Recipe, run_name: str, max_steps: int | None = None, threads: int | None = None) -> Path:
    """Train (or resume) one run of a recipe; returns the exported weights path."""
    if threads:
        torch.set_num_threads(threads)
    run = recipe.run(run_name)
    total_steps = min(run.steps, max_steps) if max_steps else run.steps
    out_dir = run_dir(recipe.submission, run.name)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = new_model(recipe, run)
    if run.stage == 2:
        _freeze_encoder_side(model)
    opt, aux_opt = _optimizers(model, run)
    rng = random.Random(run.seed)
    step, seconds = _start(recipe, run, model, opt, aux_opt, rng, out_dir)
    train_imgs, val_imgs = load_training_images(recipe.data)
    sampler = CropSampler(train_imgs, recipe.data.crop, recipe.data.batch, seed=run.seed + step)
    model.train()
    acc: dict[str, tuple[float, int]] = {}   # per logged value: its sum and count since the last log
    t_prev = time.perf_counter()
    while step < total_steps:
        lr = _set_lr(opt, run.lr_drop_at is not None and step >= run.lr_drop_at)
        frozen = step < run.freeze_steps
        if run.freeze_steps:
            model.transforms_trainable(not frozen)
        logs = _step(model, opt, aux_opt, sampler.batch(), recipe, run, rng, frozen,
                     log=(step + 1) % run.log_every == 0 or step + 1 == total_steps)
        step += 1
        now = time.perf_counter()
        seconds, t_prev = seconds + now - t_prev, now
        for k, v in logs.items():
            if v is not None:
                total, n = acc.get(k, (0.0, 0))
                acc[k] = (total + v, n + 1)
        if step % run.log_every == 0 or step == total_steps:
            _log_train(out_dir, run, recipe.model.variable_rate, acc, step, lr, seconds)
            acc = {}
        if (step % run.val_every == 0 or step == total_steps) and val_imgs:
            _log_val(model, val_imgs, recipe, run, out_dir, step, seconds)
            t_prev = time.perf_counter()  # validation time is not training time
        if step % run.save_every == 0 or step == total_steps:
            _save(model, opt, aux_opt, step, seconds, rng, out_dir / "last.pt")
            export(recipe, run, model, step, seconds)
            t_prev = time.perf_counter()
    return weights_path(recipe.path.parent, run.name)


def _save(model, opt, aux_opt, step, seconds, rng, path: Path) -> None:
    state = {"model": model.state_dict(), "opt": opt.state_dict(), "aux_opt": aux_opt.state_dict(), "step": step,
             "seconds": seconds, "py_rng": rng.getstate(), "torch_rng": torch.get_rng_state()}
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def _range_meta(recipe: Recipe, run: RunSpec) -> dict:
    lo, hi = recipe.lambda_range(run)
    return {"lmbda_min": lo, "lmbda_max": hi, "gated": recipe.model.gated}


def export(recipe: Recipe, run: RunSpec, model, step: int, seconds: float) -> None:
    """fp16 weights + metadata + the CSV logs into the submission folder (the files to commit)."""
    dst = weights_path(recipe.path.parent, run.name)
    dst.parent.mkdir(parents=True, exist_ok=True)
    # Parameters go to fp16 (half the size, no measurable loss); buffers stay as they are: some
    # are constants fp16 cannot hold (the 1e-9 likelihood bound, GDN's 2**-36 pedestal).
    params = {n for n, _ in model.named_parameters()}
    state = {k: v.half() if k in params and v.is_floating_point() else v for k, v in model.state_dict().items()}
    meta = {"arch": recipe.model.arch, "N": recipe.model.N, "M": recipe.model.M, "lmbda": run.lmbda,
            **(_range_meta(recipe, run) if recipe.model.variable_rate else {}),
            "distortion": recipe.loss.distortion, "steps": step, "train_seconds": round(seconds, 1),
            "threads": torch.get_num_threads(), "device": "cpu", "run": asdict(run) | {"init": run.init}}
    atomic_write(dst, lambda tmp: torch.save({"state_dict": state, "meta": meta}, tmp))
    dst.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
    src = run_dir(recipe.submission, run.name)
    for log in ("train.csv", "val.csv"):
        if (src / log).exists():
            (dst.parent / f"{run.name}.{log}").write_bytes((src / log).read_bytes())
