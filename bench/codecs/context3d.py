"""The 3-D context models (:mod:`bench.models.context3d`) as a codec: z with compressai's
entropy-bottleneck coder, y with constriction's range coder, wave by wave.

File: the :mod:`bench.container` with two streams, z (compressai's string) and y:
``zigzag(lo)`` and ``n − 2`` as varints (y's symbols are the image's rounded values clipped
to [lo, lo + n − 1], n ≤ MAX_SUPPORT), then the range coder's 32-bit words, little-endian.
The container's coding variant names y's symbol order: 1 (written) is the wave order of
:func:`~bench.models.context3d.wave_schedule` (per wave t = 3h + w: group 1 at every position
of the wave by ascending row, channels innermost, then group 2 likewise); 0 is raster order,
position by position (files written before the wavefront coder; still decoded).

Each symbol is coded with a categorical pmf over that support: the mixture's CDF at the bin
edges in float64 from the model's float32 parameters (the end bins take the tails), quantised
to integers, every symbol at least one count. Encoder and decoder get those parameters from
the same wave loop (:meth:`Context3D.wavefront_pass`: one batched parameter computation per
wave and group, one vectorised pmf, one range-coder call), so both compute every
distribution with the same operations on tensors of the same shapes. The loop runs with one
torch thread whatever the process's setting, so y decodes under any thread count; only g_s's
pixels depend on it, as with the other learned codecs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import constriction
import numpy as np
import torch
from torch import nn

from bench.codec import BitstreamError, Complexity, Decoded, Encoded, Estimate, JobMeasures
from bench.codecs.learned import PAD, HyperpriorCodec, latent_shape, likelihood_bits, load_weights, to_image, to_tensor
from bench.container import pack, unpack, uvarint
from bench.limits import is_out_of_memory
from bench.models.context3d import SCALE_MIN, Context3D, Wave, build_context_model, mixture_at

if TYPE_CHECKING:
    from bench.complexity import PartCost

MAX_SUPPORT = 1024        # symbols per element; y of the trained models spans well under ±100
Y_RANGE_BYTES = 2          # the y stream's range header: two one-byte varints for a trained model's span
PMF_TOTAL = 1 << 24       # integer pmfs sum to about this (constriction's range coder: 24-bit probabilities)
Y_STRIDE = 16             # g_a downsamples by 2^4: one y position per 16×16 pixels
#: What the MAC count leaves out, named in the leaderboard's uncounted column.
PMF_NOT_COUNTED = "pmf: K Gaussian CDFs per symbol of the range, float64, per element"


# --------------------------------------------------------------------------- the pmf
def wave_pmf(params: torch.Tensor, K: int, lo: int, n: int) -> np.ndarray:
    """(B·G)×n integer counts (as float64) of one group's symbols at a wave's B positions, from
    their B×P raw float32 parameters; row b·G + g is channel g at position b, bin j the value
    lo + j, the end bins take the tails. float64 from the parameters on, for the whole wave at
    once: with c = (PMF_TOTAL − n)/2 and a(e) = Σ_k c·w_k·erf((e − μ_k)/(σ_k√2)) at the n − 1
    bin edges e, bin j gets floor(a(e_j) − a(e_{j−1})) + 1 (the ends: c ± a), i.e. the
    mixture's probability scaled to PMF_TOTAL − n, floored, plus one count. (erf's vectorised
    kernel is 8× ndtr's; its absolute error, ~1e-16, is far below a count.)"""
    p = params.double()
    b, c = p.shape[0], 0.5 * (PMF_TOTAL - n)
    if K == 1:
        means, scales = p.view(b, 2, 1, -1, 1).unbind(1)                                 # B×1×G×1
        weights = torch.full_like(means, c)
    else:
        logits, means, scales = p.view(b, 3, K, -1, 1).unbind(1)                         # B×K×G×1
        weights = torch.softmax(logits, dim=1).mul_(c)
    inv = (2**-0.5) / scales.clamp_min(SCALE_MIN)
    edges = torch.arange(n - 1, dtype=torch.float64) + (lo + 0.5)
    t = (edges - means).mul_(inv).erf_()                                                  # B×K×G×(n−1)
    acc = torch.empty(b, t.shape[2], n + 1, dtype=torch.float64)                          # −c, a(e_0..e_{n−2}), c
    acc[..., 0], acc[..., -1] = -c, c
    inner = torch.mul(t[:, 0], weights[:, 0], out=acc[..., 1:-1])
    for k in range(1, K):
        inner.addcmul_(t[:, k], weights[:, k])
    return torch.diff(acc, dim=-1).floor_().add_(1).clamp_min_(1).view(-1, n).numpy()


