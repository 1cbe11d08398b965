"""The real browser shared by the UI tests (tests/test_ui.py, tests/test_ui_server.py).

Debian's Chromium driven by Playwright, never a downloaded browser build. Test modules load
this with ``pytest_plugins = ("browser_fixtures",)`` and get ``browser`` (one per module) and
``page`` (a fresh tab per test that fails the test on any console error, page error or dialog).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import require_backend

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
SCREENSHOTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "screenshots"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    require_backend(CHROMIUM.exists(), "Chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh tab (no cookies) that records console errors, page errors and dialogs; none may
    happen."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    tab = context.new_page()
    problems: list[str] = []
    tab.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    tab.on("pageerror", lambda error: problems.append(str(error)))
    tab.on("dialog", lambda dialog: problems.append(f"dialog: {dialog.message}"))
    yield tab
    context.close()
    assert problems == []


def screenshot(tab: Any, name: str) -> None:
    """Save a full-page screenshot under test-artifacts/screenshots (kept for review)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
