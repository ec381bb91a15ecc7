"""Submissions run sandboxed (bench/sandbox/): planted cheats fail, with the refusal named,
and honest codecs give the same bytes and rows with and without the sandbox.

Each cheat (tests/helpers/cheats.py) first runs without the sandbox, where it works (MS-SSIM 1
at 0.0005 bpp, or a file planted in the reports), so that its sandboxed run failing shows the
sandbox stopping it and not a broken cheat."""

from __future__ import annotations

import hashlib
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

from bench.data import DatasetError, load_image
from bench.results import read_csv
from bench.run import run_benchmark
from tests.helpers import cheats
from tests.helpers.images import crop_folder
from tests.helpers.manifests import write_submission

TARGETS = [0.3]


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    return crop_folder(tmp_path_factory.mktemp("sandbox") / "imgs")


class PixelServer:
    """A local TCP server that answers an 8-byte fingerprint with the original's pixels."""

    def __init__(self, folder: Path) -> None:
        self.pixels = {hashlib.sha256(im.pixels.tobytes()).digest()[:8]: im.pixels
                       for im in map(load_image, sorted(folder.glob("*.png")))}
        self.connections = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                key = conn.recv(8)
                conn.sendall(self.pixels.get(key, np.zeros(0, np.uint8)).tobytes())

    def close(self) -> None:
        self.sock.close()


def _cheat(tmp_path: Path, name: str, images: Path, server: PixelServer | None = None) -> tuple[Path, dict]:
    source, cls, params = {
        "disk": (cheats.DISK_SEARCH, "DiskSearch", {}),
        "tmp": (cheats.STASH, "Stash", {"where": "tmp"}),
        "shm": (cheats.STASH, "Stash", {"where": "shm"}),
        "home": (cheats.STASH, "Stash", {"where": "home"}),
        "submission": (cheats.STASH, "Stash", {"where": "submission"}),
        "proc": (cheats.PROC_MEMORY, "ProcMemory", {}),
        "network": (cheats.NETWORK, "Network", {"port": server.port if server else 0}),
        "reports": (cheats.WRITE_REPORTS, "WriteReports", {"reports": str(tmp_path / "reports")}),
    }[name]
    subs = tmp_path / "subs"
    write_submission(subs, "cheat", f"codec:{cls}", points=["x"], params=params, codec_source=source)
    (tmp_path / "reports").mkdir(exist_ok=True)
    return subs, params


def _run(tmp_path: Path, subs: Path, images: Path, sandboxed: bool, log: list[str]):
    return run_benchmark("cheat", f"folder:{images}", TARGETS, reports_dir=tmp_path / "reports", progress=False,
                         submissions_root=subs, sandboxed=sandboxed, log=log.append)


#: What each cheat's failed jobs must say: the sandbox's refusal, or the rule it ran into.
REFUSALS = {
    "disk": "no PNG with the original's pixels",
    "tmp": "The sandbox refused: read /tmp/stash-",
    "shm": "The sandbox refused: read /dev/shm/stash-",
    "home": "The sandbox refused: read /tmp/stash-",            # $HOME is the sandbox's own /tmp
    "submission": "The sandbox refused: write {subs}/cheat/stash-",
    "proc": "The sandbox refused: read /proc/1/maps (another process's entry in /proc)",
    "network": "The sandbox refused: network ('127.0.0.1', {port})",
    "reports": "The sandbox refused: write {reports}/planted.txt (not in this sandbox",
}


