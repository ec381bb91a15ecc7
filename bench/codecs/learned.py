"""Learned codecs: the project's own hyperprior models and compressai's zoo, behind the
:class:`~bench.codec.Codec` contract and the :mod:`bench.container` file format.

Both codecs pad the image with zeros (right and bottom) to a multiple of 2**DOWNSAMPLINGS,
run compressai's ``compress``/``decompress`` in float32 under ``torch.no_grad`` (networks on
the codec's device, ``--device``; the rANS coder on the CPU), and crop back to the original
size. The entropy decoder needs exactly the scales the encoder used, which compressai's
``decompress`` recomputes from the decoded z; that is deterministic for a given machine,
device, library versions and thread count (see ``versions``; on CUDA with cuDNN's
deterministic algorithms, :func:`bench.device.start_cuda`), so a file records whether its
networks ran on CUDA (:data:`CUDA_CODED`) and decodes only on that kind of device. On CUDA a
network warms up once per padded size before its first timed call (:func:`bench.device.warm_up`).
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from abc import abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.codec import BitstreamError, Codec, Complexity, Decoded, Encoded, Estimate, JobMeasures
from bench.codecs import scale_shift
from bench.container import MAX_SIDE, pack, unpack
from bench.container import VERSION as CONTAINER_VERSION
from bench.device import DeviceMismatch, device_failure, network_clock, start_cuda, warm_up
from bench.limits import is_out_of_memory
from bench.models.hyperprior import DOWNSAMPLINGS, build_model, hard_forward

PAD = 2**DOWNSAMPLINGS
FILE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_MODELS: dict[tuple, nn.Module] = {}     # loaded models, shared by all codec instances of a process
#: The Gaussian conditional codes each y element with the CDF of the nearest table scale at or
#: above its predicted σ. compressai's table has 64 scales from 0.11 to 256 (steps of 13 %);
#: we measured 256 (steps of 3 %) on six Kodak images with the noise_hyperprior models: y
#: shrinks by 5 bytes per image with l05 (0.075 bpp) but grows by 27 with l2 and by 77 (0.7 %)
#: with base, whose files are 1.1 % below the model's own −log2 likelihood with 64 scales:
#: there the noise-trained σ is too small for the rounded latents, and rounding it up pays.
#: Smaller files win: compressai's 64, stated here because it changes the bytes.
SCALE_LEVELS = 64
#: Coding-variant flag (the container's variant field; the low bits hold the scale shift):
#: the networks ran on a CUDA device. The scales that pick each symbol's CDF come out of float
#: arithmetic that differs between devices, so such a file decodes on CUDA only, and a CPU
#: file (flag clear, the bytes of every file coded before devices existed) on the CPU only.
CUDA_CODED = 16


# --------------------------------------------------------------------------- tensors
def to_tensor(image: np.ndarray) -> tuple[torch.Tensor, int, int]:
    """uint8 H×W×3 → 1×3×H'×W' float32 in [0, 1], zero-padded right/bottom to a multiple of PAD."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a uint8 H×W×3 image, got {image.dtype} {image.shape}")
    h, w = image.shape[:2]
    if not (1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE):
        raise ValueError(f"image size {h}×{w} outside 1..{MAX_SIDE}")
    x = torch.from_numpy(np.array(image, dtype=np.float32)).permute(2, 0, 1).unsqueeze(0).div(255)
    return F.pad(x, (0, (-w) % PAD, 0, (-h) % PAD)), h, w


def to_image(x_hat: torch.Tensor, h: int, w: int) -> np.ndarray:
    """1×3×H'×W' in [0, 1] → uint8 h×w×3 (crop, clamp, ×255, round)."""
    out = x_hat[0, :, :h, :w].clamp(0, 1).mul(255).round().to(torch.uint8)
    return out.permute(1, 2, 0).contiguous().cpu().numpy()


def latent_shape(h: int, w: int) -> tuple[int, int]:
    """The z spatial shape a (padded) h×w image has."""
    return math.ceil(h / PAD), math.ceil(w / PAD)


def likelihood_bits(likelihoods) -> float:
    """−log2 of the likelihoods: the bits an ideal entropy coder would spend on the symbols."""
    return float(sum(-torch.log2(lik).sum() for lik in likelihoods))