def quantised_pmf(params: torch.Tensor, K: int, lo: int, n: int) -> np.ndarray:
    """The raster order's pmf (coding variant 0): G×n counts at one position, from its P raw
    float32 parameters; float64 numpy (a handful of cheap calls per position) but for the CDF."""
    weights, means, scales = (a[:, :, None] for a in mixture_at(params.numpy(), K))       # K×G×1
    edges = np.arange(n - 1, dtype=np.float64) + (lo + 0.5)
    cdf = (weights * _ndtr((edges - means) / scales)).sum(0)                              # G×(n−1)
    pmf = np.empty((cdf.shape[0], n))
    pmf[:, 0], pmf[:, -1] = cdf[:, 0], 1.0 - cdf[:, -1]
    np.subtract(cdf[:, 1:], cdf[:, :-1], out=pmf[:, 1:-1])
    return np.floor(np.maximum(pmf, 0.0) * (PMF_TOTAL - n)) + 1


def _ndtr(x: np.ndarray) -> np.ndarray:
    """The standard normal CDF through torch's vectorised kernel (4× scipy's here)."""
    return torch.special.ndtr(torch.from_numpy(x)).numpy()


@contextmanager
def _one_thread() -> Iterator[None]:
    """y's distributions do not depend on the process's thread count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _zigzag(v: int) -> int:
    return 2 * v if v >= 0 else -2 * v - 1


def _unzigzag(u: int) -> int:
    return u // 2 if u % 2 == 0 else -(u + 1) // 2


def _read_varint(data: bytes, pos: int, what: str) -> tuple[int, int]:
    value, shift = 0, 0
    while pos < len(data) and shift <= 21:
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if not byte & 0x80:
            return value, pos
    raise BitstreamError(f"y stream: bad or truncated varint for {what}")


def _y_header(data: bytes) -> tuple[int, int, np.ndarray]:
    """(lo, n, words) of a y stream; BitstreamError when it cannot be one."""
    zz, pos = _read_varint(data, 0, "the symbol range's start")
    n2, pos = _read_varint(data, pos, "the symbol range's size")
    n = n2 + 2
    if n > MAX_SUPPORT:
        raise BitstreamError(f"y stream: {n} symbols per element, above {MAX_SUPPORT}: corrupted file")
    body = data[pos:]
    if len(body) % 4:
        raise BitstreamError(f"y stream: {len(body)} bytes of range-coder words, not a multiple of 4")
    return _unzigzag(zz), n, np.frombuffer(body, dtype="<u4").astype(np.uint32)


# --------------------------------------------------------------------------- coding
@torch.no_grad()
def hyper_features(model: Context3D, z_string: bytes, z_shape: tuple[int, int]) -> torch.Tensor:
    """h_s of the decoded z: what both sides condition y on (the encoder decodes its own z)."""
    z_hat = model.entropy_bottleneck.decompress([z_string], z_shape)
    return model.h_s(z_hat)


def _y_range(y: torch.Tensor) -> tuple[torch.Tensor, int, int]:
    """y rounded and clipped to ±MAX_SUPPORT/2, its lowest value and its support size (≥ 2)."""
    y_int = torch.round(y).clamp(-(MAX_SUPPORT // 2), MAX_SUPPORT // 2 - 1)
    lo = int(y_int.min())
    return y_int, lo, max(int(y_int.max()) - lo + 1, 2)


def _ideal_bits(symbols: np.ndarray, pmfs: np.ndarray) -> float:
    return float(-np.log2(pmfs[np.arange(len(symbols)), symbols] / pmfs.sum(1)).sum())


def _y_stream(lo: int, n: int, coder: constriction.stream.queue.RangeEncoder) -> bytes:
    return uvarint(_zigzag(lo)) + uvarint(n - 2) + coder.get_compressed().astype("<u4").tobytes()


@torch.no_grad()
def code_y(model: Context3D, hyper: torch.Tensor, y: torch.Tensor) -> tuple[bytes, float]:
    """The y stream (coding variant 1, wave order) of rounded latents ``y`` (1×M×h×w) and its
    ideal bits under the quantised pmfs: per wave and group, the wave's symbols in one call."""
    y_int, lo, n = _y_range(y)
    coder = constriction.stream.queue.RangeEncoder()
    family = constriction.stream.model.Categorical(perfect=False)
    bits = [0.0]

    def values(g: int, wave: Wave, params: torch.Tensor) -> torch.Tensor:
        group = model.groups[g]
        v = y_int[0, group.own_start:group.stop, wave.rows, wave.cols].T                 # B×G
        symbols = (v - lo).to(torch.int32).reshape(-1).numpy()
        pmfs = wave_pmf(params, model.K, lo, n)
        coder.encode(symbols, family, pmfs)
        bits[0] += _ideal_bits(symbols, pmfs)
        return v

    model.wavefront_pass(hyper, values)
    return _y_stream(lo, n, coder), bits[0]


