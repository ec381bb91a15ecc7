"""submissions/_template, copied and renamed as a newcomer would, runs end to end; a codec
whose __init__ forgets super().__init__ is told how to fix it."""

from __future__ import annotations

import shutil

import pytest

from bench.paths import SUBMISSIONS_DIR
from bench.run import run_benchmark
from bench.submission import SubmissionError, discover, get_submission
from bench.verify import verify_dataset


def _copy_template(root):
    dst = root / "mycodec"
    shutil.copytree(SUBMISSIONS_DIR / "_template", dst)
    manifest = dst / "submission.toml"
    manifest.write_text(manifest.read_text().replace('name = "_template"', 'name = "mycodec"'))
    return dst


def test_the_template_is_not_a_submission_but_its_copy_is(tmp_path):
    assert "_template" not in discover()
    _copy_template(tmp_path / "subs")
    assert list(discover(tmp_path / "subs")) == ["mycodec"]


def test_a_renamed_copy_of_the_template_runs_end_to_end(tmp_path, image_folder):
    subs = tmp_path / "subs"
    _copy_template(subs)
    res = run_benchmark("mycodec", f"folder:{image_folder}", [2.0, 4.0], reports_dir=tmp_path / "r", progress=False,
                        submissions_root=subs)
    ok = [r for r in res.rows if r["status"] == "ok"]
    assert ok and all(r["bpp"] <= r["target_bpp"] and r["sandbox"] == "bwrap" for r in ok)
    assert ok[-1]["psnr"] > ok[0]["psnr"]                        # more bits, a better picture
    checked = verify_dataset(tmp_path / "r", f"folder:{image_folder}", submissions_root=subs)   # from the files alone
    assert checked and all(r["bit_identical"] == f"{r['images']}/{r['images']}" for r in checked)


def test_a_codec_that_forgets_super_init_is_told_the_fix(tmp_path):
    dst = _copy_template(tmp_path / "subs")
    code = dst / "codec.py"
    code.write_text(code.read_text() + '''

class Forgetful(TemplateCodec):
    def __init__(self, params, root=None):
        self.level = params["level"]
''')
    manifest = dst / "submission.toml"
    manifest.write_text(manifest.read_text().replace('"codec:TemplateCodec"', '"codec:Forgetful"'))
    with pytest.raises(SubmissionError, match=r"Forgetful.__init__ does not call super\(\).__init__\(params, root\)"):
        get_submission("mycodec", tmp_path / "subs").make_codec()
