"""The leaderboard page as a reader sees it: ``reports/<dataset>/screenshots/leaderboard_<width>.png``
at 1280 and 390 px, drawn by headless Chromium from the page on disk (``bench screenshots``;
``make report`` runs it after rebuilding the pages). Each image is the page from the top, at
most ``MAX_HEIGHT`` px tall. ``tests/test_page.py`` fails when a committed screenshot is older
than its page."""

from __future__ import annotations

import tempfile
from pathlib import Path

from bench.report.browser import CHROMIUM, Browser

WIDTHS = (1280, 390)
MAX_HEIGHT = 3000
PAGE = "leaderboard.html"


def screenshot_paths(dataset_dir: Path) -> list[Path]:
    return [Path(dataset_dir) / "screenshots" / f"leaderboard_{w}.png" for w in WIDTHS]


def take_screenshots(dataset_dir: Path) -> list[Path]:
    """Screenshots of ``dataset_dir``'s page at every width (FileNotFoundError without Chromium
    or without the page)."""
    page = Path(dataset_dir) / PAGE
    if not page.is_file():
        raise FileNotFoundError(f"{page}: no page to draw (run `python -m bench report` first)")
    if not CHROMIUM.is_file():
        raise FileNotFoundError(f"{CHROMIUM} is not installed (apt-get install chromium): cannot draw {page}")
    out = screenshot_paths(dataset_dir)
    out[0].parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        browser = Browser(Path(profile))
        try:
            for width, path in zip(WIDTHS, out):
                browser.open(page.resolve().as_uri(), width)
                browser.screenshot(path, width, MAX_HEIGHT)
        finally:
            browser.close()
    return out