@torch.no_grad()
def decode_y(model: Context3D, hyper: torch.Tensor, stream: bytes) -> torch.Tensor:
    """y_hat (1×M×h×w) from a variant-1 y stream, through the same wave loop as :func:`code_y`."""
    lo, n, words = _y_header(stream)
    decoder = constriction.stream.queue.RangeDecoder(words)
    family = constriction.stream.model.Categorical(perfect=False)

    def values(g: int, wave: Wave, params: torch.Tensor) -> torch.Tensor:
        symbols = decoder.decode(family, wave_pmf(params, model.K, lo, n))
        return torch.from_numpy(symbols).float().add_(lo).view(len(wave.rows), -1)

    return model.wavefront_pass(hyper, values)


@torch.no_grad()
def code_y_raster(model: Context3D, hyper: torch.Tensor, y: torch.Tensor) -> tuple[bytes, float]:
    """The raster order's y stream (coding variant 0, the coder before the wavefront): position
    by position through :meth:`Context3D.serial_pass`. Only tests and ``benchmarks/wavefront.py``
    write it; the codec still decodes it."""
    y_int, lo, n = _y_range(y)
    symbols, pmfs = [], []

    def values(g: int, h: int, w: int, params: torch.Tensor) -> torch.Tensor:
        group = model.groups[g]
        v = y_int[0, group.own_start:group.stop, h, w]
        symbols.append((v - lo).to(torch.int32).numpy())
        pmfs.append(quantised_pmf(params, model.K, lo, n))
        return v

    model.serial_pass(hyper, values)
    s, p = np.concatenate(symbols), np.concatenate(pmfs)
    coder = constriction.stream.queue.RangeEncoder()
    coder.encode(s, constriction.stream.model.Categorical(perfect=False), p)
    return _y_stream(lo, n, coder), _ideal_bits(s, p)


@torch.no_grad()
def decode_y_raster(model: Context3D, hyper: torch.Tensor, stream: bytes) -> torch.Tensor:
    """y_hat from a variant-0 (raster order) y stream, position by position."""
    lo, n, words = _y_header(stream)
    decoder = constriction.stream.queue.RangeDecoder(words)
    family = constriction.stream.model.Categorical(perfect=False)

    def values(g: int, h: int, w: int, params: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(decoder.decode(family, quantised_pmf(params, model.K, lo, n))).float() + lo

    return model.serial_pass(hyper, values)


RASTER, WAVEFRONT = 0, 1
#: coding variant → (name, y encoder, y decoder). Variant 0 files (before the wavefront coder)
#: still decode; the codec writes WAVEFRONT.
Y_ORDERS = {RASTER: ("raster", code_y_raster, decode_y_raster), WAVEFRONT: ("wavefront", code_y, decode_y)}


class _OnePosition(nn.Module):
    """The coding loop's work per position for fvcore: every group's parameters at one
    position, from a 5×5 neighbourhood of y and the position's hyperprior features."""

    def __init__(self, model: Context3D) -> None:
        super().__init__()
        self.model = model

    def forward(self, y_pad: torch.Tensor, hyper: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.model.params_at(i, y_pad, hyper, 0, 0) for i in range(len(self.model.groups))])


def serial_position_cost(model: Context3D) -> PartCost:
    """MACs (fvcore, with the project's handles) of one y position of the coding loop: each
    group's causal context taps and parameter estimator (a wave batches positions; the MACs per
    position are the same)."""
    from bench.complexity import count

    return count(_OnePosition(model).eval(), torch.zeros(1, model.M, 5, 5), torch.zeros(1, model.M, 1, 1))


def _context_model(meta: dict) -> Context3D:
    return build_context_model(meta["arch"], int(meta["N"]), int(meta["M"]))


def load_context_model(path: Path) -> Context3D:
    """A context model from an exported weight file, its masks baked into the weights."""
    model = load_weights(path, _context_model)
    model.bake()
    return model