def _prepare(model: nn.Module) -> nn.Module:
    """float32, CDF tables rebuilt (SCALE_LEVELS Gaussian scales), per-image scale shifts
    (:mod:`bench.codecs.scale_shift`), eval mode, no gradients."""
    from compressai.models.base import get_scale_table

    model = model.float()
    model.update(scale_table=get_scale_table(levels=SCALE_LEVELS), force=True)
    scale_shift.install(model)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _compress_kind(model: nn.Module) -> str | None:
    """How ``model.compress`` shows its latents to forward hooks: 'scale' or 'mean-scale' for
    compressai's plain hyperpriors (y leaves g_a), 'gated' for a variable-rate gated model
    fixed at one λ (y is modulated after g_a, so |y| is read where it enters h_a; the zero-mean
    Gaussian gives |y| and y the same likelihood); None for anything else (no estimate)."""
    from compressai.models import MeanScaleHyperprior, ScaleHyperprior

    from bench.models.ecg import ECGHyperprior

    if isinstance(getattr(model, "model", None), ECGHyperprior):
        return "gated"
    fn = getattr(type(model), "compress", None)
    return {ScaleHyperprior.compress: "scale", MeanScaleHyperprior.compress: "mean-scale"}.get(fn)


@torch.no_grad()
def compress_with_bits(model: nn.Module, x: torch.Tensor) -> tuple[dict, float | None]:
    """``model.compress(x)`` plus the estimated bits of the rounded latents, without another
    network pass: forward hooks catch y, z and the hyper-synthesis output, and the entropy
    models (no network) give the likelihoods of the quantised values, as an eval-mode forward
    would. None when the model's compress is not one this reads (e.g. a context model)."""
    kind = _compress_kind(model)
    if kind is None:
        return model.compress(x), None
    net = model.model if kind == "gated" else model
    seen: dict[str, torch.Tensor] = {}

    def keep(name, from_input=False):
        def hook(_m, inp, out) -> None:          # returns None: a hook's return value would replace the output
            seen.setdefault(name, inp[0] if from_input else out)
        return hook

    y_hook = net.h_a.register_forward_hook(keep("y", True)) if kind == "gated" else \
        net.g_a.register_forward_hook(keep("y"))
    hooks = [y_hook, net.h_a.register_forward_hook(keep("z")), net.h_s.register_forward_hook(keep("params"))]
    try:
        out = model.compress(x)
    finally:
        for hk in hooks:
            hk.remove()
    _, z_lik = net.entropy_bottleneck(seen["z"], training=False)
    params = seen["params"]
    scales, means = params.chunk(2, 1) if kind == "mean-scale" else (params, None)
    _, y_lik = net.gaussian_conditional(seen["y"], scales, means=means, training=False)
    return out, likelihood_bits([y_lik, z_lik])


TRANSFORMS = ("g_a", "h_a", "h_s", "g_s")    # the networks; everything else in a call is entropy coding


def transforms(model: nn.Module) -> list[nn.Module]:
    """The model's networks (``TRANSFORMS``), the parts :func:`bench.device.network_clock` times;
    the rest of a compress/decompress call is the entropy coder and its bookkeeping."""
    inner = getattr(model, "model", model)          # a variable-rate model fixed at one λ
    return [m for name in TRANSFORMS if (m := getattr(inner, name, None)) is not None]


