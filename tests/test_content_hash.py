"""A submission's content hash sees every line of this project that makes its bytes: the codec's
module and every bench module it imports (bench/sources.py), not the class's own file alone."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import bench
from bench.paths import SUBMISSIONS_DIR
from bench.sources import source_closure

PACKAGE_ROOT = Path(bench.__file__).resolve().parent
HASH = ("from pathlib import Path; from bench.submission import get_submission; "
        "print(get_submission('ecg_hyperprior', Path('submissions')).files_hash())")


def test_closure_of_the_variable_rate_codec_reaches_learned_and_container():
    files = {p.relative_to(PACKAGE_ROOT).as_posix() for p in
             source_closure(PACKAGE_ROOT / "codecs" / "variable_rate.py", PACKAGE_ROOT)}
    assert {"codecs/variable_rate.py", "codecs/learned.py", "container.py", "codec.py", "models/ecg.py",
            "codecs/__init__.py", "__init__.py"} <= files
    assert not any(f.startswith(("report/", "studies/")) or f in ("runner.py", "regress.py") for f in files)


def _hash_in_copy(root: Path) -> str:
    out = subprocess.run([sys.executable, "-c", HASH], cwd=root, env={"PYTHONPATH": str(root), "PATH": "/usr/bin"},
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip().splitlines()[-1]


def test_changing_learned_py_in_a_copy_changes_the_hash(tmp_path):
    """VariableRateCodec is defined in variable_rate.py; its encode/decode live in learned.py."""
    shutil.copytree(PACKAGE_ROOT, tmp_path / "bench", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(SUBMISSIONS_DIR / "ecg_hyperprior", tmp_path / "submissions" / "ecg_hyperprior")
    before = _hash_in_copy(tmp_path)
    assert _hash_in_copy(tmp_path) == before                       # stable across processes
    html = tmp_path / "bench" / "report" / "html.py"
    html.write_text(html.read_text() + "\n# a report change does not touch the bytes\n")
    assert _hash_in_copy(tmp_path) == before
    learned = tmp_path / "bench" / "codecs" / "learned.py"
    learned.write_text(learned.read_text().replace("SCALE_LEVELS = 64", "SCALE_LEVELS = 64  # edited"))
    assert _hash_in_copy(tmp_path) != before
