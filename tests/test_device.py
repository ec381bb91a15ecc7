"""Devices (bench/device.py, ``--device``): labels, refusals before any job, files that say
which kind of device coded them, verify on a machine without that device, and the network
clock. The CUDA path itself runs in the ``cuda`` tests (skipped without a GPU; ``make
gpu-check`` runs them with the whole GPU path on a GPU machine)."""

from __future__ import annotations

import time

import pytest
import torch
from torch import nn

from bench.cli import main
from bench.codec import as_decoded, as_encoded
from bench.codecs.learned import CUDA_CODED
from bench.container import pack, unpack
from bench.device import (
    DeviceError,
    DeviceMismatch,
    check_device,
    device_label,
    network_clock,
)
from bench.results import read_csv, write_csv
from bench.run import run_benchmark
from bench.submission import get_submission
from bench.verify import verify_dataset
from tests.helpers.coding import decode, encode
from tests.helpers.images import kodak_crop

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (make gpu-check)")


def test_labels_say_where_the_networks_ran():
    assert device_label("cpu", 1) == "cpu (1 threads)" and device_label("cpu", 2) == "cpu (2 threads)"


def test_unknown_and_missing_devices_are_refused_with_what_to_do():
    with pytest.raises(DeviceError, match="unknown device 'tpu'"):
        check_device("tpu")
    with pytest.raises(DeviceError, match="unknown device"):
        check_device("cuda:x")
    assert check_device("cpu") == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="no CUDA device.*--device cpu"):
            check_device("cuda")


def test_a_run_on_a_device_the_codec_or_machine_lacks_stops_before_any_job(image_folder, tmp_path):
    """webp has no networks: cpu only (and this machine may lack CUDA too): refused up front,
    no run folder written."""
    with pytest.raises(DeviceError, match="--device cpu"):
        run_benchmark("webp", f"folder:{image_folder}", [0.5], reports_dir=tmp_path, progress=False, device="cuda")
    assert not list(tmp_path.rglob("records.jsonl"))
    code = main(["run", "-s", "webp", "-d", f"folder:{image_folder}", "--targets", "0.5", "--device", "cuda",
                 "--reports", str(tmp_path), "--no-progress"])
    assert code == 2


def test_a_file_says_which_kind_of_device_coded_it_and_decodes_only_there():
    codec = get_submission("noise_hyperprior").make_codec()
    img = kodak_crop(box=(0, 0, 96, 64))
    data = encode(codec, img, "l2")
    c = unpack(data)
    assert not c.variant & CUDA_CODED                      # CPU files: the bytes they always had
    flagged = pack(c.model_id, c.height, c.width, list(c.streams), c.variant | CUDA_CODED)
    with pytest.raises(DeviceMismatch, match="coded with its networks on cuda.*--device cuda"):
        decode(codec, flagged)
    assert decode(codec, data).shape == img.shape          # the unflagged file decodes here


def test_verify_refuses_rows_coded_on_a_gpu_this_machine_lacks(jpeg_run, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the row would be decoded")
    res, folder, tmp_path = jpeg_run
    rows_csv = res.run_dir / "rows.csv"
    rows = read_csv(rows_csv)
    for r in rows:
        r["device"] = "cuda (a GPU elsewhere)"       # as a run on a GPU machine writes it
    write_csv(rows_csv, rows, list(rows[0]))
    out = verify_dataset(tmp_path / "reports", f"folder:{folder}")
    assert out and all(r["bit_identical"].startswith("refused: coded on cuda") for r in out)
    assert all(r["files"] == r["images"] for r in out)           # the files are there, only not decoded
    code = main(["verify", "-d", f"folder:{folder}", "--reports", str(tmp_path / "reports")])
    assert code == 1 and "0 of" in capsys.readouterr().out


def test_the_network_clock_times_the_modules_not_the_rest():
    class Slow(nn.Module):
        def forward(self, x):
            time.sleep(0.05)
            return x

    slow = Slow()
    t0 = time.perf_counter()
    with network_clock([slow], "cpu") as spent:
        slow(torch.zeros(1))
        time.sleep(0.05)                                  # outside the module: not counted
    total = time.perf_counter() - t0
    assert 0.05 <= spent[0] <= total - 0.05


# ----------------------------------------------------------------------------- CUDA only
@cuda
def test_on_cuda_the_networks_run_there_and_the_file_stays_there(tmp_path):
    sub = get_submission("noise_hyperprior")
    gpu = sub.make_codec()
    gpu.place(check_device("cuda"))
    img = kodak_crop(box=(0, 0, 256, 192))
    enc = as_encoded(gpu.encode(img, "l2"), "gpu")
    assert unpack(enc.data).variant & CUDA_CODED
    assert next(gpu.models[gpu.names.index("l2")].parameters()).is_cuda      # the model that coded it
    dec = as_decoded(gpu.decode(enc.data), "gpu")
    assert dec.pixels.shape == img.shape and enc.measures.enc_net_s > 0 and dec.measures.dec_net_s > 0
    cpu = sub.make_codec()
    with pytest.raises(DeviceMismatch, match="--device cuda"):
        decode(cpu, enc.data)


@cuda
def test_a_cuda_run_is_labelled_cuda_and_verifies_on_cuda(image_folder, tmp_path):
    res = run_benchmark("noise_hyperprior", f"folder:{image_folder}", [0.3, 0.6], reports_dir=tmp_path,
                        progress=False, device="cuda")
    assert all(r["device"].startswith("cuda (") for r in res.rows if r["status"] == "ok")
    out = verify_dataset(tmp_path, f"folder:{image_folder}")
    assert out and all(r["bit_identical"].split("/")[0] == r["bit_identical"].split("/")[1] for r in out)
