"""The harness's side of a sandboxed codec: worker processes started on demand, requests
over their pipes, and the replies turned back into the codec contract's values.

:class:`RemoteCodec` holds one submission's encoder process and decoder process. They are
long-lived (torch and the models load once per process, not per job) and separate: the
decoder never sees an image, and neither can leave anything for the other except the file
the harness writes. A process that died or ran out of memory is replaced on the next request.
Each harness process (the main one, every joblib or Dask worker) keeps its own, in
:func:`remote_codec`.
"""

from __future__ import annotations

import atexit
import collections
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.codec import BitstreamError, Complexity, Decoded, Encoded, Estimate, JobMeasures
from bench.device import DeviceError, DeviceMismatch
from bench.sandbox.policy import Policy, bwrap_command, check_available, policy_for, worker_env
from bench.sandbox.wire import WireError, receive, send
from bench.submission import Submission, SubmissionError

#: What every failed job's message ends with when the sandbox refused something, or when the
#: codec's error is about a file or a connection (what a sandboxed process cannot reach).
RULES = ("encoder and decoder each see the Python environment, bench/ and their submission's folder "
         "read-only, and a private, empty /tmp; no datasets, no reports, no network, no other processes "
         "(docs/sandbox.md)")
_ENVIRONMENT_ERRORS = ("FileNotFoundError", "PermissionError", "OSError", "IsADirectoryError", "ConnectionError",
                       "ConnectionRefusedError", "NotADirectoryError", "ProcessLookupError", "gaierror")
STDERR_LINES = 30


class WorkerFailed(RuntimeError):
    """The codec raised something that is not a bad file, a device or memory: the job failed."""


class WorkerDied(RuntimeError):
    """A worker process ended without answering (a crash, a kill); the next request starts a new one."""


@dataclass(frozen=True)
class CodecInfo:
    """What the codec says of itself when its process starts: devices and library versions."""

    devices: tuple[str, ...]
    versions: dict[str, str]
    pid: int


_SPAWNER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bench-sandbox-spawner")


def _spawn(cmd: list[str]) -> subprocess.Popen:
    """Start ``cmd`` from one long-lived thread: bubblewrap's --die-with-parent follows the
    thread that started it, and a job may run on a short-lived one (Dask's)."""
    return _SPAWNER.submit(subprocess.Popen, cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, env=None if cmd[0] != sys.executable else _plain_env(),
                           cwd=None).result()


def _plain_env() -> dict[str, str]:
    """An unsandboxed worker's environment: the sandbox's, plus what finds the interpreter."""
    return worker_env() | {"HOME": os.environ.get("HOME", "/tmp"), "TMPDIR": os.environ.get("TMPDIR", "/tmp")}


def _message(error: dict[str, Any], who: str, sandboxed: bool) -> str:
    text = f"{who}: {error.get('type', 'Error')}: {error.get('message', '')}"
    refused = error.get("refused") or []
    if sandboxed and refused:
        text += f". The sandbox refused: {'; '.join(refused)}. Submissions run sandboxed: {RULES}"
    elif sandboxed and error.get("type") in _ENVIRONMENT_ERRORS:
        text += f" (submissions run sandboxed: {RULES})"
    return text


_KINDS = {"DeviceMismatch": DeviceMismatch, "BitstreamError": BitstreamError, "DeviceError": DeviceError,
          "SubmissionError": SubmissionError}


def _raise(error: dict[str, Any], who: str, sandboxed: bool) -> None:
    """The worker's error as the harness's exception: bad files, devices and manifests keep
    their types and messages (their callers name the file); anything else is a WorkerFailed
    that names the worker, the codec's exception and what the sandbox refused."""
    kind = error.get("kind", "")
    if kind == "MemoryError":
        raise MemoryError(error.get("message", ""))
    if kind in _KINDS and not error.get("refused"):
        raise _KINDS[kind](error.get("message", ""))
    raise _KINDS.get(kind, WorkerFailed)(_message(error, who, sandboxed))


