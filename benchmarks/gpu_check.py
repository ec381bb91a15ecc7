"""The whole GPU path, run once on a machine with CUDA (``make gpu-check``; under 5 minutes on a
ready environment). No session has had a GPU yet, so this script is what proves the path.

1. ``tests/test_device.py``: its CUDA tests must pass, none skipped.
2. ``noise_hyperprior`` (a hyperprior) and ``ecg_hyperprior`` (ECG) on LIMIT Kodak images at
   one target with ``--device cuda``: JOBS=1 and JOBS=2 (which runs one job at a time on the
   GPU, and says so), each with ``--probe none`` and ``--probe estimate``; every run in its
   own scratch reports folder, so nothing is cached between them.
3. ``bench verify`` in a new process per folder: each row's files decode to the pixels the
   run recorded (bit-identical), in other codec processes than those that coded them.
4. The same files decoded twice more (``bench decode``'s code, each time in new codec
   processes): identical pixels; and the JOBS=1 and JOBS=2 runs wrote identical files.
5. Those files decoded with ``--device cpu``: refused (a file decodes on the kind of device
   that coded it).
6. The warm-up skew in the records: per run, the first coded job's network seconds against
   the median of the others of the same image size (each network warms up untimed per size,
   so a first job near the median shows context and kernel loading kept out of the times).

Writes ``reports/load/GPU_CHECK.md`` and exits 1 when a check fails. Without a GPU it says
so and exits 0: there is nothing to check there; a GPU that torch cannot use is a failure
(exit 1, with what to do). ``--device cpu`` runs the same steps on the CPU (without the
refusal and the JOBS=1/2 comparison), to try the script itself on a machine without a GPU.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SUBMISSIONS = ("noise_hyperprior", "ecg_hyperprior")
JOBS = (1, 2)
PROBES = ("none", "estimate")
SPLITS = ("enc_net_s", "enc_coder_s", "enc_copy_s", "dec_net_s", "dec_coder_s", "dec_copy_s")
#: A first job this many times slower than the median of its size means a warm-up missed.
SKEW_LIMIT = 5.0
BUDGET_S = 300


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


def _gpu_present() -> bool:
    """An NVIDIA GPU's device node is there (whether or not torch can use it)."""
    return bool(glob.glob("/dev/nvidia[0-9]*"))


def _tests(scratch: Path, need_cuda: bool) -> Check:
    """tests/test_device.py; on a GPU machine none of its CUDA tests may skip."""
    xml = scratch / "tests.xml"
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "tests/test_device.py", f"--junitxml={xml}"],
                          cwd=ROOT, capture_output=True, text=True, check=False)
    cases = ET.parse(xml).getroot().iter("testcase") if xml.exists() else []
    ran, skipped, failed = [], [], []
    for case in cases:
        name = case.get("name", "")
        (skipped if case.find("skipped") is not None else ran).append(name)
        bad = case.find("failure") if case.find("failure") is not None else case.find("error")
        if bad is not None:
            failed.append(f"{name}: {bad.get('message', '')[:200]}")
    cuda_skipped = [n for n in skipped if "cuda" in n]
    ok = done.returncode == 0 and not (need_cuda and cuda_skipped)
    tail = done.stdout.strip().splitlines()[-1:] or ["no output"]
    detail = f"{len(ran)} ran, {len(skipped)} skipped ({', '.join(skipped) or 'none'}): {tail[0]}"
    if failed:
        detail += "; failed: " + "; ".join(failed)
    return Check("tests/test_device.py (CUDA tests included)", ok, detail)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _skew(records: list[dict], key: str) -> float | None:
    """The first coded record's ``key`` over the median of the later ones of its size."""
    coded = [r for r in records if r.get(key) is not None]
    if len(coded) < 2:
        return None
    first = coded[0]
    same = [r[key] for r in coded[1:] if (r["height"], r["width"]) == (first["height"], first["width"])]
    med = statistics.median(same) if same else 0.0
    return first[key] / med if med > 0 else None


def _run(name: str, jobs: int, probe: str, folder: Path, args) -> dict:
    from bench.run import run_benchmark

    notes: list[str] = []
    t0 = time.perf_counter()
    res = run_benchmark(name, "kodak", [args.target], limit=args.limit, reports_dir=folder, progress=False,
                        device=args.device, jobs=jobs, probe=probe, sandboxed=not args.no_sandbox, log=notes.append)
    wall = time.perf_counter() - t0
    row = res.rows[0]
    run_dir = res.run_dir
    records = [json.loads(line) for line in (run_dir / "records.jsonl").read_text().splitlines() if line.strip()]
    info = json.loads((run_dir / "run.json").read_text())
    out = {"submission": name, "jobs": jobs, "probe": probe, "status": row["status"], "device": row.get("device"),
           "bpp": row.get("bpp"), "msssim": row.get("msssim"), "coded": res.computed, "estimated": res.estimated,
           "wall_s": wall, "folder": folder, "bitstreams": row.get("bitstreams"), "errors": res.errors,
           "content_hash": info.get("content_hash", ""), "identity": info.get("settings", {}).get("device_identity"),
           "one_at_a_time": any("one job at a time" in m for m in notes),
           "skew_enc": _skew(records, "enc_net_s"), "skew_dec": _skew(records, "dec_net_s")}
    for k in SPLITS:     # seconds per coded job, over every job the run coded
        vals = [r[k] for r in records if r.get(k) is not None]
        out[k] = sum(vals) / len(vals) if vals else None
    return out


