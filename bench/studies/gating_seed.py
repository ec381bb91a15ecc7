"""The ECG seed's ScaleHyperprior row beside ours, with a verdict per claim.

The seed (Yin et al., "Energy-Based Channel Gating for Learned Image Compression",
ICASSP 2022) reports for ScaleHyperprior trained on MSE, over 8 qualities: 2.03–2.86× fewer
FLOPs, PSNR drops of 0–0.35 % (≤ 1 % for all three architectures it gates), a sparsity
around 0.5 and an 80 % storage saving. Our row comes from a gating table
(:mod:`bench.studies.gating`) of the same shape: per λ the MAC reductions and the PSNR drop,
per layer the share of input channels the gates let through and the weights no image used.
"""

from __future__ import annotations

from statistics import mean

SOURCE = ("Yin et al., Energy-Based Channel Gating for Learned Image Compression, ICASSP 2022: "
          "ScaleHyperprior, MSE, 8 qualities")

#: The seed's ScaleHyperprior row as it states it (ranges over its 8 qualities).
SEED = {"source": SOURCE, "distortion": "mse", "qualities": 8, "reduction_all": (2.03, 2.86),
        "psnr_drop_pct": (0.0, 0.35), "sparsity": 0.5, "storage_saving_pct": 80.0}

#: Claims: (key, the claim in words, test on our row).
CLAIMS = [
    ("mac_2x", "≥ 2× fewer MACs at every quality", lambda o: o["reduction_all"][0] >= 2.0),
    ("drop_035", "PSNR drop ≤ 0.35 % at every quality (the seed's ScaleHyperprior)",
     lambda o: o["psnr_drop_pct"][1] <= 0.35),
    ("drop_1", "PSNR drop ≤ 1 % at every quality (the seed's bound for all three architectures)",
     lambda o: o["psnr_drop_pct"][1] <= 1.0),
    ("sparsity", "sparsity around 0.5 (within 0.4–0.6)", lambda o: 0.4 <= o["sparsity"] <= 0.6),
    ("storage", "≈ 80 % storage saving (at least 75 %)", lambda o: o["storage_saving_pct"] >= 75.0),
]


def _span(values: list[float]) -> tuple[float, float]:
    return min(values), max(values)


def our_row(res: dict, distortion: str) -> dict:
    """Our row from a gating table: ranges over its λ, sparsity = the mean share of input
    channels the gates switch off, over the gated layers and all λ."""
    rows, layers, s = res["rows"], res["layers"], res["summary"]
    gated = [r for r in layers if r.get("gated")]
    return {"source": f"ours: {s['gated']} vs {s['dense']}, {s['dataset']} ({s['images']} images)",
            "distortion": distortion, "qualities": len(rows),
            "reduction_all": _span([r["total_reduction"] for r in rows]),
            "reduction_enc": _span([r["enc_reduction"] for r in rows]),
            "reduction_dec": _span([r["dec_reduction"] for r in rows]),
            "psnr_drop_pct": _span([r["psnr_drop_pct"] for r in rows]),
            "sparsity": 1 - mean(r["active_mean"] for r in gated) if gated else float("nan"),
            "storage_saving_pct": s["storage_saving_pct"]}


def side_by_side(res: dict, distortion: str) -> dict:
    """The seed's row, ours, and one verdict per claim."""
    ours = our_row(res, distortion)
    verdicts = [{"claim": key, "text": text, "met": bool(test(ours))} for key, text, test in CLAIMS]
    return {"seed": SEED, "ours": ours, "verdicts": verdicts}


def _range(v: tuple[float, float] | None, fmt: str, unit: str = "") -> str:
    return "—" if v is None else f"{v[0]:{fmt}}–{v[1]:{fmt}}{unit}"


def to_markdown(cmp: dict) -> str:
    out = ["| row | distortion | qualities | MAC reduction, all | encoder | decoder | PSNR drop | sparsity "
           "| storage saving |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in (cmp["seed"], cmp["ours"]):
        out.append(f"| {r['source']} | {r['distortion']} | {r['qualities']} | "
                   f"{_range(r['reduction_all'], '.2f', '×')} | "
                   f"{_range(r.get('reduction_enc'), '.2f', '×')} | "
                   f"{_range(r.get('reduction_dec'), '.2f', '×')} | "
                   f"{_range(r['psnr_drop_pct'], '.2f', ' %')} | {r['sparsity']:.2f} | "
                   f"{r['storage_saving_pct']:.0f} % |")
    out.append("")
    out += [f"- {v['text']}: **{'met' if v['met'] else 'not met'}**" for v in cmp["verdicts"]]
    return "\n".join(out) + "\n"