@pytest.mark.parametrize("name", list(REFUSALS))
def test_a_planted_cheat_works_without_the_sandbox_and_fails_in_it(tmp_path, images, name):
    server = PixelServer(images) if name == "network" else None
    try:
        subs, params = _cheat(tmp_path, name, images, server)
        open_log: list[str] = []
        res = _run(tmp_path / "open", subs, images, sandboxed=False, log=open_log)
        rows = [r for r in res.rows if r["status"] == "ok"]
        if name == "reports":
            assert (Path(params["reports"]) / "planted.txt").exists()
            (Path(params["reports"]) / "planted.txt").unlink()
        else:        # the cheat works: every image decoded exactly, at a few bytes each
            assert rows and all(r["msssim"] == 1.0 and r["bpp"] < 0.02 for r in rows), open_log
        assert all(r["sandbox"] == "off" for r in res.rows)
        connections = server.connections if server else 0
        log: list[str] = []
        with pytest.raises(DatasetError, match="every image failed to code"):
            _run(tmp_path / "boxed", subs, images, sandboxed=True, log=log)
        failed = [line for line in log if "job failed" in line]
        assert len(failed) == 3, log                          # each image's job failed ...
        want = REFUSALS[name].format(subs=subs, port=params.get("port"), reports=params.get("reports"))
        assert all(want in line and "submissions run sandboxed" in line.lower() for line in failed), failed[0]
        assert not list((tmp_path / "boxed").rglob("rows.csv"))     # ... and no row was written, ok or not
        assert not (Path(params.get("reports", tmp_path)) / "planted.txt").exists()
        if server:
            assert server.connections == connections            # the sandboxed decoder never got through
    finally:
        if server:
            server.close()


def _files(run_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run_dir / "cache").parts[1:]): p.read_bytes()
            for p in (run_dir / "cache").rglob("*.bin")}


def _comparable(rows: list[dict]) -> list[dict]:
    skip = {"sandbox", "date", "enc_s", "dec_s", "bitstreams", "file", "commit", "enc_net_s", "enc_coder_s",
            "dec_net_s", "dec_coder_s"}
    return [{k: v for k, v in r.items() if k not in skip} for r in rows]


@pytest.mark.parametrize("submission", ["webp", "noise_hyperprior"])
def test_an_honest_codec_gives_the_same_files_and_rows_with_and_without_the_sandbox(tmp_path, images, submission):
    runs = {}
    for sandboxed in (True, False):
        res = run_benchmark(submission, f"folder:{images}", [0.3, 1.0], jobs=2, progress=False,
                            reports_dir=tmp_path / str(sandboxed), sandboxed=sandboxed)
        runs[sandboxed] = res
        assert {r["sandbox"] for r in read_csv(res.run_dir / "rows.csv")} == {"bwrap" if sandboxed else "off"}
    boxed, open_ = (_files(runs[s].run_dir) for s in (True, False))
    assert boxed and boxed == open_
    assert _comparable(read_csv(runs[True].run_dir / "rows.csv")) == \
        _comparable(read_csv(runs[False].run_dir / "rows.csv"))
    assert _comparable(read_csv(runs[True].run_dir / "per_image.csv")) == \
        _comparable(read_csv(runs[False].run_dir / "per_image.csv"))


def test_threads_sharing_a_sandboxed_codec_each_get_their_own_reply(images):
    """The perceptual pass decodes from two threads through one decoder process: each request
    waits its turn on the pipes, so every thread gets the pixels of the file it sent."""
    from concurrent.futures import ThreadPoolExecutor

    from bench.sandbox.client import RemoteCodec
    from bench.submission import get_submission

    remote = RemoteCodec(get_submission("jpeg"))
    try:
        pics = [load_image(p).pixels for p in sorted(images.glob("*.png"))]
        files = [remote.encode(px, q).data for px in pics for q in (20, 60, 95)]
        alone = [remote.decode(f, None).pixels for f in files]
        assert len({a.tobytes() for a in alone}) == len(files)          # every file decodes to its own pixels
        with ThreadPoolExecutor(4) as pool:
            shared = list(pool.map(lambda f: remote.decode(f, None).pixels, files * 4))
        assert all(np.array_equal(s, alone[i % len(files)]) for i, s in enumerate(shared))
        assert remote.decoder.started == 1
    finally:
        remote.close()