# --------------------------------------------------------------------------- shared codec
class LearnedCodec(Codec):
    """encode/decode over a list of models addressed by an id (< 2**16). Each returns what it
    measured on the way with its result (:class:`~bench.codec.Encoded`: estimated bits, network
    and coder seconds; :class:`~bench.codec.Decoded`: network and coder seconds; subclasses
    add their own), never through the instance: encode and decode run in different processes."""

    devices = ("cpu", "cuda")

    def __init__(self, params: dict[str, Any], root: Any = None) -> None:
        super().__init__(params, root)
        self._costs: dict[tuple, Complexity] = {}
        self._warm: set = set()          # (network, padded input shape) pairs warmed up on this device

    def place(self, device: str) -> None:
        """Networks on ``device`` from now on. On CUDA the device starts here (current device,
        context, coding flags: :func:`bench.device.start_cuda`), before any job's memory
        ceiling; the models loaded so far move now, others when first used."""
        if device.startswith("cuda"):
            start_cuda(device)
        super().place(device)
        self._warm.clear()
        for model in self._loaded():
            self._placed(model)

    def _loaded(self) -> list[nn.Module]:
        """The models this codec holds now (a fixed list, or one variable-rate model)."""
        single = getattr(self, "model", None)
        return [*getattr(self, "models", []), *([single] if isinstance(single, nn.Module) else [])]

    def _placed(self, model: nn.Module) -> nn.Module:
        """``model`` with its weights on this codec's device (moved on first use; models are
        shared within a process, so each use checks)."""
        p = next(iter([*model.parameters(), *model.buffers()]), None)
        if p is not None and p.device != torch.device(self.device):
            model.to(self.device)
        return model

    def _warm_up(self, model: nn.Module, shape: tuple[int, ...]) -> None:
        """One untimed forward per network and padded size on a GPU (:func:`bench.device.warm_up`)."""
        warm_up(getattr(model, "model", model), shape, self.device, self._warm, model)

    def _check_device(self, variant: int) -> None:
        """A file decodes on the kind of device its networks ran on (:data:`CUDA_CODED`)."""
        coded, here = ("cuda" if variant & CUDA_CODED else "cpu"), self.device.split(":")[0]
        if coded != here:
            raise DeviceMismatch(
                f"this file was coded with its networks on {coded} and this decoder runs them on {here}: the "
                f"scales that select each symbol's CDF differ between devices in the last float bits, which "
                f"breaks the entropy decoding; decode it with --device {coded}")

    @abstractmethod
    def _for_point(self, point: Any) -> tuple[int, nn.Module]:
        """The model id and model for an operating point."""

    @abstractmethod
    def _for_id(self, model_id: int) -> nn.Module:
        """The model for an id read from a file (BitstreamError if unknown)."""

    def encode(self, image: np.ndarray, point: Any) -> Encoded:
        model_id, model = self._for_point(point)
        model = self._placed(model)
        x, h, w = to_tensor(image)
        self._warm_up(model, tuple(x.shape))
        t0 = time.perf_counter()
        with scale_shift.searching(model) as variant, network_clock(transforms(model), self.device) as clock:
            out, est = compress_with_bits(model, clock.to_device(x))
        wall = time.perf_counter() - t0
        measures = JobMeasures(est_bits=est, enc_net_s=clock.net_s, enc_coder_s=clock.coder_s(wall),
                               enc_copy_s=clock.copies())
        y_strings, z_strings = out["strings"]
        if len(y_strings) != 1 or len(z_strings) != 1:
            raise RuntimeError(f"expected one y and one z string, got {len(y_strings)} and {len(z_strings)}")
        if tuple(out["shape"]) != latent_shape(h, w):      # the decoder derives it from h, w
            raise RuntimeError(f"z shape {tuple(out['shape'])} is not {latent_shape(h, w)} for a {h}×{w} image")
        flag = CUDA_CODED if self.device.startswith("cuda") else 0
        return Encoded(pack(model_id, h, w, [z_strings[0], y_strings[0]], variant[0] | flag), measures)

    @torch.no_grad()
    def estimate(self, image: np.ndarray, point: Any) -> Estimate | None:
        """One eval-mode pass with rounded latents, as the real codec rounds them: the
        reconstruction, and the container's size for streams of ⌈−log2 likelihood / 8⌉ bytes
        each (the real file differs by the coder's overhead, within a few percent). None for
        models whose compress is not a plain or gated hyperprior (context models)."""
        model_id, model = self._for_point(point)
        kind = _compress_kind(model)
        if kind is None:
            return None
        model = self._placed(model)
        x, h, w = to_tensor(image)
        self._warm_up(model, tuple(x.shape))
        x = x.to(self.device)
        out = model(x) if kind == "gated" else hard_forward(model, x)
        lik = out["likelihoods"]
        sizes = [math.ceil(likelihood_bits([lik[k]]) / 8) for k in ("z", "y")]
        return Estimate(len(pack(model_id, h, w, [bytes(n) for n in sizes])), to_image(out["x_hat"], h, w))

    def declared_size(self, data: bytes) -> tuple[int, int]:
        c = unpack(data)
        return c.height, c.width

    def decode(self, data: bytes) -> Decoded:
        c = unpack(data)                      # magic, version, lengths, CRC, size cap: before any decoder
        model = self._placed(self._for_id(c.model_id))
        if len(c.streams) != 2:
            raise BitstreamError(f"expected 2 streams (z, y), the file has {len(c.streams)}")
        self._check_device(c.variant)
        z, y = c.streams
        self._warm_up(model, (1, 3, c.height + (-c.height) % PAD, c.width + (-c.width) % PAD))
        t0 = time.perf_counter()
        with scale_shift.decoding(model, c.variant & ~CUDA_CODED), \
                network_clock(transforms(model), self.device) as clock:   # unknown variant: raises first
            try:
                with torch.no_grad():
                    x_hat = model.decompress([[y], [z]], latent_shape(c.height, c.width))["x_hat"]
            except (RuntimeError, ValueError, AssertionError, IndexError) as e:
                if is_out_of_memory(e) or device_failure(e):   # not bad bytes: memory or the device
                    raise
                raise BitstreamError(f"entropy decoding failed: {type(e).__name__}: {e}") from None
            x_hat = clock.to_host(x_hat)      # the same uint8 pixels either side: ×255 and rounding are exact
        wall = time.perf_counter() - t0
        measures = JobMeasures(dec_net_s=clock.net_s, dec_coder_s=clock.coder_s(wall), dec_copy_s=clock.copies())
        return Decoded(to_image(x_hat, c.height, c.width), measures)

    def complexity(self, point: Any, height: int, width: int) -> Complexity | None:
        """MACs (fvcore, on the padded size), parameters and decoder bytes (float32, as the
        decoder runs); None for architectures the counter does not model (context models)."""
        from compressai.models import ScaleHyperprior

        from bench.complexity import decoder_bytes, encoder_decoder_macs, hyperprior_costs, parameter_count

        model_id, model = self._for_point(point)
        if not isinstance(model, ScaleHyperprior):
            return None
        hp, wp = height + (-height) % PAD, width + (-width) % PAD
        key = ("complexity", model_id, hp, wp)
        if key not in self._costs:
            costs = hyperprior_costs(model, hp, wp)
            enc, dec = encoder_decoder_macs(costs)
            uncounted = sorted({op for c in costs.values() for op in c.uncounted})
            self._costs[key] = Complexity(model_id, enc, dec, parameter_count(model), decoder_bytes(model.state_dict()),
                                          tuple(uncounted))
        return self._costs[key]

    def versions(self) -> dict[str, str]:
        """Libraries, container format, CDF table size and scale shifts: each changes the bytes
        (this project's modules are hashed by the submission through their source; libraries
        by their version)."""
        import compressai

        return {"compressai": compressai.__version__, "torch": torch.__version__,
                "container": str(CONTAINER_VERSION), "scale_levels": str(SCALE_LEVELS),
                "scale_shifts": ",".join(map(str, scale_shift.SHIFTS))}


