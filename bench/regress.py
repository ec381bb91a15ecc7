"""The regression gate: re-run every submission on a fixed profile and compare with stored baselines.

``make regress`` (``python -m bench regress``) runs each submission found in ``submissions/`` on a
profile (:mod:`bench.profiles`; ``fast`` for CI) in a fresh folder under ``reports/.tmp/regress/``,
then compares with ``reports/baselines/<profile>/<submission>.json``:

The gate codes every point its search looks at (``probe="none"``), so its RD sweep is whole
and comparable with the baselines whatever a codec's estimates say.

* **RD curves** (the run's ``rd.csv``): BD-rate of current vs baseline, log-rate, pchip, over the
  overlapping quality range, for MS-SSIM (dB) and PSNR. Points that are dominated (more bits, no
  more quality) are dropped first. A warning when the overlap is below 75 % of the joint range;
  no overlap, or a curve that lost its points, fails. When a curve has fewer than 4 usable points
  in the baseline (e.g. the lossless null codec, or a learned codec with 3 models) BD-rate is not
  computed; the same operating points are compared instead (more bits for no more quality, or
  less quality for no fewer bits, beyond the thresholds, fails).
* **CLIC targets** (``rows.csv``): per (mode, target) the MS-SSIM and PSNR deltas at the budget;
  ``ok`` → ``infeasible`` and a missing row fail; ``infeasible`` → ``ok`` is an improvement.
  SSIMULACRA 2 and FLIP (:mod:`bench.perceptual`) are stored and their changes reported as notes;
  they fail only past a threshold given for them (``ssimulacra2:-0.5``, ``flip:+0.002``).
* **Bitstreams**: SHA-256 over the files of each row's bitstream folder. A changed hash is
  reported, never fatal by itself (a changed hash with unchanged RD is a note).
* **Context**: format version and profile must match the baseline (else: re-create it); package
  versions and the submission's content hash are reported; timings are reported, never gated.

Thresholds (``--thresholds bd_rate:+1%,msssim:-0.001,psnr:-0.05``): ``bd_rate`` is the largest
allowed BD-rate increase in percent, ``msssim`` and ``psnr`` the largest allowed drops at a target.
A submission without a baseline fails with the command that creates one. Baselines are written
only by ``--update-baseline`` (``make regress UPDATE=1``).

Outputs: a table on the terminal, ``verdict.json`` and a "Regression gate" section (baseline and
current curves on one plot per submission) in the profile folder's ``leaderboard.html``; both are
rendered from the stored verdict and snapshots by :mod:`bench.report.regress`.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.atomic import atomic_write_text
from bench.paths import REPO_ROOT, REPORTS_DIR, SUBMISSIONS_DIR
from bench.profiles import PROFILES, Profile, materialise
from bench.rd import as_float, bd_rate, overlap_share, usable_curve
from bench.report.regress import create_command, format_table, html_section, limit_text
from bench.results import FORMAT_VERSION, read_csv

BASELINES_DIR = REPORTS_DIR / "baselines"
WORK_DIR = REPORTS_DIR / ".tmp" / "regress"
BASELINE_SCHEMA = 1
MIN_BD_POINTS = 4          # BD-rate needs at least this many usable points on both curves
MIN_OVERLAP = 0.75         # below this share of the joint quality range, BD-rate comes with a warning
DEFAULT_THRESHOLDS = {"bd_rate": 1.0, "msssim": 0.001, "psnr": 0.05}
THRESHOLD_HELP = ("bd_rate: largest allowed BD-rate increase, percent (+1%); msssim: largest allowed MS-SSIM "
                  "drop at a target (-0.001); psnr: largest allowed PSNR drop at a target, dB (-0.05)")
CURVES = (("MS-SSIM", "msssim_db", "msssim"), ("PSNR", "psnr", "psnr"))   # (label, BD metric, point metric)
#: what a snapshot stores of each RD point (besides its point and bytes) and of each target row
RD_FIELDS = ("bpp", "psnr", "msssim", "msssim_db")
TARGET_FIELDS = ("mode", "target_bpp", "status", "bytes", "budget_bytes", "bpp", "psnr", "msssim", "msssim_db",
                 "ssimulacra2", "flip",
                 "lowest_bpp", "note", "enc_s", "dec_s")
#: the metrics judged at each target, each against its own threshold (a larger drop fails)
TARGET_METRICS = ("msssim", "psnr")
#: the perceptual metrics (bench/perceptual.py) and their good direction: stored and reported at each
#: target, judged only with a threshold given for them (``--thresholds ssimulacra2:-0.5,flip:+0.002``)
PERCEPTUAL_METRICS = {"ssimulacra2": 1.0, "flip": -1.0}


# ----------------------------------------------------------------------------------------- thresholds

def parse_thresholds(spec: str | dict | None) -> dict[str, float]:
    """``"bd_rate:+1%,msssim:-0.001"`` → the defaults updated with those limits (magnitudes: each
    metric has one bad direction, so ``msssim:0.001`` and ``msssim:-0.001`` mean the same)."""
    out = dict(DEFAULT_THRESHOLDS)
    if spec is None or spec == "":
        return out
    items = spec.items() if isinstance(spec, dict) else \
        (part.split(":", 1) if ":" in part else (part, None) for part in str(spec).replace(" ", "").split(",") if part)
    for key, value in items:
        if key not in DEFAULT_THRESHOLDS and key not in PERCEPTUAL_METRICS:
            known = ", ".join([*DEFAULT_THRESHOLDS, *PERCEPTUAL_METRICS])
            raise ValueError(f"unknown threshold {key!r}; known: {known} ({THRESHOLD_HELP}; ssimulacra2, flip: "
                             "largest allowed worsening, judged only when given)")
        try:
            v = abs(float(str(value).removesuffix("dB").rstrip("%")))
        except (TypeError, ValueError):
            example = limit_text(key, out.get(key, 1.0))
            raise ValueError(f"threshold {key!r} needs a number, e.g. {key}:{example}; "
                             f"got {value!r}") from None
        if not math.isfinite(v):
            raise ValueError(f"threshold {key!r} must be finite, got {value!r}")
        out[key] = v
    return out


# ----------------------------------------------------------------------------------------- records

@dataclass
class Check:
    submission: str
    check: str               # e.g. "BD-rate MS-SSIM", "clic@0.15 msssim", "clic@0.15 bitstreams"
    baseline: Any = None
    current: Any = None
    delta: Any = None
    limit: str = ""
    result: str = "ok"       # ok | FAIL | warn | note | n/a
    detail: str = ""


@dataclass
class SubmissionVerdict:
    name: str
    status: str = "pass"     # pass | fail | missing | error | updated
    checks: list[Check] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    baseline_path: str = ""
    baseline: dict | None = field(default=None, repr=False)
    current: dict | None = field(default=None, repr=False)

    def add(self, check: Check) -> Check:
        self.checks.append(check)
        text = f"{check.check}: {check.detail}" if check.detail else check.check
        {"FAIL": self.failures, "warn": self.warnings, "note": self.notes}.get(check.result, []).append(text)
        return check

    def to_json(self) -> dict:
        return {"name": self.name, "status": self.status, "seconds": round(self.seconds, 2),
                "baseline": self.baseline_path, "failures": self.failures, "warnings": self.warnings,
                "notes": self.notes, "checks": [_clean(asdict(c)) for c in self.checks]}


@dataclass
class Verdict:
    profile: str
    passed: bool
    update: bool
    thresholds: dict[str, float]
    submissions: list[SubmissionVerdict]
    stale_baselines: list[str]
    baselines_dir: str
    work_dir: str
    seconds: float
    report: str = ""

    @property
    def failed(self) -> list[str]:
        return [s.name for s in self.submissions if s.status in ("fail", "missing", "error")]

    def to_json(self) -> dict:
        """What ``verdict.json`` holds, and what :mod:`bench.report.regress` renders."""
        return _clean({"profile": self.profile, "passed": self.passed, "update": self.update,
                       "failed": self.failed, "thresholds": self.thresholds, "baselines_dir": self.baselines_dir,
                       "work_dir": self.work_dir, "report": self.report, "seconds": round(self.seconds, 1),
                       "stale_baselines": self.stale_baselines,
                       "submissions": [s.to_json() for s in self.submissions]})


def _clean(x: Any) -> Any:
    """JSON-safe (strict JSON has no inf/NaN): ±inf become the strings "inf"/"-inf" (lossless PSNR),
    NaN becomes None; :func:`bench.rd.as_float` reads both back."""
    if isinstance(x, float):
        return x if math.isfinite(x) else (None if math.isnan(x) else ("inf" if x > 0 else "-inf"))
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


# ----------------------------------------------------------------------------------------- measuring

def hash_folder(folder: Path) -> dict:
    """SHA-256 of each file in a bitstream folder, and one over all of them (names included)."""
    files = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(folder).iterdir()) if p.is_file()}
    combined = hashlib.sha256("".join(f"{n}:{h}\n" for n, h in files.items()).encode()).hexdigest()
    return {"sha256": combined, "files": files}


def _bitstream_dir(row: dict) -> Path:
    p = Path(row["bitstreams"])
    return p if p.is_absolute() else REPO_ROOT / p


def measure(name: str, profile: Profile, folder: Path, images: dict, work_dir: Path,
            submissions_root: Path = SUBMISSIONS_DIR, log: Callable[[str], None] = print,
            sandboxed: bool = True) -> dict:
    """Run one submission on the profile in a fresh run folder; the snapshot a baseline stores."""
    from bench.run import run_benchmark
    from bench.submission import get_submission

    run_dir = Path(work_dir) / profile.dataset_name / "runs" / name
    if run_dir.exists():
        shutil.rmtree(run_dir)        # fresh every time: a cache must not hide a harness change
    data_log: list[str] = []
    sub = get_submission(name, Path(submissions_root))
    t0 = time.perf_counter()
    res = run_benchmark(name, f"folder:{folder}", targets=list(profile.targets), mode=profile.mode,
                        objective=profile.objective, jobs=profile.jobs, reports_dir=Path(work_dir),
                        progress=False, log=data_log.append, probe="none", submissions_root=Path(submissions_root),
                        sandboxed=sandboxed)
    wall = time.perf_counter() - t0
    info = json.loads((res.run_dir / "run.json").read_text())
    rd = [{"point": r["point"], "bytes": int(r["bytes"]), **{k: as_float(r[k]) for k in RD_FIELDS}}
          for r in read_csv(res.run_dir / "rd.csv")]
    targets = []
    for r in res.rows:
        t = {k: r.get(k) for k in TARGET_FIELDS}
        if r["status"] == "ok" and r.get("bitstreams"):
            t["bitstreams"] = hash_folder(_bitstream_dir(r))
        targets.append(t)
    points = asdict(sub.points)
    points["points"] = list(points["points"])
    log(f"[regress] {name}: {res.computed} encodes in {wall:.1f} s")
    return _clean({
        "schema": BASELINE_SCHEMA, "format_version": FORMAT_VERSION, "profile": profile.as_dict(), "images": images,
        "submission": {"name": name, "description": sub.description, "content_hash": info.get("content_hash"),
                       "policy": sub.policy, "operating_points": points},
        "rd": rd, "targets": targets, "errors": list(res.errors),
        "timings": {"wall_s": round(wall, 2), "encodes": res.computed,
                    "note": "reported only; never compared against a threshold"},
        "run": {k: info.get(k) for k in ("date", "commit", "environment", "packages", "device", "sandbox")},
    })


# ----------------------------------------------------------------------------------------- comparing

def _delta(cur: float, base: float) -> float:
    """cur - base; equal infinities (lossless PSNR) and NaN in both (undefined in both) are no change."""
    if cur == base or (math.isnan(cur) and math.isnan(base)):
        return 0.0
    return cur - base


def _compare_curve(sv: SubmissionVerdict, base: dict, cur: dict, label: str, bd_metric: str, pt_metric: str,
                   thr: dict[str, float]) -> None:
    b, c = usable_curve(base["rd"], bd_metric), usable_curve(cur["rd"], bd_metric)
    name = f"BD-rate {label}"
    limit = limit_text("bd_rate", thr["bd_rate"])
    if len(b) >= MIN_BD_POINTS:
        if len(c) < MIN_BD_POINTS:
            sv.add(Check(sv.name, name, f"{len(b)} pts", f"{len(c)} pts", None, limit, "FAIL",
                         f"current curve has {len(c)} usable points, the baseline {len(b)} (BD-rate needs "
                         f"{MIN_BD_POINTS}): the RD sweep lost points"))
            return
        share = overlap_share(b, c)
        if share == 0:
            sv.add(Check(sv.name, name, None, None, None, limit, "FAIL",
                         f"the {label} ranges of baseline ({b[0][1]:.3f}–{b[-1][1]:.3f}) and current "
                         f"({c[0][1]:.3f}–{c[-1][1]:.3f}) do not overlap: the curves cannot be compared; "
                         "if the change is intended, re-create the baseline"))
            return
        value = bd_rate(b, c)
        if not math.isfinite(value):
            sv.add(Check(sv.name, name, None, None, None, limit, "FAIL", "BD-rate is undefined for these curves"))
            return
        bad = value > thr["bd_rate"]
        detail = f"{value:+.3f}% over {share:.0%} of the joint {label} range ({len(b)} vs {len(c)} points)"
        sv.add(Check(sv.name, name, None, None, round(value, 4), limit, "FAIL" if bad else "ok",
                     detail if bad else ""))
        if share < MIN_OVERLAP:
            sv.add(Check(sv.name, f"{name} overlap", None, None, round(share, 3), f">{MIN_OVERLAP:.0%}", "warn",
                         f"small overlap: only {share:.0%} of the joint {label} range is shared, so the "
                         "BD-rate rests on part of the curves"))
        return
    # Too few points for BD-rate: compare the operating points both runs evaluated.
    sv.add(Check(sv.name, name, f"{len(b)} pts", f"{len(c)} pts", None, limit, "n/a",
                 f"baseline curve has {len(b)} usable point(s) (BD-rate needs {MIN_BD_POINTS}); "
                 "compared point by point instead"))
    q_thr = thr[pt_metric]
    base_pts = {str(r["point"]): r for r in base["rd"]}
    matched = [(k, base_pts[k], r) for r in cur["rd"] if (k := str(r["point"])) in base_pts]
    lost = sorted(set(base_pts) - {str(r["point"]) for r in cur["rd"]})
    if lost:
        sv.add(Check(sv.name, f"{label} points", None, None, None, "", "FAIL",
                     f"operating point(s) {', '.join(lost)} of the baseline are missing from the current RD curve"))
    for k, rb, rc in matched:
        d_rate = (as_float(rc["bpp"]) / as_float(rb["bpp"]) - 1) * 100 if as_float(rb["bpp"]) > 0 else math.nan
        d_q = _delta(as_float(rc[pt_metric]), as_float(rb[pt_metric]))
        worse_rate, worse_q = d_rate > thr["bd_rate"], d_q < -q_thr
        bad = (worse_rate and not d_q > 0) or (worse_q and not d_rate < 0) or not (math.isfinite(d_rate)
                                                                                  and not math.isnan(d_q))
        sv.add(Check(sv.name, f"{label} @ point {k}", None, None,
                     f"bpp {d_rate:+.3f}%, {pt_metric} {d_q:+.4g}", f"{limit}, {limit_text(pt_metric, q_thr)}",
                     "FAIL" if bad else "ok",
                     f"bpp {as_float(rb['bpp']):.4f} → {as_float(rc['bpp']):.4f}, "
                     f"{pt_metric} {as_float(rb[pt_metric]):.4f} → {as_float(rc[pt_metric]):.4f}" if bad else ""))


def _compare_targets(sv: SubmissionVerdict, base: dict, cur: dict, thr: dict[str, float]) -> None:
    def key(r: dict) -> tuple[str, float]:
        return str(r["mode"]), float(r["target_bpp"])

    b_rows, c_rows = {key(r): r for r in base["targets"]}, {key(r): r for r in cur["targets"]}
    for k in sorted(set(b_rows) | set(c_rows), key=lambda k: (k[0], k[1])):
        label = f"{k[0]}@{k[1]:g}"
        rb, rc = b_rows.get(k), c_rows.get(k)
        if rc is None:
            sv.add(Check(sv.name, f"{label} status", rb["status"], "missing", None, "", "FAIL",
                         "the target row is missing from the current run"))
            continue
        if rb is None:
            sv.add(Check(sv.name, f"{label} status", "missing", rc["status"], None, "", "note",
                         "new target row (not in the baseline)"))
            continue
        sb, sc = rb["status"], rc["status"]
        if sb == "ok" and sc != "ok":
            sv.add(Check(sv.name, f"{label} status", sb, sc, None, "", "FAIL",
                         f"was ok, now {sc} ({rc.get('note') or 'no note'})"))
            continue
        if sb != "ok" and sc == "ok":
            sv.add(Check(sv.name, f"{label} status", sb, sc, None, "", "note",
                         f"was {sb} (lowest {as_float(rb.get('lowest_bpp')):.4f} bpp), now reaches the target"))
            continue
        if sb != "ok":
            lb, lc = as_float(rb.get("lowest_bpp")), as_float(rc.get("lowest_bpp"))
            up = lc > lb * (1 + thr["bd_rate"] / 100)
            sv.add(Check(sv.name, f"{label} status", sb, sc, None, "", "warn" if up else "ok",
                         f"infeasible in both; the lowest reachable rate rose {lb:.4f} → {lc:.4f} bpp" if up else
                         f"infeasible in both (lowest {lb:.4f} → {lc:.4f} bpp)"))
            continue
        sv.add(Check(sv.name, f"{label} status", sb, sc, None, "", "ok"))
        worse = False
        for metric in TARGET_METRICS:
            vb, vc = as_float(rb.get(metric)), as_float(rc.get(metric))
            d = _delta(vc, vb)
            if math.isnan(d):
                res = "ok" if math.isnan(vb) and math.isnan(vc) else "FAIL"
                sv.add(Check(sv.name, f"{label} {metric}", vb, vc, None, limit_text(metric, thr[metric]), res,
                             "" if res == "ok" else f"{metric} is undefined in one of the runs"))
                continue
            bad = d < -thr[metric]
            worse |= bad
            sv.add(Check(sv.name, f"{label} {metric}", vb, vc, d, limit_text(metric, thr[metric]),
                         "FAIL" if bad else "ok",
                         f"{vb:.5f} → {vc:.5f} at {as_float(rc.get('bpp')):.4f} bpp "
                         f"(budget {rc.get('budget_bytes')} B)" if bad else ""))
        worse |= _compare_perceptual(sv, label, rb, rc, thr)
        hb, hc = (rb.get("bitstreams") or {}), (rc.get("bitstreams") or {})
        if hb.get("sha256") and hb.get("sha256") == hc.get("sha256"):
            sv.add(Check(sv.name, f"{label} bitstreams", hb["sha256"][:12], hc["sha256"][:12], "same", "", "ok"))
        else:
            fb, fc = hb.get("files", {}), hc.get("files", {})
            changed = sum(1 for n in set(fb) | set(fc) if fb.get(n) != fc.get(n))
            same_rd = all(_delta(as_float(rc.get(m)), as_float(rb.get(m))) == 0 for m in ("bytes", *TARGET_METRICS))
            why = "RD unchanged" if same_rd else ("RD worse, see above" if worse else "RD within thresholds")
            sv.add(Check(sv.name, f"{label} bitstreams", (hb.get("sha256") or "-")[:12], (hc.get("sha256") or "-")[:12],
                         f"{changed}/{max(len(fb), len(fc))} files", "", "note",
                         f"bitstream hash changed ({changed} of {max(len(fb), len(fc))} files), {why}"))


def _compare_perceptual(sv: SubmissionVerdict, label: str, rb: dict, rc: dict, thr: dict[str, float]) -> bool:
    """SSIMULACRA 2 and FLIP at one target: a change is a note, a worsening past a threshold given
    for the metric fails; a baseline written before them says so (n/a). True when one failed."""
    failed = False
    for metric, sign in PERCEPTUAL_METRICS.items():
        vb, vc = as_float(rb.get(metric)), as_float(rc.get(metric))
        if math.isnan(vb) or math.isnan(vc):
            if not (math.isnan(vb) and math.isnan(vc)):
                sv.add(Check(sv.name, f"{label} {metric}", vb, vc, None, "", "n/a",
                             "not in the baseline (update it to compare)" if math.isnan(vb) else
                             "not measured in this run"))
            continue
        d = vc - vb
        limit = thr.get(metric)
        bad = limit is not None and sign * d < -limit
        failed |= bad
        sv.add(Check(sv.name, f"{label} {metric}", vb, vc, d,
                     "" if limit is None else f"{'-' if sign > 0 else '+'}{limit:g}",
                     "FAIL" if bad else ("note" if d else "ok"),
                     f"{vb:.4f} → {vc:.4f}" + (" (worse)" if sign * d < 0 else " (better)") if d else ""))
    return failed


def _compare_context(sv: SubmissionVerdict, base: dict, cur: dict) -> bool:
    """Format version and profile must match (False: the comparison would be meaningless)."""
    fix = f"re-create it deliberately: make regress UPDATE=1 (or python -m bench regress --update-baseline " \
          f"--submission {sv.name})"
    if base.get("schema") != BASELINE_SCHEMA or base.get("format_version") != cur["format_version"]:
        sv.add(Check(sv.name, "format version", base.get("format_version"), cur["format_version"], None, "", "FAIL",
                     f"baseline schema {base.get('schema')}/format {base.get('format_version')} differs from this "
                     f"harness's {BASELINE_SCHEMA}/{cur['format_version']}; {fix}"))
        return False
    def definition(p: Any) -> Any:   # the profile's wording may change; what it runs may not
        return {k: v for k, v in p.items() if k != "description"} if isinstance(p, dict) else p

    same_profile = definition(base.get("profile")) == definition(cur["profile"])
    if not same_profile or base.get("images") != cur["images"]:
        what = "images" if same_profile else "profile definition"
        sv.add(Check(sv.name, "profile", None, None, None, "", "FAIL",
                     f"the baseline was made with a different {what}; {fix}"))
        return False
    pb, pc = (base.get("run") or {}).get("packages") or {}, (cur.get("run") or {}).get("packages") or {}
    diff = [f"{p} {pb.get(p)} → {pc.get(p)}" for p in sorted(set(pb) | set(pc)) if pb.get(p) != pc.get(p)]
    if diff:
        sv.add(Check(sv.name, "packages", None, None, None, "", "note", "; ".join(diff)))
    hb, hc = base["submission"].get("content_hash"), cur["submission"].get("content_hash")
    if hb != hc:
        sv.add(Check(sv.name, "submission content", hb, hc, None, "", "note",
                     "the submission's content hash changed (manifest, code or library versions)"))
    tb, tc = as_float((base.get("timings") or {}).get("wall_s")), as_float((cur.get("timings") or {}).get("wall_s"))
    sv.add(Check(sv.name, "wall time (s)", tb, tc, None, "reported only", "ok" if math.isfinite(tb) else "n/a"))
    return True


def compare(base: dict, cur: dict, thresholds: dict[str, float] | None = None) -> SubmissionVerdict:
    """All checks of one submission's current snapshot against its baseline."""
    thr = parse_thresholds(thresholds) if not isinstance(thresholds, dict) else {**DEFAULT_THRESHOLDS, **thresholds}
    sv = SubmissionVerdict(cur["submission"]["name"], baseline=base, current=cur)
    if cur.get("errors"):
        sv.add(Check(sv.name, "run errors", None, len(cur["errors"]), None, "", "FAIL",
                     f"{len(cur['errors'])} image job(s) failed, e.g. {cur['errors'][0]}"))
    if _compare_context(sv, base, cur):
        for label, bd_metric, pt_metric in CURVES:
            _compare_curve(sv, base, cur, label, bd_metric, pt_metric, thr)
        _compare_targets(sv, base, cur, thr)
    sv.status = "fail" if sv.failures else "pass"
    return sv


