"""Devices (bench/device.py, ``--device``): labels, refusals before any job, files that say
which kind of device coded them, verify on a machine without that device, and the GPU
path's protocol (issue #34).

Most of the GPU path is checked here on the CPU, with the device passed in: which device a
tensor is made on (a ``meta`` tensor stands for a GPU one), where a model is after each
call, the cache key, labels, the memory ceiling against the device's start-up, warm-up out
of the times, a device failure stopping the run, and, with torch.cuda's calls recorded
instead of run, which device and stream the clock and the start-up use. The ``test_cuda_*``
tests run the real thing and skip without a GPU; ``make gpu-check`` runs them with the whole
GPU path on a GPU machine and fails if any of them skips there."""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from bench import device as dev
from bench.cachekey import run_hash
from bench.cli import main
from bench.codec import BitstreamError, Codec, as_decoded, as_encoded
from bench.codecs import learned
from bench.codecs.learned import CUDA_CODED
from bench.codecs.variable_rate import AtLambda
from bench.complexity import PartCost, gated_costs, hyperprior_costs
from bench.container import pack, unpack
from bench.device import (
    Clock,
    DeviceError,
    DeviceFailure,
    DeviceMismatch,
    check_device,
    device_failure,
    device_label,
    identity_tag,
    jobs_on,
    network_clock,
)
from bench.limits import job_memory
from bench.paths import REPO_ROOT
from bench.progress import RunProgress
from bench.results import read_csv, write_csv
from bench.run import _chosen, run_benchmark
from bench.runner import Runner
from bench.sandbox import policy, worker
from bench.sandbox.client import WorkerFailed
from bench.submission import get_submission
from bench.verify import _run_device, verify_dataset
from tests.helpers.coding import decode, encode
from tests.helpers.images import kodak_crop

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (make gpu-check)")
#: Every device a test of the device-independent path runs on; "cuda" skips without a GPU.
ON_DEVICES = ["cpu", pytest.param("cuda", marks=cuda)]
POINTS = {"noise_hyperprior": "l2", "ecg_hyperprior": 2.0}


@pytest.fixture
def coding_flags():
    """torch's global coding flags, put back after the test."""
    saved = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32,
             torch.backends.cuda.matmul.allow_tf32, torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled())
    yield
    (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32,
     torch.backends.cuda.matmul.allow_tf32) = saved[:4]
    torch.use_deterministic_algorithms(saved[4], warn_only=saved[5])


def _models_on(codec, device: str) -> bool:
    want = torch.device(device)
    return all(p.device == want for m in codec._loaded() for p in [*m.parameters(), *m.buffers()])


# ----------------------------------------------------------------------------- labels, refusals
def test_labels_say_where_the_networks_ran():
    assert device_label("cpu", 1) == "cpu (1 threads)" and device_label("cpu", 2) == "cpu (2 threads)"


def test_unknown_and_missing_devices_are_refused_with_what_to_do():
    with pytest.raises(DeviceError, match="unknown device 'tpu'"):
        check_device("tpu")
    with pytest.raises(DeviceError, match="unknown device"):
        check_device("cuda:x")
    assert check_device("cpu") == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="(no CUDA device|CPU-only wheel).*--device cpu"):
            check_device("cuda")


def test_a_cpu_only_wheel_is_named_with_how_to_install_a_gpu_build(monkeypatch, capsys):
    """Finding 13: set-up with DEVICE=cuda checks the installed wheel (nothing downloaded)."""
    monkeypatch.setattr(torch.version, "cuda", None)
    problem = dev.cuda_problem()
    assert "CPU-only wheel" in problem and "--index-url https://download.pytorch.org/whl/cu" in problem
    with pytest.raises(DeviceError, match="CPU-only wheel"):
        check_device("cuda")
    assert dev.main(["--check-cuda"]) == 1
    assert "DEVICE=cuda: the installed torch" in capsys.readouterr().err


def test_a_gpu_wheel_without_a_gpu_says_so(monkeypatch, capsys):
    monkeypatch.setattr(torch.version, "cuda", "12.6")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert "sees no CUDA device" in dev.cuda_problem() and "nvidia-smi" in dev.cuda_problem()
    assert dev.main(["--check-cuda"]) == 1


