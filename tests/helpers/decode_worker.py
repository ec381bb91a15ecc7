"""Decode one bitstream in a fresh process (for the cross-process determinism tests).

usage: python tests/helpers/decode_worker.py SUBMISSION_TOML BITSTREAM OUT_NPY THREADS
(``tests.helpers.DECODE_WORKER`` is this file's path; ``python -m tests.helpers.decode_worker``
from the repository root works too).
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    import numpy as np
    import torch

    from bench.submission import load_manifest
    from tests.helpers.coding import decode

    manifest, bitstream, out, threads = argv
    torch.set_num_threads(int(threads))
    codec = load_manifest(Path(manifest)).make_codec()
    np.save(out, decode(codec, Path(bitstream).read_bytes()))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))     # the repository root: bench/
    sys.exit(main(sys.argv[1:]))
