from pathlib import Path

import pytest

from bench.registry import Registry, RegistryError
from bench.submission import SubmissionError, discover, get_submission, load_manifest
from tests.helpers.manifests import continuous, manifest_text, write_submission

# a valid manifest with a "{name}" placeholder; the tests below edit its text
GOOD = manifest_text("{name}", "bench.codecs.classical:WebPCodec", continuous(0, 100, integer=True))


def write(tmp_path: Path, name: str, text: str) -> Path:
    return write_submission(tmp_path, name, text=text)


def test_all_shipped_manifests_are_valid_and_listed():
    reg = discover()
    assert {"jpeg", "webp", "avif", "jpegxl", "null", "noise_hyperprior", "multi_lambda_hyperprior", "sth_hyperprior",
            "bm_hyperprior", "ecg_hyperprior", "ecg_hyperprior_a01"} <= set(reg)
    for name, sub in reg.items():       # every shipped manifest loads, with its weights
        assert sub.description and sub.make_codec() is not None, name


@pytest.mark.parametrize("text,field", [
    (GOOD.replace('description = "test codec"\n', ""), "description"),
    (GOOD.replace("low = 0", 'low = "zero"'), "operating_points.low"),
    (GOOD.replace('kind = "continuous"', 'kind = "fuzzy"'), "operating_points.kind"),
    (GOOD + 'colour = "blue"\n', "colour"),
    (GOOD.replace("high = 100", "high = -1"), "operating_points.low"),
    (GOOD + '[rate_control]\npolicy = "random"\n', "rate_control.policy"),
    (GOOD.replace('name = "{name}"', "name = 3"), "name"),
    (GOOD.replace('kind = "continuous"', 'kind = "continuous"\nscale = "cubic"'), "operating_points.scale"),
    (GOOD.replace('kind = "continuous"', 'kind = "continuous"\nscale = "log"'), "low > 0"),
    (GOOD.replace('kind = "continuous"', 'kind = "continuous"\nscale = "log1p"').replace("low = 0", "low = -1"),
     "low > -1"),
])
def test_bad_manifest_names_the_offending_field(tmp_path, text, field):
    path = write(tmp_path, "sub", text.replace("{name}", "sub"))
    with pytest.raises(SubmissionError, match=field.replace(".", r"\.")):
        load_manifest(path)


def test_name_must_match_folder_and_cannot_escape(tmp_path):
    with pytest.raises(SubmissionError, match="folder"):
        load_manifest(write(tmp_path, "sub", GOOD.replace("{name}", "other")))
    with pytest.raises(SubmissionError, match="path separators"):
        load_manifest(write(tmp_path, "sub", GOOD.replace("{name}", "../etc")))
    with pytest.raises(SubmissionError, match="plain name"):
        get_submission("../../etc", root=tmp_path)


def test_unknown_codec_entry_points(tmp_path):
    bad_module = load_manifest(write(tmp_path, "a", GOOD.replace("{name}", "a").replace(
        "bench.codecs.classical:WebPCodec", "no_such_module:Codec")))
    with pytest.raises(SubmissionError, match="cannot import module 'no_such_module'"):
        bad_module.make_codec()
    bad_class = load_manifest(write(tmp_path, "b", GOOD.replace("{name}", "b").replace("WebPCodec", "WebbCodec")))
    with pytest.raises(SubmissionError, match="has no 'WebbCodec'"):
        bad_class.make_codec()
    not_codec = load_manifest(write(tmp_path, "c", GOOD.replace("{name}", "c").replace(
        "bench.codecs.classical:WebPCodec", "pathlib:Path")))
    with pytest.raises(SubmissionError, match="not a subclass"):
        not_codec.make_codec()


def test_local_codec_module_in_submission_folder(tmp_path):
    path = write(tmp_path, "mine",
                 GOOD.replace("{name}", "mine").replace("bench.codecs.classical:WebPCodec", "codec:Mine"))
    (path.parent / "codec.py").write_text("from bench.codecs.classical import NullCodec\n"
                                          "class Mine(NullCodec):\n    pass\n")
    assert load_manifest(path).codec_class().__name__ == "Mine"


def test_unknown_submission_did_you_mean(tmp_path):
    write(tmp_path, "webp", GOOD.replace("{name}", "webp"))
    with pytest.raises(RegistryError, match="did you mean 'webp'"):
        get_submission("wepb", root=tmp_path)


def test_registry_refuses_duplicates():
    reg = Registry[int]("thing")
    reg.add("a", 1)
    with pytest.raises(RegistryError, match="duplicate thing name 'a'"):
        reg.add("a", 2)


def test_content_hash_changes_with_the_submission(tmp_path):
    path = write(tmp_path, "sub", GOOD.replace("{name}", "sub"))
    before = load_manifest(path).content_hash({})
    path.write_text(GOOD.replace("{name}", "sub").replace("high = 100", "high = 99"))
    assert load_manifest(path).content_hash({}) != before