def test_make_setup_checks_the_wheel_only_when_cuda_is_asked_for():
    def dry(*extra: str) -> str:
        return subprocess.run(["make", "-n", "setup", *extra], cwd=REPO_ROOT, capture_output=True, text=True,
                              check=True).stdout

    assert "bench.device --check-cuda" in dry("DEVICE=cuda") and "bench.device --check-cuda" in dry("DEVICE=cuda:1")
    assert "--check-cuda" not in dry() and "--check-cuda" not in dry("DEVICE=cpu")


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


def _fake_gpus(monkeypatch, names: list[str]) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: len(names))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: names[torch.device(d).index or 0])


def test_a_gpu_row_verifies_only_on_the_gpu_model_that_coded_it(monkeypatch):
    """Finding 8, the guard: a row decodes on a GPU of the model it names, not on another."""
    _fake_gpus(monkeypatch, ["NVIDIA A100-SXM4-80GB", "NVIDIA H200"])
    assert _run_device({"device": "cuda (NVIDIA H200)"}) == "cuda:1"
    assert _run_device({"device": "cuda (NVIDIA A100-SXM4-80GB)"}) == "cuda:0"
    assert _run_device({"device": "cuda (NVIDIA L4)"}) is None              # refused: another GPU model
    assert _run_device({"device": "cpu (2 threads)"}) == "cpu"


# ----------------------------------------------------------------------------- 1: start-up before the ceiling
class _Recorder(Codec):
    devices = ("cpu", "cuda")

    def __init__(self, log: list) -> None:
        super().__init__({})
        self.log = log

    def place(self, device: str) -> None:
        self.log.append(("place", device))
        super().place(device)

    def encode(self, image, point):
        self.log.append(("encode", self.device))
        return b"x"

    def decode(self, data):
        self.log.append(("decode", self.device))
        return np.zeros((2, 2, 3), np.uint8)

    def estimate(self, image, point):
        self.log.append(("estimate", self.device))


def test_the_device_starts_before_the_jobs_memory_ceiling(monkeypatch):
    """Finding 1: the worker places the codec (which starts CUDA: tens of GB of address space)
    before it enters the job's ceiling, and a CUDA job's ceiling is none."""
    log: list = []

    def ceiling(pixels, name, threads=1, device="cpu"):
        log.append(("ceiling", device))
        return job_memory(pixels, name, threads, device)

    monkeypatch.setattr(worker, "job_memory", ceiling)
    threads = torch.get_num_threads()
    image = np.zeros((2, 2, 3), np.uint8).tobytes()
    for op, blob in (("encode", image), ("estimate", image), ("decode", b"file")):
        log.clear()
        codec = _Recorder(log)
        req = {"point": 1, "shape": [2, 2], "threads": threads, "device": "cuda:1", "what": op, "expected": [2, 2]}
        getattr(worker, op)(codec, req, [blob], "rec")
        assert log == [("place", "cuda:1"), ("ceiling", "cuda:1"), (op, "cuda:1")], op


def test_a_gpu_job_runs_without_an_address_space_ceiling():
    before = resource.getrlimit(resource.RLIMIT_AS)
    with job_memory(10**6, "job", 1, "cuda:0") as ceiling:
        assert ceiling is None and resource.getrlimit(resource.RLIMIT_AS) == before
    with job_memory(10**6, "job", 1, "cpu") as ceiling:      # the CPU keeps its ceiling
        assert ceiling is not None and resource.getrlimit(resource.RLIMIT_AS)[0] == ceiling
    assert resource.getrlimit(resource.RLIMIT_AS) == before


def test_placing_a_learned_codec_starts_the_gpu_then_moves_every_model(monkeypatch):
    log: list = []
    monkeypatch.setattr(learned, "start_cuda", lambda d: log.append(("start", d)))
    codec = get_submission("noise_hyperprior").make_codec()
    monkeypatch.setattr(codec, "_placed", lambda m: log.append(("move", codec.device, id(m))) or m)
    codec.place("cuda:1")
    assert log[0] == ("start", "cuda:1")
    assert log[1:] == [("move", "cuda:1", id(m)) for m in codec.models] and codec.device == "cuda:1"