# --------------------------------------------------------------------------- own models
def _fixed_rate_model(meta: dict) -> nn.Module:
    return build_model(meta["arch"], int(meta["N"]), int(meta["M"]))


def load_weights(path: Path, build: Callable[[dict], nn.Module] = _fixed_rate_model) -> nn.Module:
    """A model from an exported weight file (``{"state_dict": fp16, "meta": {arch, N, M, ...}}``),
    built by ``build(meta)`` and ready to code; cached per process by path, size and mtime.
    Errors name the file."""
    path = Path(path)
    try:
        st = path.stat()
    except OSError as e:
        raise ValueError(f"{path}: weight file not found ({e.strerror})") from None
    key = ("weights", build.__qualname__, str(path), st.st_size, st.st_mtime_ns)
    if key in _MODELS:
        return _MODELS[key]
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle, zip and torch errors all mean the same thing here
        raise ValueError(f"{path}: not a valid weight file ({type(e).__name__}: {e})") from None
    if not (isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict) and isinstance(obj.get("meta"), dict)):
        raise ValueError(f"{path}: not an exported weight file (expected a dict with 'state_dict' and 'meta')")
    meta = obj["meta"]
    what = f"{meta.get('arch')} N={meta.get('N')} M={meta.get('M')}"
    try:
        model = build(meta)
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: 'meta' does not describe a model this codec builds "
                         f"({type(e).__name__}: {e})") from None
    try:
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in obj["state_dict"].items()})
    except (ValueError, RuntimeError, KeyError, AttributeError) as e:
        raise ValueError(f"{path}: weights do not fit {what} ({e})") from None
    _MODELS[key] = model = _prepare(model)
    return model


