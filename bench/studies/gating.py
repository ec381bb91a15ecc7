"""The ECG seed's table for our models: a gated variable-rate model (``ecg_hyperprior``) against
its dense twin (``bm_hyperprior``: same architecture, data and step budget, no gates).

For ``n`` λ spread evenly in log λ over the models' shared range, every image of the set is
coded by both through the harness (:class:`~bench.runner.Runner`: real files, decoded back,
cached with the runs), which gives per λ: bpp, PSNR and MS-SSIM of each, the PSNR drop (%)
and MS-SSIM drop of ECG against the dense model, and the MAC reduction (the dense model's
MACs over ECG's effective MACs: gated convolutions at their active input channels, plus the
gates' own work). A second pass over the gated model alone reads, per layer, the share of
input channels its gates let through, the channels no image at any λ ever used (their
weight slices need not be stored), and times the decoder twice on the same files: gathering
the active channels (what the codec runs) against multiplying the inactive ones by zero.

Outputs ``reports/<dataset>/gating_<gated>_vs_<dense>.{csv,json,md}``; the HTML report shows
the markdown.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench.codec import OperatingPoints, as_decoded
from bench.metrics import aggregate
from bench.paths import REPORTS_DIR, SUBMISSIONS_DIR
from bench.rd import bd_rate, overlap_share, usable_curve
from bench.results import write_csv, write_json
from bench.studies.gating_seed import side_by_side
from bench.studies.gating_seed import to_markdown as seed_markdown

COLUMNS = ["lmbda", "dense_bpp", "gated_bpp", "dense_psnr", "gated_psnr", "psnr_drop_pct", "dense_msssim",
           "gated_msssim", "msssim_drop", "dense_enc_kmac_px", "dense_dec_kmac_px", "gated_enc_kmac_px",
           "gated_dec_kmac_px", "enc_reduction", "dec_reduction", "total_reduction", "dec_s_masked",
           "dec_s_gathered", "dec_speedup", "identical", "values_differing", "max_abs_diff", "synth_values_differing",
           "synth_max_abs_diff"]
VARIABLE_RATE_CODEC = "bench.codecs.variable_rate:VariableRateCodec"
LAYER_COLUMNS = ["layer", "in_channels", "gated", "active_min_lmbda", "active_mid_lmbda", "active_max_lmbda",
                 "active_mean", "never_active", "weights", "weights_never_used"]


def _codec_for(name: str, root: Path, images: list, reports: Path, ds_name: str, log: Callable):
    from bench.codecs.variable_rate import VariableRateCodec
    from bench.runner import Runner
    from bench.submission import get_submission

    sub = get_submission(name, root)
    # the study reads the model's gates in this process: only the project's own codec class, which it imports
    if sub.codec_ref != VARIABLE_RATE_CODEC:
        raise ValueError(f"{name} is not a variable-rate submission (codec {sub.codec_ref}, not {VARIABLE_RATE_CODEC})")
    runner = Runner(sub, images, reports / ds_name / "runs" / sub.name, progress=False, log=log)
    codec = sub.make_codec()
    assert isinstance(codec, VariableRateCodec)
    return runner, codec


def _lambdas(gated: OperatingPoints, dense: OperatingPoints, n: int) -> list[float]:
    """n knob values evenly spaced in log λ over the two manifests' shared range, snapped as
    the rate controller snaps them: with n = the knob's grid they are the first sweep of
    ``bench run``, so the runs' caches already hold them."""
    lo, hi = max(gated.low, dense.low), min(gated.high, dense.high)
    if not 0 < lo < hi:
        raise ValueError(f"the two submissions share no λ range ({gated.low}–{gated.high} vs {dense.low}–{dense.high})")
    return [gated.snap(v) for v in np.geomspace(lo, hi, n)]


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def _kmac_px(recs: list[dict], key: str) -> float:
    return sum(r[key] for r in recs) / sum(r["height"] * r["width"] for r in recs) / 1e3


def _time_decode(codec, data: bytes, sparse: bool) -> tuple[float, np.ndarray]:
    codec.model.set_sparse_inference(sparse)
    t0 = time.perf_counter()
    out = as_decoded(codec.decode(data), "gating").pixels
    return time.perf_counter() - t0, out


def _differ(a: np.ndarray, b: np.ndarray) -> tuple[int, int]:
    """(how many 8-bit values differ, the largest difference)."""
    d = np.abs(a.astype(np.int16) - b.astype(np.int16))
    return int((d > 0).sum()), int(d.max())