# ----------------------------------------------------------------------------- 2, 3, 4: tensors where the model is
class _Part(nn.Module):
    """Stands for a network: records the device of its input, returns a tensor there."""

    def __init__(self, seen: list) -> None:
        super().__init__()
        self.seen = seen

    def forward(self, x):
        self.seen.append(x.device)
        return torch.zeros(1, 4, 2, 2, device=x.device)


class _OnMeta(nn.Module):
    """A model whose weights are on the ``meta`` device (a stand-in for a GPU), with recording parts."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list = []
        self.w = nn.Parameter(torch.zeros(3, device="meta"))
        self.g_a, self.h_a, self.h_s, self.g_s = (_Part(self.seen) for _ in range(4))

    def forward(self, x, lmbda):
        self.seen += [x.device, lmbda.device]
        return {}


def test_complexity_counts_where_the_model_is(monkeypatch):
    """Finding 2: after GPU jobs the models are on the GPU; the counting inputs are made there."""
    import bench.complexity as cx
    from bench.codecs import variable_rate

    counted: list = []
    monkeypatch.setattr(cx, "count", lambda module, *inputs: counted.extend(i.device for i in inputs) or PartCost(0, 0))
    model = _OnMeta()
    assert set(hyperprior_costs(model, 64, 64)) == {"g_a", "h_a", "h_s", "g_s"}
    assert len(model.seen) == 2 and len(counted) == 4
    assert all(d == torch.device("meta") for d in model.seen + counted)
    model.seen.clear()
    monkeypatch.setattr(cx, "last_forward_costs", lambda m: "costs")
    assert gated_costs(model, torch.zeros(1, 3, 64, 64, device="meta"), 2.0) == "costs"
    assert model.seen == [torch.device("meta")] * 2                       # x and λ
    codec = get_submission("ecg_hyperprior").make_codec()
    seen = []
    monkeypatch.setattr(variable_rate, "gated_costs", lambda m, x, lmbda: seen.append(x.device) or SimpleNamespace(
        totals=lambda: {"dense_enc_macs": 1, "dense_dec_macs": 1}))
    monkeypatch.setattr(codec, "model", model)
    codec.complexity(2.0, 64, 64)
    assert seen == [torch.device("meta")]


def test_the_estimates_lambda_is_made_where_the_image_is():
    """Finding 4: a variable-rate model's estimate builds λ on the image's device."""
    inner = _OnMeta()
    AtLambda(inner, 2.0)(torch.zeros(1, 3, 8, 8, device="meta"))
    assert inner.seen == [torch.device("meta")] * 2


@pytest.mark.parametrize("device", ON_DEVICES)
@pytest.mark.parametrize("name", list(POINTS))
def test_models_stay_on_the_codecs_device_through_every_call(name, device):
    """Findings 2 and 3: encode, estimate, decode and complexity each leave every model on the
    codec's device (the model that coded the image included), and complexity works there."""
    codec = get_submission(name).make_codec()
    codec.place(check_device(device))
    img = kodak_crop(box=(0, 0, 96, 64))
    enc = as_encoded(codec.encode(img, POINTS[name]), name)
    assert _models_on(codec, codec.device)
    assert codec.estimate(img, POINTS[name]) is not None and _models_on(codec, codec.device)
    dec = as_decoded(codec.decode(enc.data), name)
    assert dec.pixels.shape == img.shape and _models_on(codec, codec.device)
    c = codec.complexity(POINTS[name], 64, 96)
    assert c.enc_macs > 0 and _models_on(codec, codec.device)
    assert bool(unpack(enc.data).variant & CUDA_CODED) == device.startswith("cuda")
    codec.place("cpu")                                        # back: the models are shared in a process
    assert _models_on(codec, "cpu")


