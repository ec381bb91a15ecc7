"""``bench verify`` (bench/verify.py): a run's files decoded again in a fresh process, bit for bit,
with the run's thread count."""

from bench.paths import REPO_ROOT
from bench.results import read_csv


def test_verify_decodes_bit_identically_in_a_fresh_process(jpeg_run):
    """``bench verify`` (a new process: nothing cached) matches the run's decoded fingerprints;
    a fingerprint that does not match is reported as a failure."""
    import csv
    import subprocess
    import sys

    res, folder, tmp_path = jpeg_run
    dataset_dir = res.run_dir.parent.parent
    cmd = [sys.executable, "-m", "bench", "verify", "--dataset", f"folder:{folder}", "--reports",
           str(tmp_path / "reports")]
    out = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    rows = read_csv(dataset_dir / "verify.csv")
    assert [r["bit_identical"] for r in rows] == ["3/3", "3/3"]
    assert all(r["verify_device"].startswith("cpu") for r in rows)
    assert "bit-identical" in (dataset_dir / "leaderboard.html").read_text()

    per_image = res.run_dir / "per_image.csv"      # verify reads the run itself, not the report
    recs = read_csv(per_image)
    recs[0]["decoded_sha256"] = "0" * 16
    with per_image.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(recs[0]))
        w.writeheader()
        w.writerows(recs)
    out = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 1 and "bit-identical 2/3" in out.stdout


def test_verify_decodes_with_the_run_thread_count():
    from bench.verify import _run_threads

    assert _run_threads("cpu (1 threads)") == 1 and _run_threads("cpu (2 threads)") == 2
    assert _run_threads("cuda (NVIDIA H100)") is None and _run_threads("") is None


def test_verifying_one_submission_keeps_the_lines_of_the_others(jpeg_run):
    from bench.results import write_csv
    from bench.verify import verify_dataset

    res, folder, tmp_path = jpeg_run
    path = res.run_dir.parent.parent / "verify.csv"
    first = verify_dataset(tmp_path / "reports", f"folder:{folder}")
    earlier = dict(first[0], submission="another", bit_identical="5/5")       # an earlier verify of another run
    write_csv(path, first + [earlier])
    again = verify_dataset(tmp_path / "reports", f"folder:{folder}", ["jpeg"])
    stored = read_csv(path)
    assert [r["submission"] for r in stored] == ["another"] + ["jpeg"] * len(again)
    assert stored[0]["bit_identical"] == "5/5"
