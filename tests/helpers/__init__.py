"""Shared test code (no tests here): builders and tools that more than one test file uses.

- :mod:`tests.helpers.images`: real Kodak crops (``kodak_crop``) and small image folders;
- :mod:`tests.helpers.manifests`: ``write_submission`` (a submission folder with its
  ``submission.toml``) and ``manifest_text``;
- :mod:`tests.helpers.vr_models`: tiny calibrated ECG/BM models and their exported submissions;
- :mod:`tests.helpers.lic_forge`: learned containers forged field by field;
- :mod:`tests.helpers.fuzz`: every submission kind (``KINDS``) and its format-field mutations,
  and the child that decodes a folder of mutated files;
- :mod:`tests.helpers.decode_worker`: a script that decodes one file in a fresh process
  (run it by path: ``DECODE_WORKER``).
"""

from pathlib import Path

HELPERS_DIR = Path(__file__).resolve().parent
DECODE_WORKER = HELPERS_DIR / "decode_worker.py"
