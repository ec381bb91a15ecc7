"""One variable-rate model (``ecg_hyperprior`` / ``bm_hyperprior``) as a codec whose operating
point is λ, a continuous knob over the model's [λ_min, λ_max].

The encoder snaps λ to a 14-bit index on the log scale,
``i = round(16383 · (ln λ − ln λ_min) / (ln λ_max − ln λ_min))``, and codes at
``λ_i = exp(ln λ_min + i/16383 · (ln λ_max − ln λ_min))`` (steps of 0.04 % in λ for the
0.08–32 range). The container's model id carries i (a 2-byte varint), so the decoder
rebuilds m(λ_i) from the bytes alone; the range comes from the weights (the modulator's
buffers).

Manifest: ``codec = "bench.codecs.variable_rate:VariableRateCodec"``, ``[params] weights =
"vr.pt"`` (a file in the submission's ``weights_dir``, default ``weights``) and a continuous
knob ``low = λ_min``, ``high = λ_max``, ``direction = "quality-up"``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bench.codec import BitstreamError, Complexity, Decoded, Encoded, JobMeasures
from bench.codecs.learned import FILE_NAME_RE, PAD, LearnedCodec, load_weights
from bench.complexity import (
    DECODER_PARTS,
    ENCODER_PARTS,
    decoder_bytes,
    gated_costs,
    last_forward_costs,
    model_device,
    parameter_count,
)
from bench.models.ecg import VARIABLE_RATE_ARCHS, ECGHyperprior, build_variable_rate

LEVELS = 2**14 - 1


def lmbda_index(lmbda: float, lo: float, hi: float) -> int:
    """The 14-bit log-scale index of λ in [lo, hi] (ValueError outside the range)."""
    t = (math.log(lmbda) - math.log(lo)) / (math.log(hi) - math.log(lo)) if lmbda > 0 else -1.0
    i = round(t * LEVELS)
    if not 0 <= i <= LEVELS:
        raise ValueError(f"λ = {lmbda} is outside the model's range [{lo}, {hi}]")
    return i


def index_lmbda(i: int, lo: float, hi: float) -> float:
    """The λ an index stands for."""
    return math.exp(math.log(lo) + i / LEVELS * (math.log(hi) - math.log(lo)))


def _variable_rate_model(meta: dict) -> ECGHyperprior:
    if meta["arch"] not in VARIABLE_RATE_ARCHS:
        raise ValueError(f"arch {meta['arch']!r} is not variable-rate ({sorted(VARIABLE_RATE_ARCHS)})")
    return build_variable_rate(meta["arch"], int(meta["N"]), int(meta["M"]), float(meta["lmbda_min"]),
                               float(meta["lmbda_max"]))


def load_variable_rate(path: Path) -> ECGHyperprior:
    """A variable-rate model from an exported weight file (its λ range from the meta)."""
    return load_weights(path, _variable_rate_model)


def _side_costs(model: ECGHyperprior, side: str) -> dict[str, float]:
    """``eff_<side>_macs`` and ``dense_<side>_macs`` of the model's latest pass on that side
    (encoder: g_a, h_a, h_s as compress ran them; decoder: h_s, g_s as decompress did)."""
    parts = ENCODER_PARTS if side == "enc" else DECODER_PARTS
    costs = last_forward_costs(model, parts)
    return {f"eff_{side}_macs": costs.effective(parts), f"dense_{side}_macs": float(costs.dense(parts))}


class AtLambda(nn.Module):
    """A variable-rate model fixed at one λ, with the single-rate interface ``LearnedCodec``
    drives (``forward(x)``, ``compress(x)``, ``decompress(strings, shape)``)."""

    def __init__(self, model: ECGHyperprior, lmbda: float) -> None:
        super().__init__()
        self.model, self.lmbda = model, lmbda

    def forward(self, x: torch.Tensor) -> dict:
        """The eval-mode pass at this λ (the estimate's), with λ made where ``x`` is."""
        return self.model(x, torch.full((x.shape[0],), self.lmbda, device=x.device))

    def compress(self, x: torch.Tensor) -> dict:
        return self.model.compress(x, self.lmbda)

    def decompress(self, strings: list, shape) -> dict:
        return self.model.decompress(strings, shape, self.lmbda)


class VariableRateCodec(LearnedCodec):
    """params: ``weights`` (file name in the weights folder), ``weights_dir`` (default
    ``weights``). Operating points: λ in [λ_min, λ_max]; the file's model id is λ's index."""

    def __init__(self, params: dict[str, Any], root: Any = None) -> None:
        super().__init__(params, root)
        unknown = set(self.params) - {"weights", "weights_dir"}
        if unknown:
            raise ValueError(f"unknown param(s) {sorted(unknown)}; known: ['weights', 'weights_dir']")
        name, wdir = self.params.get("weights"), self.params.get("weights_dir", "weights")
        parts = wdir.split("/") if isinstance(wdir, str) else [""]
        if not isinstance(name, str) or not all(FILE_NAME_RE.match(p) for p in [name, *parts]):
            raise ValueError(f"param 'weights' {name!r} / weights_dir {wdir!r}: a plain file name in a relative "
                             "folder (letters, digits, '_', '-', '.')")
        if root is None:
            raise ValueError("VariableRateCodec needs the submission folder (root) to find its weights")
        self.root = Path(root).resolve()
        self.path = (self.root / Path(*parts) / name).resolve()
        if not self.path.is_relative_to(self.root):
            raise ValueError(f"weights {self.path} lie outside the submission folder {self.root}")
        self.model = load_variable_rate(self.path)
        self.lmbda_min, self.lmbda_max = float(self.model.bm.lmbda_min), float(self.model.bm.lmbda_max)

    def _at(self, i: int) -> AtLambda:
        return AtLambda(self.model, index_lmbda(i, self.lmbda_min, self.lmbda_max))

    def _for_point(self, point: Any) -> tuple[int, nn.Module]:
        i = lmbda_index(float(point), self.lmbda_min, self.lmbda_max)
        return i, self._at(i)

    def _for_id(self, model_id: int) -> nn.Module:
        if model_id > LEVELS:
            raise BitstreamError(f"λ index {model_id} in the header is above {LEVELS}: corrupted file")
        return self._at(model_id)        # the CRC vouches for the id

    def encode(self, image: np.ndarray, point: Any) -> Encoded:
        out = super().encode(image, point)
        costs = JobMeasures(**_side_costs(self.model, "enc"))     # g_a, h_a, h_s as compress just ran them
        return Encoded(out.data, out.measures.merged(costs))

    def decode(self, data: bytes) -> Decoded:
        out = super().decode(data)
        costs = JobMeasures(**_side_costs(self.model, "dec"))     # h_s, g_s as decompress just ran them
        return Decoded(out.pixels, out.measures.merged(costs))

    def complexity(self, point: Any, height: int, width: int) -> Complexity:
        """Dense MACs (every channel active; the effective ones depend on the image: encode and
        decode measure them from the masks their gates chose and return them with their results),
        parameters and decoder bytes (the modulator included). The counting pass runs where the
        model is (a GPU after CUDA jobs in this process): it leaves the model there."""
        hp, wp = height + (-height) % PAD, width + (-width) % PAD
        key = ("complexity", hp, wp)
        if key not in self._costs:
            costs = gated_costs(self.model, torch.zeros(1, 3, hp, wp, device=model_device(self.model)),
                                self.lmbda_min).totals()
            self._costs[key] = Complexity(0, costs["dense_enc_macs"], costs["dense_dec_macs"],
                                          parameter_count(self.model),
                                          decoder_bytes(self.model.state_dict(), ("bm.",)))
        return self._costs[key]