class HyperpriorCodec(LearnedCodec):
    """The project's hyperprior models; operating points are model names.

    params: ``models`` (list of names: ``"base"`` is ``<root>/<weights_dir>/base.pt``,
    ``"other_sub/base"`` is another submission's file), ``weights_dir`` (default ``weights``).
    A model's id in the bitstream is its index in ``models``.
    """

    def __init__(self, params: dict[str, Any], root: Any = None) -> None:
        super().__init__(params, root)
        unknown = set(self.params) - {"models", "weights_dir"}
        if unknown:
            raise ValueError(f"unknown param(s) {sorted(unknown)}; known: ['models', 'weights_dir']")
        names = self.params.get("models")
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise ValueError("param 'models' must be a non-empty list of model names")
        if len(set(names)) != len(names) or len(names) >= 2**16:
            raise ValueError(f"param 'models' must list distinct names (got {names})")
        if root is None:
            raise ValueError("HyperpriorCodec needs the submission folder (root) to find its weights")
        self.root = Path(root).resolve()
        self.names = list(names)
        self.paths = [self._resolve(n) for n in self.names]
        self.models = [self._load_model(p) for p in self.paths]

    def _load_model(self, path: Path) -> nn.Module:
        """One model from its weight file (subclasses with other architectures override this)."""
        return load_weights(path)

    def _resolve(self, name: str) -> Path:
        parts = name.split("/")
        wdir = self.params.get("weights_dir", "weights")
        wparts = wdir.split("/") if isinstance(wdir, str) else [""]
        if len(parts) > 2 or not all(FILE_NAME_RE.match(p) for p in parts + wparts):
            raise ValueError(f"model {name!r} / weights_dir {wdir!r}: use 'name' or 'submission/name' and a "
                             "relative folder, plain names only (letters, digits, '_', '-', '.')")
        sub_root = self.root if len(parts) == 1 else self.root.parent / parts[0]
        stem = parts[-1].removesuffix(".pt")
        path = (sub_root / Path(*wparts) / f"{stem}.pt").resolve()
        if not path.is_relative_to(self.root.parent):
            raise ValueError(f"model {name!r} resolves to {path}, outside the submissions folder {self.root.parent}")
        return path

    def _for_point(self, point: Any) -> tuple[int, nn.Module]:
        try:
            i = self.names.index(str(point))
        except ValueError:
            raise ValueError(f"unknown operating point {point!r}; models: {self.names}") from None
        return i, self.models[i]

    def _for_id(self, model_id: int) -> nn.Module:
        if model_id >= len(self.models):
            raise BitstreamError(f"unknown model id {model_id} in the file; this codec has {len(self.models)} "
                                 f"model(s) {self.names}")
        return self.models[model_id]

    def versions(self) -> dict[str, str]:
        out = super().versions()
        for name, path in zip(self.names, self.paths):   # the submission's own files are hashed already
            if not path.is_relative_to(self.root):
                out[f"weights:{name}"] = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        return out


# --------------------------------------------------------------------------- compressai zoo
ZOO_ARCHS = ("bmshj2018-hyperprior", "mbt2018-mean", "mbt2018", "cheng2020-anchor", "cheng2020-attn")
ZOO_METRICS = ("mse", "ms-ssim")
_RANDOM_SEED = 20180201   # pretrained = false: fixed-seed random weights, identical in every process


