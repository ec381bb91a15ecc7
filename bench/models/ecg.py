"""Variable-rate scale hyperprior with energy-based channel gating (ECG) and a bit-rate
modulator (BM): Yin et al., "Universal Efficient Variable-rate Neural Image Compression",
ICASSP 2022.

The layers are compressai's ``ScaleHyperprior``'s, layer for layer and under the same
state-dict keys (``g_a.0.weight`` ... ``gaussian_conditional.*``), so a trained scale
hyperprior initialises every convolution, GDN and entropy model (:func:`init_from_hyperprior`).
On top of them:

- ``bm`` (:class:`BitrateModulator`): λ → a positive per-channel m(λ). y·m(λ) is what is
  quantised and coded (h_a and both entropy models see the scaled y); g_s decodes ŷ/m(λ).
  One set of weights then covers the whole range [λ_min, λ_max].
- gates (``gated=True``, :class:`ChannelGate`): one in front of every convolution except
  g_a's first, whose input is RGB. Named after the convolution they feed:

  ====  =============================================================================
  g_a   gate2, gate4, gate6: on the GDN outputs feeding convs 2, 4 and 6
  h_a   gate0 on |y·m(λ)|; gate2, gate4 on the ReLU outputs feeding convs 2 and 4
  h_s   gate0 on ẑ; gate2, gate4 on the ReLU outputs feeding deconv 2 and conv 4
  g_s   gate0 on ŷ/m(λ); gate2, gate4, gate6 on the IGDN outputs feeding deconvs 2, 4, 6
  ====  =============================================================================

In eval mode a gated convolution reads only its active input channels (the matching
weight slices: ``Conv2d.weight[:, idx]``, ``ConvTranspose2d.weight[idx]``), which is where
the saving in multiply-accumulates is real; ``set_sparse_inference(False)`` runs the same
gates as masked dense convolutions instead (for tests and timing comparisons).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from compressai.layers import GDN
from compressai.models import CompressionModel
from compressai.models.utils import conv, deconv
from torch import nn

#: Temperature of the sigmoid surrogate: scores are normalised to a channel mean of about 1,
#: so 0.1 gives gradient to channels within roughly ±0.3 of the threshold.
TEMPERATURE = 0.1
BM_HIDDEN = 64
BM_EPS = 1e-3          # m(λ) ≥ BM_EPS, so ŷ / m(λ) stays finite

#: Variable-rate architectures and whether they are gated.
VARIABLE_RATE_ARCHS = {"ecg_hyperprior": True, "bm_hyperprior": False}


class ChannelGate(nn.Module):
    """Decides which input channels of the next convolution are worth computing.

    Energy e_c = mean over H×W of x_c², normalised by its mean over channels; a 1-D
    convolution across channels (kernel 3, initialised to the identity) gives a score s_c;
    channel c is active when s_c > α·mean_c(s), α ≥ 0 learnable (larger α → sparser; α = 0
    keeps every channel with any energy). The forward pass uses the hard 0/1 gate; the
    gradient is that of the straight-through surrogate sigmoid((s_c − α·mean(s)) / T) with
    T = ``TEMPERATURE``, which reaches α, the 1-D convolution and x.
    """

    def __init__(self, channels: int, temperature: float = TEMPERATURE) -> None:
        super().__init__()
        self.channels = channels
        self.temperature = temperature
        self.mix = nn.Conv1d(1, 1, kernel_size=3, padding=1, bias=False)
        with torch.no_grad():
            self.mix.weight.copy_(torch.tensor([[[0.0, 1.0, 0.0]]]))
        self.alpha = nn.Parameter(torch.zeros(()))
        self.last_mask: torch.Tensor | None = None   # B×C bool, from the latest forward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The B×C gate (float 0/1 values; straight-through gradient when training)."""
        energy = x.pow(2).mean(dim=(2, 3))
        energy = energy / energy.mean(dim=1, keepdim=True).clamp_min(1e-12)
        score = self.mix(energy.unsqueeze(1)).squeeze(1)
        margin = score - self.alpha.clamp_min(0) * score.mean(dim=1, keepdim=True)
        hard = margin > 0
        self.last_mask = hard.detach()
        gate = hard.to(x.dtype)
        if self.training:
            soft = torch.sigmoid(margin / self.temperature)
            gate = gate + (soft - soft.detach())   # exactly 0 + the hard gate; the surrogate's gradient
        return gate