# ----------------------------------------------------------------------------- 5, 7: current device, stream, flags
class _FakeCuda:
    """torch.cuda's timing calls, recorded instead of run."""

    def __init__(self, log: list) -> None:
        self.log = log
        fake = self

        class Event:
            def __init__(self, enable_timing=False):
                self.stream = None

            def record(self, stream=None):
                self.stream = stream
                fake.log.append(("record", stream))

            def elapsed_time(self, other):
                return 4.0

        class DeviceContext:
            def __init__(self, d):
                self.d = torch.device(d)

            def __enter__(self):
                fake.log.append(("current", self.d))

            def __exit__(self, *exc):
                fake.log.append(("restored", self.d))

        self.Event, self.device = Event, DeviceContext

    def current_stream(self, d=None):
        self.log.append(("stream of", torch.device(d)))
        return f"stream of {torch.device(d)}"

    def synchronize(self, d=None):
        self.log.append(("synchronize", torch.device(d)))


def test_the_clock_records_on_the_chosen_gpus_current_stream(monkeypatch):
    """Finding 5: cuda:N is the current device while the clock runs, its events go on that
    device's current stream, and it is synchronised before they are read."""
    log: list = []
    fake = _FakeCuda(log)
    for name in ("Event", "device", "current_stream", "synchronize"):
        monkeypatch.setattr(torch.cuda, name, getattr(fake, name))
    net = nn.Identity()
    with network_clock([net], "cuda:1") as clock:
        net(torch.zeros(1))
        net(torch.zeros(1))
    gpu1 = torch.device("cuda:1")
    assert log[0] == ("current", gpu1) and log[-1] == ("restored", gpu1)
    assert [e for e in log if e[0] == "record"] == [("record", "stream of cuda:1")] * 4
    assert {e[1] for e in log if e[0] == "synchronize"} == {gpu1}
    assert log[-2] == ("synchronize", gpu1)                      # the last sync comes before the events are read
    assert clock.net_s == pytest.approx(2 * 4.0 / 1000) and clock.cuda


def test_starting_a_gpu_makes_it_current_and_sets_the_coding_flags(monkeypatch, coding_flags):
    """Findings 5 and 7: the device is made current and its context created, with cuDNN
    deterministic, no autotuning, TF32 off."""
    log: list = []
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: log.append(("set", torch.device(d))))
    monkeypatch.setattr(dev, "_create_context", lambda d: log.append(("context", d)))
    torch.backends.cudnn.benchmark = torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.deterministic = False
    dev.start_cuda("cuda:1")
    assert log == [("set", torch.device("cuda:1")), ("context", "cuda:1")]
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
    assert torch.are_deterministic_algorithms_enabled()


# ----------------------------------------------------------------------------- 9: warm-up and copies out of the times
def test_the_network_clock_times_the_modules_not_the_rest():
    class Slow(nn.Module):
        def forward(self, x):
            time.sleep(0.05)
            return x

    slow = Slow()
    t0 = time.perf_counter()
    with network_clock([slow], "cpu") as clock:
        slow(torch.zeros(1))
        time.sleep(0.05)                                  # outside the module: not counted
    total = time.perf_counter() - t0
    assert 0.05 <= clock.net_s <= total - 0.05 and clock.inside_s == clock.net_s
    assert clock.coder_s(total) == pytest.approx(total - clock.net_s) and clock.copies() is None


def test_gpu_copies_are_timed_apart_from_the_coder(monkeypatch):
    monkeypatch.setattr(torch.cuda, "synchronize", lambda d=None: None)
    clock = Clock("cuda:0")
    slow = torch.zeros(2)
    monkeypatch.setattr(torch.Tensor, "cpu", lambda self: time.sleep(0.05) or slow)
    assert clock.to_host(torch.ones(2)) is slow
    assert clock.copy_s >= 0.05 and clock.copies() == clock.copy_s
    assert clock.coder_s(1.0) == pytest.approx(1.0 - clock.copy_s)