def _verify(folder: Path, no_sandbox: bool) -> dict[str, tuple[bool, str]]:
    """``bench verify`` on a scratch folder in a new process: per submission, whether every
    file is there and decodes bit-identically, and what verify said."""
    cmd = [sys.executable, "-m", "bench", "verify", "-d", "kodak", "--reports", str(folder)]
    done = subprocess.run(cmd + (["--no-sandbox"] if no_sandbox else []), cwd=ROOT, capture_output=True, text=True,
                          check=False)
    from bench.results import read_csv

    out = {}
    for r in read_csv(folder / "kodak" / "verify.csv"):
        same, _, total = r["bit_identical"].partition("/")
        ok = bool(total) and same == total and int(total) > 0 and r["files"] == r["images"]
        out[r["submission"]] = (ok, f"{r['bit_identical']} (files {r['files']}/{r['images']})")
    if done.returncode != 0 and not out:
        out["?"] = (False, f"verify failed (exit {done.returncode}): {done.stderr.strip()[-300:]}")
    return out


def _decode(bitstreams: Path, name: str, device: str, no_sandbox: bool, out: Path) -> dict[str, str]:
    """Decode a folder in new codec processes; PNG hash per file."""
    from bench.decode import decode_folder

    decode_folder(bitstreams, name, out, device=device, sandboxed=not no_sandbox)
    return {p.stem: _sha(p) for p in sorted(out.glob("*.png"))}


def _refused(bitstreams: Path, name: str, no_sandbox: bool, out: Path) -> tuple[bool, str]:
    from bench.device import DeviceMismatch

    try:
        _decode(bitstreams, name, "cpu", no_sandbox, out)
    except DeviceMismatch as e:
        return True, f"refused: {str(e)[:120]}…"
    return False, "DECODED on the CPU (a refusal was expected)"


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    return "" if v is None else str(v)


