"""Decode one bitstream in a fresh process (for the cross-process determinism test).

usage: python tests/decode_worker.py SUBMISSION_TOML BITSTREAM OUT_NPY THREADS
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str]) -> int:
    import numpy as np
    import torch

    from bench.submission import load_manifest

    manifest, bitstream, out, threads = argv
    torch.set_num_threads(int(threads))
    codec = load_manifest(Path(manifest)).make_codec()
    np.save(out, codec.decode(Path(bitstream).read_bytes()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
