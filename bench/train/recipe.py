"""Training recipes: ``submissions/<name>/train.toml`` parsed into typed settings.

A recipe has shared ``[model]``, ``[data]`` and ``[loss]`` tables and an ordered list of
``[[runs]]``; each run trains one model (one λ) and may start from another run's weights
(``init = "base"`` or ``init = "other_submission/base"``), which is how every variant is
derived from one shared stage-1 base.

Variable-rate architectures (``ecg_hyperprior``, ``bm_hyperprior``) train one model for the
whole range ``[model] lmbda_min .. lmbda_max`` instead of one λ per run: their runs give no
``lmbda``, and ``gamma`` / ``alpha_target`` weight the gated model's sparsity penalty. A run
may train over its own, wider range (``lmbda_min`` / ``lmbda_max`` in ``[[runs]]``), starting
from a run over the narrower one (``init``): that is how a range is extended.

Context architectures (:mod:`bench.models.context3d`) warm-start from a scale hyperprior's
weights (``init``); ``freeze_steps`` keeps those weights frozen for the run's first steps, so
only the new entropy model learns.
"""

from __future__ import annotations

import tomllib
from dataclasses import KW_ONLY, dataclass, field, fields
from pathlib import Path


class RecipeError(ValueError):
    """A train.toml that cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class ModelSpec:
    arch: str = "scale_hyperprior"
    N: int = 128
    M: int = 192
    lmbda_min: float | None = None   # variable-rate archs: the λ range one model covers
    lmbda_max: float | None = None

    @property
    def variable_rate(self) -> bool:
        from bench.models.ecg import VARIABLE_RATE_ARCHS  # not at import time: compressai is slow to load

        return self.arch in VARIABLE_RATE_ARCHS

    @property
    def gated(self) -> bool:
        from bench.models.ecg import VARIABLE_RATE_ARCHS

        return VARIABLE_RATE_ARCHS.get(self.arch, False)

    @property
    def context(self) -> bool:
        from bench.models.context3d import CONTEXT_ARCHS

        return self.arch in CONTEXT_ARCHS


@dataclass(frozen=True)
class DataSpec:
    train: str = "cid22-train"
    val_images: int = 8          # the last images (by file name) of the training folder
    crop: int = 128
    batch: int = 8
    pad_prob: float = 0.5        # padding-aware training (CLIC 2020, Algorithm 1)
    pad_max: int | None = None   # None: 20 px scaled by crop / 256


@dataclass(frozen=True)
class LossSpec:
    distortion: str = "ms-ssim"  # or "mse"
    msssim_win: int = 7          # smaller window than the 11 of evaluation, for small crops
    msssim_scales: int = 5


@dataclass(frozen=True)
class RunSpec:
    name: str
    _: KW_ONLY
    steps: int
    lmbda: float | None = None      # fixed-λ archs only; variable-rate runs sample λ per sample
    lr: float = 3e-4
    lr_drop_at: int | None = None   # step after which lr is divided by 10
    init: str | None = None         # "run" or "submission/run": start from those weights
    stage: int = 1                  # 1: additive noise; 2: soft-then-hard (decoder side only)
    val_every: int = 250
    save_every: int = 100
    log_every: int = 25
    clip: float = 1.0
    seed: int = 0
    gamma: float = 0.0              # gated archs: weight of Σ_n (α_n − α_target)²
    alpha_target: float = 0.0       # gate threshold target (fraction of the mean channel energy)
    alpha_lr: float = 1e-3          # Adam lr of the gate thresholds (Adam moves α ≤ alpha_lr per step)
    bm_lr: float | None = None      # variable-rate archs: Adam lr of the bit-rate modulator (None: lr)
    freeze_steps: int = 0           # context archs: the first steps train only the entropy model
    lmbda_min: float | None = None  # variable-rate archs: this run's λ range (None: [model]'s)
    lmbda_max: float | None = None
    balance: str = "none"           # variable-rate archs: "log" (BALANCES) weighs each sample's R + λD


@dataclass(frozen=True)
class Recipe:
    submission: str
    path: Path
    model: ModelSpec
    data: DataSpec
    loss: LossSpec
    runs: tuple[RunSpec, ...] = field(default_factory=tuple)

    def lambda_range(self, run: RunSpec) -> tuple[float, float]:
        """The λ range a variable-rate run trains over: its own, else the model's."""
        return _run_range(self.model, run)

    def run(self, name: str) -> RunSpec:
        for r in self.runs:
            if r.name == name:
                return r
        raise RecipeError(f"{self.path}: no run named {name!r}; runs: {[r.name for r in self.runs]}")


