"""Decode a folder of bitstreams back to PNGs, so anyone can recompute metrics from the files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from bench.codec import BitstreamError
from bench.device import DeviceMismatch, check_device
from bench.job import placed_codec
from bench.limits import check_declared_size
from bench.submission import get_submission


def decode_folder(bitstreams: Path, submission: str, out: Path,
                  expected: dict[str, tuple[int, int]] | None = None, device: str = "cpu") -> int:
    """Decode every ``*.bin`` of ``bitstreams`` with the submission's codec (networks on
    ``device``) into ``out/<id>.png``.

    Each file's claimed size is checked before it is decoded: against the pixel cap, and
    against ``expected[<id>]`` (height, width of the originals, e.g. from the dataset) when given.
    """
    files = sorted(Path(bitstreams).glob("*.bin"))
    if not files:
        raise FileNotFoundError(f"{bitstreams}: no .bin files (give a row's 'bitstreams' folder)")
    sub = get_submission(submission)
    codec = placed_codec(sub, sub.content_hash(), check_device(device))
    out.mkdir(parents=True, exist_ok=True)
    for f in files:
        data = f.read_bytes()
        if expected is not None and f.stem not in expected:
            raise BitstreamError(f"{f}: no image {f.stem!r} in the dataset to compare its size with")
        check_declared_size(codec, data, expected[f.stem] if expected is not None else None, str(f))
        try:
            img = np.asarray(codec.decode(data))
        except DeviceMismatch as e:
            raise DeviceMismatch(f"{f}: {e}") from None
        except BitstreamError as e:
            raise BitstreamError(f"{f}: {e}") from None
        if img.dtype != np.uint8:
            img = np.clip(np.round(img), 0, 255).astype(np.uint8)
        PILImage.fromarray(img, "RGB").save(out / f"{f.stem}.png")
    return len(files)
