"""The /ui page in headless Chromium (Debian's, driven by Playwright): place a real sample order and see
its timeline grow until "dispatched" or "cancelled", without reloading."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM_FLAGS = [
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # The machine's network is closed: no background calls home.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str | None:
    for candidate in (os.environ.get("CHROMIUM_PATH"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    executable = chromium_path()
    if executable is None:
        message = "no Chromium at /usr/bin/chromium (apt-get install chromium; .ci/run does) or CHROMIUM_PATH"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_FLAGS)
        try:
            yield chromium
        finally:
            chromium.close()


def test_place_a_sample_order_and_watch_it_to_the_end(infra, order_api, browser) -> None:
    page = browser.new_page()  # type: ignore[attr-defined]
    try:
        page.goto(f"{infra.order_url}/ui")
        page.wait_for_function("document.querySelectorAll('#sample option').length > 1")
        page.select_option("#sample", label=next(o for o in page.locator("#sample option").all_inner_texts()
                                                 if o.startswith("Invoice 538644")))  # fmt: skip
        assert page.input_value("#customer") == "12476"  # the invoice's real customer
        page.evaluate("window.notReloaded = true")
        page.click("#place")

        page.wait_for_selector("#order:not([hidden])")
        order_id = page.inner_text("#order-id")
        page.wait_for_selector("#status[data-final='true']", timeout=90_000)
        status = page.inner_text("#status")
        assert status in ("dispatched", "cancelled")
        assert page.evaluate("window.notReloaded") is True, "the page was reloaded"

        shown = page.eval_on_selector_all("#timeline li", "items => items.map(li => li.dataset.eventId)")
        assert len(shown) == len(set(shown)) >= 3
        assert page.inner_text("#timeline li:first-child .type") == "OrderPlaced"
        view = order_api.get(f"/orders/{order_id}").json()
        assert view["status"] == status
        assert set(shown) <= {e["event_id"] for e in view["timeline"]}
        assert page.inner_text("#error") == ""
    finally:
        page.close()
