"""An ablation ladder: submissions that each add one thing to the rung before (the 3-D context
model's: 2-D context + one Gaussian → the 3-D context → a 3-Gaussian mixture → RPE), side by
side: every model at its native rate, BD-rates against the first rung and against a reference
submission, parameters, MACs per pixel and coding seconds per image.

Rates, qualities and seconds come from the runs' stored files (``rd.csv`` and the records of the
run's content hash); parameters and MACs from each codec's ``complexity`` (fvcore, the serial
loop of a context model included) on the set's most common image size. Outputs
``reports/<dataset>/ablation_<name>.{csv,json,md}``; the HTML report shows them.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from statistics import mean

from bench.paths import SUBMISSIONS_DIR
from bench.results import RecordStore, write_csv, write_json
from bench.studies.ablation import bd_rates, load_run_file
from bench.submission import get_submission

COLUMNS = ["rung", "submission", "model", "bpp", "msssim", "msssim_db", "psnr", "enc_s", "dec_s", "enc_coder_s",
           "dec_coder_s", "params", "enc_kmac_px", "dec_kmac_px"]
TIMES = ("enc_s", "dec_s", "enc_coder_s", "dec_coder_s")


def _run_records(run_dir: Path) -> list[dict]:
    """The records of the run's own content hash (a run folder's log may hold older ones). The
    log is not committed: the ladder is built where the runs were done."""
    path = run_dir / "records.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `python -m bench run -s {run_dir.name} -d "
                                f"{run_dir.parent.parent.name}` in this checkout first (the ladder reads its timings)")
    content_hash = json.loads((run_dir / "run.json").read_text())["content_hash"]
    return [r for r in RecordStore(path).records.values() if r.get("content_hash") == content_hash]


def _mean(values: list) -> float:
    vals = [float(v) for v in values if v is not None]
    return mean(vals) if vals else math.nan


def _size(records: list[dict]) -> tuple[int, int]:
    """The most common (height, width) of the run's images."""
    return Counter((int(r["height"]), int(r["width"])) for r in records).most_common(1)[0][0]


def _model_rows(rung: int, sub_name: str, codec, rd: list[dict], records: list[dict]) -> tuple[list[dict], set[str]]:
    """One row per model at its native rate, with its complexity on the set's common size, and
    what the MAC counts left out."""
    height, width = _size(records)
    rows, uncounted = [], set()
    for r in sorted(rd, key=lambda r: float(r["bpp"])):
        at = [x for x in records if str(x["point"]) == str(r["point"])]
        c = codec.complexity(r["point"], height, width)
        uncounted |= set(c.uncounted) if c else set()
        rows.append({"rung": rung, "submission": sub_name, "model": r["point"],
                     **{k: float(r[k]) for k in ("bpp", "msssim", "msssim_db", "psnr")},
                     **{k: _mean([x.get(k) for x in at]) for k in TIMES},
                     "params": c.params if c else None,
                     "enc_kmac_px": c.enc_macs / (height * width) / 1e3 if c else None,
                     "dec_kmac_px": c.dec_macs / (height * width) / 1e3 if c else None})
    return rows, uncounted


def ladder(dataset_dir: Path, rungs: Sequence[str], reference: str, name: str,
           submissions_root: Path = SUBMISSIONS_DIR) -> dict:
    """Per-model rows and a per-rung summary; BD-rates in percent (negative: fewer bits than the
    first rung, or than ``reference``, at the same quality)."""
    dataset_dir = Path(dataset_dir)
    if len(rungs) < 2:
        raise ValueError("a ladder needs at least two rungs")
    rd = {s: load_run_file(dataset_dir, s, "rd.csv") for s in [*rungs, reference]}
    models, summary = [], []
    for i, sub_name in enumerate(rungs, 1):
        sub = get_submission(sub_name, Path(submissions_root))
        records = _run_records(dataset_dir / "runs" / sub_name)
        own, uncounted = _model_rows(i, sub_name, sub.make_codec(), rd[sub_name], records)
        height, width = _size(records)
        models += own
        first, ref = bd_rates(rd[rungs[0]], rd[sub_name]), bd_rates(rd[reference], rd[sub_name])
        summary.append({"rung": i, "submission": sub_name, "adds": sub.description,
                        **{f"bd_first_{m}": first[m]["bd_rate_pct"] for m in first},
                        **{f"bd_ref_{m}": ref[m]["bd_rate_pct"] for m in ref},
                        **{k: _mean([m[k] for m in own]) for k in ("params", "enc_kmac_px", "dec_kmac_px", *TIMES)},
                        "uncounted": "; ".join(sorted(uncounted)),
                        "image_size": f"{width}×{height}", "images": len({x["image_id"] for x in records})})
    return {"name": name, "dataset": dataset_dir.name, "rungs": list(rungs), "reference": reference,
            "models": models, "summary": summary, "verdict": verdict(summary)}


