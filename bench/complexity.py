"""Model complexity: MACs per network part (fvcore), parameters, decoder size.

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
from compressai.models import MeanScaleHyperprior
from fvcore.nn import FlopCountAnalysis
from torch import nn

ELEMENTWISE_OPS = ("aten::pow", "aten::sqrt", "aten::rsqrt", "aten::sub", "aten::mul", "aten::add", "aten::div",
                   "aten::abs", "aten::relu", "aten::relu_", "aten::leaky_relu", "aten::leaky_relu_", "aten::exp", "aten::log", "aten::sigmoid",
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


@torch.no_grad()
def hyperprior_costs(model: nn.Module, height: int, width: int) -> dict[str, PartCost]:
    """Per-part costs of a (mean-)scale hyperprior on an image padded to ``height``×``width``."""
    model.eval()
    x = torch.zeros(1, 3, height, width)
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


def decoder_bytes(state: dict[str, torch.Tensor]) -> int:
    """Bytes of what a decoder needs, at the stored precision: synthesis and hyper-synthesis
    weights, entropy-model parameters and the CDF tables."""
    return sum(t.numel() * t.element_size() for k, t in state.items() if k.startswith(DECODER_PREFIXES))


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
