"""The shipped compressai zoo submissions (submissions/zoo_*/): valid manifests whose weights come
from outside, left out of discovery, and refused here (no weights, no network) with a message
that names the missing file and its URL, without trying to download it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench.cli import main
from bench.codecs.learned import ZOO_ARCHS, ZOO_METRICS, zoo_weights_path
from bench.paths import SUBMISSIONS_DIR
from bench.submission import SubmissionError, discover, get_submission, load_manifest

ZOO = sorted(p.parent.name for p in SUBMISSIONS_DIR.glob("zoo_*/submission.toml"))


@pytest.fixture
def empty_torch_home(tmp_path, monkeypatch) -> Path:
    """A torch hub without checkpoints, and any download attempt turned into a test failure."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def no_download(*args, **kwargs):
        raise AssertionError(f"a download was attempted: {args}")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    return tmp_path / "torch"


def test_three_or_more_zoo_submissions_ship():
    assert len(ZOO) >= 3, ZOO


@pytest.mark.parametrize("name", ZOO)
def test_zoo_manifest_is_external_reads_the_hub_and_lists_its_weights(name):
    from compressai.zoo.image import cfgs, model_urls

    sub = load_manifest(SUBMISSIONS_DIR / name / "submission.toml")
    assert sub.codec_ref == "bench.codecs.learned:ZooCodec"
    assert sub.status == "external" and sub.torch_hub
    arch, metric, qualities = sub.params["arch"], sub.params["metric"], sub.params["qualities"]
    assert arch in ZOO_ARCHS and metric in ZOO_METRICS
    assert sub.points.kind == "discrete" and list(sub.points.points) == qualities   # every point checked up front
    assert set(qualities) <= set(cfgs[arch])
    readme = (SUBMISSIONS_DIR / name / "README.md").read_text(encoding="utf-8")
    assert "$TORCH_HOME/hub/checkpoints" in readme
    for q in qualities:
        assert model_urls[arch][metric][q] in readme, f"{name}: README lacks the URL of quality {q}"


def test_zoo_submissions_are_left_out_of_discovery():
    assert not set(ZOO) & set(discover())
    assert set(ZOO) <= set(discover(include_unready=True))


@pytest.mark.parametrize("name", ZOO)
def test_missing_weights_are_refused_when_the_codec_is_made(name, empty_torch_home):
    sub = get_submission(name)
    path, url = zoo_weights_path(sub.params["arch"], sub.params["metric"], sub.params["qualities"][0])
    assert path.is_relative_to(empty_torch_home / "hub" / "checkpoints")
    with pytest.raises(SubmissionError) as e:
        sub.make_codec()
    assert str(path) in str(e.value) and url in str(e.value)


def test_running_one_here_fails_naming_the_missing_file(empty_torch_home, tmp_path, capsys):
    """The user's path (``make bench SUBMISSION=...``): sandboxed processes, a clear refusal."""
    name = ZOO[0]
    images = tmp_path / "imgs"
    images.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 48, 3), dtype=np.uint8)).save(images / "a.png")
    rc = main(["run", "-s", name, "-d", f"folder:{images}", "--reports", str(tmp_path / "reports"),
               "--jobs", "1", "--no-progress"])
    out = capsys.readouterr()
    sub = get_submission(name)
    path, url = zoo_weights_path(sub.params["arch"], sub.params["metric"], sub.params["qualities"][0])
    assert rc != 0
    assert str(path) in out.err and url in out.err and "not in the local torch hub cache" in out.err
    assert not (empty_torch_home / "hub" / "checkpoints").exists()      # nothing was fetched into the hub
