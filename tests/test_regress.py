"""The regression gate (bench/regress.py): the comparison rules on synthetic snapshots, then real
runs on a tiny profile: the unmodified tree passes against its own baseline, planted regressions
fail with the submission named, a missing baseline fails with the command that creates it."""

from __future__ import annotations

import json
import math
import shutil
import tomllib
from pathlib import Path

import pytest

from bench import regress
from bench.cli import main
from bench.paths import SUBMISSIONS_DIR
from bench.profiles import PROFILES, Profile
from bench.regress import (
    BASELINE_SCHEMA,
    compare,
    parse_thresholds,
    run_gate,
)
from bench.report.regress import format_table
from bench.results import FORMAT_VERSION
from tests.helpers.manifests import write_submission

# A smaller cousin of the "fast" profile (same code path): 2 Kodak crops of 256×256, CLIC targets.
TINY = Profile("tiny-test", "tests only: 2 Kodak images centre-cropped to 256×256", source="kodak",
               images=("kodim05", "kodim23"), crop=256)
if TINY.name not in PROFILES:
    PROFILES.add(TINY.name, TINY)


# ----------------------------------------------------------------------------- synthetic snapshots

def snap(rate_scale=1.0, dq=0.0, n=8, status="ok", sha="aa", name="codec") -> dict:
    rd = []
    for i in range(n):
        bpp = 0.1 * (i + 1) * rate_scale
        q = 10 * math.log10(1 + 10 * (i + 1) * 0.1)       # quality as a function of the unscaled rate
        rd.append({"point": i, "bytes": int(bpp * 1000), "bpp": bpp, "psnr": 22 + 2 * q + dq,
                   "msssim": 1 - 10 ** (-(8 + q + dq) / 10), "msssim_db": 8 + q + dq})
    row = {"mode": "clic", "target_bpp": 0.3, "status": status, "lowest_bpp": 0.1 * rate_scale, "note": ""}
    if status == "ok":
        row |= {"bytes": 300, "budget_bytes": 300, "bpp": 0.3, "psnr": 30.0 + dq, "msssim": 0.95 + dq / 100,
                "msssim_db": 13.0, "bitstreams": {"sha256": sha, "files": {"a.bin": sha}}}
    return {"schema": BASELINE_SCHEMA, "format_version": FORMAT_VERSION, "profile": {"name": "t"}, "images": {},
            "submission": {"name": name, "content_hash": "h"}, "rd": rd, "targets": [row], "errors": [],
            "timings": {"wall_s": 1.0}, "run": {"packages": {"pillow": "1"}}}


def results(sv) -> dict[str, str]:
    return {c.check: c.result for c in sv.checks}


def test_thresholds_parse_with_defaults_and_reject_unknown_keys():
    assert parse_thresholds(None) == {"bd_rate": 1.0, "msssim": 0.001, "psnr": 0.05}
    t = parse_thresholds("bd_rate:+2.5%, msssim:-0.002")
    assert t == {"bd_rate": 2.5, "msssim": 0.002, "psnr": 0.05}
    with pytest.raises(ValueError, match="unknown threshold 'ssim'"):
        parse_thresholds("ssim:0.1")
    with pytest.raises(ValueError, match="needs a number"):
        parse_thresholds("psnr:lots")


def test_identical_snapshots_pass_and_bd_rate_measures_a_rate_increase():
    same = compare(snap(), snap())
    assert same.status == "pass" and not same.failures
    assert results(same)["BD-rate MS-SSIM"] == "ok"
    worse = compare(snap(), snap(rate_scale=1.10))       # 10 % more bits for the same quality
    bd = next(c for c in worse.checks if c.check == "BD-rate PSNR")
    assert bd.result == "FAIL" and bd.delta == pytest.approx(10.0, abs=0.01)
    assert worse.status == "fail"
    loose = compare(snap(), snap(rate_scale=1.10), {"bd_rate": 12.0})   # a looser limit lets it through
    assert results(loose)["BD-rate PSNR"] == "ok" and loose.status == "pass"


