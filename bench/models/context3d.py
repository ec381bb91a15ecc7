"""The 3-D context entropy model (Guo et al., "3-D Context Entropy Model for Improved Practical
Image Compression", CVPR workshops 2020) on the project's scale-hyperprior transforms.

y (M channels) is split into channel groups. Each group's elements get a K-component Gaussian
mixture whose parameters come from a 5×5 causal context over y and the hyperprior features
(the output of h_s), through a residual parameter estimator (RPE: three 1×1 convolutions, then
one residual block of three 1×1 convolutions). Group 1 sees only itself at strictly earlier
positions (mask type A); with the 3-D context, group 2 also sees group 1 at the same and
earlier positions (type B), so at each position a decoder decodes group 1, then group 2.

Coding visits y in waves (:func:`wave_schedule`): position (h, w) reads (h, w−1), (h, w−2)
and rows h−1, h−2 up to column w+2, so every position of wave t = 3h + w depends only on
earlier waves (t − 1 is the largest: (h, w−1) and (h−1, w+2)), and a wave's positions are
computed in one batch (:meth:`Context3D.wavefront_pass`), group 1 then group 2: 3·H + W − 3
batches instead of H·W positions.

The ablation switches are constructor arguments, and each combination the recipes use has an
architecture name in :data:`CONTEXT_ARCHS`, so a weight file's ``meta`` (arch, N, M) rebuilds it.

Training quantisation: additive uniform noise for the rate term and for g_s, as the base
hyperprior was trained; the context convolutions see round(y) (straight-through), which is
what a decoder has, so their inputs do not change between training and coding.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from compressai.models import ScaleHyperprior
from compressai.models.base import CompressionModel
from compressai.ops.bound_ops import LowerBoundFunction
from torch import nn

KERNEL = 5
PAD = KERNEL // 2
TAPS = PAD * KERNEL + PAD + 1   # raster positions up to and including the centre
WAVE_STEP = KERNEL - PAD        # waves t = 3h + w: the context's top-right tap (h−1, w+2) is one wave earlier
_TAP_ROWS = torch.arange(TAPS) // KERNEL        # each causal tap's offset in the 5×5 window
_TAP_COLS = torch.arange(TAPS) % KERNEL
SCALE_MIN = 0.11          # compressai's lower bound on Gaussian scales
LIKELIHOOD_MIN = 1e-9     # compressai's lower bound on likelihoods

#: name → constructor switches (groups, cross: group 2 sees group 1, K, rpe).
CONTEXT_ARCHS: dict[str, dict] = {
    # the paper's model, and its ablation ladder (each step adds one thing):
    "context2d_gaussian": {"groups": 1, "cross": False, "K": 1, "rpe": False},  # Minnen 2018's shape
    "context3d_gaussian": {"groups": 2, "cross": True, "K": 1, "rpe": False},   # + the 3-D context
    "context3d_gmm_plain": {"groups": 2, "cross": True, "K": 3, "rpe": False},  # + the mixture
    "context3d_gmm": {"groups": 2, "cross": True, "K": 3, "rpe": True},         # + RPE
}

#: The parts a warm start copies from a scale hyperprior (and may freeze for a while).
TRANSFORMS = ("g_a", "g_s", "h_a", "h_s", "entropy_bottleneck")


class MaskedConv(nn.Conv2d):
    """5×5 causal convolution over ``seen + own`` input channels: the first ``seen`` channels
    (groups already decoded at this position) are visible at the centre too (mask type B), the
    ``own`` channels (the group being predicted) only at strictly earlier raster positions
    (type A). The mask is fixed by the architecture, so it is not stored in weight files."""

    def __init__(self, seen: int, own: int, out: int) -> None:
        super().__init__(seen + own, out, KERNEL, padding=PAD)
        mask = torch.ones_like(self.weight)
        mask[:, :, PAD + 1:] = 0
        mask[:, :, PAD, PAD + 1:] = 0
        mask[:, seen:, PAD, PAD] = 0
        self.register_buffer("mask", mask, persistent=False)
        self.baked = False

    def bake(self) -> None:
        """Multiply the mask into the weights once (coding only): every later call then uses the
        very same tensor, with no per-call multiplication."""
        if not self.baked:
            self.weight.data.mul_(self.mask)
            self._taps = self._causal_taps(self.weight)
            self._taps_by_cell = self._cell_major(self._taps)
            self.baked = True

    def _weight(self) -> torch.Tensor:
        return self.weight if self.baked else self.weight * self.mask

    def _causal_taps(self, weight: torch.Tensor) -> torch.Tensor:
        """out × (C·TAPS): the weights of the raster positions up to the centre, the only ones
        the mask keeps."""
        return weight.reshape(self.out_channels, self.in_channels, KERNEL * KERNEL)[:, :, :TAPS].reshape(
            self.out_channels, -1).contiguous()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self._weight(), self.bias, padding=PAD)

    def at(self, crop: torch.Tensor) -> torch.Tensor:
        """The output at one position (1×out) from its 1×C×5×5 neighbourhood: a matrix-vector
        product over the causal taps (a 5×5 convolution of one output pixel costs ten times
        more in torch's convolution kernels)."""
        taps = crop.reshape(1, self.in_channels, KERNEL * KERNEL)[:, :, :TAPS].reshape(1, -1)
        weight = self._taps if self.baked else self._causal_taps(self._weight())
        return F.linear(taps, weight, self.bias)

    def _cell_major(self, taps: torch.Tensor) -> torch.Tensor:
        """out × (C·TAPS) causal-tap weights (channel major) as a contiguous (TAPS·C) × out
        matrix, tap major: the layout :meth:`at_cells` gathers its inputs in."""
        return taps.view(self.out_channels, self.in_channels, TAPS).permute(2, 1, 0).reshape(-1, self.out_channels) \
            .contiguous()

    def at_cells(self, cells: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
        """The outputs (B×out) at B positions: :meth:`at` for a batch, one gather and one
        matrix product. ``cells``: y padded by 2 as (H'·W')×C, a row per position; ``taps``:
        the B positions' TAPS causal cells each, flat indices into it, position major."""
        inputs = cells.index_select(0, taps).view(-1, TAPS * self.in_channels)           # B×(TAPS·C), tap major
        weight = self._taps_by_cell if self.baked else self._cell_major(self._causal_taps(self._weight()))
        return torch.addmm(self.bias, inputs, weight)


class ParameterEstimator(nn.Module):
    """1×1 convolutions from context + hyperprior features to distribution parameters: three
    convolutions, then (RPE) one residual block of three more on the parameters."""

    def __init__(self, inputs: int, hidden: int, outputs: int, residual: bool) -> None:
        super().__init__()
        self.stack = nn.Sequential(
            nn.Conv2d(inputs, hidden, 1), nn.LeakyReLU(),
            nn.Conv2d(hidden, hidden, 1), nn.LeakyReLU(),
            nn.Conv2d(hidden, outputs, 1),
        )
        self.residual = nn.Sequential(
            nn.LeakyReLU(), nn.Conv2d(outputs, hidden, 1),
            nn.LeakyReLU(), nn.Conv2d(hidden, hidden, 1),
            nn.LeakyReLU(), nn.Conv2d(hidden, outputs, 1),
        ) if residual else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.stack(x)
        return p + self.residual(p) if self.residual is not None else p

    def at(self, v: torch.Tensor) -> torch.Tensor:
        """The same layers on one position's 1×C features, as matrix-vector products (torch's
        convolution kernels cost several times more on a 1×1 map)."""
        p = _as_linear(self.stack, v)
        return p + _as_linear(self.residual, p) if self.residual is not None else p

    def _in_by_out(self) -> dict[int, torch.Tensor]:
        """Each 1×1 convolution's weights as a contiguous in × out matrix, by layer id."""
        return {id(layer): layer.weight.view(layer.out_channels, -1).t().contiguous()
                for layer in self.modules() if isinstance(layer, nn.Conv2d)}

    def bake(self) -> None:
        """Coding only: the in × out weights made once."""
        self._baked = self._in_by_out()

    def at_batch(self, v: torch.Tensor) -> torch.Tensor:
        """:meth:`at` for B positions (B×C): each layer one ``addmm`` with its weights stored
        in × out (at a wave's batch sizes, 1.4× F.linear's speed on its out × in weights)."""
        weights = getattr(self, "_baked", None) or self._in_by_out()
        p = _as_addmm(self.stack, v, weights)
        return p + _as_addmm(self.residual, p, weights) if self.residual is not None else p


def _as_linear(layers: nn.Sequential, v: torch.Tensor) -> torch.Tensor:
    for layer in layers:
        v = F.linear(v, layer.weight.view(layer.out_channels, -1), layer.bias) if isinstance(layer, nn.Conv2d) \
            else layer(v)
    return v


def _as_addmm(layers: nn.Sequential, v: torch.Tensor, transposed: dict[int, torch.Tensor]) -> torch.Tensor:
    for layer in layers:
        v = torch.addmm(layer.bias, v, transposed[id(layer)]) if isinstance(layer, nn.Conv2d) else layer(v)
    return v


class ContextGroup(nn.Module):
    """One channel group: its context convolution over channels ``[start, stop)`` of y (own
    channels last) and its parameter estimator."""

    def __init__(self, start: int, own_start: int, stop: int, hyper: int, K: int, rpe: bool) -> None:
        super().__init__()
        self.start, self.own_start, self.stop = start, own_start, stop
        own = stop - own_start
        ctx = 2 * own
        outputs = (3 * K if K > 1 else 2) * own
        self.context = MaskedConv(own_start - start, own, ctx)
        self.estimator = ParameterEstimator(ctx + hyper, (ctx + hyper + outputs) // 2, outputs, rpe)

    def forward(self, y_hat: torch.Tensor, hyper: torch.Tensor) -> torch.Tensor:
        """Parameters for the whole map at once (training, likelihood estimates)."""
        return self.estimator(torch.cat([self.context(y_hat[:, self.start:self.stop]), hyper], 1))

    def at(self, y_pad: torch.Tensor, hyper: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """The P parameters at position (h, w) of a y map padded by 2 on every side."""
        crop = y_pad[:, self.start:self.stop, h:h + KERNEL, w:w + KERNEL]
        return self.estimator.at(torch.cat([self.context.at(crop), hyper[:, :, h, w]], 1))[0]

    def at_wave(self, cells: torch.Tensor, sites: torch.Tensor, wave: Wave) -> torch.Tensor:
        """The B×P parameters at a wave's B positions (:meth:`at` for a batch) from y padded by
        2 as (H'·W')×M cells and the hyperprior features as (H·W)×M sites."""
        ctx = self.context.at_cells(cells[:, self.start:self.stop], wave.taps)
        return self.estimator.at_batch(torch.cat([ctx, sites.index_select(0, wave.sites)], 1))


@dataclass(frozen=True)
class Wave:
    """The positions of one wave (``rows``, ``cols``: B each, rows ascending) as flat indices:
    ``sites`` into the H×W grid, ``cells`` into the grid padded by 2 (H'×W'), and ``taps``, the
    B·TAPS cells their causal contexts read (position major)."""

    rows: torch.Tensor
    cols: torch.Tensor
    sites: torch.Tensor
    cells: torch.Tensor
    taps: torch.Tensor


def wave_schedule(height: int, width: int) -> list[Wave]:
    """The coding order of a height×width y: wave t = 3h + w for t = 0 .. 3(H−1) + W−1, each
    wave's positions by ascending row. Every position a 5×5 causal context reads lies in an
    earlier wave (the test suite checks this against the masks)."""
    waves, padded_width = [], width + 2 * PAD
    for t in range(WAVE_STEP * (height - 1) + width):
        rows = torch.arange(max(0, -(-(t - width + 1) // WAVE_STEP)), min(height - 1, t // WAVE_STEP) + 1)
        cols = t - WAVE_STEP * rows
        taps = (rows[:, None] + _TAP_ROWS) * padded_width + cols[:, None] + _TAP_COLS
        waves.append(Wave(rows, cols, rows * width + cols, (rows + PAD) * padded_width + cols + PAD, taps.flatten()))
    return waves


def mixture(params: torch.Tensor, K: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split raw parameters (B×P×H×W; P = 3·K·G laid out as [logits | means | scales], each
    K×G, or [means | scales] for K = 1) into mixture weights, means and scales, each
    B×K×G×H×W (weights sum to 1 over K, scales ≥ SCALE_MIN). :func:`mixture_at` is the
    coding side's float64 twin for one position."""
    b, p, h, w = params.shape
    if K == 1:
        means, scales = params.view(b, 2, 1, p // 2, h, w).unbind(1)
        weights = torch.ones_like(means)
    else:
        logits, means, scales = params.view(b, 3, K, p // (3 * K), h, w).unbind(1)
        weights = torch.softmax(logits, dim=1)
    return weights, means, _lower_bound(scales, SCALE_MIN)


def mixture_at(params: np.ndarray, K: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`mixture` for one position's P parameters in float64 numpy (the codec's pmfs):
    weights, means and scales, each K×G."""
    p = params.astype(np.float64)
    if K == 1:
        means, scales = p.reshape(2, 1, -1)
        weights = np.ones_like(means)
    else:
        logits, means, scales = p.reshape(3, K, -1)
        weights = np.exp(logits - logits.max(0))
        weights /= weights.sum(0)
    return weights, means, np.maximum(scales, SCALE_MIN)


def _lower_bound(x: torch.Tensor, bound: float) -> torch.Tensor:
    """max(x, bound), with compressai's gradient that still pulls values below the bound up."""
    return LowerBoundFunction.apply(x, x.new_tensor(bound))


def _cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * torch.erfc(-(2**-0.5) * x)


def mixture_likelihood(y: torch.Tensor, params: torch.Tensor, K: int) -> torch.Tensor:
    """P(y − 0.5 < Y < y + 0.5) under the mixture, elementwise, bounded below by LIKELIHOOD_MIN."""
    weights, means, scales = mixture(params, K)
    v = (y.unsqueeze(1) - means).abs()           # symmetric form: precise in the tails
    lik = (weights * (_cdf((0.5 - v) / scales) - _cdf((-0.5 - v) / scales))).sum(1)
    return _lower_bound(lik, LIKELIHOOD_MIN)


def _ste_round(y: torch.Tensor) -> torch.Tensor:
    return y + (torch.round(y) - y).detach()


class Context3D(CompressionModel):
    """Scale-hyperprior transforms (compressai's ``ScaleHyperprior`` layers, so the
    noise_hyperprior weights load into them) with a grouped, masked-context, mixture entropy
    model for y.

    ``groups``: channel groups of y (M must divide evenly); ``cross``: each group also sees the
    earlier groups (3-D context) instead of only itself (2-D); ``K``: mixture components (1: a
    single Gaussian); ``rpe``: the residual block in the parameter estimator.
    """

    def __init__(self, N: int, M: int, groups: int = 2, cross: bool = True, K: int = 3, rpe: bool = True) -> None:
        super().__init__()
        if groups < 1 or M % groups:
            raise ValueError(f"M = {M} channels do not split into {groups} equal groups")
        if K < 1:
            raise ValueError(f"K = {K}: a mixture needs at least one component")
        base = ScaleHyperprior(N=N, M=M)
        self.g_a, self.g_s, self.h_a, self.h_s = base.g_a, base.g_s, base.h_a, base.h_s
        self.entropy_bottleneck = base.entropy_bottleneck
        self.N, self.M, self.K = int(N), int(M), int(K)
        size = M // groups
        self.groups = nn.ModuleList(
            ContextGroup(0 if cross else g * size, g * size, (g + 1) * size, M, K, rpe) for g in range(groups))

    # ------------------------------------------------------------------ training / estimates
    def params(self, y_hat: torch.Tensor, hyper: torch.Tensor) -> list[torch.Tensor]:
        """Every group's parameters over the whole map (the parallel pass of training)."""
        return [g(y_hat, hyper) for g in self.groups]

    def y_likelihoods(self, y: torch.Tensor, y_ctx: torch.Tensor, hyper: torch.Tensor) -> torch.Tensor:
        """Likelihoods of (noisy or rounded) y given the context values ``y_ctx``."""
        return torch.cat([mixture_likelihood(y[:, g.own_start:g.stop], p, self.K)
                          for g, p in zip(self.groups, self.params(y_ctx, hyper))], 1)

    def _forward(self, x: torch.Tensor, noise: bool, synthesis: bool = True) -> dict:
        y = self.g_a(x)
        z_hat, z_likelihoods = self.entropy_bottleneck(self.h_a(torch.abs(y)), training=noise)
        hyper = self.h_s(z_hat)
        y_hat = y + torch.empty_like(y).uniform_(-0.5, 0.5) if noise else torch.round(y)
        y_likelihoods = self.y_likelihoods(y_hat, _ste_round(y) if noise else y_hat, hyper)
        return {"x_hat": self.g_s(y_hat) if synthesis else None, "y_hat": y_hat,
                "likelihoods": {"y": y_likelihoods, "z": z_likelihoods}}

    def forward(self, x: torch.Tensor) -> dict:
        """Additive noise in training mode, rounded latents in eval mode."""
        return self._forward(x, self.training)

    def rate_forward(self, x: torch.Tensor) -> dict:
        """Training while the transforms are frozen: the noisy latents and their likelihoods, no
        synthesis (the distortion then depends on no trained weight, so it needs no gradient)."""
        return self._forward(x, True, synthesis=False)

    def hard_forward(self, x: torch.Tensor) -> dict:
        """Rounded latents (validation): the rates the codec pays, up to its pmf quantisation."""
        return self._forward(x, False)

    # ------------------------------------------------------------------ warm start / freezing
    def transforms_trainable(self, trainable: bool) -> None:
        """Freeze or release the warm-started parts; the entropy bottleneck's quantiles (its
        auxiliary loss only) always train."""
        for part in TRANSFORMS:
            for name, p in getattr(self, part).named_parameters():
                p.requires_grad_(trainable or name == "quantiles")

    # ------------------------------------------------------------------ serial coding
    def bake(self) -> None:
        """Coding only: masks multiplied into the context weights once, and the wave loop's
        weights stored in × out."""
        for g in self.groups:
            g.context.bake()
            g.estimator.bake()

    def params_at(self, group: int, y_pad: torch.Tensor, hyper: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """The one parameter function of raster-order coding: group ``group``'s P raw parameters
        at (h, w) from the values in ``y_pad`` (y padded by 2, zeros where not decoded yet)."""
        return self.groups[group].at(y_pad, hyper, h, w)

    @torch.no_grad()
    def serial_pass(self, hyper: torch.Tensor,
                    values: Callable[[int, int, int, torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """Position by position in raster order, group by group, ``values(group, h, w, params)``
        gives the group's integer values there (the encoder looks them up, the decoder decodes
        them); returns y_hat. Encoder and decoder both run this loop, so they compute every
        distribution with the same operations on the same tensors. The order of coding variant
        0 (files written before :meth:`wavefront_pass`), which the codec still decodes."""
        _, _, height, width = hyper.shape
        y_pad = hyper.new_zeros(1, self.M, height + 2 * PAD, width + 2 * PAD)
        for h in range(height):
            for w in range(width):
                for i, g in enumerate(self.groups):
                    v = values(i, h, w, self.params_at(i, y_pad, hyper, h, w))
                    y_pad[0, g.own_start:g.stop, h + PAD, w + PAD] = v
        return y_pad[:, :, PAD:PAD + height, PAD:PAD + width]

    def wave_params(self, group: int, cells: torch.Tensor, sites: torch.Tensor, wave: Wave) -> torch.Tensor:
        """The one parameter function of wavefront coding: group ``group``'s B×P raw parameters
        at a wave's positions from the values in ``cells`` (y padded by 2 as (H'·W')×M, zeros
        where not coded yet) and the hyperprior features ``sites`` ((H·W)×M)."""
        return self.groups[group].at_wave(cells, sites, wave)

    @torch.no_grad()
    def wavefront_pass(self, hyper: torch.Tensor,
                       values: Callable[[int, Wave, torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """Wave by wave (:func:`wave_schedule`), group by group, ``values(group, wave, params)``
        gives the group's integer values at the wave's positions (B×G; the encoder looks them
        up, the decoder decodes them); returns y_hat. Encoder and decoder both run this loop, so
        they compute every distribution with the same operations on the same tensors (batch
        shapes included), and a group sees the earlier groups' values at the same positions."""
        _, _, height, width = hyper.shape
        cells = hyper.new_zeros((height + 2 * PAD) * (width + 2 * PAD), self.M)      # a position's M values: one row
        sites = hyper[0].permute(1, 2, 0).reshape(height * width, self.M)
        for wave in wave_schedule(height, width):
            for i, g in enumerate(self.groups):
                v = values(i, wave, self.wave_params(i, cells, sites, wave))
                cells[:, g.own_start:g.stop].index_copy_(0, wave.cells, v)
        y_hat = cells.view(height + 2 * PAD, width + 2 * PAD, self.M)[PAD:PAD + height, PAD:PAD + width]
        return y_hat.permute(2, 0, 1).unsqueeze(0).contiguous()


def build_context_model(arch: str, N: int, M: int) -> Context3D:
    """An untrained model of a named architecture (see :data:`CONTEXT_ARCHS`)."""
    try:
        switches = CONTEXT_ARCHS[arch]
    except KeyError:
        raise ValueError(f"unknown context architecture {arch!r}; known: {sorted(CONTEXT_ARCHS)}") from None
    return Context3D(N, M, **switches)


def warm_start(model: Context3D, state: dict[str, torch.Tensor]) -> list[str]:
    """Copy every tensor of ``state`` whose name and shape the model shares (a scale
    hyperprior's transforms and entropy bottleneck, or a whole context model); returns the
    names of the model's tensors left at their initial values."""
    own = model.state_dict()
    shared = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(shared, strict=False)
    return sorted(set(own) - set(shared))