def verdict(summary: list[dict]) -> str:
    """Whether the paper's direction holds: the full model (last rung) needs fewer bits than the
    2-D first rung at the same MS-SSIM and the same PSNR. Said as measured, either way."""
    last = summary[-1]
    signs = {m: last[f"bd_first_{m}"] for m in ("msssim_db", "psnr")}
    if any(math.isnan(v) for v in signs.values()):
        return (f"{last['submission']} against {summary[0]['submission']}: BD-rate not computable "
                "(curves do not overlap)")
    holds = all(v < 0 for v in signs.values())
    mixed = not holds and any(v < 0 for v in signs.values())
    state = "holds" if holds else ("holds in one metric only" if mixed else "does not hold")
    return (f"The paper's direction (the 3-D model needs fewer bits than the 2-D one) {state} here: "
            f"{last['submission']} against {summary[0]['submission']}, BD-rate {signs['msssim_db']:+.2f} % "
            f"(MS-SSIM dB), {signs['psnr']:+.2f} % (PSNR).")


def _fmt(v: float | None, spec: str, suffix: str = "") -> str:
    """A number in the tables, or "—" where there is none (a codec without a MAC count)."""
    return "—" if v is None or math.isnan(v) else f"{v:{spec}}{suffix}"


def _pct(v: float | None) -> str:
    return _fmt(v, "+.2f", " %")


def to_markdown(res: dict) -> str:
    s0, ref = res["rungs"][0], res["reference"]
    out = [f"# Ablation ladder: {res['name']} ({res['dataset']})\n",
           "Each rung adds one thing to the one before; same recipe, budget and warm starts. BD-rates over each "
           f"submission's models at their native rates (every image at that model), against the first rung ({s0}) "
           f"and against {ref}; negative: fewer bits for the same quality.\n",
           f"| rung | submission | BD vs {s0}: MS-SSIM dB / PSNR | BD vs {ref}: MS-SSIM dB / PSNR | parameters "
           "| kMAC/px enc / dec | s per image enc / dec |", "|---|---|---|---|---|---|---|"]
    for r in res["summary"]:
        out.append(f"| {r['rung']} | {r['submission']} | {_pct(r['bd_first_msssim_db'])} / "
                   f"{_pct(r['bd_first_psnr'])} | "
                   f"{_pct(r['bd_ref_msssim_db'])} / {_pct(r['bd_ref_psnr'])} | {_fmt(r['params'], ',.0f')} | "
                   f"{_fmt(r['enc_kmac_px'], '.1f')} / {_fmt(r['dec_kmac_px'], '.1f')} | {_fmt(r['enc_s'], '.2f')} / "
                   f"{_fmt(r['dec_s'], '.2f')} |")
    out += ["", f"**{res['verdict']}**", "", "| rung | submission | model | bpp | MS-SSIM (dB) | PSNR | enc s (coder) "
            "| dec s (coder) |", "|---|---|---|---|---|---|---|---|"]
    for m in res["models"]:
        out.append(f"| {m['rung']} | {m['submission']} | {m['model']} | {m['bpp']:.4f} | {m['msssim']:.4f} "
                   f"({m['msssim_db']:.2f}) | {m['psnr']:.2f} | {_fmt(m['enc_s'], '.2f')} "
                   f"({_fmt(m['enc_coder_s'], '.2f')}) | "
                   f"{_fmt(m['dec_s'], '.2f')} ({_fmt(m['dec_coder_s'], '.2f')}) |")
    sizes = {r["image_size"] for r in res["summary"]}
    uncounted = {r["uncounted"] for r in res["summary"] if r["uncounted"]}
    out += ["", f"MACs (fvcore) on a {', '.join(sorted(sizes))} image, the serial loop counted on both sides "
            "(the encoder computes the same distributions); not counted: " + ("; ".join(sorted(uncounted)) or "nothing")
            + ". Seconds: mean per image over the run's coded files, one thread, the coder's share in brackets."]
    return "\n".join(out) + "\n"


def write_ladder(res: dict, dataset_dir: Path) -> list[Path]:
    """``.csv`` (per model), ``.json`` (everything), ``.md`` (the tables)."""
    stem = Path(dataset_dir) / f"ablation_{res['name']}"
    paths = [stem.with_suffix(".csv"), stem.with_suffix(".json"), stem.with_suffix(".md")]
    write_csv(paths[0], res["models"], COLUMNS)
    write_json(paths[1], res)
    paths[2].write_text(to_markdown(res))
    return paths