class CodecProcess:
    """One worker process: a submission's codec in one role, sandboxed unless ``sandboxed`` is
    False. Started by the first request (or :meth:`hello`), again after it ended. Threads may
    share it: it serves one request at a time."""

    def __init__(self, sub: Submission, role: str, sandboxed: bool = True, gpu: bool = False) -> None:
        self.sub, self.role, self.sandboxed, self.gpu = sub, role, sandboxed, gpu
        self.who = f"{sub.name} ({role})"
        self._proc: subprocess.Popen | None = None
        self._stderr: collections.deque[str] = collections.deque(maxlen=STDERR_LINES)
        self._hello: dict[str, Any] | None = None
        self.started = 0                              # processes started so far (a replaced one counts)
        self._turn = threading.RLock()                # one request on the pipes at a time

    def policy(self) -> Policy:
        return policy_for(self.sub.sandbox_roots(), self.sub.torch_hub, self.gpu)

    def command(self) -> list[str]:
        argv = [sys.executable, "-m", "bench.sandbox.worker", self.role]
        if not self.sandboxed:
            return argv
        check_available()
        policy = self.policy()
        return bwrap_command(policy, argv + [str(p) for p in policy.read_only], worker_env())

    def _drain(self, proc: subprocess.Popen) -> None:
        for line in iter(proc.stderr.readline, b""):
            self._stderr.append(line.decode(errors="replace").rstrip())

    def _start(self) -> None:
        self._stderr.clear()
        proc = _spawn(self.command())
        threading.Thread(target=self._drain, args=(proc,), daemon=True).start()
        self._proc, self.started = proc, self.started + 1
        spec = {"name": self.sub.name, "codec_ref": self.sub.codec_ref, "root": str(self.sub.root),
                "params": self.sub.params}
        try:
            send(proc.stdin, {"op": "start", "submission": spec})
            hello, _ = receive(proc.stdout)
        except (WireError, OSError):
            self._died()
        if not hello.get("ok"):
            self.close()
            _raise(hello, self.who, self.sandboxed)
        self._hello = hello

    def hello(self) -> dict[str, Any]:
        """What the worker said when it started (its devices and versions); starts it if needed."""
        with self._turn:
            if self._proc is None or self._proc.poll() is not None:
                self._start()
            return self._hello

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def _died(self) -> None:
        proc, self._proc = self._proc, None
        code = proc.wait(timeout=30) if proc is not None else None
        tail = "\n".join(list(self._stderr)[-8:])
        raise WorkerDied(f"{self.who}: the worker process ended without answering (exit code {code})"
                         + (f"; its last output:\n{tail}" if tail else ""))

    def request(self, header: dict[str, Any], blobs: tuple[bytes, ...] = ()) -> tuple[dict[str, Any], list[bytes]]:
        """Send one request and wait for its reply; a failed request raises the codec's error."""
        with self._turn:
            self.hello()
            try:
                send(self._proc.stdin, header, blobs)
                reply, out = receive(self._proc.stdout)
            except (WireError, OSError):
                self._died()
            if not reply.get("ok") and reply.get("kind") == "MemoryError":
                self.close()                          # it ends itself: a fresh one takes the next request
        if not reply.get("ok"):
            _raise(reply, self.who, self.sandboxed)
        return reply, out

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        for stream in (proc.stdin, proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _pixels(reply: dict[str, Any], blob: bytes, who: str) -> np.ndarray:
    """uint8 pixels of the shape the reply states (checked against the blob's size)."""
    shape = tuple(int(v) for v in reply.get("shape", ()))
    if reply.get("dtype") != "uint8" or len(shape) != 3 or shape[2] != 3 or len(blob) != int(np.prod(shape)):
        raise BitstreamError(f"{who}: decoded to {reply.get('dtype')} {shape} ({len(blob)} bytes), "
                             "not 8-bit H×W×3 RGB")
    return np.frombuffer(blob, dtype=np.uint8).reshape(shape)


def _measures(reply: dict[str, Any]) -> JobMeasures:
    raw = reply.get("measures") or {}
    return JobMeasures.from_record({k: float(v) for k, v in raw.items() if isinstance(v, (int, float))})


class RemoteCodec:
    """A submission's codec behind two worker processes (encoder, decoder); the harness's
    handle on it. Requests carry the torch threads and device each job runs with."""

    def __init__(self, sub: Submission, sandboxed: bool = True, gpu: bool = False) -> None:
        self.sub, self.sandboxed = sub, sandboxed
        self.encoder = CodecProcess(sub, "encoder", sandboxed, gpu)
        self.decoder = CodecProcess(sub, "decoder", sandboxed, gpu)

    def info(self) -> CodecInfo:
        h = self.encoder.hello()
        return CodecInfo(tuple(h["devices"]), dict(h["versions"]), int(h["pid"]))

    def encode(self, image: np.ndarray, point: Any, threads: int = 1, device: str = "cpu",
               what: str = "") -> Encoded:
        img = np.ascontiguousarray(image, dtype=np.uint8)
        reply, out = self.encoder.request({"op": "encode", "point": point, "shape": list(img.shape[:2]),
                                           "threads": threads, "device": device, "what": what or self.sub.name},
                                          (img.tobytes(),))
        if len(out) != 1 or not out[0]:
            raise WorkerFailed(f"{self.encoder.who}: encode returned no bytes")
        return Encoded(out[0], _measures(reply))

    def decode(self, data: bytes, expected_hw: tuple[int, int] | None = None, threads: int = 1,
               device: str = "cpu", what: str = "") -> Decoded:
        reply, out = self.decoder.request({"op": "decode", "expected": list(expected_hw) if expected_hw else None,
                                           "threads": threads, "device": device, "what": what or self.sub.name},
                                          (bytes(data),))
        return Decoded(_pixels(reply, out[0] if out else b"", self.decoder.who), _measures(reply))

    def estimate(self, image: np.ndarray, point: Any, threads: int = 1, device: str = "cpu",
                 what: str = "") -> Estimate | None:
        img = np.ascontiguousarray(image, dtype=np.uint8)
        reply, out = self.encoder.request({"op": "estimate", "point": point, "shape": list(img.shape[:2]),
                                           "threads": threads, "device": device, "what": what or self.sub.name},
                                          (img.tobytes(),))
        if reply.get("none"):
            return None
        return Estimate(int(reply["bytes"]), _pixels(reply, out[0] if out else b"", self.encoder.who))

    def complexity(self, items: list[tuple[Any, int, int]]) -> list[Complexity | None]:
        """The codec's cost per (point, height, width), in one request."""
        reply, _ = self.encoder.request({"op": "complexity", "items": [list(i) for i in items]})
        return [None if c is None else Complexity(c["model"], c["enc_macs"], c["dec_macs"], c["params"],
                                                  c["decoder_bytes"], tuple(c["uncounted"]))
                for c in reply["items"]]

    def close(self) -> None:
        self.encoder.close()
        self.decoder.close()


#: The remote codecs of this process, most recently used last (a few at most: each holds two
#: processes with their models loaded).
_REMOTES: collections.OrderedDict[tuple, RemoteCodec] = collections.OrderedDict()
KEPT = 2


def remote_codec(sub: Submission, files_hash: str, sandboxed: bool = True, gpu: bool = False) -> RemoteCodec:
    """This process's remote codec for ``sub`` as its files are now (``files_hash``, from
    :meth:`~bench.submission.Submission.files_hash`: changed weights or code get new processes)."""
    key = (str(sub.root), sub.codec_ref, repr(sorted(sub.params.items())), files_hash, sandboxed, gpu)
    if key in _REMOTES:
        _REMOTES.move_to_end(key)
        return _REMOTES[key]
    remote = _REMOTES[key] = RemoteCodec(sub, sandboxed, gpu)
    while len(_REMOTES) > KEPT:
        _REMOTES.popitem(last=False)[1].close()
    return remote


@atexit.register
def _close_all() -> None:
    while _REMOTES:
        _REMOTES.popitem()[1].close()
