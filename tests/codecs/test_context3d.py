"""The 3-D context model and its codec (bench/models/context3d.py, bench/codecs/context3d.py)
with a tiny untrained model: bit-exact round trips across processes, bad files refused, one
parameter function for encoder and decoder, the wave schedule against the masks, the stream's
symbol order, raster-order files, the warm start, freezing, and the manifest status."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from compressai.models import ScaleHyperprior
from PIL import Image as PILImage

from bench.codec import BitstreamError
from bench.codecs.context3d import RASTER, WAVEFRONT, Context3DCodec, code_y, quantised_pmf, wave_pmf
from bench.codecs.learned import latent_shape, to_image, to_tensor
from bench.complexity import encoder_decoder_macs, hyperprior_costs
from bench.container import pack, unpack
from bench.models.context3d import (
    CONTEXT_ARCHS,
    KERNEL,
    PAD,
    Context3D,
    build_context_model,
    mixture_likelihood,
    warm_start,
    wave_schedule,
)
from bench.paths import REPO_ROOT, SHARED_DATA_DIR, SUBMISSIONS_DIR
from bench.submission import SubmissionError, discover, get_submission
from bench.train.recipe import RecipeError, load_recipe
from tests.helpers.coding import decode, encode, round_trip_measures

N, M = 8, 8


def odd_image() -> np.ndarray:
    """A real 67×131 crop (odd sides: padding and cropping are exercised)."""
    with PILImage.open(SHARED_DATA_DIR / "kodak" / "kodim23.png") as im:
        return np.asarray(im.convert("RGB").crop((300, 200, 431, 267))).copy()


def pixel_hash(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


@pytest.fixture(scope="module")
def sub_root(tmp_path_factory) -> Path:
    """A submission folder with three tiny untrained models (the paper's, and two ablation
    rungs), y scaled up so the symbols span a few dozen values, as a trained model's do."""
    root = tmp_path_factory.mktemp("context3d")
    (root / "weights").mkdir()
    for i, arch in enumerate(["context3d_gmm", "context3d_gaussian", "context2d_gaussian"]):
        torch.manual_seed(i)
        model = build_context_model(arch, N, M)
        model.g_a[-1].weight.data.mul_(40)
        torch.save({"state_dict": model.state_dict(), "meta": {"arch": arch, "N": N, "M": M}},
                   root / "weights" / f"m{i}.pt")
    return root


@pytest.fixture
def codec(sub_root) -> Context3DCodec:
    return Context3DCodec({"models": ["m0", "m1", "m2"]}, sub_root)


DECODE = textwrap.dedent("""
    import sys
    import numpy as np, torch
    from bench.codecs.context3d import Context3DCodec
    from tests.helpers.coding import decode
    codec = Context3DCodec({"models": ["m0", "m1", "m2"]}, sys.argv[1])
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for path in sys.argv[2:]:
            np.save(f"{path}-{threads}.npy", decode(codec, open(path, "rb").read()))
""")


@pytest.mark.timeout(120)
def test_round_trip_is_bit_exact_in_a_fresh_process(codec, sub_root, tmp_path):
    """Encode here (one thread), decode in a new process: with one thread the same pixels bit
    for bit; with two, y still decodes (it is coded under one thread either way) and only g_s
    may move a pixel value or two. The decoder's y is the encoder's rounded y."""
    img = odd_image()
    threads_before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        here, paths = {}, []
        for point in ("m0", "m1", "m2"):
            data = encode(codec, img, point)
            here[point] = decode(codec, data)
            model = codec.models[codec.names.index(point)]
            with torch.no_grad():
                x, h, w = to_tensor(img)
                assert np.array_equal(here[point], to_image(model.g_s(torch.round(model.g_a(x))), h, w))
            paths.append(tmp_path / f"{point}.bin")
            paths[-1].write_bytes(data)
    finally:
        torch.set_num_threads(threads_before)
    res = subprocess.run([sys.executable, "-c", DECODE, str(sub_root), *map(str, paths)], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=110, check=False)
    assert res.returncode == 0, res.stderr
    for point, path in zip(("m0", "m1", "m2"), paths):
        assert pixel_hash(np.load(f"{path}-1.npy")) == pixel_hash(here[point])
        assert np.abs(np.load(f"{path}-2.npy").astype(int) - here[point]).max() <= 2


def test_file_size_matches_the_model_estimate(codec):
    img = odd_image()
    data, measures = round_trip_measures(codec, img, "m0")
    est = measures.est_bits
    header = unpack(data).header_size
    assert abs((len(data) - header) * 8 - est) < 0.05 * est + 160    # range coder flush, y header, z