@pytest.mark.parametrize("name", list(POINTS))
def test_warm_up_runs_once_per_network_and_size_outside_the_times(name, monkeypatch):
    """Finding 9: on a warmed-up kind of device the first job of a network and padded size
    runs the network once, untimed; the job's own network and coder seconds leave it out.
    (The warm-up is a forward pass, which coding never calls: a slow one shows where it runs.)"""
    monkeypatch.setattr(dev, "WARM_UP_KINDS", ("cpu", "cuda"))
    codec = get_submission(name).make_codec()
    calls = []

    def slow_forward(self, x, *rest):
        calls.append(tuple(x.shape))
        time.sleep(WARM)
        return {}
    WARM = 1.0
    _, model = codec._for_point(POINTS[name])        # the hyperprior, or the variable-rate model at one λ
    monkeypatch.setattr(type(model), "forward", slow_forward)
    small, other = kodak_crop(box=(0, 0, 96, 64)), kodak_crop(box=(0, 0, 160, 128))
    t0 = time.perf_counter()
    enc = as_encoded(codec.encode(small, POINTS[name]), name)
    wall = time.perf_counter() - t0
    assert wall >= WARM and len(calls) == 1                            # the warm-up ran...
    assert enc.measures.enc_net_s + enc.measures.enc_coder_s <= wall - WARM + 0.01   # ...outside the job's times
    dec = as_decoded(codec.decode(enc.data), name)                     # same network, same size: warm
    assert len(calls) == 1
    codec.encode(other, POINTS[name])                                   # another size: once more
    assert calls == [(1, 3, 64, 128), (1, 3, 128, 192)]
    assert enc.measures.enc_copy_s is None and dec.measures.dec_copy_s is None   # no copies on the CPU


def test_the_cpu_does_not_warm_up():
    codec = get_submission("noise_hyperprior").make_codec()
    codec.encode(kodak_crop(box=(0, 0, 96, 64)), "l2")
    assert not codec._warm


# ----------------------------------------------------------------------------- 8, 11, 12: key, jobs, labels
def _identity(**changes) -> dict:
    return {"gpu": "NVIDIA H200", "capability": "9.0", "cuda": "13.0", "cudnn": "92400", "torch": "2.14.1"} | changes


def test_the_cache_key_tells_gpus_and_their_libraries_apart():
    """Finding 8: each GPU model, capability, CUDA, cuDNN or torch version gets its own run hash;
    the CPU's keys are what they always were."""
    assert run_hash("abc") == "abc" and run_hash("abc", "cpu", False) == "abc+nosandbox"
    assert dev.device_identity("cpu") == {} and identity_tag({}) == ""
    base = run_hash("abc", "cuda:0", True, identity_tag(_identity()))
    assert base.startswith("abc+cuda-") and base == run_hash("abc", "cuda:1", True, identity_tag(_identity()))
    others = [_identity(gpu="NVIDIA A100-SXM4-80GB"), _identity(capability="8.0"), _identity(cudnn="91002"),
              _identity(torch="2.15.0"), _identity(cuda="12.6")]
    keys = {run_hash("abc", "cuda:0", True, identity_tag(i)) for i in others}
    assert len(keys) == len(others) and base not in keys


def test_the_identity_is_read_from_the_chosen_gpu(monkeypatch):
    asked = []
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda d: asked.append(torch.device(d)) or
                        SimpleNamespace(name="NVIDIA H200", major=9, minor=0))
    ident = dev.device_identity("cuda:1")
    assert asked == [torch.device("cuda:1")] and ident["gpu"] == "NVIDIA H200" and ident["capability"] == "9.0"
    assert ident["cudnn"] == str(torch.backends.cudnn.version()) and ident["torch"] == torch.__version__


def test_a_gpu_runner_keys_its_cache_by_the_gpu_and_runs_one_job_at_a_time(monkeypatch, tmp_path):
    """Findings 8 and 11, in the runner: the run hash carries the identity, and JOBS=2 on a
    GPU runs one job at a time, saying so."""
    import bench.runner as runner_mod

    fake = SimpleNamespace(info=lambda: SimpleNamespace(devices=("cpu", "cuda"), versions={"torch": "x"}))
    monkeypatch.setattr(runner_mod, "check_device", lambda d: "cuda:0")
    monkeypatch.setattr(runner_mod, "remote_codec", lambda *a, **k: fake)
    monkeypatch.setattr(runner_mod, "device_identity", lambda d: _identity())
    notes: list[str] = []
    sub = get_submission("noise_hyperprior")
    r = Runner(sub, [], tmp_path, jobs=2, progress=False, log=notes.append, device="cuda")
    assert r.jobs == 1 and any("one job at a time" in n for n in notes)
    assert r.content_hash.endswith("+cuda-" + identity_tag(_identity()))
    assert jobs_on("cpu", 2) == 2 and jobs_on("cuda:3", 4) == 1


