"""Training throughput on this machine: seconds per step and pixels per second for model
sizes, crop/batch shapes, memory format and torch.compile. Writes reports/training/throughput.csv.

Throughput is only half of "learns fastest per CPU-second"; the learning-curve half is in
reports/training/FINDINGS.md. Run: .venv/bin/python benchmarks/train_throughput.py
"""

from __future__ import annotations

import csv
import time

import torch

from bench.models.hyperprior import build_model
from bench.paths import REPORTS_DIR
from bench.train.loop import distortion, rate_bpp
from bench.train.recipe import DataSpec, LossSpec, ModelSpec, Recipe

CONFIGS = [  # (N, M, crop, batch, channels_last, compile)
    (128, 192, 128, 8, False, False),
    (128, 192, 128, 8, True, False),
    (128, 192, 256, 2, False, False),
    (128, 192, 192, 4, False, False),
    (96, 128, 128, 8, False, False),
    (64, 96, 128, 8, False, False),
    (128, 192, 128, 8, False, True),   # torch.compile: its first compile takes minutes on 2 cores
]


def seconds_per_step(N, M, crop, batch, channels_last, compiled, steps=6, warmup=2) -> float:
    recipe = Recipe("throughput", None, ModelSpec(N=N, M=M), DataSpec(crop=crop, batch=batch), LossSpec())
    model = build_model("scale_hyperprior", N, M)
    x = torch.rand(batch, 3, crop, crop)
    if channels_last:
        model, x = model.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last)
    fwd = torch.compile(model) if compiled else model
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    for i in range(warmup + steps):
        if i == warmup:
            t = time.perf_counter()
        out = fwd(x)
        d, _ = distortion(out["x_hat"], x, recipe)
        loss = rate_bpp(out["likelihoods"], batch * crop * crop) + 8.0 * d
        opt.zero_grad()
        loss.backward()
        opt.step()
    return (time.perf_counter() - t) / steps


def main() -> None:
    torch.set_num_threads(2)
    out = REPORTS_DIR / "training" / "throughput.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["N", "M", "crop", "batch", "channels_last", "compile", "s_per_step", "kpixels_per_s", "threads"])
        for cfg in CONFIGS:
            try:
                s = seconds_per_step(*cfg)
            except Exception as e:  # torch.compile may be unavailable (no compiler): report, go on
                print(cfg, "failed:", type(e).__name__, str(e)[:200])
                continue
            row = [*cfg, round(s, 3), round(cfg[2] * cfg[2] * cfg[3] / s / 1000, 1), 2]
            print(row, flush=True)
            w.writerow(row)
            f.flush()
    print("wrote", out)


if __name__ == "__main__":
    main()