def test_corrupted_and_truncated_files_are_refused(codec):
    data = encode(codec, odd_image(), "m0")
    rng = np.random.default_rng(0)
    for pos in list(range(0, len(data), max(1, len(data) // 40))) + [len(data) - 1]:
        bad = bytearray(data)
        bad[pos] ^= 1 << int(rng.integers(8))
        with pytest.raises(BitstreamError):
            decode(codec, bytes(bad))
    for n in [0, 3, 8, 12, len(data) // 2, len(data) - 1]:
        with pytest.raises(BitstreamError):
            decode(codec, data[:n])
    c = unpack(data)
    z, y = c.streams
    forged = [pack(7, c.height, c.width, [z, y]),                       # unknown model id
              pack(c.model_id, c.height, c.width, [z, y], variant=2),   # unknown coding variant
              pack(c.model_id, c.height, c.width, [z]),                 # one stream
              pack(c.model_id, c.height, c.width, [z, y[:-1]]),         # y words cut mid-word
              pack(c.model_id, c.height, c.width, [z, b"\x00\xff\x0f" + y[3:]])]   # support over the cap
    for bad in forged:
        with pytest.raises(BitstreamError):
            decode(codec, bad)


def test_encoder_and_decoder_share_one_parameter_function(codec):
    """Both sides go through Context3D.wave_params in the same wave loop: the same positions in
    the same order and batches, with bit-identical parameters."""
    model = codec.models[0]
    calls: dict[str, list] = {"encode": [], "decode": []}
    side = ["encode"]
    original = model.wave_params

    def recording(group, y_pad, hyper, wave):
        p = original(group, y_pad, hyper, wave)
        calls[side[0]].append(((group, tuple(wave.rows.tolist()), tuple(wave.cols.tolist())), p.clone()))
        return p

    model.wave_params = recording
    try:
        data = encode(codec, odd_image(), "m0")
        side[0] = "decode"
        decode(codec, data)
    finally:
        del model.wave_params
    enc, dec = calls["encode"], calls["decode"]
    rows, cols = 8, 12                                 # 67×131 pads to 128×192: y is 8×12
    waves = [[(h, t - 3 * h) for h in range(rows) if 0 <= t - 3 * h < cols] for t in range(3 * rows + cols - 3)]
    assert [k for k, _ in enc] == [(g, tuple(h for h, _ in wv), tuple(w for _, w in wv)) for wv in waves
                                   for g in (0, 1)]
    assert [k for k, _ in dec] == [k for k, _ in enc]
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(enc, dec))


def test_serial_parameters_match_the_parallel_pass():
    torch.manual_seed(0)
    model = Context3D(N, M).eval()
    model.bake()
    y = torch.randint(-5, 6, (1, M, 4, 6)).float()
    hyper = torch.rand(1, M, 4, 6)
    parallel = model.params(y, hyper)
    seen = {}

    def values(g, h, w, params):
        seen[(g, h, w)] = params.flatten()
        grp = model.groups[g]
        return y[0, grp.own_start:grp.stop, h, w]

    assert torch.equal(model.serial_pass(hyper, values), y)
    for (g, h, w), p in seen.items():
        assert torch.allclose(p, parallel[g][0, :, h, w], atol=1e-5)


@pytest.mark.parametrize("arch", sorted(CONTEXT_ARCHS))
def test_wave_parameters_match_the_parallel_pass(arch):
    """Every wave's batch sees exactly the values the masked convolutions read: a value the
    schedule had not coded yet would be a zero here and move the parameters."""
    torch.manual_seed(0)
    model = build_context_model(arch, N, M).eval()
    model.bake()
    y = torch.randint(-5, 6, (1, M, 7, 9)).float()
    y[y == 0] = 6                                          # no zeros: every missing value would show
    hyper = torch.rand(1, M, 7, 9)
    parallel = model.params(y, hyper)
    visits = []

    def values(g, wave, params):
        grp = model.groups[g]
        for b, (h, w) in enumerate(zip(wave.rows.tolist(), wave.cols.tolist())):
            visits.append((g, h, w))
            assert torch.allclose(params[b], parallel[g][0, :, h, w], atol=1e-5), (g, h, w)
        return y[0, grp.own_start:grp.stop, wave.rows, wave.cols].T

    assert torch.equal(model.wavefront_pass(hyper, values), y)
    assert sorted(visits) == sorted((g, h, w) for g in range(len(model.groups)) for h in range(7) for w in range(9))


@pytest.mark.parametrize("arch", sorted(CONTEXT_ARCHS))
def test_wave_schedule_respects_the_causal_masks(arch):
    """Each tap a group's mask keeps lies in an earlier wave, or at the same position in a
    channel of an earlier group (coded first within the wave); 2h + w would break this."""
    model = build_context_model(arch, N, M)
    for g in model.groups:
        seen = g.own_start - g.start
        for c, i, j in torch.nonzero(g.context.mask.amax(0)).tolist():
            dt = 3 * (i - PAD) + (j - PAD)             # the tap's wave minus the position's
            assert dt < 0 or (dt == 0 and (i, j) == (PAD, PAD) and c < seen), (c, i, j)
        top_right = (PAD - 1, KERNEL - 1)               # (h − 1, w + 2): kept, and in wave t under 2h + w
        assert g.context.mask[:, :, top_right[0], top_right[1]].all() and 2 * (top_right[0] - PAD) + 2 == 0
    for height, width in [(1, 1), (1, 7), (7, 1), (4, 6), (8, 12)]:
        waves = wave_schedule(height, width)
        assert len(waves) == 3 * height + width - 3
        order = [(h, w) for wv in waves for h, w in zip(wv.rows.tolist(), wv.cols.tolist())]
        assert sorted(order) == [(h, w) for h in range(height) for w in range(width)]
        assert all(3 * h + w == t for t, wv in enumerate(waves) for h, w in zip(wv.rows.tolist(), wv.cols.tolist()))
        assert all((wv.rows.diff() > 0).all() for wv in waves)


def test_the_stream_holds_the_symbols_in_wave_order(codec):
    """A reference decoder built from the documented order (wave t = 3h + w, ascending row,
    group 1's channels then group 2's), with the encoder's own pmfs, reads the encoder's
    rounded y back from the stream."""
    import constriction

    from bench.codecs import context3d as c3

    model = codec.models[0]
    x, h, w = to_tensor(odd_image())
    with torch.no_grad():
        y = model.g_a(x)
        z_string = model.entropy_bottleneck.compress(model.h_a(torch.abs(y)))[0]
    pmfs = []
    original = c3.wave_pmf

    def recording(params, K, lo, n):
        pmfs.append(original(params, K, lo, n))
        return pmfs[-1]

    c3.wave_pmf = recording
    try:
        stream, _ = code_y(model, c3.hyper_features(model, z_string, latent_shape(h, w)), y)
    finally:
        c3.wave_pmf = original
    lo, _, words = c3._y_header(stream)
    decoder = constriction.stream.queue.RangeDecoder(words)
    family = constriction.stream.model.Categorical(perfect=False)
    y_int = torch.round(y)[0]
    rows, cols = y.shape[2:]
    k = 0
    for t in range(3 * rows + cols - 3):
        positions = [(r, t - 3 * r) for r in range(rows) if 0 <= t - 3 * r < cols]
        for g in model.groups:
            symbols = decoder.decode(family, pmfs[k]).reshape(len(positions), -1) + lo
            k += 1
            expected = np.stack([y_int[g.own_start:g.stop, r, c].numpy() for r, c in positions])
            assert np.array_equal(symbols, expected), (t, g.own_start)
    assert k == len(pmfs)


def test_raster_order_files_still_decode(codec):
    """Files of coding variant 0 (raster order, written before the wavefront coder) decode to
    the same image as the wave-order file of the same image; the codec writes variant 1."""
    img = odd_image()
    wave = encode(codec, img, "m1")
    raster_codec = Context3DCodec({"models": ["m0", "m1", "m2"]}, codec.root)
    raster_codec.y_variant = RASTER
    raster = encode(raster_codec, img, "m1")
    assert (unpack(wave).variant, unpack(raster).variant) == (WAVEFRONT, RASTER)
    assert unpack(wave).streams[0] == unpack(raster).streams[0] and unpack(wave).streams[1] != unpack(raster).streams[1]
    assert np.array_equal(decode(codec, raster), decode(codec, wave))
    assert abs(len(raster) - len(wave)) <= 8
    assert raster_codec.versions()["y_order"] != codec.versions()["y_order"]    # never one cache key for both


def test_y_decodes_the_same_under_one_and_two_threads(codec):
    """y is coded under one torch thread whatever the process's setting: the parameters see
    one thread, and the y that reaches g_s is the same with the process at 1 and at 2."""
    model = codec.models[0]
    data = encode(codec, odd_image(), "m0")
    ys, threads = [], []
    hook = model.g_s.register_forward_pre_hook(lambda _, args: ys.append(args[0].clone()))
    original = model.wave_params

    def recording(group, y_pad, hyper, wave):
        threads.append(torch.get_num_threads())
        return original(group, y_pad, hyper, wave)

    model.wave_params = recording
    before = torch.get_num_threads()
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            decode(codec, data)
    finally:
        torch.set_num_threads(before)
        hook.remove()
        del model.wave_params
    assert set(threads) == {1} and len(ys) == 2 and torch.equal(ys[0], ys[1])


def test_masks_are_causal_and_the_3d_context_sees_group_1_at_the_centre():
    model = Context3D(N, M)
    g1, g2 = (g.context.mask for g in model.groups)
    assert g1.shape[1] == M // 2 and g2.shape[1] == M    # group 2 reads both groups
    assert g1[:, :, 2, 2].sum() == 0 and g2[:, M // 2:, 2, 2].sum() == 0 and g2[:, :M // 2, 2, 2].all()
    assert g1[:, :, 3:].sum() == 0 and g1[:, :, 2, 3:].sum() == 0 and g1[:, :, :2].all()
    flat = Context3D(N, M, cross=False)
    assert flat.groups[1].context.mask.shape[1] == M // 2


@pytest.mark.parametrize("pmf_of", [quantised_pmf, lambda p, K, lo, n: wave_pmf(p[None], K, lo, n)])
def test_pmf_is_integer_positive_and_follows_the_models_likelihood(pmf_of):
    """The codec's float64 pmfs (per position, and per wave) and the training likelihood
    (mixture) read the parameters the same way."""
    params = torch.tensor([0.0, 1.0, -1.0, 0.0, 2.0, -3.0, 1.0, 0.5, 4.0])     # K = 3, one element
    lo, n = -10, 21
    pmf = pmf_of(params, 3, lo, n)
    assert pmf.shape == (1, n) and (pmf >= 1).all() and np.array_equal(pmf, np.floor(pmf))
    values = torch.arange(lo + 1, lo + n - 1, dtype=torch.float32).view(1, 1, 1, -1)
    lik = mixture_likelihood(values, params.view(1, 9, 1, 1).expand(1, 9, 1, n - 2), 3)
    assert np.abs(pmf[0, 1:-1] / pmf.sum() - lik.flatten().numpy()).max() < 1e-6


@pytest.mark.parametrize("K", [1, 3])
def test_the_wave_pmf_is_the_position_pmf_up_to_a_count(K):
    """A wave's pmf rows are each position's pmf (row b·G + g: position b, channel g), every
    count within one of the per-position float64 computation's."""
    torch.manual_seed(0)
    G, B, lo, n = 5, 4, -20, 41
    params = torch.randn(B, (3 * K if K > 1 else 2) * G) * 3
    wave = wave_pmf(params, K, lo, n)
    per_position = np.concatenate([quantised_pmf(p, K, lo, n) for p in params])
    assert wave.shape == (B * G, n) and np.abs(wave - per_position).max() <= 1


def test_warm_start_copies_the_hyperprior_and_freezing_leaves_the_entropy_model():
    torch.manual_seed(0)
    hp = ScaleHyperprior(N, M)
    model = build_context_model("context3d_gmm", N, M)
    left = warm_start(model, hp.state_dict())
    assert left and all(k.startswith("groups.") for k in left)
    assert torch.equal(model.g_a[0].weight, hp.g_a[0].weight) and torch.equal(model.h_s[4].bias, hp.h_s[4].bias)
    model.transforms_trainable(False)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in model.groups.named_parameters(prefix="groups")} | \
        {"entropy_bottleneck.quantiles"}
    model.transforms_trainable(True)
    assert all(p.requires_grad for p in model.parameters())


def test_training_forward_gives_likelihoods_of_every_latent():
    torch.manual_seed(0)
    model = build_context_model("context3d_gmm", N, M).train()
    model.g_a[-1].weight.data.mul_(40)     # rounded y not all zero: the context convolutions see values
    out = model(torch.rand(2, 3, 64, 64))
    assert out["likelihoods"]["y"].shape == (2, M, 4, 4) and out["x_hat"].shape == (2, 3, 64, 64)
    bits = sum(-torch.log2(v).sum() for v in out["likelihoods"].values())
    bits.backward()
    assert model.groups[1].context.weight.grad.abs().sum() > 0


def test_the_frozen_phase_trains_the_entropy_model_as_the_full_loss_does():
    """While the transforms are frozen the step skips the synthesis; the entropy model's
    gradients must be the full loss's (the distortion is a constant then)."""
    from bench.train.loop import _frozen_loss, distortion, rate_bpp
    recipe = load_recipe(SUBMISSIONS_DIR / "context3d_gmm" / "train.toml")
    run = recipe.runs[0]
    torch.manual_seed(0)
    model = build_context_model("context3d_gmm", N, M).train()
    model.g_a[-1].weight.data.mul_(40)
    model.transforms_trainable(False)
    x = torch.rand(2, 3, 128, 128)   # MS-SSIM at 5 scales needs > 96 px

    def grads(loss: torch.Tensor) -> list[torch.Tensor]:
        model.zero_grad(set_to_none=True)
        loss.backward()
        return [p.grad.clone() for p in model.groups.parameters()]

    torch.manual_seed(1)
    out = model(x)
    d, _ = distortion(out["x_hat"], x, recipe)
    full = grads(rate_bpp(out["likelihoods"], 2 * 128 * 128) + run.lmbda * d)
    torch.manual_seed(1)
    loss, logs = _frozen_loss(model, x, x, 128, 128, recipe, run, log=True)
    frozen = grads(loss)
    assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-7) for a, b in zip(full, frozen))
    assert any(g.abs().sum() > 0 for g in frozen)
    assert logs["distortion"] == pytest.approx(d.item(), rel=1e-6)
    assert logs["loss"] == pytest.approx(logs["bpp"] + run.lmbda * d.item(), rel=1e-6)
    assert _frozen_loss(model, x, x, 128, 128, recipe, run, log=False)[1]["loss"] is None   # not logged


def test_recipe_and_manifest_of_the_shipped_submission():
    recipe = load_recipe(SUBMISSIONS_DIR / "context3d_gmm" / "train.toml")
    assert recipe.model.arch in CONTEXT_ARCHS and recipe.model.context
    assert all(0 < r.freeze_steps < r.steps and r.init.startswith("noise_hyperprior/") for r in recipe.runs)
    sub = discover(include_unready=True).get("context3d_gmm")
    assert set(sub.params["models"]) == {r.name for r in recipe.runs} == set(sub.points.points)
    if sub.status == "training":
        assert "context3d_gmm" not in discover()
        with pytest.raises(SubmissionError, match="still training"):
            get_submission("context3d_gmm")


def test_freeze_steps_is_refused_outside_context_archs(tmp_path):
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "train.toml"
    path.write_text('[model]\narch = "scale_hyperprior"\n[[runs]]\nname = "a"\nlmbda = 1.0\nsteps = 10\n'
                    'freeze_steps = 5\n')
    with pytest.raises(RecipeError, match="freeze_steps"):
        load_recipe(path)


def test_the_estimate_gives_the_decoded_image_and_the_file_size_closely(codec):
    """The parallel pass over rounded latents: what ``bench run --probe estimate`` searches with."""
    img = odd_image()
    for point in ("m0", "m1"):
        est = codec.estimate(img, point)
        data = encode(codec, img, point)
        assert np.array_equal(est.decoded, decode(codec, data))         # the serial decoder's image
        # this tiny untrained model's mixtures put mass far outside the image's symbol range,
        # which the real coder cuts off (a trained model's estimate is within ~1 %: measured
        # −0.6 % and −1.1 % on two 256² Kodak crops with the first l2 export)
        assert abs(est.bytes / len(data) - 1) < 0.25, (est.bytes, len(data))


def _serial_macs_by_hand(model: Context3D) -> int:
    """One loop position: each group's causal taps (in × out × 13) and its estimator's 1×1 layers."""
    total = 0
    for g in model.groups:
        conv = g.context
        total += conv.out_channels * conv.in_channels * (2 * 5 + 2 + 1)
        layers = [*g.estimator.stack, *(g.estimator.residual or [])]
        total += sum(layer.in_channels * layer.out_channels for layer in layers if isinstance(layer, torch.nn.Conv2d))
    return total


def test_complexity_counts_the_serial_loop_on_both_sides(codec):
    """The leaderboard's MACs for a context model: the hyperprior's networks plus, on each side,
    one loop body per y position (a 67×131 image pads to 128×192: 8×12 positions)."""
    for point, model in zip(["m0", "m1", "m2"], codec.models):
        c = codec.complexity(point, 67, 131)
        serial = _serial_macs_by_hand(model) * 8 * 12
        enc, dec = encoder_decoder_macs(hyperprior_costs(model, 128, 192))
        assert (c.enc_macs, c.dec_macs) == (enc + serial, dec + serial)
        assert c.params == sum(p.numel() for p in model.parameters())
        assert any(op.startswith("pmf") for op in c.uncounted)
    k1, k3 = codec.complexity("m1", 67, 131), codec.complexity("m0", 67, 131)
    assert k3.enc_macs > k1.enc_macs          # the mixture and RPE cost more per position