class Context3DCodec(HyperpriorCodec):
    """Discrete operating points: model names, as :class:`~bench.codecs.learned.HyperpriorCodec`
    reads them (params ``models``, lowest rate first, and ``weights_dir``; a model's id in the
    file is its index), each a context model with its masks baked in; y is coded wave by wave with
    constriction, z with compressai's entropy bottleneck. CPU only: the wave loop runs
    3·H + W small batches of at most H positions, where a GPU's launch latency would dominate."""

    devices = ("cpu",)
    #: The y order this codec writes (the container's coding variant); benchmarks/wavefront.py
    #: sets RASTER on an instance to time the coder before the wavefront.
    y_variant = WAVEFRONT

    def _load_model(self, path: Path) -> nn.Module:
        return load_context_model(path)

    @torch.no_grad()
    def estimate(self, image: np.ndarray, point: Any) -> Estimate:
        """The parallel pass over rounded latents (what training validates with): the
        reconstruction the decoder will give, and the container's size for the z and y
        streams' −log2 likelihoods (the y stream also holds its symbol range). Seconds instead
        of the coding loop's tens of seconds on a large image, so rate control can search with it."""
        model_id, model = self._for_point(point)
        x, h, w = to_tensor(image)
        out = model.hard_forward(x)
        lik = out["likelihoods"]
        sizes = [math.ceil(likelihood_bits([lik["z"]]) / 8), math.ceil(likelihood_bits([lik["y"]]) / 8) + Y_RANGE_BYTES]
        return Estimate(len(pack(model_id, h, w, [bytes(n) for n in sizes])), to_image(out["x_hat"], h, w))

    def encode(self, image: np.ndarray, point: Any) -> Encoded:
        model_id, model = self._for_point(point)
        x, h, w = to_tensor(image)
        t0 = time.perf_counter()
        with torch.no_grad():
            y = model.g_a(x)
            z = model.h_a(torch.abs(y))
            z_string = model.entropy_bottleneck.compress(z)[0]
            _, z_lik = model.entropy_bottleneck(z, training=False)
        t1 = time.perf_counter()
        code_order = Y_ORDERS[self.y_variant][1]
        with _one_thread():
            y_stream, y_bits = code_order(model, hyper_features(model, z_string, latent_shape(h, w)), y)
        measures = JobMeasures(enc_net_s=t1 - t0, enc_coder_s=time.perf_counter() - t1,
                               est_bits=y_bits + float(-torch.log2(z_lik).sum()))
        return Encoded(pack(model_id, h, w, [z_string, y_stream], variant=self.y_variant), measures)

    def decode(self, data: bytes) -> Decoded:
        c = unpack(data)                      # magic, version, lengths, CRC, size: before any decoder
        model = self._for_id(c.model_id)
        if len(c.streams) != 2:
            raise BitstreamError(f"expected 2 streams (z, y), the file has {len(c.streams)}")
        if c.variant not in Y_ORDERS:
            raise BitstreamError(f"coding variant {c.variant}: this codec reads variants 0 (raster order) and "
                                 f"{WAVEFRONT} (wave order, what it writes)")
        z_string, y_stream = c.streams
        decode_order = Y_ORDERS[c.variant][2]
        t0 = time.perf_counter()
        try:
            with _one_thread():
                y_hat = decode_order(model, hyper_features(model, z_string, latent_shape(c.height, c.width)), y_stream)
            t1 = time.perf_counter()
            with torch.no_grad():
                x_hat = model.g_s(y_hat)
        except (RuntimeError, ValueError, AssertionError, IndexError) as e:
            if is_out_of_memory(e) or isinstance(e, BitstreamError):
                raise
            raise BitstreamError(f"entropy decoding failed: {type(e).__name__}: {e}") from None
        measures = JobMeasures(dec_coder_s=t1 - t0, dec_net_s=time.perf_counter() - t1)
        return Decoded(to_image(x_hat, c.height, c.width), measures)

    def complexity(self, point: Any, height: int, width: int) -> Complexity:
        """The hyperprior's parts (fvcore, on the padded size) plus the coding loop, which both
        sides run: the encoder computes the same distributions the decoder does."""
        from bench.complexity import decoder_bytes, encoder_decoder_macs, hyperprior_costs, parameter_count

        model_id, model = self._for_point(point)
        hp, wp = height + (-height) % PAD, width + (-width) % PAD
        key = ("complexity", model_id, hp, wp)
        if key not in self._costs:
            parts = hyperprior_costs(model, hp, wp)
            enc, dec = encoder_decoder_macs(parts)
            loop = serial_position_cost(model)
            serial = loop.macs * (hp // Y_STRIDE) * (wp // Y_STRIDE)
            uncounted = sorted({op for c in [*parts.values(), loop] for op in c.uncounted} | {PMF_NOT_COUNTED})
            self._costs[key] = Complexity(model_id, enc + serial, dec + serial, parameter_count(model),
                                          decoder_bytes(model.state_dict(), ("groups.",)), tuple(uncounted))
        return self._costs[key]

    def versions(self) -> dict[str, str]:
        return super().versions() | {"constriction": version("constriction"), "y_pmf_total": str(PMF_TOTAL),
                                     "y_order": f"{self.y_variant}:{Y_ORDERS[self.y_variant][0]}"}
