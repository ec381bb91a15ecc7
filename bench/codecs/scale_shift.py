"""Per-image choice of how predicted Gaussian scales map to the CDF table (the coding variant).

compressai codes each y element with the CDF of the smallest table scale at or above its
predicted σ (64 scales, 13 % apart). Which table scale is best depends on the model and the
rate: measured on Kodak with noise_hyperprior, rounding σ to the nearest scale or lower
makes the l05 files (0.075 bpp) up to 1.3 % smaller, while at base (0.3 bpp) one step
*higher* saves up to 0.6 % (a noise-trained σ is too small for hard-rounded latents).

So the encoder scales σ by ``half_step ** k`` (half a table step, k in :data:`SHIFTS`) before
the look-up, and picks the k whose cost under the quantised CDFs is lowest: one table
look-up per element and k, then a single rANS pass with the chosen k. The container's coding
variant stores k's position in ``SHIFTS`` and the decoder applies the same k. Variant 0 is
k = 0, compressai's own mapping bit for bit; models whose ``compress`` does not go through
``GaussianConditional.compress`` (autoregressive context models) always write it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from compressai.entropy_models import GaussianConditional
from torch import nn

from bench.codec import BitstreamError

#: Shifts in half table steps, in variant order (variant 0 = no shift; ties go to the first).
SHIFTS = (0, -1, 1, -2, 2, -3, 3)
_BYPASS_BITS = 4          # compressai's rANS interface codes escaped values in 4-bit chunks


class ShiftedScales(GaussianConditional):
    """compressai's GaussianConditional with σ scaled by ``half_step ** shift`` before the
    table look-up; while ``search`` is on, ``compress`` chooses the shift itself (``chosen``)."""

    shift: int = 0
    search: bool = False
    chosen: int | None = None
    _scales: torch.Tensor | None = None

    def half_step(self) -> float:
        table = self.scale_table
        return math.sqrt(float(table[1] / table[0]))

    def build_indexes(self, scales: torch.Tensor) -> torch.Tensor:
        if self.search:
            self._scales = scales
        return self._indexes(scales, self.shift)

    def _indexes(self, scales: torch.Tensor, shift: int) -> torch.Tensor:
        """compressai's look-up (the smallest table scale ≥ σ, the last one at most) by binary
        search instead of one pass per table scale: the same indexes, twice as fast (y of a
        Kodak image: 21 → 11 ms)."""
        scales = self.lower_bound_scale(scales * self.half_step() ** shift if shift else scales)
        return torch.bucketize(scales, self.scale_table[:-1].to(scales)).int()

    def compress(self, inputs: torch.Tensor, indexes: torch.Tensor, means: torch.Tensor | None = None):
        if self.search and self._scales is not None and self._scales.shape == inputs.shape:
            symbols = self.quantize(inputs, "symbols", means)
            candidates = {k: self._indexes(self._scales, k) for k in SHIFTS}
            self.chosen = min(SHIFTS, key=lambda k: table_bits(self, symbols, candidates[k]))
            indexes = candidates[self.chosen]
        return super().compress(inputs, indexes, means)


def table_bits(gc: GaussianConditional, symbols: torch.Tensor, indexes: torch.Tensor) -> float:
    """Bits rANS spends on ``symbols`` with these CDF indexes (without the flush): −log2 of
    each symbol's quantised probability, escapes as the escape symbol plus compressai's
    bypass chunks (the count, then 4 bits per chunk)."""
    idx = indexes.reshape(-1).long()
    value = symbols.reshape(-1).long() - gc._offset[idx].long()
    top = gc._cdf_length[idx].long() - 2                       # the escape symbol
    s = torch.where((value < 0) | (value >= top), top, value)
    costs = _symbol_bits(gc)
    bits = float(costs.take(idx * costs.shape[1] + s).sum())
    raw = torch.where(value < 0, -2 * value - 1, 2 * (value - top))[s == top]
    if raw.numel():
        chunks = torch.ceil(torch.log2(raw.double() + 1) / _BYPASS_BITS)
        bits += float(_BYPASS_BITS * (1 + chunks).sum())
    return bits


def _symbol_bits(gc: GaussianConditional) -> torch.Tensor:
    """Bits of every (table scale, symbol) pair, from the quantised CDFs; cached with the CDF
    tensor it came from (``update`` replaces that tensor, which invalidates the cache)."""
    cdf = gc._quantized_cdf
    cached = getattr(gc, "_symbol_bits_cache", None)
    if cached is None or cached[0] is not cdf:
        p = (cdf[:, 1:] - cdf[:, :-1]).double()
        cached = (cdf, (gc.entropy_coder_precision - torch.log2(p)).float())
        gc._symbol_bits_cache = cached
    return cached[1]


def install(model: nn.Module) -> None:
    """Make the model's Gaussian conditional a :class:`ShiftedScales` (same state, k = 0)."""
    for m in model.modules():
        if type(m) is GaussianConditional:
            m.__class__ = ShiftedScales


def _shifted(model: nn.Module) -> ShiftedScales | None:
    return next((m for m in model.modules() if isinstance(m, ShiftedScales)), None)


@contextmanager
def searching(model: nn.Module) -> Iterator[list[int]]:
    """Within the block ``model.compress`` picks the shift per image; the list yielded holds
    the coding variant afterwards (0 when the model has no shiftable conditional)."""
    gc, out = _shifted(model), [0]
    if gc is None:
        yield out
        return
    gc.search, gc.chosen, gc._scales = True, None, None
    try:
        yield out
        out[0] = SHIFTS.index(gc.chosen) if gc.chosen is not None else 0
    finally:
        gc.search, gc.chosen, gc._scales = False, None, None


@contextmanager
def decoding(model: nn.Module, variant: int) -> Iterator[None]:
    """Within the block ``model.decompress`` uses the shift of ``variant`` (BitstreamError for
    a variant this model cannot have written)."""
    gc = _shifted(model)
    if variant and (gc is None or variant >= len(SHIFTS)):
        raise BitstreamError(f"coding variant {variant} is not one this codec writes "
                             f"(0..{len(SHIFTS) - 1 if gc else 0}): corrupted file")
    if gc is None:
        yield
        return
    gc.shift = SHIFTS[variant]
    try:
        yield
    finally:
        gc.shift = 0