def _report(args, runs: list[dict], checks: list[Check], started: str, seconds: float) -> str:
    import torch

    gpu = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU (script trial, no GPU)"
    identity = next((r["identity"] for r in runs if r.get("identity")), None)
    head = ["submission", "jobs", "probe", "status", "device", "bpp", "msssim", "coded", "estimated", "wall_s",
            *SPLITS, "skew_enc", "skew_dec", "verify"]
    lines = ["# GPU check\n", (f"`make gpu-check` ({Path(__file__).name}), {started}: {gpu}, torch "
                               f"{torch.__version__}, {args.limit} Kodak images at {args.target} bpp, "
                               f"{seconds:.0f} s in all.\n")]
    if identity:
        lines.append("Cache key's device identity: " + ", ".join(f"{k} {v}" for k, v in identity.items()) + "\n")
    lines += ["## Checks\n", "| check | result | detail |", "|---|---|---|"]
    lines += [f"| {c.name} | {'pass' if c.ok else '**FAIL**'} | {c.detail.replace('|', '/')} |" for c in checks]
    lines += ["", "## Runs\n",
              ("Seconds per coded job: network seconds are CUDA-event times read after a synchronise, coder "
               "seconds the CPU clock outside the networks and copies, copies the image to and from the GPU. "
               "`skew_*`: the run's first coded job's network seconds over the median of the later jobs of "
               "its size (1 = no warm-up cost in the times). `verify`: `bench verify` in a new process.\n"),
              "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(_fmt(r.get(k)) for k in head) + " |" for r in runs]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=6, help="Kodak images per run")
    ap.add_argument("--target", type=float, default=0.15)
    ap.add_argument("--device", default="cuda", help="cuda (the check) or cpu (a trial of the script)")
    ap.add_argument("--no-sandbox", action="store_true", help="codec processes without bubblewrap")
    ap.add_argument("--out", default=str(ROOT / "reports" / "load" / "GPU_CHECK.md"))
    args = ap.parse_args(argv)
    from bench.device import check_device, cuda_problem

    cuda = args.device.startswith("cuda")
    problem = cuda_problem() if cuda else None
    if problem and not _gpu_present():
        print(f"gpu-check: no CUDA device on this machine (no /dev/nvidia*): skipped, nothing to check. Run "
              f"`make gpu-check` on a machine with a GPU; it writes {args.out}.\n  (torch here: {problem})")
        return 0
    if problem:           # a GPU is there, torch cannot use it: that is a failure, not a skip
        print(f"gpu-check: this machine has a GPU, but {problem}", file=sys.stderr)
        return 1
    args.device = check_device(args.device)
    t0, started = time.perf_counter(), time.strftime("%Y-%m-%d %H:%M")
    checks: list[Check] = []
    runs: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        scratch = Path(tmp)
        checks.append(_tests(scratch, cuda))
        print(f"[gpu-check] tests: {'pass' if checks[-1].ok else 'FAIL'} ({checks[-1].detail})", flush=True)
        for name in SUBMISSIONS:          # one submission's runs in a row: its codec processes stay up
            for jobs in JOBS:
                for probe in PROBES:
                    r = _run(name, jobs, probe, scratch / f"jobs{jobs}-{probe}", args)
                    runs.append(r)
                    print(f"[gpu-check] {name} JOBS={jobs} PROBE={probe}: {r['status']}, {r['coded']} coded, "
                          f"{r['wall_s']:.1f} s", flush=True)
        verdicts = {}
        for jobs in JOBS:
            for probe in PROBES:
                verdicts[(jobs, probe)] = _verify(scratch / f"jobs{jobs}-{probe}", args.no_sandbox)
        for r in runs:
            r["verify_ok"], r["verify"] = verdicts[(r["jobs"], r["probe"])].get(r["submission"],
                                                                                   (False, "no verify line"))
        labels = {r["device"] for r in runs}      # one GPU: one label (the CPU's names each run's thread count)
        checks.append(Check("every run ok, its rows labelled with the device it ran on",
                            all(r["status"] == "ok" and not r["errors"] for r in runs)
                            and (len(labels) == 1 if cuda else all(" + " not in str(lb) for lb in labels))
                            and all(str(lb).startswith(args.device.split(":")[0]) for lb in labels),
                            f"labels {sorted(map(str, labels))}; errors: "
                            f"{[e for r in runs for e in r['errors']][:3] or 'none'}"))
        checks.append(Check("bench verify in a new process: every row bit-identical",
                            all(r["verify_ok"] for r in runs),
                            "; ".join(f"{r['submission']} J{r['jobs']} {r['probe']}: {r['verify']}" for r in runs)))
        if cuda:
            checks.append(Check("JOBS=2 runs one job at a time on the GPU (and says so)",
                                all(r["one_at_a_time"] for r in runs if r["jobs"] > 1), "the runner's note"))
        same_files, twice, refusals = [], [], []
        for name in SUBMISSIONS:
            for probe in PROBES:
                a, b = (next(r for r in runs if (r["submission"], r["jobs"], r["probe"]) == (name, j, probe))
                        for j in JOBS)
                fa = {p.name: _sha(p) for p in sorted((ROOT / a["bitstreams"]).glob("*.bin"))}
                fb = {p.name: _sha(p) for p in sorted((ROOT / b["bitstreams"]).glob("*.bin"))}
                same_files.append((f"{name} {probe}", fa == fb and bool(fa), len(fa)))
            first = next(r for r in runs if r["submission"] == name)
            folder = ROOT / first["bitstreams"]
            h1 = _decode(folder, name, args.device, args.no_sandbox, scratch / f"dec1-{name}")
            h2 = _decode(folder, name, args.device, args.no_sandbox, scratch / f"dec2-{name}")
            twice.append((name, h1 == h2 and bool(h1), len(h1)))
            if cuda:
                refusals.append((name, *_refused(folder, name, args.no_sandbox, scratch / f"cpu-{name}")))
        if cuda:          # on the CPU the two settings run other thread counts, which may change the bytes
            checks.append(Check("JOBS=1 and JOBS=2 wrote identical files", all(ok for _, ok, _ in same_files),
                                "; ".join(f"{n}: {'same' if ok else 'DIFFER'} ({k} files)"
                                          for n, ok, k in same_files)))
        checks.append(Check("the same files decoded twice (new processes each time): identical pixels",
                            all(ok for _, ok, _ in twice),
                            "; ".join(f"{n}: {'same' if ok else 'DIFFER'} ({k} files)" for n, ok, k in twice)))
        if cuda:
            checks.append(Check("a CPU decode of a CUDA file is refused", all(ok for _, ok, _ in refusals),
                                "; ".join(f"{n}: {d}" for n, _, d in refusals)))
        skews = [(r["submission"], r["jobs"], r["probe"], r["skew_enc"], r["skew_dec"]) for r in runs]
        checks.append(Check(f"warm-up: no first job above {SKEW_LIMIT:g}× its size's median network time",
                            not cuda or all(s is None or s <= SKEW_LIMIT for *_, e, d in skews for s in (e, d)),
                            "; ".join(f"{n} J{j} {p}: enc {_fmt(e)}, dec {_fmt(d)}" for n, j, p, e, d in skews)))
    seconds = time.perf_counter() - t0
    checks.append(Check(f"under {BUDGET_S // 60} minutes", seconds <= BUDGET_S or not cuda, f"{seconds:.0f} s"))
    text = _report(args, runs, checks, started, seconds)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    for c in checks:
        print(f"[gpu-check] {'pass' if c.ok else 'FAIL'}: {c.name}")
    print(f"[gpu-check] wrote {args.out} ({seconds:.0f} s)")
    return 0 if all(c.ok for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
