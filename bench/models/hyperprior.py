"""Hyperprior image models (Ballé et al. 2018) on compressai's layers and entropy models.

The architectures are compressai's own ``ScaleHyperprior`` and ``MeanScaleHyperprior``; this
module adds what the harness needs around them: a registry of architectures, the number of
downsamplings (for padding), and a hard-quantised forward pass for soft-then-hard training.
"""

from __future__ import annotations

import torch
from compressai.models import MeanScaleHyperprior, ScaleHyperprior
from torch import nn

ARCHITECTURES: dict[str, type[nn.Module]] = {
    "scale_hyperprior": ScaleHyperprior,
    "mean_scale_hyperprior": MeanScaleHyperprior,
}

#: g_a halves the resolution 4 times and h_a twice more: inputs must be multiples of 2**6.
DOWNSAMPLINGS = 6


def build_model(arch: str, N: int, M: int) -> nn.Module:
    """Return an untrained model of architecture ``arch`` with N hidden and M latent channels."""
    try:
        cls = ARCHITECTURES[arch]
    except KeyError:
        raise ValueError(f"unknown architecture {arch!r}; known: {sorted(ARCHITECTURES)}") from None
    return cls(N=N, M=M)


def hard_forward(model: nn.Module, x: torch.Tensor) -> dict:
    """Forward pass with latents rounded exactly as the real codec rounds them at test time.

    z is rounded around the entropy bottleneck's medians and y around the predicted means
    (zero for the scale hyperprior), and the likelihoods are those of the rounded values.
    Used by stage 2 of soft-then-hard training, where the encoder side is frozen.
    """
    mean_scale = isinstance(model, MeanScaleHyperprior)  # a subclass of ScaleHyperprior
    y = model.g_a(x)
    z = model.h_a(y if mean_scale else torch.abs(y))
    z_hat, z_likelihoods = model.entropy_bottleneck(z, training=False)
    params = model.h_s(z_hat)
    if mean_scale:
        scales, means = params.chunk(2, 1)
    else:
        scales, means = params, None
    y_hat, y_likelihoods = model.gaussian_conditional(y, scales, means=means, training=False)
    x_hat = model.g_s(y_hat)
    return {"x_hat": x_hat, "likelihoods": {"y": y_likelihoods, "z": z_likelihoods}}