def test_a_row_never_takes_one_records_label_for_all():
    """Finding 12: a row's label is its own records' label; records that differ are all named."""
    def sel(*labels):
        return SimpleNamespace(chosen={f"im{i}": {"device": lb} for i, lb in enumerate(labels)})

    assert _chosen([sel("cuda (NVIDIA H200)", "cuda (NVIDIA H200)")], "device", "cpu") == "cuda (NVIDIA H200)"
    assert _chosen([sel("cpu (1 threads)", "cpu (2 threads)")], "device", "cpu") == "cpu (1 threads) + cpu (2 threads)"
    assert _chosen([sel()], "device", "cpu (4 threads)") == "cpu (4 threads)"


# ----------------------------------------------------------------------------- 10: a GPU failure stops the run
def _bare_runner(device: str) -> Runner:
    r = Runner.__new__(Runner)
    r.device, r.failures, r.failed_images = device, [], set()
    r.progress, r.log = RunProgress("x", enabled=False), lambda m: None
    return r


def test_a_gpu_out_of_memory_stops_the_run_instead_of_dropping_the_image():
    """Finding 10: what the codec's process reports for a CUDA OOM (a MemoryError with torch's
    message) or a CUDA error fails the run loudly; a job over its CPU memory ceiling still
    leaves only its image out."""
    oom = torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    assert device_failure(oom) and device_failure(MemoryError(str(oom)))
    assert device_failure(WorkerFailed("x (decoder): RuntimeError: CUDA error: an illegal memory access"))
    assert not device_failure(MemoryError("kodim01: ran out of memory under the job's ceiling"))
    r = _bare_runner("cuda:0")
    with pytest.raises(DeviceFailure, match="rather than leave kodim01 out"):
        r._failed("kodim01", "l2", MemoryError(str(oom)))
    assert not r.failed_images
    assert r._failed("kodim02", "l2", MemoryError("ran out of memory under the job's ceiling"))[0] == "kodim02"
    assert r.failed_images == {"kodim02"}


def test_a_gpu_error_while_decoding_is_not_called_a_bad_file(monkeypatch):
    codec = get_submission("noise_hyperprior").make_codec()
    data = encode(codec, kodak_crop(box=(0, 0, 96, 64)), "l2")
    model = codec.models[codec.names.index("l2")]

    def broken(*a, **k):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")
    monkeypatch.setattr(model, "decompress", broken)
    with pytest.raises(RuntimeError, match="CUDA error") as e:
        codec.decode(data)
    assert not isinstance(e.value, BitstreamError)          # a bad file leaves its image out; this stops the run


# ----------------------------------------------------------------------------- sandbox, gpu-check
def test_a_gpu_worker_sees_the_device_nodes_and_sys(monkeypatch):
    nodes = ["/dev/nvidia-uvm", "/dev/nvidia0", "/dev/nvidiactl", "/dev/nvidia-caps"]
    monkeypatch.setattr(policy.glob, "glob", lambda pat: nodes if pat == "/dev/nvidia*" else [])
    monkeypatch.setattr(policy, "bwrap_path", lambda: "bwrap")          # the command line only: nothing runs
    args = policy._gpu_binds()
    assert args[:3] == ["--ro-bind", "/sys", "/sys"]
    for n in nodes:
        assert ["--dev-bind", n, n] == args[args.index(n) - 1: args.index(n) + 2]
    env = {"PATH": "/usr/bin"}
    with_gpu = policy.bwrap_command(policy.Policy((), gpu=True), ["true"], env)
    without = policy.bwrap_command(policy.Policy(()), ["true"], env)
    assert "/dev/nvidia0" in with_gpu and "/dev/nvidia0" not in without


