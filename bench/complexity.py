"""Model complexity: MACs per network part (fvcore), parameters, decoder size, and the
effective MACs of channel-gated models (:func:`gated_costs`), which depend on the image.

fvcore counts one multiply-accumulate per conv/matmul term. It skips element-wise ops; the
ones a hyperprior uses (GDN/IGDN's pow, sqrt/rsqrt, sub, mul, compressai's LowerBound, ReLU,
abs) get handles here that count one op per output element, reported separately as
``elementwise`` so MACs stay MACs. Whatever fvcore still does not know is listed in
``uncounted`` by op name: never silently counted as zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import prod
from typing import Any

import torch
from compressai.layers import GDN
from compressai.models import MeanScaleHyperprior
from fvcore.nn import FlopCountAnalysis
from torch import nn

ELEMENTWISE_OPS = ("aten::pow", "aten::sqrt", "aten::rsqrt", "aten::sub", "aten::mul", "aten::add", "aten::div",
                   "aten::abs", "aten::relu", "aten::relu_", "aten::leaky_relu", "aten::leaky_relu_", "aten::exp",
                   "aten::log", "aten::sigmoid",
                   "aten::clamp", "aten::round", "aten::neg", "aten::gt", "aten::lt", "aten::where",
                   "prim::PythonOp.LowerBoundFunction")
#: Ops that move or reshape data and cost no arithmetic: counted as zero on purpose.
FREE_OPS = ("aten::cat", "aten::chunk", "aten::view", "aten::reshape", "aten::permute", "aten::contiguous",
            "aten::split", "aten::pad", "aten::constant_pad_nd", "aten::slice", "aten::select", "aten::unsqueeze",
            "aten::squeeze", "aten::expand", "aten::repeat", "aten::index_select", "aten::gather", "aten::zeros_like")


def _elementwise(inputs: list[Any], outputs: list[Any]) -> int:
    shape = outputs[0].type().sizes()
    return prod(shape) if shape else 1


@dataclass
class PartCost:
    macs: int
    elementwise: int
    uncounted: dict[str, int] = field(default_factory=dict)


def count(module: nn.Module, *inputs: torch.Tensor) -> PartCost:
    """MACs and element-wise ops of one forward call of ``module`` on ``inputs``."""
    a = FlopCountAnalysis(module, inputs)
    a.set_op_handle(**{op: _elementwise for op in ELEMENTWISE_OPS}, **{op: None for op in FREE_OPS})
    a.unsupported_ops_warnings(False)
    a.uncalled_modules_warnings(False)
    by_op = a.by_operator()
    names = {op.split("::")[-1] for op in ELEMENTWISE_OPS}
    ew = sum(v for k, v in by_op.items() if k in names)
    return PartCost(macs=int(a.total() - ew), elementwise=int(ew), uncounted=dict(a.unsupported_ops()))


def model_device(model: nn.Module) -> torch.device:
    """Where ``model``'s weights are (the CPU for a model without any): counting inputs are
    made there, so a model moved to a GPU by earlier jobs is counted where it is."""
    p = next(iter([*model.parameters(), *model.buffers()]), None)
    return p.device if p is not None else torch.device("cpu")


@torch.no_grad()
def hyperprior_costs(model: nn.Module, height: int, width: int) -> dict[str, PartCost]:
    """Per-part costs of a (mean-)scale hyperprior on an image padded to ``height``×``width``
    (its input made on the model's device; MACs do not depend on it)."""
    model.eval()
    x = torch.zeros(1, 3, height, width, device=model_device(model))
    y = model.g_a(x)
    z = model.h_a(y if isinstance(model, MeanScaleHyperprior) else torch.abs(y))
    return {"g_a": count(model.g_a, x), "h_a": count(model.h_a, y), "h_s": count(model.h_s, z),
            "g_s": count(model.g_s, y)}


def encoder_decoder_macs(costs: dict[str, PartCost]) -> tuple[int, int]:
    """The encoder runs g_a, h_a and h_s (for the scales it codes y with); the decoder h_s and g_s."""
    enc = costs["g_a"].macs + costs["h_a"].macs + costs["h_s"].macs
    dec = costs["h_s"].macs + costs["g_s"].macs
    return enc, dec


DECODER_PREFIXES = ("g_s.", "h_s.", "entropy_bottleneck.", "gaussian_conditional.")


def decoder_bytes(state: dict[str, torch.Tensor], extra_prefixes: tuple[str, ...] = ()) -> int:
    """Bytes of what a decoder needs, at the stored precision: synthesis and hyper-synthesis
    weights, entropy-model parameters and the CDF tables (plus ``extra_prefixes``, e.g. a
    variable-rate model's modulator)."""
    prefixes = DECODER_PREFIXES + tuple(extra_prefixes)
    return sum(t.numel() * t.element_size() for k, t in state.items() if k.startswith(prefixes))


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------------- gated models
ENCODER_PARTS = ("g_a", "h_a", "h_s")    # the encoder runs h_s too, for the scales it codes y with
DECODER_PARTS = ("h_s", "g_s")


def layer_macs(layer: nn.Module, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> int:
    """Exact MACs of one call, from its shapes, as fvcore counts them: a convolution costs
    out-elements × (C_in / groups) × k_h × k_w, a transposed one in-elements × (C_out / groups)
    × k_h × k_w, GDN its C×C 1×1 convolution; element-wise layers (ReLU) no MACs."""
    if isinstance(layer, nn.ConvTranspose2d):
        return prod(in_shape) * layer.out_channels // layer.groups * prod(layer.kernel_size)
    if isinstance(layer, nn.Conv2d):
        return prod(out_shape) * layer.in_channels // layer.groups * prod(layer.kernel_size)
    if isinstance(layer, GDN):
        return prod(in_shape) * in_shape[1]
    return 0


@dataclass(frozen=True)
class LayerCost:
    """One layer of a gated model in its latest forward pass (whole batch)."""

    name: str                 # e.g. "g_s.4"
    dense_macs: int
    in_channels: int
    active_in: float          # input channels actually read (batch mean); in_channels if ungated
    gate_macs: int = 0        # the gate's own work: C·H·W for the energies + 3·C for the 1-D conv

    @property
    def eff_macs(self) -> float:
        """Dense MACs × the active fraction of input channels (gathered convs skip the rest)."""
        return self.dense_macs * self.active_in / self.in_channels


@dataclass(frozen=True)
class GatedCosts:
    """Per-layer costs of a gated model's latest forward, and encoder/decoder totals.

    Dense totals are the same network with every channel active (they equal fvcore's count of
    the matching ScaleHyperprior, plus the modulator); effective totals count gated convs at
    their active fraction and add the gates' own work. The bit-rate modulator's two linear
    layers (``bm_macs``) run on both sides.
    """

    layers: dict[str, tuple[LayerCost, ...]]   # by part: g_a, h_a, h_s, g_s
    bm_macs: int

    def dense(self, parts: tuple[str, ...]) -> int:
        return self.bm_macs + sum(c.dense_macs for p in parts for c in self.layers[p])

    def effective(self, parts: tuple[str, ...]) -> float:
        return self.bm_macs + sum(c.eff_macs + c.gate_macs for p in parts for c in self.layers[p])

    def totals(self) -> dict[str, float]:
        """``dense_enc_macs``, ``dense_dec_macs``, ``eff_enc_macs``, ``eff_dec_macs``."""
        return {"dense_enc_macs": self.dense(ENCODER_PARTS), "dense_dec_macs": self.dense(DECODER_PARTS),
                "eff_enc_macs": self.effective(ENCODER_PARTS), "eff_dec_macs": self.effective(DECODER_PARTS)}


def sequence_costs(seq: nn.Module, part: str) -> tuple[LayerCost, ...]:
    """Costs of every MAC-bearing layer of a :class:`~bench.models.ecg.GatedSequential` in its
    latest forward, from the shapes it recorded and the masks its gates chose."""
    costs = []
    for i, (in_shape, out_shape) in enumerate(seq.last_shapes):
        layer, (b, c) = seq.layer(i), in_shape[:2]
        macs = layer_macs(layer, in_shape, out_shape)
        if i in seq.gated:
            active = seq.gate(i).last_mask.sum(dim=1).float().mean().item()
            costs.append(LayerCost(f"{part}.{i}", macs, c, active, gate_macs=prod(in_shape) + 3 * b * c))
        elif macs:
            costs.append(LayerCost(f"{part}.{i}", macs, c, float(c)))
    return tuple(costs)


def last_forward_costs(model: nn.Module, parts: tuple[str, ...] | None = None) -> GatedCosts:
    """Costs of the latest forward of an :class:`~bench.models.ecg.ECGHyperprior`, for its
    ``parts`` (default: all; a decoder that has only run h_s and g_s asks for those)."""
    parts = parts or model.PARTS
    batch = getattr(model, parts[0]).last_shapes[0][0][0]
    bm = model.bm
    return GatedCosts({p: sequence_costs(getattr(model, p), p) for p in parts},
                      bm_macs=batch * (bm.fc1.out_features + bm.fc2.in_features * bm.fc2.out_features))


@torch.no_grad()
def gated_costs(model: nn.Module, x: torch.Tensor, lmbda: float) -> GatedCosts:
    """Eval-mode forward of a variable-rate model on ``x`` (already padded) at ``lmbda``,
    and its costs (λ made where ``x`` is)."""
    model.eval()
    model(x, torch.full((x.shape[0],), float(lmbda), device=x.device))
    return last_forward_costs(model)