# ----------------------------------------------------------------------------------------- the gate

def load_baseline(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def write_baseline(path: Path, snapshot: dict) -> None:
    atomic_write_text(Path(path), json.dumps(_clean(snapshot), indent=1, allow_nan=False) + "\n")


def _gate_one(name: str, prof: Profile, folder: Path, images: dict, work: Path, base_dir: Path,
              thr: dict[str, float], update: bool, submissions_root: Path, log: Callable[[str], None],
              sandboxed: bool = True) -> SubmissionVerdict:
    """Run one submission on the profile and judge it against its baseline (or write the baseline)."""
    s0 = time.perf_counter()
    path = base_dir / f"{name}.json"
    rel = str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)
    try:
        cur = measure(name, prof, folder, images, work, submissions_root, log, sandboxed)
    except Exception as e:  # noqa: BLE001 - a submission that cannot run is a gate failure, not a crash
        sv = SubmissionVerdict(name, status="error", baseline_path=rel)
        last = traceback.format_exception_only(type(e), e)[-1].strip()
        sv.add(Check(name, "run", None, None, None, "", "FAIL", f"the run failed: {last}"))
        sv.seconds = time.perf_counter() - s0
        return sv
    if path.exists():
        try:
            sv = compare(load_baseline(path), cur, thr)
        except (ValueError, KeyError, TypeError) as e:
            sv = SubmissionVerdict(name, current=cur)
            sv.add(Check(name, "baseline", None, None, None, "", "FAIL",
                         f"{rel} is unreadable ({type(e).__name__}: {e}); {create_command(name)}"))
            sv.status = "fail"
    else:
        sv = SubmissionVerdict(name, status="missing", current=cur)
        sv.add(Check(name, "baseline", "missing", None, None, "", "FAIL",
                     f"no baseline for submission '{name}' at {rel}; create it with: {create_command(name)}"))
    sv.baseline_path = rel
    if update:
        write_baseline(path, cur)
        sv.status = "updated"
        log(f"[regress] {name}: baseline written to {rel}")
    sv.seconds = time.perf_counter() - s0
    return sv