def test_target_quality_drop_and_ok_to_infeasible_fail():
    drop = compare(snap(), snap(dq=-0.2))
    assert results(drop)["clic@0.3 msssim"] == "FAIL" and results(drop)["clic@0.3 psnr"] == "FAIL"
    gone = compare(snap(), snap(status="infeasible"))
    assert results(gone)["clic@0.3 status"] == "FAIL" and "now infeasible" in " ".join(gone.failures)
    better = compare(snap(status="infeasible"), snap())
    assert results(better)["clic@0.3 status"] == "note" and better.status == "pass"


def test_changed_hash_with_unchanged_rd_is_reported_not_fatal():
    sv = compare(snap(sha="aa"), snap(sha="bb"))
    assert sv.status == "pass"
    assert results(sv)["clic@0.3 bitstreams"] == "note"
    assert any("hash changed" in n and "RD unchanged" in n for n in sv.notes)


def test_few_points_and_no_overlap_are_reported_not_crashes():
    few = compare(snap(n=2), snap(n=2, rate_scale=1.2))      # BD-rate needs 4 points: compared point by point
    assert results(few)["BD-rate MS-SSIM"] == "n/a"
    assert few.status == "fail" and any("@ point" in f for f in few.failures)
    assert compare(snap(n=2), snap(n=2)).status == "pass"
    lost = compare(snap(), snap(n=3))
    assert results(lost)["BD-rate PSNR"] == "FAIL" and "lost points" in " ".join(lost.failures)
    apart = compare(snap(), snap(dq=40))                        # disjoint quality ranges
    assert "do not overlap" in " ".join(apart.failures)
    partial = compare(snap(), snap(dq=1.5))                     # better, but on part of the range only
    assert results(partial)["BD-rate MS-SSIM overlap"] == "warn"


def test_format_or_profile_change_asks_for_a_new_baseline():
    old = snap() | {"format_version": FORMAT_VERSION - 1}
    sv = compare(old, snap())
    assert sv.status == "fail" and "UPDATE=1" in sv.failures[0]
    sv = compare(snap() | {"images": {"x": {"pixels_sha256": "0"}}}, snap())
    assert sv.status == "fail" and "different images" in sv.failures[0]


# ----------------------------------------------------------------------------- real runs

PLANTED_CODEC = '''
import numpy as np
from bench.codecs.classical import JpegCodec


class PlantedJpeg(JpegCodec):
    """JPEG with planted faults: ``decode_bias`` adds a constant to every decoded pixel (the
    analogue of perturbed synthesis weights: same bitstreams, worse pictures); ``knob_offset``
    encodes at quality - offset."""

    def __init__(self, params, root=None):
        params = dict(params)
        self.decode_bias = int(params.pop("decode_bias", 0))
        self.knob_offset = int(params.pop("knob_offset", 0))
        super().__init__(params, root)

    def encode(self, image, point):
        return super().encode(image, max(1, int(point) - self.knob_offset))

    def decode(self, data):
        img = super().decode(data)
        return np.clip(img.astype(np.int16) + self.decode_bias, 0, 255).astype(np.uint8)
'''


def plant(root: Path, *, decode_bias: int = 0, knob_offset: int = 0, optimize: bool = True) -> Path:
    """A submissions root holding a 'jpeg' like the real one, with a planted regression."""
    real = tomllib.loads((SUBMISSIONS_DIR / "jpeg" / "submission.toml").read_text(encoding="utf-8"))
    assert real["codec"] == "bench.codecs.classical:JpegCodec" and real["params"]["optimize"] is True
    planted = {"optimize": optimize, "decode_bias": decode_bias, "knob_offset": knob_offset}
    write_submission(root, "jpeg", "codec:PlantedJpeg", description=real["description"],
                     params=real["params"] | planted, points=real["operating_points"],
                     rate_control=real.get("rate_control", {}).get("policy"), codec_source=PLANTED_CODEC)
    return root


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    """Baselines of the real, unmodified 'jpeg' on the tiny profile, in a throw-away folder."""
    tmp = tmp_path_factory.mktemp("regress")
    v = run_gate(TINY, ["jpeg"], update=True, baselines_dir=tmp / "baselines", work_dir=tmp / "work",
                 report=False, log=lambda m: None)
    assert v.passed and v.submissions[0].status == "updated"
    assert (tmp / "baselines" / TINY.name / "jpeg.json").exists()
    return tmp


def gate(tmp: Path, root: Path = SUBMISSIONS_DIR, **kw):
    return run_gate(TINY, ["jpeg"], baselines_dir=tmp / "baselines", work_dir=tmp / "work", submissions_root=root,
                    log=lambda m: None, **kw)


