"""The leaderboard page as a reader sees it: ``reports/<dataset>/screenshots/leaderboard_<width>.png``
at 1280 and 390 px, drawn by headless Chromium from the page on disk (``bench screenshots``;
``make report`` runs it after rebuilding the pages). Each image is the page from the top, at
most ``MAX_HEIGHT`` px tall. Each PNG carries the SHA-256 of the page it shows (a ``tEXt`` chunk,
:data:`PAGE_KEY`), so a screenshot older than its page is told apart without file dates (a clone
has none): ``tests/test_page.py`` fails when a committed one is (:func:`stale_screenshots`)."""

from __future__ import annotations

import hashlib
import io
import tempfile
from pathlib import Path

from PIL import Image, PngImagePlugin

from bench.report.browser import CHROMIUM, Browser

WIDTHS = (1280, 390)
MAX_HEIGHT = 3000
PAGE = "leaderboard.html"
PAGE_KEY = "bench:page-sha256"


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
                stamp_page(path, page)
        finally:
            browser.close()
    return out


def page_sha256(page: Path) -> str:
    return hashlib.sha256(Path(page).read_bytes()).hexdigest()


def stamp_page(png: Path, page: Path) -> None:
    """Write into ``png`` the SHA-256 of the page it shows."""
    info = PngImagePlugin.PngInfo()
    info.add_text(PAGE_KEY, page_sha256(page))
    with Image.open(png) as im:
        buf = io.BytesIO()
        im.save(buf, "PNG", pnginfo=info, optimize=True)
    png.write_bytes(buf.getvalue())


def stale_screenshots(dataset_dir: Path) -> list[str]:
    """What is wrong with ``dataset_dir``'s screenshots: missing, or made from another page than
    the one there now (empty when they show it)."""
    page = Path(dataset_dir) / PAGE
    want = page_sha256(page)
    problems = []
    for path in screenshot_paths(dataset_dir):
        if not path.is_file():
            problems.append(f"{path}: missing")
            continue
        with Image.open(path) as im:
            shown = im.text.get(PAGE_KEY)
        if shown != want:
            problems.append(f"{path}: made from {'another' if shown else 'an unrecorded'} page than {page}")
    return problems
