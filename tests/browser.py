"""Open a report page in the real headless Chromium from Debian (never a downloaded browser).

`.ci/run` installs the `chromium` package; Playwright only drives it. Without it the browser
tests skip, except under CI (CI=true), where they fail.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, sync_playwright


def chromium_path() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    message = "no chromium on PATH: `apt-get install -y chromium` (.ci/run does)"
    if os.environ.get("CI"):  # CI installs it, so there its absence is a failure
        raise AssertionError(message)
    pytest.skip(message)


@dataclass
class Visit:
    console: list[str] = field(default_factory=list)  # "type: text", errors and warnings
    requests: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)


PROBE = """() => ({
  lanes: [...document.querySelectorAll('#timeline .lane-row')].map(g => g.dataset.agent),
  bars: document.querySelectorAll('#timeline rect.bar').length,
  llm: document.querySelectorAll('#timeline rect.bar.llm').length,
  tools: document.querySelectorAll('#timeline rect.bar.tool').length,
  commits: document.querySelectorAll('#timeline rect.mark.commit').length,
  failed: document.querySelectorAll('#timeline rect.mark.failed').length,
  stops: document.querySelectorAll('#timeline rect.mark.stop').length,
  decisions: [...document.querySelectorAll('article.decision')].map(a => a.id),
  graphNodes: document.querySelectorAll('#graph .node').length,
  problems: (document.querySelector('#problems') || {innerText: ''}).innerText,
  replay: (document.querySelector('#replay') || {innerText: ''}).innerText,
  text: document.body.innerText,
  links: [...document.querySelectorAll('a[href]')].map(a => a.getAttribute('href')),
})"""


@contextlib.contextmanager
def chromium() -> Iterator[Browser]:
    """One headless browser (launching is the slow part; pages are cheap)."""
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


def visit(browser: Browser, page_file: Path, screenshot: Path | None = None) -> Visit:
    """Load the page; collect console messages, page errors, every request and some counts."""
    seen = Visit()
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        page.on("console", lambda m: seen.console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: seen.console.append(f"pageerror: {e}"))
        page.on("request", lambda r: seen.requests.append(r.url))
        page.goto(page_file.resolve().as_uri(), wait_until="load")
        seen.facts = page.evaluate(PROBE)
        if screenshot is not None:
            page.screenshot(path=str(screenshot), full_page=False)
    finally:
        context.close()
    return seen
