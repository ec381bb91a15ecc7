"""The leaderboard page in a real browser: a page built by ``build_report`` from a small real run
(JPEG and WebP on three Kodak crops, WebP in both modes), opened in headless Chromium through the
DevTools protocol (``--remote-debugging-pipe``, no extra packages). It must fit the window at
1280 and 390 px, its own script must sort a column on a header click and open a row's per-image
drill-down, and its interactive RD plots must hide a submission's and a family's curves on a click and
show a point's details on hover, with no error in the console. Skipped, with the reason, when
``/usr/bin/chromium`` is absent (``.ci/run`` installs it).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from PIL import Image

from bench.paths import REPO_ROOT
from bench.report import build_report
from bench.report.browser import CHROMIUM, Browser
from bench.report.screenshots import stale_screenshots, take_screenshots
from bench.run import run_benchmark
from tests.helpers.images import crop_folder

needs_chromium = pytest.mark.skipif(not CHROMIUM.is_file(), reason="/usr/bin/chromium is not installed "
                                    "(apt-get install chromium; .ci/run does); the page is not checked in a browser")


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    """leaderboard.html of a real run: jpeg and webp under the CLIC budget, webp also per image."""
    root = tmp_path_factory.mktemp("page")
    images = crop_folder(root / "imgs")
    for sub, mode in (("jpeg", "clic"), ("webp", "clic"), ("webp", "per-image")):
        run_benchmark(sub, f"folder:{images}", [0.3, 1.0], mode=mode, reports_dir=root / "reports", progress=False,
                      log=lambda *_: None)
    return build_report(root / "reports" / "imgs", reference_dir=None)["html"]


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.is_file():
        pytest.skip("/usr/bin/chromium is not installed")
    with tempfile.TemporaryDirectory() as profile:
        b = Browser(Path(profile))
        try:
            yield b
        finally:
            b.close()


def test_page_is_built_from_the_run(page):
    html = page.read_text(encoding="utf-8")
    assert html.count('class="drill"') == 6           # 2 targets × (jpeg, webp clic, webp per-image), all feasible
    assert "Per-image mode" in html and 'href="per_image.csv"' in html and 'href="leaderboard.csv"' in html
    assert "<pre>" not in html and "nan<" not in html


@needs_chromium
@pytest.mark.parametrize("width", [1280, 390])
def test_no_page_level_horizontal_scroll(browser, page, width):
    browser.open(page.as_uri(), width)
    scroll, client = browser.js("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert client == width and scroll <= client, f"page is {scroll} px wide in a {client} px window"
    more = browser.js("document.querySelectorAll('button.more').length")
    browser.js("document.querySelectorAll('button.more').forEach(b => b.click())")   # every column shown
    assert more > 0 and browser.js("document.documentElement.scrollWidth") <= width


@needs_chromium
def test_header_click_sorts_rows_with_the_pages_script(browser, page):
    browser.open(page.as_uri(), 1280)
    first = "document.querySelector('section#target-0-3 table.board')"
    names = f"Array.from({first}.tBodies).map(b => b.rows[0].cells[1].getAttribute('data-v'))"
    bpp = f"Array.from({first}.tBodies).map(b => parseFloat(b.rows[0].cells[5].getAttribute('data-v')))"
    before = browser.js(names)
    assert sorted(before) == ["jpeg", "webp"]
    assert browser.js(f"{first}.tHead.rows[0].cells[5].textContent") == "bpp"
    browser.js(f"{first}.tHead.rows[0].cells[5].click()")     # bpp: cheapest first
    up = browser.js(bpp)
    assert up == sorted(up) and browser.js(f"{first}.tHead.rows[0].cells[5].getAttribute('aria-sort')") == "ascending"
    browser.js(f"{first}.tHead.rows[0].cells[5].click()")     # again: the other way
    assert browser.js(bpp) == sorted(up, reverse=True)
    browser.js(f"{first}.tHead.rows[0].cells[1].click()")     # by name, a to z
    assert browser.js(names) == ["jpeg", "webp"]
    browser.js(f"{first}.tHead.rows[0].cells[1].click()")
    assert browser.js(names) == ["webp", "jpeg"]


@needs_chromium
def test_drill_down_opens_every_images_results(browser, page):
    browser.open(page.as_uri(), 390)
    body = "document.querySelector('section#target-1 table.board').tBodies[0]"
    assert browser.js(f"{body}.querySelector('tr.drill').hidden") is True
    browser.js(f"{body}.querySelector('button.dd').click()")
    assert browser.js(f"{body}.querySelector('tr.drill').hidden") is False
    rows = browser.js(f"Array.from({body}.querySelectorAll('tr.drill tbody tr')).map(r => "
                      "Array.from(r.cells).map(c => c.textContent))")
    assert [r[0] for r in rows] == ["img0", "img1", "img2"]
    for _, point, bpp, msssim, psnr, size, ssimulacra2, flip in rows:
        assert point and 0 < float(bpp) <= 3 and 0 < float(msssim) <= 1 and 10 < float(psnr) < 60
        assert int(size.replace(",", "")) > 0 and 0 < float(ssimulacra2) <= 100 and 0 < float(flip) < 1
    assert browser.js("document.documentElement.scrollWidth") <= 390


def _errors(events: list[dict]) -> list[dict]:
    """Uncaught exceptions, console.error calls and error log entries among the browser's events."""
    return [e for e in events if e.get("method") == "Runtime.exceptionThrown"
            or (e.get("method") == "Runtime.consoleAPICalled" and e["params"].get("type") == "error")
            or (e.get("method") == "Log.entryAdded" and e["params"]["entry"].get("level") == "error")]


