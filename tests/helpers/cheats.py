"""Planted cheats: codecs that try to get the original image to their decoder by a way other
than the file (test fixtures for tests/test_sandbox.py, never submissions).

Each encoder writes a 12-byte file: the image's height and width and 8 bytes of the SHA-256
of its pixels. Each decoder then looks for the original somewhere else: on the disk, in a
place the encoder left it, in another process's memory, on a local TCP port, and one writes
into the reports. A decoder that finds nothing raises; one that finds the original returns it
(MS-SSIM 1 at ~0.0005 bpp: the top of every leaderboard). Without the sandbox each of them
works (the tests show it), so the sandbox is what stops them.
"""

from __future__ import annotations

COMMON = '''
import hashlib
import os
import struct
from pathlib import Path

import numpy as np

from bench.codec import Codec


def fingerprint(image):
    return hashlib.sha256(np.ascontiguousarray(image).tobytes()).digest()[:8]


class Cheat(Codec):
    def encode(self, image, point):
        self.leave(image)
        return struct.pack(">HH", *image.shape[:2]) + fingerprint(image)

    def declared_size(self, data):
        return struct.unpack(">HH", data[:4])

    def leave(self, image):
        pass
'''

#: A decoder that searches the disk (every folder it can list) for a PNG with the original's pixels.
DISK_SEARCH = COMMON + '''
from PIL import Image

SKIP = {"proc", "sys", "dev", "usr", "lib", "lib64", "bin", "sbin", "etc", ".venv", ".git", "site-packages", ".cache"}


class DiskSearch(Cheat):
    def decode(self, data):
        h, w = self.declared_size(data)
        roots = ["/tmp", "/work", str(Path.home()), "/root", "/data", "/"]
        for root in roots:
            for folder, dirs, files in os.walk(root):
                dirs[:] = [d for d in dirs if d not in SKIP]
                for name in files:
                    if name.endswith(".png"):
                        try:
                            with Image.open(os.path.join(folder, name)) as im:
                                if im.size != (w, h):
                                    continue
                                pixels = np.asarray(im.convert("RGB"))
                        except OSError:
                            continue
                        if fingerprint(pixels) == data[4:12]:
                            return pixels
        raise FileNotFoundError(f"no PNG with the original's pixels under {roots}")
'''

#: An encoder that leaves the pixels in a place (params: where = tmp, shm, home or submission)
#: and a decoder that picks them up there.
STASH = COMMON + '''
class Stash(Cheat):
    def _path(self, key):
        where = {"tmp": "/tmp", "shm": "/dev/shm", "home": os.path.expanduser("~"),
                 "submission": str(Path(__file__).parent)}[self.params["where"]]
        return Path(where) / f"stash-{key.hex()}.npy"

    def leave(self, image):
        np.save(self._path(fingerprint(image)), image)

    def decode(self, data):
        return np.load(self._path(data[4:12]))
'''

#: A decoder that reads other processes' memory through /proc for the original's pixels.
PROC_MEMORY = COMMON + '''
import re


class ProcMemory(Cheat):
    def encode(self, image, point):
        return super().encode(image, point) + np.ascontiguousarray(image).tobytes()[:32]

    def decode(self, data):
        h, w = self.declared_size(data)
        marker, size = data[12:44], h * w * 3
        pids = [os.getppid()] + sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
        for pid in dict.fromkeys(pids):
            if pid in (0, os.getpid()):
                continue
            try:
                maps = open(f"/proc/{pid}/maps").read().splitlines()
                mem = open(f"/proc/{pid}/mem", "rb", buffering=0)
            except OSError:
                continue
            with mem:
                for line in maps:
                    m = re.match(r"([0-9a-f]+)-([0-9a-f]+) rw.p", line)
                    if not m or int(m.group(2), 16) - int(m.group(1), 16) > 1 << 30:
                        continue
                    start, end = int(m.group(1), 16), int(m.group(2), 16)
                    try:
                        mem.seek(start)
                        chunk = mem.read(end - start)
                    except (OSError, OverflowError):
                        continue
                    at = chunk.find(marker)
                    while at >= 0:
                        if at + size <= len(chunk):
                            pixels = np.frombuffer(chunk[at:at + size], np.uint8).reshape(h, w, 3)
                            if fingerprint(pixels) == data[4:12]:
                                return pixels.copy()
                        at = chunk.find(marker, at + 1)
        raise FileNotFoundError(f"the original's pixels are in no memory this process can read (pids {pids[:8]})")
'''

#: A decoder that asks a local TCP server (params: port) for the original.
NETWORK = COMMON + '''
import socket


class Network(Cheat):
    def decode(self, data):
        h, w = self.declared_size(data)
        with socket.create_connection(("127.0.0.1", self.params["port"]), timeout=10) as s:
            s.sendall(data[4:12])
            buf = b""
            while len(buf) < h * w * 3:
                part = s.recv(1 << 20)
                if not part:
                    break
                buf += part
        return np.frombuffer(buf, np.uint8).reshape(h, w, 3)
'''

#: A decoder that writes into the reports (params: reports, the run's reports folder), then
#: decodes nothing useful.
WRITE_REPORTS = COMMON + '''
class WriteReports(Cheat):
    def decode(self, data):
        h, w = self.declared_size(data)
        (Path(self.params["reports"]) / "planted.txt").write_text("a decoder wrote this")
        return np.zeros((h, w, 3), np.uint8)
'''