def _masked_synthesis(model, captured: list, shape: tuple[int, ...]) -> np.ndarray:
    """g_s run masked on the ŷ/m(λ) the gathered decode fed it: the synthesis alone, with
    the entropy decoding held fixed."""
    import torch

    from bench.codecs.learned import to_image

    model.set_sparse_inference(False)
    with torch.no_grad():
        return to_image(model.g_s(captured[-1]), shape[0], shape[1])


def _gate_pass(codec, runner, recs: dict, lmbdas: list[float], images: list) -> tuple[dict, dict, dict]:
    """Per λ: decode times (masked, gathered) and how far apart their pixels are, for the
    whole decode and for the synthesis g_s alone on the same ŷ (the two paths sum the same
    products in another order: an 8-bit value can round the other way, and in a whole
    decode a gate or a scale index can flip and the entropy decoder then reads another y);
    per layer: its input channels and, per λ, the active fraction of each image; per gate:
    the union of its masks over every image and λ."""
    from bench.codecs.learned import to_tensor
    from bench.complexity import gated_costs

    model, timing, active, union = codec.model, {}, {}, {}
    try:
        for lm in lmbdas:
            t_mask = t_gather = 0.0
            whole, synth = [0, 0], [0, 0]
            for im in images:
                data = (runner.run_dir / recs[(im.id, lm)]["file"]).read_bytes()
                captured: list = []
                hook = model.g_s.register_forward_hook(
                    lambda _m, inp, _out, captured=captured: captured.append(inp[0]))
                try:
                    tg, out_g = _time_decode(codec, data, True)
                finally:
                    hook.remove()
                out_s = _masked_synthesis(model, captured, out_g.shape)
                tm, out_m = _time_decode(codec, data, False)
                t_gather, t_mask = t_gather + tg, t_mask + tm
                for acc, (n, mx) in ((whole, _differ(out_g, out_m)), (synth, _differ(out_g, out_s))):
                    acc[0], acc[1] = acc[0] + n, max(acc[1], mx)
                costs = gated_costs(model, to_tensor(im.pixels)[0], lm)
                for part in costs.layers.values():
                    for c in part:
                        by_lm = active.setdefault(c.name, (c.in_channels, {}))[1]
                        by_lm.setdefault(lm, []).append(c.active_in / c.in_channels)
                for name, gate in model.named_gates().items():
                    mask = gate.last_mask.any(dim=0)
                    union[name] = mask if name not in union else union[name] | mask
            timing[lm] = (t_mask, t_gather, whole, synth)
    finally:
        model.set_sparse_inference(True)
    return timing, active, union