def test_gpu_check_without_a_gpu_says_so_and_succeeds(monkeypatch, capsys, tmp_path):
    """Finding 6: the script a GPU machine runs; here it skips, exit 0, and writes nothing."""
    sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
    try:
        import gpu_check
    finally:
        sys.path.remove(str(REPO_ROOT / "benchmarks"))
    monkeypatch.setattr(dev, "cuda_problem", lambda: "torch sees no CUDA device")
    monkeypatch.setattr(gpu_check, "_gpu_present", lambda: False)
    out = tmp_path / "GPU_CHECK.md"
    assert gpu_check.main(["--out", str(out)]) == 0
    assert "no CUDA device on this machine" in capsys.readouterr().out and not out.exists()
    monkeypatch.setattr(gpu_check, "_gpu_present", lambda: True)       # a GPU torch cannot use: a failure
    assert gpu_check.main(["--out", str(out)]) == 1
    assert "has a GPU, but torch sees no CUDA device" in capsys.readouterr().err and not out.exists()
    assert gpu_check.JOBS == (1, 2) and gpu_check.PROBES == ("none", "estimate")


# ----------------------------------------------------------------------------- CUDA only
@cuda
def test_cuda_encode_runs_there_and_the_file_stays_there():
    sub = get_submission("noise_hyperprior")
    gpu = sub.make_codec()
    gpu.place(check_device("cuda"))
    img = kodak_crop(box=(0, 0, 256, 192))
    enc = as_encoded(gpu.encode(img, "l2"), "gpu")
    assert unpack(enc.data).variant & CUDA_CODED
    assert next(gpu.models[gpu.names.index("l2")].parameters()).is_cuda      # the model that coded it
    dec = as_decoded(gpu.decode(enc.data), "gpu")
    assert dec.pixels.shape == img.shape and enc.measures.enc_net_s > 0 and dec.measures.dec_net_s > 0
    assert enc.measures.enc_copy_s > 0 and dec.measures.dec_copy_s > 0
    again = sub.make_codec()
    again.place(check_device("cuda"))
    assert np.array_equal(as_decoded(again.decode(enc.data), "gpu").pixels, dec.pixels)   # decodes the same twice
    cpu = sub.make_codec()
    with pytest.raises(DeviceMismatch, match="--device cuda"):
        decode(cpu, enc.data)
    gpu.place("cpu")


@cuda
def test_cuda_start_makes_the_device_current_with_the_coding_flags(coding_flags):
    device = check_device(f"cuda:{torch.cuda.device_count() - 1}")
    before = torch.cuda.current_device()
    try:
        dev.start_cuda(device)
        assert torch.cuda.current_device() == torch.device(device).index and torch.cuda.is_initialized()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
        conv = nn.Conv2d(3, 8, 3).to(device)
        with network_clock([conv], device) as clock:
            conv(clock.to_device(torch.rand(1, 3, 256, 256)))
        assert clock.net_s > 0 and clock.inside_s >= clock.net_s * 0.5 and clock.copy_s > 0
    finally:
        torch.cuda.set_device(before)


@cuda
def test_cuda_warm_up_runs_once_per_network_and_size():
    codec = get_submission("ecg_hyperprior").make_codec()
    codec.place(check_device("cuda"))
    img = kodak_crop(box=(0, 0, 96, 64))
    codec.encode(img, 2.0)
    codec.encode(img, 4.0)                  # another λ, the same network and size
    assert len(codec._warm) == 1
    codec.place("cpu")


@cuda
def test_cuda_run_is_labelled_with_its_gpu_keyed_by_it_and_verifies(image_folder, tmp_path):
    res = run_benchmark("noise_hyperprior", f"folder:{image_folder}", [0.3, 0.6], reports_dir=tmp_path,
                        progress=False, device="cuda", jobs=2)
    label = device_label(check_device("cuda"), 0)
    assert all(r["device"] == label for r in res.rows if r["status"] == "ok")
    info = read_csv(res.run_dir / "rows.csv")
    assert info and all(r["device"] == label for r in info if r["status"] == "ok")
    run_json = (res.run_dir / "run.json").read_text()
    assert "+cuda-" in run_json and "device_identity" in run_json
    out = verify_dataset(tmp_path, f"folder:{image_folder}")
    assert out and all(r["bit_identical"].split("/")[0] == r["bit_identical"].split("/")[1] for r in out)

