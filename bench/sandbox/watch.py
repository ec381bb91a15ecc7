"""Names what the sandbox refused, so a failed job can say so.

bubblewrap enforces the view (:mod:`bench.sandbox.policy`): outside it a path does not
exist, a bound folder is read-only, there is no network and no other process. A submission
that tries one of those sees a bare ``No such file or directory`` or ``Connection refused``;
this audit hook (:func:`sys.addaudithook`, in the worker) notes each such attempt (reading or
listing outside the view, writing outside ``/tmp``, another process's ``/proc`` entry, a
connection, a signal) so that the job's error names it. It records, never blocks: the kernel
does the refusing, and code that sidesteps the hook is refused all the same.
"""

from __future__ import annotations

import os
import re
from typing import Any

#: Readable besides the view: what every process needs (the kernel's view decides the rest).
ALWAYS_READABLE = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/dev", "/tmp",
                   "/sys/devices/system/cpu")
WRITABLE = ("/tmp", "/dev/shm", "/dev/null", "/dev/stdout", "/dev/stderr", "/dev/tty")
PRIVATE = ("/tmp", "/dev/shm")          # each sandbox's own: what another process left there is not here
_PROC_PID = re.compile(r"^/proc/(\d+)(/|$)")
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_WRITE_EVENTS = {"os.mkdir", "os.remove", "os.rmdir", "os.rename", "os.truncate", "os.chmod", "os.chown",
                 "os.link", "os.symlink", "os.utime", "shutil.copyfile", "shutil.rmtree", "shutil.move"}
_LIST_EVENTS = {"os.listdir", "os.scandir", "glob.glob", "os.chdir"}
_NET_EVENTS = {"socket.connect", "socket.sendto", "socket.sendmsg", "socket.getaddrinfo"}
MAX_RECORDED = 20


def _under(path: str, roots: tuple[str, ...]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


class Watch:
    """The audit hook of one worker: ``view`` lists the folders bound into its sandbox."""

    def __init__(self, view: list[str]) -> None:
        self.view = tuple(os.path.normpath(v) for v in view)
        self.readable = self.view + ALWAYS_READABLE
        self.refused: list[str] = []
        self.pid = os.getpid()

    def take(self) -> list[str]:
        """The refusals noted since the last call."""
        out, self.refused = self.refused, []
        return out

    def _note(self, text: str) -> None:
        if len(self.refused) < MAX_RECORDED and text not in self.refused:
            self.refused.append(text)

    def _path(self, raw: Any) -> str | None:
        """The absolute path an access names; None for descriptors and for relative paths (the
        working directory is the private /tmp, where libraries probe relative names that were
        never there: noting those would bury the refusal that matters)."""
        if isinstance(raw, int) or raw is None:
            return None
        try:
            path = os.fsdecode(os.fspath(raw))
        except TypeError:
            return None
        return os.path.normpath(path) if path.startswith("/") else None

    def _readable(self, path: str) -> bool:
        m = _PROC_PID.match(path)
        if m:
            return int(m.group(1)) == self.pid
        if path == "/proc" or path.startswith("/proc/"):
            return True
        # the folders above a bound one exist (they lead to it) and show only what leads there
        return _under(path, self.readable) or any(r.startswith(path.rstrip("/") + "/") for r in self.view)

    def check(self, path: str, write: bool) -> None:
        private = _under(path, PRIVATE) and not _under(path, self.view)
        if write and (_under(path, self.view) or not _under(path, WRITABLE)):
            where = "read-only in the sandbox" if _under(path, self.view) else "outside the sandbox"
            self._note(f"write {path} ({where})")
        elif private and not os.path.exists(path if not write else os.path.dirname(path)):
            self._note(f"{'write' if write else 'read'} {path} (not in this sandbox: each codec process has its own, "
                       "empty /tmp and /dev/shm)")
        elif not write and not self._readable(path):
            what = "another process's entry in /proc" if _PROC_PID.match(path) else "outside the sandbox"
            self._note(f"read {path} ({what})")

    def hook(self, event: str, args: tuple) -> None:
        try:
            if event == "open":
                path = self._path(args[0])
                if path is not None:
                    mode, flags = args[1] or "", args[2] if len(args) > 2 and isinstance(args[2], int) else 0
                    self.check(path, any(c in mode for c in "wax+") or bool(flags & _WRITE_FLAGS))
            elif event in _LIST_EVENTS or event in _WRITE_EVENTS:
                path = self._path(args[0]) if args else None
                if path is not None:
                    self.check(path, event in _WRITE_EVENTS)
            elif event in _NET_EVENTS:
                address = args[:2] if event == "socket.getaddrinfo" else args[1] if len(args) > 1 else args
                self._note(f"network {address!r} (no network in the sandbox)")
            elif event in ("os.kill", "os.killpg") and args and args[0] not in (0, self.pid):
                self._note(f"signal to process {args[0]} (no other process in the sandbox)")
        except Exception:  # noqa: BLE001 - an audit hook must never break the code it watches
            pass