def _layer_rows(model, active: dict, union: dict, lmbdas: list[float]) -> list[dict]:
    """One row per MAC-bearing layer (convolutions and GDNs); the gated convolutions with the
    input channels no image at any λ used, and the weight slices that read them."""
    lo, mid, hi = lmbdas[0], lmbdas[len(lmbdas) // 2], lmbdas[-1]
    rows = []
    for layer, (in_channels, by_lm) in active.items():
        part, idx = layer.split(".")
        module = getattr(model, part).layer(int(idx))
        gate = f"{part}.gate{idx}"          # ChannelGate names: see ECGHyperprior.named_gates
        never = int((~union[gate]).sum()) if gate in union else 0
        # an ungrouped Conv2d or ConvTranspose2d holds weight.numel() / C_in weights per input channel
        unused = never * module.weight.numel() // in_channels if never else 0
        rows.append({"layer": layer, "in_channels": in_channels, "gated": gate in union,
                     "active_min_lmbda": float(np.mean(by_lm[lo])), "active_mid_lmbda": float(np.mean(by_lm[mid])),
                     "active_max_lmbda": float(np.mean(by_lm[hi])),
                     "active_mean": float(np.mean([v for vs in by_lm.values() for v in vs])),
                     "never_active": never, "weights": sum(p.numel() for p in module.parameters()),
                     "weights_never_used": unused})
    return rows


def gating_table(gated: str, dense: str, dataset: str = "kodak", n_lambdas: int = 8, limit: int | None = None,
                 reports_dir: Path = REPORTS_DIR, submissions_root: Path = SUBMISSIONS_DIR,
                 log: Callable = print) -> dict:
    """The per-λ table, the per-layer table and the summary (BD-rates, weights never used)."""
    from bench.data import open_dataset
    from bench.run import load_images

    ds = open_dataset(dataset, limit=limit)
    images, _ = load_images(ds, log)
    reports_dir = Path(reports_dir)
    g_runner, g_codec = _codec_for(gated, Path(submissions_root), images, reports_dir, ds.name, log)
    d_runner, d_codec = _codec_for(dense, Path(submissions_root), images, reports_dir, ds.name, log)
    lmbdas = _lambdas(g_runner.sub.points, d_runner.sub.points, n_lambdas)
    requests = [(im.id, lm) for lm in lmbdas for im in images]
    recs = {}
    for side, runner in (("gated", g_runner), ("dense", d_runner)):
        log(f"[gating] {runner.sub.name}: {len(requests)} encodes/decodes (cached ones are reused)")
        got = runner.evaluate(requests)
        if runner.failures:
            raise RuntimeError(f"{runner.sub.name}: {len(runner.failures)} jobs failed: {runner.failures[:3]}")
        recs[side] = {(r["image_id"], r["point"]): r for r in got}
    log(f"[gating] {gated}: per-layer sparsity and decode timing, masked vs gathered")
    timing, active, union = _gate_pass(g_codec, g_runner, recs["gated"], lmbdas, images)
    rows, scores = [], {"dense": [], "gated": []}
    for lm in lmbdas:
        d = [recs["dense"][(im.id, lm)] for im in images]
        g = [recs["gated"][(im.id, lm)] for im in images]
        da, ga = aggregate(d), aggregate(g)
        scores["dense"].append(da)
        scores["gated"].append(ga)
        row = {"lmbda": lm, "dense_bpp": da.bpp, "gated_bpp": ga.bpp, "dense_psnr": da.psnr, "gated_psnr": ga.psnr,
               "psnr_drop_pct": 100 * (1 - ga.psnr / da.psnr), "dense_msssim": da.msssim, "gated_msssim": ga.msssim,
               "msssim_drop": da.msssim - ga.msssim,
               "dense_enc_kmac_px": _kmac_px(d, "dense_enc_macs"), "dense_dec_kmac_px": _kmac_px(d, "dense_dec_macs"),
               "gated_enc_kmac_px": _kmac_px(g, "eff_enc_macs"), "gated_dec_kmac_px": _kmac_px(g, "eff_dec_macs")}
        row |= {"enc_reduction": row["dense_enc_kmac_px"] / row["gated_enc_kmac_px"],
                "dec_reduction": row["dense_dec_kmac_px"] / row["gated_dec_kmac_px"],
                "total_reduction": (row["dense_enc_kmac_px"] + row["dense_dec_kmac_px"])
                / (row["gated_enc_kmac_px"] + row["gated_dec_kmac_px"])}
        t_mask, t_gather, whole, synth = timing[lm]
        rows.append(row | {"dec_s_masked": t_mask, "dec_s_gathered": t_gather, "dec_speedup": t_mask / t_gather,
                           "identical": whole[0] == 0, "values_differing": whole[0], "max_abs_diff": whole[1],
                           "synth_values_differing": synth[0], "synth_max_abs_diff": synth[1]})
    layers = _layer_rows(g_codec.model, active, union, lmbdas)
    bd = {}
    for metric in ("psnr", "msssim_db"):
        curve = {side: usable_curve([{"bpp": a.bpp, metric: getattr(a, metric)} for a in scores[side]], metric)
                 for side in scores}
        ok = len(curve["dense"]) >= 2 and len(curve["gated"]) >= 2 and overlap_share(curve["dense"], curve["gated"]) > 0
        bd[metric] = bd_rate(curve["dense"], curve["gated"]) if ok else math.nan
    params = sum(p.numel() for p in g_codec.model.parameters())
    unused = sum(r["weights_never_used"] for r in layers)
    summary = {"gated": gated, "dense": dense, "dataset": ds.name, "images": len(images), "lambdas": lmbdas,
               "bd_rate_pct": bd, "params": params, "weights_never_used": unused,
               "storage_saving_pct": 100 * unused / params,
               "device": recs["gated"][requests[0]]["device"], "timing_threads": _torch_threads(),
               "claim_2x_at_1pct": all(r["total_reduction"] >= 2 and r["psnr_drop_pct"] <= 1 for r in rows)}
    res = {"rows": rows, "layers": layers, "summary": summary}
    return res | {"seed": side_by_side(res, _distortion(g_runner.sub.root))}


def _distortion(root: Path) -> str:
    """The distortion the gated submission was trained on (its recipe's), as the seed's row names it."""
    from bench.train.recipe import load_recipe

    recipe = root / "train.toml"
    return load_recipe(recipe).loss.distortion if recipe.exists() else "unknown (no train.toml)"


def _differing(n: int, largest: int) -> str:
    return "none" if n == 0 else f"{n:,} (by ≤ {largest})"


def to_markdown(res: dict) -> str:
    s = res["summary"]
    out = [f"# {s['gated']} (gated) vs {s['dense']} (dense), {s['dataset']} ({s['images']} images)\n",
           "Each λ: every image coded by both (real files, decoded back); CLIC aggregates. Drops are dense − "
           "gated; reduction = dense MACs / gated effective MACs (gates' own work included). Decode time: the gated "
           "model on the same files, inactive channels multiplied by zero vs gathered away "
           f"(cpu, {s['timing_threads']} threads; "
           f"the files were coded on {s['device']}). The codec always gathers (encoder and decoder alike); the masked "
           "path sums the same products in another order, so 8-bit values may round the other way, and where a gate "
           "or a predicted scale sits within rounding of its threshold the hyperprior decides differently and the "
           "entropy decoder reads another y. The last column counts the values that differ over all images: decoding "
           "each file both ways, and running g_s both ways on the ŷ of the gathered decode.\n",
           "| λ | bpp dense / ECG | PSNR dense / ECG | PSNR drop | MS-SSIM dense / ECG | MS-SSIM drop "
           "| kMAC/px enc dense → ECG | kMAC/px dec dense → ECG | reduction enc / dec / all "
           "| decode s masked → gathered "
           "| masked vs gathered: values differing, whole decode / g_s alone |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["rows"]:
        out.append(f"| {r['lmbda']:.4g} | {r['dense_bpp']:.4f} / {r['gated_bpp']:.4f} | {r['dense_psnr']:.2f} / "
                   f"{r['gated_psnr']:.2f} | {r['psnr_drop_pct']:.2f}% | {r['dense_msssim']:.4f} / "
                   f"{r['gated_msssim']:.4f} "
                   f"| {r['msssim_drop']:+.4f} | {r['dense_enc_kmac_px']:.2f} → {r['gated_enc_kmac_px']:.2f} | "
                   f"{r['dense_dec_kmac_px']:.2f} → {r['gated_dec_kmac_px']:.2f} | {r['enc_reduction']:.2f}× / "
                   f"{r['dec_reduction']:.2f}× / {r['total_reduction']:.2f}× | {r['dec_s_masked']:.1f} → "
                   f"{r['dec_s_gathered']:.1f} ({r['dec_speedup']:.2f}×) | "
                   + f"{_differing(r['values_differing'], r['max_abs_diff'])} / "
                   f"{_differing(r['synth_values_differing'], r['synth_max_abs_diff'])} |")
    bd = s["bd_rate_pct"]
    out += ["", f"- BD-rate of ECG against dense: PSNR {bd['psnr']:+.2f}%, MS-SSIM (dB) {bd['msssim_db']:+.2f}%",
            f"- Weights never used on this set (any image, any of the λ): {s['weights_never_used']:,} of "
            f"{s['params']:,} parameters ({s['storage_saving_pct']:.1f}% storage saving)",
            f"- The seed's claim (≥ 2× fewer MACs at ≤ 1% PSNR drop, at every λ): "
            f"{'met' if s['claim_2x_at_1pct'] else 'not met'}",
            "", "## Beside the seed's ScaleHyperprior row", "", seed_markdown(res["seed"]) if "seed" in res else "",
            "", "| layer | C_in | active at λ min / mid / max | mean | channels never active | weights never used |",
            "|---|---|---|---|---|---|"]
    for r in res["layers"]:
        out.append(f"| {r['layer']} | {r['in_channels']} | {r['active_min_lmbda']:.0%} / {r['active_mid_lmbda']:.0%} / "
                   f"{r['active_max_lmbda']:.0%} | {r['active_mean']:.0%} | {r['never_active']} | "
                   f"{r['weights_never_used']:,} of {r['weights']:,} |")
    return "\n".join(out) + "\n"


def write_gating(res: dict, dataset_dir: Path) -> list[Path]:
    """``.csv`` (per λ), ``_layers.csv``, ``.json`` (everything), ``.md`` (the tables)."""
    s = res["summary"]
    stem = Path(dataset_dir) / f"gating_{s['gated']}_vs_{s['dense']}"
    paths = [stem.with_suffix(".csv"), stem.with_name(stem.name + "_layers.csv"), stem.with_suffix(".json"),
             stem.with_suffix(".md")]
    write_csv(paths[0], res["rows"], COLUMNS)
    write_csv(paths[1], res["layers"], LAYER_COLUMNS)
    write_json(paths[2], res)
    paths[3].write_text(to_markdown(res))
    return paths
