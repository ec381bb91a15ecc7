"""Decode a folder of bitstreams back to PNGs, so anyone can recompute metrics from the files.
The submission's decoder runs sandboxed (:mod:`bench.sandbox`), as in a run."""

from __future__ import annotations

from pathlib import Path

from PIL import Image as PILImage

from bench.codec import BitstreamError
from bench.device import DeviceMismatch, check_device
from bench.job import default_threads
from bench.sandbox.client import RemoteCodec
from bench.submission import get_submission


def decode_folder(bitstreams: Path, submission: str, out: Path,
                  expected: dict[str, tuple[int, int]] | None = None, device: str = "cpu",
                  sandboxed: bool = True) -> int:
    """Decode every ``*.bin`` of ``bitstreams`` with the submission's codec (networks on
    ``device``) into ``out/<id>.png``.

    Each file's claimed size is checked before it is decoded: against the pixel cap, and
    against ``expected[<id>]`` (height, width of the originals, e.g. from the dataset) when given.
    """
    files = sorted(Path(bitstreams).glob("*.bin"))
    if not files:
        raise FileNotFoundError(f"{bitstreams}: no .bin files (give a row's 'bitstreams' folder)")
    device = check_device(device)
    codec = RemoteCodec(get_submission(submission), sandboxed, device.startswith("cuda"))
    out.mkdir(parents=True, exist_ok=True)
    try:
        for f in files:
            if expected is not None and f.stem not in expected:
                raise BitstreamError(f"{f}: no image {f.stem!r} in the dataset to compare its size with")
            try:
                img = codec.decode(f.read_bytes(), expected[f.stem] if expected is not None else None,
                                   default_threads(1), device, f.name).pixels
            except DeviceMismatch as e:
                raise DeviceMismatch(f"{f}: {e}") from None
            except BitstreamError as e:
                raise BitstreamError(f"{f}: {e}") from None
            PILImage.fromarray(img, "RGB").save(out / f"{f.stem}.png")
    finally:
        codec.close()
    return len(files)