def test_baseline_file_holds_rd_targets_hashes_and_environment(baseline):
    b = json.loads((baseline / "baselines" / TINY.name / "jpeg.json").read_text())
    assert b["format_version"] == FORMAT_VERSION and b["profile"]["images"] == list(TINY.images)
    assert len(b["rd"]) >= 4 and {"bpp", "psnr", "msssim", "msssim_db"} <= set(b["rd"][0])
    assert [t["target_bpp"] for t in b["targets"]] == [0.075, 0.15, 0.3]
    ok = [t for t in b["targets"] if t["status"] == "ok"]
    assert ok and all(len(t["bitstreams"]["files"]) == 2 and len(t["bitstreams"]["sha256"]) == 64 for t in ok)
    assert b["run"]["environment"]["python"] and b["run"]["packages"]["pillow"]


def test_unmodified_tree_passes_against_its_own_baseline(baseline):
    v = gate(baseline, report=True)
    sv = v.submissions[0]
    assert v.passed and sv.status == "pass", format_table(v.to_json())
    assert all(c.delta in ("same", 0.0, None) or c.check.startswith("wall") for c in sv.checks if c.result != "n/a")
    html = Path(v.report).read_text()
    assert "Regression gate (tiny-test profile)" in html and 'alt="RD curves of jpeg' in html
    verdict = json.loads((baseline / "work" / "verdict.json").read_text())
    assert verdict["passed"] is True and verdict["submissions"][0]["name"] == "jpeg"


def test_planted_decoder_perturbation_fails_naming_the_submission(baseline, tmp_path):
    """Same bitstreams (hashes unchanged), worse pictures: BD-rate and the target scores fail."""
    v = gate(baseline, plant(tmp_path / "subs", decode_bias=6), report=False)
    sv = v.submissions[0]
    assert not v.passed and v.failed == ["jpeg"]
    checks = results(sv)
    assert checks["BD-rate MS-SSIM"] == "FAIL" and checks["BD-rate PSNR"] == "FAIL"
    assert checks["clic@0.3 psnr"] == "FAIL"
    assert checks["clic@0.3 bitstreams"] == "ok"            # the bytes did not change
    table = format_table(v.to_json())
    assert "FAILED: jpeg" in table and "BD-rate PSNR" in table


def test_planted_rate_regression_fails_and_reports_changed_hashes(baseline, tmp_path):
    """Unoptimised Huffman tables: more bytes for the same pictures."""
    v = gate(baseline, plant(tmp_path / "subs", optimize=False), report=False)
    sv = v.submissions[0]
    assert not v.passed and v.failed == ["jpeg"]
    bd = next(c for c in sv.checks if c.check == "BD-rate MS-SSIM")
    assert bd.result == "FAIL" and bd.delta > 1.0
    assert any("bitstream hash changed" in n for n in sv.notes)


def test_planted_quality_knob_offset_fails_at_the_clic_target(baseline, tmp_path):
    """quality-20: the RD sweep traces the same JPEG curve (BD-rate stays within about 1 %), but the
    rate-controlled score at the 0.3 bpp budget drops (the sweep's low end collapses onto quality 1),
    and that is what the gate catches."""
    v = gate(baseline, plant(tmp_path / "subs", knob_offset=20), report=False)
    assert not v.passed and v.failed == ["jpeg"]
    checks = results(v.submissions[0])
    assert checks["clic@0.3 msssim"] == "FAIL"
    assert "FAILED: jpeg" in format_table(v.to_json())


def test_missing_baseline_fails_through_the_cli_with_the_command(baseline, monkeypatch, capsys):
    monkeypatch.setattr(regress, "WORK_DIR", baseline / "work-cli")
    argv = ["regress", "--profile", TINY.name, "--baselines", str(baseline / "baselines"), "--no-report"]
    assert main(argv + ["-s", "null"]) == 1
    out = capsys.readouterr().out
    assert "no baseline for submission 'null'" in out and "make regress UPDATE=1" in out and "FAILED: null" in out
    assert main(argv + ["-s", "jpeg"]) == 0
    assert "PASSED" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(argv + ["--thresholds", "nope:1"])
    shutil.rmtree(baseline / "work-cli")