def _conv_out_size(layer: nn.Module, h: int, w: int) -> tuple[int, int]:
    out = []
    for i, n in enumerate((h, w)):
        k, s, p, d = layer.kernel_size[i], layer.stride[i], layer.padding[i], layer.dilation[i]
        if isinstance(layer, nn.ConvTranspose2d):
            out.append((n - 1) * s - 2 * p + d * (k - 1) + layer.output_padding[i] + 1)
        else:
            out.append((n + 2 * p - d * (k - 1) - 1) // s + 1)
    return out[0], out[1]


def sparse_conv(layer: nn.Module, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``layer`` on input channels ``idx`` of a 1×C×H×W ``x`` only: the others are zero, so
    their weight slices are left out of the computation instead of multiplied by zero."""
    if layer.groups != 1:
        raise ValueError("channel gathering needs an ungrouped convolution")
    if idx.numel() == 0:   # nothing active: the output is the bias everywhere
        h, w = _conv_out_size(layer, x.shape[-2], x.shape[-1])
        bias = layer.bias if layer.bias is not None else x.new_zeros(layer.out_channels)
        return bias.view(1, -1, 1, 1).expand(1, -1, h, w).contiguous()
    xs = x.index_select(1, idx)
    if isinstance(layer, nn.ConvTranspose2d):
        return F.conv_transpose2d(xs, layer.weight.index_select(0, idx), layer.bias, layer.stride, layer.padding,
                                  layer.output_padding, 1, layer.dilation)
    return F.conv2d(xs, layer.weight.index_select(1, idx), layer.bias, layer.stride, layer.padding, layer.dilation)


class GatedSequential(nn.Module):
    """A ``nn.Sequential`` look-alike (children ``"0"``, ``"1"``, ... as in compressai's
    models) with a :class:`ChannelGate` ``gate<i>`` in front of chosen convolutions.

    Every forward records each layer's input and output shape in ``last_shapes``: with the
    gates' masks, that is what the effective-complexity count reads.
    """

    def __init__(self, layers: list[nn.Module], gated: tuple[int, ...] = ()) -> None:
        super().__init__()
        self.n_layers = len(layers)
        for i, layer in enumerate(layers):
            self.add_module(str(i), layer)
        for i in gated:
            if not isinstance(layers[i], (nn.Conv2d, nn.ConvTranspose2d)):
                raise ValueError(f"layer {i} is a {type(layers[i]).__name__}; gates go in front of convolutions")
            self.add_module(f"gate{i}", ChannelGate(layers[i].in_channels))
        self.gated = tuple(gated)
        self.sparse = True
        self.last_shapes: list[tuple[tuple[int, ...], tuple[int, ...]]] = []

    def layer(self, i: int) -> nn.Module:
        return getattr(self, str(i))

    def gate(self, i: int) -> ChannelGate:
        return getattr(self, f"gate{i}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shapes = []
        for i in range(self.n_layers):
            layer, x_in = self.layer(i), x
            if i not in self.gated:
                x = layer(x)
            elif self.training or not self.sparse:
                x = layer(x * self.gate(i)(x)[:, :, None, None])
            else:
                mask = self.gate(i)(x) > 0
                x = torch.cat([sparse_conv(layer, x[b : b + 1], mask[b].nonzero().squeeze(1))
                               for b in range(x.shape[0])])
            shapes.append((tuple(x_in.shape), tuple(x.shape)))
        self.last_shapes = shapes
        return x


class BitrateModulator(nn.Module):
    """λ → m(λ) > 0 per latent channel: u = log-normalised λ in [0, 1] over the model's
    [λ_min, λ_max] → Linear(1, 64) → ReLU → Linear(64, M) → softplus + ε.

    The last layer starts at weight 0 and a bias with softplus(b) + ε = 1, so an untrained
    modulator leaves y unchanged (a model initialised from a single-λ hyperprior starts as it).
    """

    def __init__(self, M: int, lmbda_min: float, lmbda_max: float, hidden: int = BM_HIDDEN) -> None:
        super().__init__()
        if not 0 < lmbda_min < lmbda_max:
            raise ValueError(f"need 0 < lmbda_min < lmbda_max, got {lmbda_min}, {lmbda_max}")
        self.register_buffer("lmbda_min", torch.tensor(float(lmbda_min)))
        self.register_buffer("lmbda_max", torch.tensor(float(lmbda_max)))
        self.fc1 = nn.Linear(1, hidden)
        self.fc2 = nn.Linear(hidden, M)
        with torch.no_grad():
            self.fc2.weight.zero_()
            self.fc2.bias.fill_(math.log(math.expm1(1.0 - BM_EPS)))

    def normalise(self, lmbda: torch.Tensor) -> torch.Tensor:
        lo, hi = self.lmbda_min.log(), self.lmbda_max.log()
        return (lmbda.log() - lo) / (hi - lo)

    def forward(self, lmbda: torch.Tensor) -> torch.Tensor:
        """λ of shape (B,) → m(λ) of shape B×M×1×1."""
        u = self.normalise(lmbda.to(self.fc1.weight.dtype)).unsqueeze(1)
        m = F.softplus(self.fc2(F.relu(self.fc1(u)))) + BM_EPS
        return m[:, :, None, None]


class ECGHyperprior(CompressionModel):
    """Scale hyperprior + BM (+ ECG gates when ``gated``); see the module docstring.

    ``forward(x, lmbda)`` takes one λ per sample (shape (B,)) and returns ``x_hat`` and the
    likelihoods like compressai's models; ``compress(x, lmbda)`` / ``decompress(strings,
    shape, lmbda)`` code with compressai's rANS coder at one λ.
    """

    PARTS = ("g_a", "h_a", "h_s", "g_s")

    def __init__(self, N: int, M: int, lmbda_min: float, lmbda_max: float, gated: bool = True) -> None:
        super().__init__()
        self.N, self.M, self.gated = int(N), int(M), bool(gated)
        self.entropy_bottleneck = EntropyBottleneck(N)
        self.gaussian_conditional = GaussianConditional(None)
        self.bm = BitrateModulator(M, lmbda_min, lmbda_max)

        def gates(*idx: int) -> tuple[int, ...]:
            return idx if gated else ()

        self.g_a = GatedSequential([conv(3, N), GDN(N), conv(N, N), GDN(N), conv(N, N), GDN(N), conv(N, M)],
                                   gates(2, 4, 6))
        self.g_s = GatedSequential([deconv(M, N), GDN(N, inverse=True), deconv(N, N), GDN(N, inverse=True),
                                    deconv(N, N), GDN(N, inverse=True), deconv(N, 3)], gates(0, 2, 4, 6))
        self.h_a = GatedSequential([conv(M, N, stride=1, kernel_size=3), nn.ReLU(inplace=True), conv(N, N),
                                    nn.ReLU(inplace=True), conv(N, N)], gates(0, 2, 4))
        self.h_s = GatedSequential([deconv(N, N), nn.ReLU(inplace=True), deconv(N, N), nn.ReLU(inplace=True),
                                    conv(N, M, stride=1, kernel_size=3), nn.ReLU(inplace=True)], gates(0, 2, 4))

    def _m(self, lmbda: float, like: torch.Tensor) -> torch.Tensor:
        return self.bm(torch.full((like.shape[0],), float(lmbda), dtype=like.dtype, device=like.device))

    def forward(self, x: torch.Tensor, lmbda: torch.Tensor) -> dict:
        m = self.bm(lmbda)
        y = self.g_a(x) * m
        z = self.h_a(torch.abs(y))
        z_hat, z_likelihoods = self.entropy_bottleneck(z)
        scales_hat = self.h_s(z_hat)
        y_hat, y_likelihoods = self.gaussian_conditional(y, scales_hat)
        x_hat = self.g_s(y_hat / m)
        return {"x_hat": x_hat, "likelihoods": {"y": y_likelihoods, "z": z_likelihoods}}

    def compress(self, x: torch.Tensor, lmbda: float) -> dict:
        y = self.g_a(x) * self._m(lmbda, x)
        z = self.h_a(torch.abs(y))
        z_strings = self.entropy_bottleneck.compress(z)
        z_hat = self.entropy_bottleneck.decompress(z_strings, z.size()[-2:])
        indexes = self.gaussian_conditional.build_indexes(self.h_s(z_hat))
        y_strings = self.gaussian_conditional.compress(y, indexes)
        return {"strings": [y_strings, z_strings], "shape": z.size()[-2:]}

    def decompress(self, strings: list, shape, lmbda: float) -> dict:
        assert isinstance(strings, list) and len(strings) == 2
        z_hat = self.entropy_bottleneck.decompress(strings[1], shape)
        indexes = self.gaussian_conditional.build_indexes(self.h_s(z_hat))
        y_hat = self.gaussian_conditional.decompress(strings[0], indexes, z_hat.dtype)
        x_hat = self.g_s(y_hat / self._m(lmbda, y_hat)).clamp_(0, 1)
        return {"x_hat": x_hat}

    def named_gates(self) -> dict[str, ChannelGate]:
        """``{"g_a.gate2": gate, ...}`` in network order (empty when not gated)."""
        return {f"{p}.gate{i}": getattr(self, p).gate(i) for p in self.PARTS for i in getattr(self, p).gated}

    def gate_penalty(self, alpha_target: float) -> torch.Tensor:
        """Σ_n (α_n − α_t)²: pulls every gate's threshold to the target sparsity level."""
        gates = self.named_gates().values()
        return sum(((g.alpha - alpha_target) ** 2 for g in gates), self.bm.lmbda_min.new_zeros(()))

    def active_fractions(self) -> dict[str, float]:
        """Per gate, the fraction of input channels active in the latest forward (batch mean)."""
        return {n: g.last_mask.float().mean().item() for n, g in self.named_gates().items() if g.last_mask is not None}

    def set_sparse_inference(self, on: bool) -> None:
        """Eval-mode gated convs: gather active channels (True) or multiply by the mask (False)."""
        for p in self.PARTS:
            getattr(self, p).sparse = on


def build_variable_rate(arch: str, N: int, M: int, lmbda_min: float, lmbda_max: float) -> ECGHyperprior:
    """An untrained ``ecg_hyperprior`` (gated) or ``bm_hyperprior`` (dense) model."""
    try:
        gated = VARIABLE_RATE_ARCHS[arch]
    except KeyError:
        raise ValueError(f"unknown variable-rate architecture {arch!r}; known: {sorted(VARIABLE_RATE_ARCHS)}") from None
    return ECGHyperprior(N, M, lmbda_min, lmbda_max, gated=gated)


def init_from_hyperprior(model: ECGHyperprior, state_dict: dict[str, torch.Tensor]) -> list[str]:
    """Load a (trained) ScaleHyperprior state dict into the matching layers of ``model``.

    Returns the keys of ``model`` it did not fill (the BM and the gates, which keep their
    pass-through initialisation). A key ``model`` does not have, or a shape that differs,
    is an error: the source is not a scale hyperprior of the same N and M.
    """
    own = model.state_dict()
    unexpected = sorted(set(state_dict) - set(own))
    if unexpected:
        raise ValueError(f"state dict has keys the model lacks (not a scale hyperprior?): {unexpected[:5]}")
    model.load_state_dict(state_dict, strict=False)   # compressai's override resizes the CDF buffers
    return sorted(set(own) - set(state_dict))
