"""The context models' y coder before and after the wavefront: seconds per image, one script run.

For every image it encodes and decodes with context3d_gmm twice in this process: with the
raster-order coder that the codec had before (coding variant 0: :func:`code_y_raster` and
:func:`decode_y_raster`, the former ``code_y``/``decode_y`` kept unchanged, one position at a
time) and with the wavefront coder (variant 1, one batch per wave), alternating per image so
both see the same machine load. The codec's own measures split each side: encode = network
(g_a, h_a, z) + coder (z decoded again, h_s, the y loop); decode = coder (z, h_s, the y loop)
+ network (g_s). Both decodes must give the same pixels (y is the same; g_s runs with the same
thread count), and the files' sizes are reported side by side.

    .venv/bin/python benchmarks/wavefront.py              # Kodak (24) + 5 CLIC photos → reports/load/WAVEFRONT.md
    .venv/bin/python benchmarks/wavefront.py --kodak 2 --clic 1 --out /tmp/WAVEFRONT.md    # a quick look

One torch thread (a job's thread count with the default JOBS=2 on a 2-core machine); the y
loop runs on one thread either way.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.codecs.context3d import RASTER, WAVEFRONT, Context3DCodec  # noqa: E402
from bench.codecs.learned import PAD  # noqa: E402
from bench.container import unpack  # noqa: E402
from bench.data import load_image, locate_dataset_dir  # noqa: E402
from bench.models.context3d import WAVE_STEP  # noqa: E402
from bench.submission import get_submission  # noqa: E402

OUT = ROOT / "reports" / "load" / "WAVEFRONT.md"
Y_STRIDE = 16


def _side(codec: Context3DCodec, variant: int, pixels: np.ndarray, point: str) -> dict:
    """One encode and one decode with the given y order: seconds, their split, bytes, pixels."""
    codec.y_variant = variant
    t0 = time.perf_counter()
    enc = codec.encode(pixels, point)
    t1 = time.perf_counter()
    dec = codec.decode(enc.data)
    t2 = time.perf_counter()
    assert unpack(enc.data).variant == variant
    m = enc.measures.merged(dec.measures)
    return {"bytes": len(enc.data), "enc_s": t1 - t0, "dec_s": t2 - t1, "enc_net_s": m.enc_net_s,
            "enc_coder_s": m.enc_coder_s, "dec_coder_s": m.dec_coder_s, "dec_net_s": m.dec_net_s,
            "pixels": dec.pixels}


def measure(codec: Context3DCodec, dataset: str, path: Path, point: str) -> dict:
    img = load_image(path)
    h, w = img.pixels.shape[:2]
    rows, cols = -(-h // PAD) * PAD // Y_STRIDE, -(-w // PAD) * PAD // Y_STRIDE
    new = _side(codec, WAVEFRONT, img.pixels, point)
    old = _side(codec, RASTER, img.pixels, point)
    if not np.array_equal(new.pop("pixels"), old.pop("pixels")):
        raise SystemExit(f"{img.id}: the two coders decode different pixels")
    row = {"dataset": dataset, "image": img.id, "size": f"{w}×{h}", "positions": rows * cols,
           "waves": WAVE_STEP * (rows - 1) + cols, "point": point}
    row |= {f"old_{k}": v for k, v in old.items()} | {f"new_{k}": v for k, v in new.items()}
    print(f"[wavefront] {dataset}/{img.id}: decode {old['dec_s']:.2f} → {new['dec_s']:.2f} s "
          f"(coder {old['dec_coder_s']:.2f} → {new['dec_coder_s']:.2f}), encode {old['enc_s']:.2f} → "
          f"{new['enc_s']:.2f} s (coder {old['enc_coder_s']:.2f} → {new['enc_coder_s']:.2f}), "
          f"{old['bytes']} / {new['bytes']} B", flush=True)
    return row


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.1f}×" if b else "—"


def _coder_ratios(r: dict) -> str:
    enc, dec = (_ratio(r[f"old_{k}_coder_s"], r[f"new_{k}_coder_s"]) for k in ("enc", "dec"))
    return f"{enc} / {dec}"


def _arrow(r: dict, key: str) -> str:
    return f"{r['old_' + key]:.1f} → {r['new_' + key]:.1f} s"


def _table(rows: list[dict]) -> list[str]:
    head = ["image", "size", "y positions / waves", "bytes old / new", "encode old (net + coder)",
            "encode new (net + coder)", "decode old (coder + net)", "decode new (coder + net)",
            "coder ×, enc / dec", "decode ×"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join([
            r["image"], r["size"], f"{r['positions']} / {r['waves']}", f"{r['old_bytes']} / {r['new_bytes']}",
            f"{r['old_enc_s']:.2f} ({r['old_enc_net_s']:.2f} + {r['old_enc_coder_s']:.2f})",
            f"{r['new_enc_s']:.2f} ({r['new_enc_net_s']:.2f} + {r['new_enc_coder_s']:.2f})",
            f"{r['old_dec_s']:.2f} ({r['old_dec_coder_s']:.2f} + {r['old_dec_net_s']:.2f})",
            f"{r['new_dec_s']:.2f} ({r['new_dec_coder_s']:.2f} + {r['new_dec_net_s']:.2f})",
            _coder_ratios(r), _ratio(r["old_dec_s"], r["new_dec_s"])]) + " |")
    return lines


def _summary(rows: list[dict]) -> list[str]:
    head = ["dataset", "images", "model", "encode old → new", "enc coder old → new", "decode old → new",
            "dec coder old → new", "coder × (enc / dec)", "decode ×", "encode ×", "median decode ×",
            "bytes new / old"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        rs = [r for r in rows if r["dataset"] == dataset]
        s = {k: sum(r[k] for r in rs) for k in rs[0] if k.startswith(("old_", "new_"))}
        lines.append("| " + " | ".join([
            dataset, str(len(rs)), ", ".join(sorted({r["point"] for r in rs})),
            _arrow(s, "enc_s"), _arrow(s, "enc_coder_s"), _arrow(s, "dec_s"), _arrow(s, "dec_coder_s"),
            _coder_ratios(s), _ratio(s["old_dec_s"], s["new_dec_s"]), _ratio(s["old_enc_s"], s["new_enc_s"]),
            f"{statistics.median(r['old_dec_s'] / r['new_dec_s'] for r in rs):.1f}×",
            f"{s['new_bytes'] / s['old_bytes']:.5f}"]) + " |")
    return lines


def render(rows: list[dict], args, started: str, load: tuple[str, str], wall_s: float) -> str:
    out = ["# The context models' y coder: raster order vs wavefront", "",
           f"Written by `benchmarks/wavefront.py` ({started}, {wall_s / 60:.1f} min): context3d_gmm encodes and "
           "decodes each image with the raster-order coder (coding variant 0, the coder before the wavefront: "
           "one position at a time) and with the wavefront coder (variant 1: per wave t = 3h + w one batched "
           "parameter computation per channel group, one vectorised pmf, one range-coder call), alternating per "
           "image in one process, one torch thread. Seconds per image; encode = network (g_a, h_a, z) + coder "
           "(z decoded again, h_s, the y loop), decode = coder (z, h_s, the y loop) + network (g_s). Both "
           "decodes of an image give the same pixels (checked).", "",
           f"Machine: {_cpu()}, {os.cpu_count()} cores shared with other sessions (load average over 1, 5 and "
           f"15 min: {load[0]} at the start, {load[1]} at the end), torch {torch.__version__}.", "",
           "## Totals", "", *_summary(rows), "", "## Per image", ""]
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        out += [f"### {dataset}", "", *_table([r for r in rows if r["dataset"] == dataset]), ""]
    notes = Path(args.notes).read_text() if args.notes else ""
    return "\n".join(out) + ("\n" + notes if notes else "")


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _load() -> str:
    try:
        return " ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "?"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kodak", type=int, default=24, help="Kodak images (first N, sorted)")
    p.add_argument("--clic", type=int, default=5, help="clic2025-valid photos (first N, sorted)")
    p.add_argument("--kodak-point", default="l16")
    p.add_argument("--clic-point", default="l16")
    p.add_argument("--out", default=str(OUT))
    p.add_argument("--notes", help="a markdown file appended under the tables")
    args = p.parse_args()
    torch.set_num_threads(1)
    started, load0, t0 = time.strftime("%Y-%m-%d %H:%M"), _load(), time.perf_counter()
    codec = get_submission("context3d_gmm").make_codec()
    warm = load_image(sorted(locate_dataset_dir("kodak").glob("*.png"))[0]).pixels[:256, :256]
    for variant in (WAVEFRONT, RASTER):                      # models loaded, first-call costs paid
        _side(codec, variant, warm, args.kodak_point)
    rows = []
    for dataset, n, point in (("kodak", args.kodak, args.kodak_point), ("clic2025-valid", args.clic, args.clic_point)):
        for path in sorted(locate_dataset_dir(dataset).glob("*.png"))[:n]:
            rows.append(measure(codec, dataset, path, point))
    text = render(rows, args, started, (load0, _load()), time.perf_counter() - t0)
    Path(args.out).write_text(text)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
