"""Admin pages in a real browser: a tab that checks every page it sees for values that must never be shown.

The fixtures that start Chromium and open a logged-out tab are in ``tests.admin.browser_fixtures``; a test module loads
them with ``pytest_plugins = ["tests.admin.browser_fixtures"]``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from tests.factories import PASSWORD

OUTPUT = Path(__file__).resolve().parents[1] / "output"  # tests/output: ignored by git, kept by CI as artifacts
SECRET_VALUE = "xq-browser-secret-7f3a9c2e"
TOKEN_VALUE = "xq-browser-token-51b0d4aa"
# The narrowest window the admin is laid out for: no page scrolls sideways at this width.
VIEWPORT = {"width": 1280, "height": 800}


def chromium_path() -> str | None:
    for candidate in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


class Admin:
    """A logged-in browser tab, checking every page it sees for values that must never be shown."""

    def __init__(self, page, base: str, name: str) -> None:
        self.page, self.base, self.name = page, base, name
        self.sources: list[str] = []
        self.forbidden: list[str] = [SECRET_VALUE, TOKEN_VALUE]

    def goto(self, path: str):
        self.page.goto(self.base + path)
        return self.seen()

    def seen(self):
        self.page.wait_for_load_state("load")
        html = self.page.content()
        self.sources.append(html)
        for value in self.forbidden:
            assert value not in html, f"a secret value on {self.page.url}"
        return self.page

    def click(self, selector: str):
        self.page.click(selector)
        return self.seen()

    def login(self, username: str) -> None:
        self.goto("/admin/login/")
        self.page.fill("#id_username", username)
        self.page.fill("#id_password", PASSWORD)
        self.click("input[type=submit]")
        assert "/admin/login/" not in self.page.url, "login failed"

    def logout(self) -> None:
        self.page.context.clear_cookies()

    def messages(self) -> str:
        """The success, warning and error notes the page shows."""
        found = self.page.locator("ul.messagelist")
        return found.inner_text() if found.count() else ""

    def sideways_overflow(self) -> int:
        """How many pixels the page, or a box on it that scrolls (a changelist's results), is wider than the room it
        has: 0 when nothing scrolls sideways."""
        return self.page.evaluate(
            """() => Math.max(0, ...[document.documentElement, ...document.querySelectorAll("#content *")]
                .filter((el) => el === document.documentElement || getComputedStyle(el).overflowX !== "visible")
                .map((el) => el.scrollWidth - el.clientWidth))"""
        )

    def screenshot(self, name: str | None = None) -> Path:
        OUTPUT.mkdir(exist_ok=True)
        path = OUTPUT / f"{name or self.name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path