@needs_chromium
@pytest.mark.parametrize("width", [1280, 390])
def test_interactive_rd_plots_toggle_and_hover_without_errors(browser, page, width):
    browser.send("Runtime.enable", session=True)
    browser.send("Log.enable", session=True)
    browser.events.clear()
    browser.open(page.as_uri(), width)
    plots = browser.js("Array.from(document.querySelectorAll('figure.rdx')).map(f => f.dataset.metric)")
    assert plots == ["msssim_db", "psnr", "ssimulacra2", "flip"]       # the run measured the perceptual metrics
    shown = ("(s) => Array.from(document.querySelectorAll('.rdx g.curve[data-sub=\"' + s + '\"]'))"
             ".map(g => getComputedStyle(g).display !== 'none')")
    assert browser.js(f"({shown})('jpeg')") == [True] * 4 and browser.js(f"({shown})('webp')") == [True] * 4
    browser.js("document.querySelector('.rdx-controls button.chip[data-sub=\"jpeg\"]').click()")
    assert browser.js(f"({shown})('jpeg')") == [False] * 4 and browser.js(f"({shown})('webp')") == [True] * 4
    assert browser.js("document.querySelector('button.fam[data-family=\"classical\"]').getAttribute('aria-pressed')") \
        == "true"                                                          # webp is still shown
    browser.js("document.querySelector('button.fam[data-family=\"classical\"]').click()")   # the family: all off
    assert browser.js(f"({shown})('webp')") == [False] * 4
    browser.js("document.querySelector('button.fam[data-family=\"classical\"]').click()")   # and on again
    assert browser.js(f"({shown})('jpeg')") == [True] * 4 and browser.js(f"({shown})('webp')") == [True] * 4
    # hover a chosen point with the mouse: its submission, image set, rate, value and operating point
    dot = "document.querySelector('.rdx g.curve[data-sub=\"webp\"] circle.chosen')"
    browser.js(f"{dot}.scrollIntoView({{block: 'center'}})")
    x, y = browser.js(f"(r => [r.left + r.width / 2, r.top + r.height / 2])({dot}.getBoundingClientRect())")
    browser.send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": x, "y": y}, session=True)
    tip = browser.js("Array.from(document.querySelectorAll('.rdx .tip')).filter(t => !t.hidden)"
                     ".map(t => t.innerText).join('|')")
    for part in ("webp", "image set imgs", " bpp · MS-SSIM dB ", "point chosen at 0.3 bpp (clic)"):
        assert part in tip, (part, tip)
    assert browser.js("document.documentElement.scrollWidth") <= width
    assert not _errors(browser.events), _errors(browser.events)


def _committed_pages() -> list[Path]:
    return sorted(p.parent for p in (REPO_ROOT / "reports").glob("*/leaderboard.html"))


@pytest.mark.parametrize("dataset_dir", _committed_pages(), ids=lambda p: p.name)
def test_committed_screenshots_show_the_committed_pages(dataset_dir):
    """`make report` (or `python -m bench screenshots`) after every page rebuild that is committed."""
    assert not stale_screenshots(dataset_dir), "run `python -m bench screenshots`: " + "; ".join(
        stale_screenshots(dataset_dir))


@needs_chromium
def test_screenshots_are_drawn_at_both_widths_and_go_stale_with_their_page(page):
    shots = take_screenshots(page.parent)
    assert [Image.open(p).size[0] for p in shots] == [1280, 390]
    assert stale_screenshots(page.parent) == []
    page.write_text(page.read_text() + "<!-- rebuilt -->")
    assert len(stale_screenshots(page.parent)) == 2 and "another page" in stale_screenshots(page.parent)[0]
