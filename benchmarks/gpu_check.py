"""The whole GPU path end to end, on a machine with CUDA (``make gpu-check``).

1. The CUDA tests of tests/test_device.py (skipped elsewhere) must pass.
2. Each learned hyperprior submission runs on LIMIT Kodak images at one target, once with
   ``--device cpu`` and once with ``--device cuda``, into a scratch reports folder; both runs
   are verified (each on its own device: bit-identical in a new process) and the CUDA run's
   files are decoded on the CPU, which must be refused (a file decodes on the device kind
   that coded it).
3. ``reports/load/GPU_CHECK.md``: per submission and device, encode and decode seconds split
   into network (CUDA events on the GPU) and entropy coder (CPU clock), and the verdicts.

Exits 2 without a CUDA device, 1 when a check fails.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SUBMISSIONS = ("noise_hyperprior", "ecg_hyperprior")
SPLITS = ("enc_s", "enc_net_s", "enc_coder_s", "dec_s", "dec_net_s", "dec_coder_s")


def _run(name: str, device: str, reports: Path, limit: int, target: float) -> dict:
    from bench.run import run_benchmark
    from bench.verify import verify_dataset

    t0 = time.perf_counter()
    res = run_benchmark(name, "kodak", [target], limit=limit, reports_dir=reports, progress=False, device=device)
    wall = time.perf_counter() - t0
    row = res.rows[0]
    ver = verify_dataset(reports, "kodak", [name])
    return {"submission": name, "device": row.get("device", device), "status": row["status"], "bpp": row.get("bpp"),
            "msssim": row.get("msssim"), "jobs": res.computed, "wall_s": wall, "images": row.get("images"),
            "verify": ver[0]["bit_identical"] if ver else "no rows",
            **{k: row.get(k) for k in SPLITS}, "bitstreams": row.get("bitstreams")}


def _cross_device_refused(name: str, bitstreams: str) -> str:
    """Decode the CUDA run's files with the networks on the CPU: 'refused' is the pass."""
    from bench.decode import decode_folder
    from bench.device import DeviceMismatch

    try:
        with tempfile.TemporaryDirectory() as out:
            decode_folder(ROOT / bitstreams, name, Path(out), device="cpu")   # an absolute path stays as it is
    except DeviceMismatch as e:
        return f"refused ({str(e)[:80]}…)"
    return "DECODED (expected a refusal)"


def _table(rows: list[dict]) -> str:
    head = ["submission", "device", "status", "bpp", "msssim", "jobs", "wall_s", *SPLITS, "verify", "cpu decode"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [f"{r[k]:.4f}" if isinstance(r.get(k), float) else str(r.get(k, "")) for k in head]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def main() -> int:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=6, help="Kodak images per run")
    ap.add_argument("--target", type=float, default=0.15)
    ap.add_argument("--out", default=str(ROOT / "reports" / "load" / "GPU_CHECK.md"))
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("gpu-check: torch sees no CUDA device here; run it on a machine with a GPU", file=sys.stderr)
        return 2
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "tests/test_device.py"], cwd=ROOT)
    rows, failed = [], tests.returncode != 0
    with tempfile.TemporaryDirectory() as scratch:
        for name in SUBMISSIONS:
            for device in ("cpu", "cuda"):
                r = _run(name, device, Path(scratch) / device, args.limit, args.target)
                r["cpu decode"] = _cross_device_refused(name, r["bitstreams"]) if device == "cuda" else "-"
                same, _, total = str(r["verify"]).partition("/")
                failed |= r["status"] != "ok" or not total or same != total or r["cpu decode"].startswith("DECODED")
                rows.append(r)
                print(f"{name} on {device}: {r['status']} verify {r['verify']} {r['wall_s']:.1f} s", flush=True)
    text = (f"# GPU check\n\n{torch.cuda.get_device_name()} · torch {torch.__version__} · "
            f"{args.limit} Kodak images at {args.target} bpp · tests/test_device.py: "
            f"{'passed' if tests.returncode == 0 else 'FAILED'}\n\n"
            "Network seconds on CUDA are CUDA-event times read after a synchronise; coder seconds are "
            "CPU clock. `verify`: bit-identical files decoded again in this process on the run's device; "
            "`cpu decode`: the CUDA run's files decoded with --device cpu (must be refused).\n\n" + _table(rows) + "\n")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(f"wrote {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