# How a variable-rate run combines its samples' losses R_i + λ_i·D_i: "none" averages them, so
# the samples at the top of a wide λ range (losses 40× those at the bottom, measured for the
# MSE pair) set the shared transforms' gradient; "log" averages log(R_i + λ_i·D_i), whose
# gradient is each sample's divided by its own loss: every λ pulls with the same relative
# weight, and each sample's minimiser is unchanged (log is increasing).
BALANCES = ("none", "log")


def _run_range(model: ModelSpec, run: RunSpec) -> tuple[float | None, float | None]:
    return (run.lmbda_min if run.lmbda_min is not None else model.lmbda_min,
            run.lmbda_max if run.lmbda_max is not None else model.lmbda_max)


def _build(cls, table: dict, where: str):
    known = {f.name for f in fields(cls)}
    unknown = set(table) - known
    if unknown:
        raise RecipeError(f"{where}: unknown field(s) {sorted(unknown)}; known: {sorted(known)}")
    try:
        return cls(**table)
    except TypeError as e:
        raise RecipeError(f"{where}: {e}") from None


def _check_runs(path: Path, model: ModelSpec, runs: tuple[RunSpec, ...]) -> None:
    """λ settings that fit the architecture: one λ per run, or a range for the model."""
    if model.variable_rate:
        if model.lmbda_min is None or model.lmbda_max is None or not 0 < model.lmbda_min < model.lmbda_max:
            raise RecipeError(f"{path} [model]: {model.arch} needs 0 < lmbda_min < lmbda_max")
        for r in runs:
            if r.lmbda is not None:
                raise RecipeError(f"{path} run {r.name!r}: {model.arch} samples λ in [lmbda_min, lmbda_max]; "
                                  "drop lmbda")
            if r.stage != 1:
                raise RecipeError(f"{path} run {r.name!r}: stage 2 is not implemented for {model.arch}")
            if r.gamma and not model.gated:
                raise RecipeError(f"{path} run {r.name!r}: gamma needs a gated arch; {model.arch} has no gates")
            if r.balance not in BALANCES:
                raise RecipeError(f"{path} run {r.name!r}: balance {r.balance!r}; allowed: {BALANCES}")
            lo, hi = _run_range(model, r)
            if not 0 < lo < hi:
                raise RecipeError(f"{path} run {r.name!r}: needs 0 < lmbda_min < lmbda_max, got {lo}, {hi}")
        return
    if model.lmbda_min is not None or model.lmbda_max is not None:
        raise RecipeError(f"{path} [model]: lmbda_min/lmbda_max are for variable-rate archs, not {model.arch}")
    for r in runs:
        if r.lmbda_min is not None or r.lmbda_max is not None or r.balance != "none":
            raise RecipeError(f"{path} run {r.name!r}: lmbda_min/lmbda_max/balance are for variable-rate archs, "
                              f"not {model.arch}")
        if r.lmbda is None or r.gamma:
            raise RecipeError(f"{path} run {r.name!r}: {model.arch} needs lmbda (and no gamma)")
        if r.freeze_steps and not (model.context and r.stage == 1 and r.freeze_steps > 0):
            raise RecipeError(f"{path} run {r.name!r}: freeze_steps (a positive step count) is for stage-1 runs "
                              f"of the context archs, not {model.arch} stage {r.stage}")


def load_recipe(path: Path) -> Recipe:
    """Parse and validate a train.toml."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise RecipeError(f"{path}: cannot read recipe: {e}") from None
    runs = tuple(_build(RunSpec, r, f"{path} [[runs]] #{i + 1}") for i, r in enumerate(raw.get("runs", [])))
    if not runs:
        raise RecipeError(f"{path}: no [[runs]] table; a recipe trains at least one model")
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        raise RecipeError(f"{path}: duplicate run names in {names}")
    model = _build(ModelSpec, raw.get("model", {}), f"{path} [model]")
    _check_runs(path, model, runs)
    return Recipe(
        submission=path.parent.name,
        path=path,
        model=model,
        data=_build(DataSpec, raw.get("data", {}), f"{path} [data]"),
        loss=_build(LossSpec, raw.get("loss", {}), f"{path} [loss]"),
        runs=runs,
    )
