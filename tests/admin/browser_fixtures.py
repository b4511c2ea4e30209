"""Browser fixtures: Debian's Chromium, headless, driven by Playwright against the live server. Each test leaves a
screenshot of its last page in tests/output/."""

from __future__ import annotations

import os

import pytest

from .browser import VIEWPORT, Admin, chromium_path


@pytest.fixture(scope="module")
def browser():
    executable = chromium_path()
    if executable is None:
        message = "Chromium is not installed (apt-get install chromium); .ci/run installs it"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop on this thread; the test's own ORM calls are still synchronous.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, headless=True)
        yield launched
        launched.close()
    os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


@pytest.fixture
def admin_tab(browser, live_server, request):
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(15_000)
    tab = Admin(page, live_server.url, request.node.name)
    yield tab
    try:
        tab.screenshot()
    finally:
        context.close()
