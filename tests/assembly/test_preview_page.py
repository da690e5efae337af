"""The editors' preview page in a real headless Chromium (Debian's `chromium`, driven by
Playwright for Python), against the service as `cli.py serve` runs it.

Set `MB_PREVIEW_SCREENSHOT=docs/images/preview.png` to refresh the screenshot in the docs.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.core.server_process import ServerProcess, serve
from tests.support.redis_server import RedisServer

KEY = "browser-preview-key"


@pytest.fixture(scope="module")
def service(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("preview-page")
    env = {
        "REDIS_URL": redis_server.url,
        "REDIS_KEY_PREFIX": "mbpreviewpage",
        "BRIDGE_PREVIEW_KEY": KEY,
        "BRIDGE_LOG_LEVEL": "warning",
        "BRIDGE_SNAPSHOT_PATH": str(folder / "last-good.json"),
    }
    server: ServerProcess = serve(folder, env=env)
    try:
        wait_ready(server)
        yield server.url
    finally:
        server.stop()


def wait_ready(server: ServerProcess, attempts: int = 150) -> None:
    """Until the service has its library (the demo space's first sync)."""
    for _ in range(attempts):
        if httpx.get(f"{server.url}/readyz", timeout=2).status_code == 200:
            return
        time.sleep(0.2)
    raise AssertionError(f"the service never became ready: {server.output()[-2000:]}")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = shutil.which("chromium")
    assert executable is not None, "Debian's chromium is needed: `make test` installs it"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable)
        yield launched
        launched.close()


def hero(page: Page) -> tuple[str, str, str]:
    card = page.locator('section.slot[data-slot="home.hero"]')
    return (
        card.locator(".chosen").inner_text(),
        card.locator(".source").inner_text(),
        card.locator(".reason").inner_text(),
    )


@pytest.mark.timeout(180)
def test_an_editor_switches_the_audience_and_sees_the_variant_change(
    service: str, browser: Browser, tmp_path: Path
) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    response = page.goto(f"{service}/preview/home?key={KEY}")
    assert response is not None
    assert response.status == 200
    slots = page.locator("section.slot")
    assert slots.count() == 6
    assert slots.first.get_attribute("data-slot") == "home.hero"
    assert hero(page) == ("baseline", "baseline", "no variant matched")
    headline = page.locator('section.slot[data-slot="home.hero"] .fields')
    assert "Run further in every season" in headline.inner_text()
    assert "CONTENTFUL_PREVIEW_TOKEN" in page.locator(".banner").inner_text()

    page.select_option("select[name=audience]", "cart-abandoners")
    with page.expect_navigation():
        page.click("button[type=submit]")
    assert "audience=cart-abandoners" in page.url
    assert hero(page) == ("hero-cart", "variant", "audience cart-abandoners")
    assert "Your cart misses you" in headline.inner_text()
    assert page.locator("select[name=audience]").input_value() == "cart-abandoners"

    shot = tmp_path / "preview.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes().startswith(b"\x89PNG")
    target = os.environ.get("MB_PREVIEW_SCREENSHOT")
    if target:
        shutil.copyfile(shot, target)
    page.close()


@pytest.mark.timeout(120)
def test_an_editor_forces_a_variant_in_one_slot(service: str, browser: Browser) -> None:
    page = browser.new_page()
    page.goto(f"{service}/preview/home?key={KEY}&locale=de-DE")
    card = page.locator('section.slot[data-slot="home.hero"]')
    card.locator("select[name=variant]").select_option("home.hero:hero-video")
    with page.expect_navigation():
        page.click("button[type=submit]")
    assert hero(page) == ("hero-video", "variant", "preview: variant hero-video forced")
    assert page.locator("select[name=locale]").input_value() == "de-DE"
    assert "Video ansehen" in card.locator(".fields").inner_text()
    page.close()


def test_without_the_key_the_page_is_refused(service: str) -> None:
    response = httpx.get(f"{service}/preview/home", timeout=5)
    assert response.status_code == 401
    assert response.json()["error"] == "PreviewUnauthorized"
