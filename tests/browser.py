"""Open an HTML report in Debian's headless Chromium (driven by Playwright) and check what a reader sees.

Never ``playwright install``: the browser is the system package at ``/usr/bin/chromium`` (the
Makefile's ``browser`` target installs it with apt-get when it is missing). Where it is absent and
cannot be installed, the tests that need it skip and say why.

``CLVML_SCREENSHOTS=<dir>`` also writes a small JPEG of every checked page there (how
``docs/screenshots/`` was made); the full-size PNG always goes to the test's tmp dir.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WIDTH = 1280

# each image: decoded (naturalWidth > 0) and laid out (its box); decode() rejects a broken image
IMAGES_JS = """async () => Promise.all([...document.images].map(async (i) => {
  let error = null;
  try { await i.decode(); } catch (e) { error = String(e); }
  const r = i.getBoundingClientRect();
  return {alt: i.alt, error, complete: i.complete, naturalWidth: i.naturalWidth,
          naturalHeight: i.naturalHeight, width: r.width, height: r.height, left: r.left, right: r.right};
}))"""


def launch_chromium():
    """``(playwright, browser)`` on the system Chromium, or skip with the reason it cannot run."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing and could not be installed (`make browser` runs "
                    "`apt-get install chromium` as root)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as e:  # pragma: no cover - playwright is a pinned dev dependency
        pytest.skip(f"playwright is not installed ({e}): `uv pip sync requirements.lock`")
    pw = sync_playwright().start()
    try:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
    except Exception:
        pw.stop()
        raise
    return pw, browser


@dataclass
class PageCheck:
    """What the browser saw on one page."""

    url: str
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    images: list[dict] = field(default_factory=list)
    scroll_width: int = 0
    screenshot: Path | None = None

    def problems(self, min_images: int) -> list[str]:
        """Everything wrong with the page, one line each (empty: the page is fine)."""
        out = [f"console error: {m}" for m in self.console_errors]
        out += [f"page error: {m}" for m in self.page_errors]
        out += [f"failed request: {m}" for m in self.failed_requests]
        if len(self.images) < min_images:
            out.append(f"{len(self.images)} images, expected at least {min_images}")
        for i in self.images:
            if i["error"] or not i["complete"] or i["naturalWidth"] <= 0 or i["naturalHeight"] <= 0:
                out.append(f"image {i['alt']!r} not decoded: {i}")
            if i["width"] <= 0 or i["height"] <= 0:
                out.append(f"image {i['alt']!r} laid out at zero size: {i}")
            if i["left"] < 0 or i["right"] > WIDTH:
                out.append(f"image {i['alt']!r} outside the {WIDTH} px window: {i}")
        if self.scroll_width > WIDTH:
            out.append(f"horizontal overflow: the page is {self.scroll_width} px wide in a {WIDTH} px window")
        return out


def check_page(browser, html: Path, shot: Path) -> PageCheck:
    """Open ``html`` (file://) in a 1280 px wide window, collect errors, images and the page width,
    and save a full-page screenshot to ``shot``."""
    html = Path(html).resolve()
    check = PageCheck(url=html.as_uri())
    page = browser.new_page(viewport={"width": WIDTH, "height": 900})
    try:
        page.on("console", lambda m: check.console_errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: check.page_errors.append(str(e)))
        page.on("requestfailed", lambda r: check.failed_requests.append(f"{r.url[:80]}: {r.failure}"))
        page.goto(check.url, wait_until="load")
        check.images = page.evaluate(IMAGES_JS)
        check.scroll_width = page.evaluate("() => document.scrollingElement.scrollWidth")
        shot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shot), full_page=True)
        check.screenshot = shot
        record = os.environ.get("CLVML_SCREENSHOTS")
        if record:
            _record(shot, Path(record) / f"{shot.stem}.jpg")
    finally:
        page.close()
    return check


def _record(png: Path, jpg: Path, width: int = 560) -> None:
    """A small JPEG copy of a screenshot (560 px wide) for the record."""
    from PIL import Image

    jpg.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(png) as im:
        im = im.convert("RGB")
        im.resize((width, round(im.height * width / im.width)), Image.LANCZOS).save(jpg, quality=60,
                                                                                     optimize=True)


def assert_opens_cleanly(browser, html: Path, shot: Path, min_images: int) -> PageCheck:
    """:func:`check_page`, then fail listing every problem found."""
    check = check_page(browser, html, shot)
    problems = check.problems(min_images)
    assert not problems, f"{html}:\n" + "\n".join(problems)
    assert shot.stat().st_size > 10_000  # a real screenshot, not an empty page
    return check
