"""What a sandboxed codec process can see, and the bubblewrap command line that enforces it.

A worker sees, read-only and at their usual paths: the system's programs and libraries
(``/usr`` and its links), the Python environment (the interpreter's prefix and the
virtual environment), this package (``bench/``), its submission folder and the folders of
the submissions its manifest names under ``[sandbox] submissions``, and, when the manifest
asks for it, the torch hub's checkpoints (``[sandbox] torch_hub = true``: compressai's
pretrained weights). It gets a private, empty ``/tmp`` (also ``$HOME``) and ``/dev/shm``,
its own ``/proc`` showing only its own processes, no network and no capabilities, and runs
as ``nobody``. Nothing else exists in it: not the datasets, not ``reports/``, not the
originals' cache, not the harness's processes.

bubblewrap (Debian's ``bubblewrap``) builds that view from namespaces; ``make setup``
installs it. Where namespaces are forbidden, ``--no-sandbox`` runs the same worker
processes without it, and every row says so.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from bench.paths import REPO_ROOT

PACKAGE_DIR = REPO_ROOT / "bench"
NOBODY = 65534
#: Files of /etc that programs read to start: the dynamic loader's cache, user and group names.
ETC_FILES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "nsswitch.conf", "passwd", "group", "localtime",
             "alternatives")
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
#: Variables a worker inherits from the harness (thread counts, limits, the kept heap); the
#: rest of the environment stays outside.
PASSED_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MALLOC_MMAP_MAX_",
              "MALLOC_TRIM_THRESHOLD_", "BENCH_MAX_PIXELS", "BENCH_JOB_MEMORY", "BENCH_THREADS",
              "CUDA_VISIBLE_DEVICES", "LANG")
HOW_TO_INSTALL = ("install it (`apt-get install bubblewrap`, which `make setup` runs), or run with --no-sandbox "
                  "(NO_SANDBOX=1 for make): every row it produces then says sandbox=off")


class SandboxUnavailable(RuntimeError):
    """bubblewrap is missing or cannot build a sandbox on this machine (the message says what to do)."""


@dataclass(frozen=True)
class Policy:
    """The read-only paths a worker sees (each at its own path) and whether it needs the GPU."""

    read_only: tuple[Path, ...]
    gpu: bool = False

    def describe(self) -> str:
        return ", ".join(str(p) for p in self.read_only)


def torch_home() -> Path:
    """torch's home as torch computes it (``$TORCH_HOME``, else ``$XDG_CACHE_HOME/torch``,
    else ``~/.cache/torch``), without importing torch."""
    if os.environ.get("TORCH_HOME"):
        return Path(os.environ["TORCH_HOME"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "torch"


def python_paths() -> list[Path]:
    """The interpreter's installation and the virtual environment, resolved."""
    paths = {Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve(), Path(sys.executable).resolve().parent}
    return sorted(p for p in paths if not any(p.is_relative_to(s) for s in map(Path, SYSTEM_DIRS)))


def _outermost(paths: list[Path]) -> tuple[Path, ...]:
    """The paths none of the others contains (a folder's bind already shows what it holds)."""
    unique = list(dict.fromkeys(paths))
    return tuple(p for p in unique if not any(p != q and p.is_relative_to(q) for q in unique))


def policy_for(roots: list[Path], torch_hub: bool = False, gpu: bool = False) -> Policy:
    """The allow-list of a submission whose code and weights live in ``roots``."""
    paths = [*python_paths(), PACKAGE_DIR, *(Path(r).resolve() for r in roots)]
    if torch_hub and (torch_home() / "hub" / "checkpoints").is_dir():
        paths.append((torch_home() / "hub" / "checkpoints").resolve())
    return Policy(_outermost(paths), gpu)


def worker_env() -> dict[str, str]:
    """The environment a worker starts with: a fixed base, the passed-through variables and
    ``TORCH_HOME`` (so torch looks for hub weights where the harness would)."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp", "TMPDIR": "/tmp", "PYTHONDONTWRITEBYTECODE": "1",
           "PYTHONNOUSERSITE": "1", "PYTHONPATH": str(REPO_ROOT), "TORCH_HOME": str(torch_home())}
    return env | {k: os.environ[k] for k in PASSED_ENV if k in os.environ}


def _system_binds() -> list[str]:
    args: list[str] = []
    for d in SYSTEM_DIRS:
        if os.path.islink(d):
            args += ["--symlink", os.readlink(d), d]
        elif os.path.isdir(d):
            args += ["--ro-bind", d, d]
    for name in ETC_FILES:
        if os.path.lexists(f"/etc/{name}"):
            args += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
    if os.path.isdir("/sys/devices/system/cpu"):          # CPU topology: thread pools size themselves from it
        args += ["--ro-bind", "/sys/devices/system/cpu", "/sys/devices/system/cpu"]
    return args


def _gpu_binds() -> list[str]:
    """What a CUDA worker needs besides its libraries: /sys read-only (the driver finds its
    GPUs, their PCI and NUMA topology through it), NVIDIA's device nodes (``nvidiactl``,
    ``nvidia-uvm``, one per GPU, ``nvidia-caps/`` for MIG) and the persistence daemon's socket
    where one runs. /proc/driver/nvidia comes with the worker's own /proc."""
    args = ["--ro-bind", "/sys", "/sys"]
    for node in sorted(glob.glob("/dev/nvidia*") + glob.glob("/dev/dri")):
        args += ["--dev-bind", node, node]
    for sock in ("/run/nvidia-persistenced", "/var/run/nvidia-persistenced"):
        if os.path.isdir(sock) and not os.path.islink(sock):
            args += ["--ro-bind", sock, sock]
            break
    return args


def bwrap_command(policy: Policy, argv: list[str], env: dict[str, str]) -> list[str]:
    """``argv`` under bubblewrap with ``policy``'s view and ``env`` as its whole environment."""
    args = [bwrap_path(), "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
            "--uid", str(NOBODY), "--gid", str(NOBODY), "--clearenv"]
    # the private folders first: a bound path below /tmp (a test's submission) must stay visible in it
    args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/dev/shm", "--tmpfs", "/tmp"]
    args += _system_binds()
    for p in policy.read_only:
        args += ["--ro-bind", str(p), str(p)]
    args += ["--chdir", "/tmp"]
    if policy.gpu:
        args += _gpu_binds()
    for k, v in env.items():
        args += ["--setenv", k, v]
    return [*args, "--", *argv]


def bwrap_path() -> str:
    path = shutil.which("bwrap")
    if path is None:
        raise SandboxUnavailable(f"submissions run sandboxed with bubblewrap (bwrap), which is not installed: "
                                 f"{HOW_TO_INSTALL}")
    return path


@cache
def check_available() -> str:
    """bubblewrap's version once it has built a sandbox here; SandboxUnavailable otherwise."""
    cmd = bwrap_command(Policy(()), ["/bin/true"], {})
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise SandboxUnavailable(f"bubblewrap could not start ({e}): {HOW_TO_INSTALL}") from None
    if done.returncode != 0:
        raise SandboxUnavailable(f"bubblewrap cannot build a sandbox on this machine ({done.stderr.strip()}): "
                                 f"namespaces may be forbidden here; {HOW_TO_INSTALL}")
    version = subprocess.run([bwrap_path(), "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    return version or "bubblewrap"