def zoo_weights_path(arch: str, metric: str, quality: int) -> tuple[Path, str]:
    """Where torch hub keeps (would keep) a zoo checkpoint, and its URL."""
    from compressai.zoo.image import model_urls

    url = model_urls[arch][metric][quality]
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1], url


def load_zoo(arch: str, metric: str, quality: int, pretrained: bool) -> nn.Module:
    """A compressai zoo model, never downloading: pretrained weights only from the hub cache."""
    from compressai.zoo.image import cfgs, model_architectures

    if not pretrained:
        key = ("zoo-random", arch, quality)
        if key not in _MODELS:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(_RANDOM_SEED + quality)
                model = model_architectures[arch](*cfgs[arch][quality])
            _MODELS[key] = _prepare(model)
        return _MODELS[key]
    path, url = zoo_weights_path(arch, metric, quality)
    if not path.is_file():
        raise FileNotFoundError(
            f"compressai zoo weights for {arch} quality {quality} ({metric}) are not in the local torch hub "
            f"cache: expected {path}. This machine cannot download them; fetch {url} elsewhere and copy it "
            f"to {path} (the folder is $TORCH_HOME/hub/checkpoints), or set pretrained = false for "
            "random weights.")
    st = path.stat()
    key = ("zoo", str(path), st.st_size, st.st_mtime_ns)
    if key not in _MODELS:
        from compressai.zoo.pretrained import load_pretrained

        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            state = state.get("state_dict", state)
            model = model_architectures[arch].from_state_dict(load_pretrained(state))
        except Exception as e:
            raise ValueError(f"{path}: not a usable {arch} checkpoint ({type(e).__name__}: {e})") from None
        _MODELS[key] = _prepare(model)
    return _MODELS[key]


class ZooCodec(LearnedCodec):
    """compressai zoo models; operating points are qualities (1–8; 1–6 for cheng2020).

    params: ``arch`` (one of ZOO_ARCHS), ``metric`` (``mse`` or ``ms-ssim``), ``pretrained``
    (default true: weights from the local torch hub cache only), ``qualities`` (optional:
    checked up front, so a missing file fails when the codec is made rather than per image).
    A model's id in the bitstream is its quality.
    """

    def __init__(self, params: dict[str, Any], root: Any = None) -> None:
        from compressai.zoo.image import cfgs

        super().__init__(params, root)
        known = {"arch", "metric", "pretrained", "qualities"}
        if set(self.params) - known:
            raise ValueError(f"unknown param(s) {sorted(set(self.params) - known)}; known: {sorted(known)}")
        self.arch = self.params.get("arch", "bmshj2018-hyperprior")
        self.metric = self.params.get("metric", "mse")
        self.pretrained = self.params.get("pretrained", True)
        if self.arch not in ZOO_ARCHS:
            raise ValueError(f"param 'arch' {self.arch!r} must be one of {ZOO_ARCHS}")
        if self.metric not in ZOO_METRICS:
            raise ValueError(f"param 'metric' {self.metric!r} must be one of {ZOO_METRICS}")
        if not isinstance(self.pretrained, bool):
            raise ValueError(f"param 'pretrained' must be true or false, got {self.pretrained!r}")
        self.available = sorted(cfgs[self.arch])
        for q in self.params.get("qualities", []):
            self._load(self._quality(q))

    def _quality(self, point: Any) -> int:
        q = int(point) if isinstance(point, (int, str)) and str(point).isdigit() else None
        if q not in self.available:
            raise ValueError(f"quality {point!r} not available for {self.arch}; choose from {self.available}")
        return q

    def _load(self, q: int) -> nn.Module:
        return load_zoo(self.arch, self.metric, q, self.pretrained)

    def _for_point(self, point: Any) -> tuple[int, nn.Module]:
        q = self._quality(point)
        return q, self._load(q)

    def _for_id(self, model_id: int) -> nn.Module:
        if model_id not in self.available:
            raise BitstreamError(f"unknown model id {model_id} in the file; "
                                 f"{self.arch} has qualities {self.available}")
        return self._load(model_id)

    def versions(self) -> dict[str, str]:
        return super().versions() | {"zoo": f"{self.arch}/{self.metric}/"
                                            f"{'pretrained' if self.pretrained else 'random'}"}
