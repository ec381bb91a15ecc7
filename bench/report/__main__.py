"""``python -m bench.report reports/<dataset> [...]``: rebuild those datasets' reports."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from . import build_report


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    if not argv:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    for folder in argv:
        for name, path in build_report(Path(folder)).items():
            print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