def _report(verdict: Verdict, dataset_dir: Path, log: Callable[[str], None]) -> str:
    """The profile folder's HTML report with the gate's section; '' when it cannot be built."""
    try:
        from bench.report import build_report

        snapshots = {sv.name: (sv.baseline, sv.current) for sv in verdict.submissions}
        section = html_section(verdict.to_json(), snapshots)
        out = build_report(dataset_dir, extra_sections=[(f"Regression gate ({verdict.profile} profile)", section)])
        return str(out["html"])
    except Exception as e:  # noqa: BLE001 - the report is an extra; the verdict stands without it
        log(f"[regress] warning: the HTML report could not be built ({type(e).__name__}: {e})")
        return ""


def run_gate(profile: str | Profile = "fast", submissions: Iterable[str] | None = None, *, update: bool = False,
             thresholds: str | dict | None = None, baselines_dir: Path = BASELINES_DIR,
             work_dir: Path | None = None, submissions_root: Path = SUBMISSIONS_DIR, report: bool = True,
             log: Callable[[str], None] = print, sandboxed: bool = True) -> Verdict:
    """Run the gate (or, with ``update``, rewrite the baselines) and return the verdict; also
    writes ``verdict.json`` and, with ``report``, the HTML section into the work folder."""
    from bench.submission import discover, get_submission

    t0 = time.perf_counter()
    prof = PROFILES.get(profile) if isinstance(profile, str) else profile
    thr = parse_thresholds(thresholds) if not isinstance(thresholds, dict) else {**DEFAULT_THRESHOLDS, **thresholds}
    work = Path(work_dir) if work_dir else WORK_DIR / prof.name
    base_dir = Path(baselines_dir) / prof.name
    available = list(discover(Path(submissions_root)))
    names = list(submissions) if submissions else available
    for n in names:
        get_submission(n, Path(submissions_root))   # unknown: "did you mean"; still training: says so
    unready = {n: s.status for n, s in discover(Path(submissions_root), include_unready=True).items()
               if n not in available}
    if unready and not submissions:
        log("[regress] skipped (status \"training\": no weights yet; \"external\": weights from outside the "
            f"repository): {', '.join(f'{n} ({st})' for n, st in sorted(unready.items()))}")
    folder, images = materialise(prof, work)
    runs = work / prof.dataset_name / "runs"
    if runs.is_dir():
        shutil.rmtree(runs)   # the report then shows exactly this gate run
    log(f"[regress] profile {prof.name}: {len(images)} images in {folder}, targets "
        f"{', '.join(f'{t:g}' for t in prof.targets)} ({prof.mode}); baselines in {base_dir}")
    verdicts = [_gate_one(name, prof, folder, images, work, base_dir, thr, update, submissions_root, log, sandboxed)
                for name in names]
    stale = sorted(p.stem for p in base_dir.glob("*.json") if p.stem not in available) if base_dir.is_dir() else []
    bad = [v for v in verdicts if v.status in ("fail", "missing", "error")]
    verdict = Verdict(prof.name, not bad, update, thr, verdicts, stale,
                      str(base_dir), str(work), time.perf_counter() - t0)
    if report:
        verdict.report = _report(verdict, work / prof.dataset_name, log)
    verdict.seconds = time.perf_counter() - t0
    atomic_write_text(work / "verdict.json", json.dumps(verdict.to_json(), indent=1) + "\n")
    return verdict


def main(args) -> int:
    """``python -m bench regress``: print the table, write the verdict; 0 pass, 1 regression or missing baseline."""
    verdict = run_gate(args.profile, args.submission or None, update=args.update_baseline,
                       thresholds=args.thresholds, baselines_dir=Path(args.baselines),
                       report=not args.no_report, log=lambda m: print(m, file=sys.stderr, flush=True),
                       sandboxed=not args.no_sandbox)
    print(format_table(verdict.to_json(), verbose=args.verbose))
    if args.json:
        atomic_write_text(Path(args.json), json.dumps(verdict.to_json(), indent=1) + "\n")
    return 0 if verdict.passed else 1
