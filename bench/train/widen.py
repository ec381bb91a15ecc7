"""Warm start of a variable-rate model over a wider λ range from one trained over a narrower
range. Training-side only: the codecs never import it, so their content hashes (and the
runs cached under them) do not depend on it."""

from __future__ import annotations

import torch

from bench.models.ecg import ECGHyperprior


def init_from_variable_rate(model: ECGHyperprior, state_dict: dict[str, torch.Tensor]) -> list[str]:
    """Load a variable-rate model trained over another λ range into ``model``, which keeps its own.

    The modulator reads u = (log λ − log λ_min) / (log λ_max − log λ_min), so the same weights
    under a new range would map every λ to another m(λ). fc1 is rescaled instead: with the
    source's u_s = a·u + c, fc1's weight becomes W·a and its bias b + W·c, and m(λ) is the
    source's for every λ (inside its old range exactly, beyond it by the MLP's extrapolation,
    where training then goes). Returns the keys of ``model`` it did not fill; keys ``model``
    lacks (a gated source into a dense model) or other shapes are an error.
    """
    own = model.state_dict()
    unexpected = sorted(set(state_dict) - set(own))
    if unexpected or "bm.lmbda_min" not in state_dict:
        raise ValueError(f"not a variable-rate model of the same kind: keys the model lacks {unexpected[:5]}"
                         if unexpected else "state dict has no bm.lmbda_min: not a variable-rate model")
    log = torch.log
    src_lo, src_hi = log(state_dict["bm.lmbda_min"].double()), log(state_dict["bm.lmbda_max"].double())
    lo, hi = log(model.bm.lmbda_min.double()), log(model.bm.lmbda_max.double())
    a, c = (hi - lo) / (src_hi - src_lo), (lo - src_lo) / (src_hi - src_lo)
    w, b = state_dict["bm.fc1.weight"].double(), state_dict["bm.fc1.bias"].double()
    rescaled = {"bm.fc1.weight": (w * a).float(), "bm.fc1.bias": (b + w[:, 0] * c).float(),
                "bm.lmbda_min": model.bm.lmbda_min.clone(), "bm.lmbda_max": model.bm.lmbda_max.clone()}
    model.load_state_dict(state_dict | rescaled, strict=False)
    return sorted(set(own) - set(state_dict))
