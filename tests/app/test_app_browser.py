"""End to end: `medcap app` on 127.0.0.1, driven by a real headless Chromium."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from medcap.config import DEFAULTS
from medcap.index import open_index
from tests.app.served_app import free_port, served, wait_healthy

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1440,1600",
    "--hide-scrollbars",
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin"),
]


def _chrome(profile: Path):  # noqa: ANN202 - selenium's WebDriver
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


def test_upload_in_chromium_renders_result_cards(
    app_index_dir: Path, original_png: Callable[[str], bytes], tmp_path: Path
) -> None:
    from selenium.common.exceptions import (
        NoSuchElementException,
        StaleElementReferenceException,
    )
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from medcap.app.cases import CaseTable

    index = open_index(app_index_dir)
    cases = CaseTable(index)
    query_id = cases.ids[2]
    query = tmp_path / "query.png"
    query.write_bytes(original_png(query_id))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server_log = tmp_path / "server.log"

    with served(app_index_dir, port, server_log) as proc:
        wait_healthy(url, proc)
        driver = _chrome(tmp_path / "chromium-profile")
        try:
            driver.get(url)
            # Streamlit re-renders while we look: a vanished element means "not yet", not failure.
            wait = WebDriverWait(
                driver,
                90,
                ignored_exceptions=(NoSuchElementException, StaleElementReferenceException),
            )
            upload = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "input[type=file]"))
            upload.send_keys(str(query))

            def cards(d):  # noqa: ANN001, ANN202
                links = d.find_elements(By.CSS_SELECTOR, "a[href*='case?id=']")
                return links if len(links) >= min(DEFAULTS.app.k, len(cases)) else False

            links = wait.until(cards)
            wait.until(
                lambda d: all(
                    img.get_property("complete") and img.get_property("naturalWidth") > 0
                    for img in d.find_elements(By.CSS_SELECTOR, "img")
                )
            )
            driver.save_screenshot(str(tmp_path / "app-search.png"))
            shown = [link.get_attribute("href").split("id=")[1] for link in links]
            page_text = driver.find_element(By.TAG_NAME, "body").text
            for image_id in shown:
                assert cases.info(image_id).caption in page_text
            thumbnails = driver.find_elements(By.CSS_SELECTOR, "[data-testid='stImage'] img")
            assert len(thumbnails) >= len(shown)
            widths = [t.size["width"] for t in thumbnails]
            assert min(widths) >= 200, widths  # large enough to judge
            assert "error" not in page_text.lower()
            # A card's link opens that case's page, with its neighbours.
            links[1].click()
            wait.until(lambda d: d.find_element(By.TAG_NAME, "h1").text.strip() == shown[1])
            assert cases.info(shown[1]).caption in driver.find_element(By.TAG_NAME, "body").text
        finally:
            driver.quit()
    assert proc.returncode == 130, server_log.read_text()
    assert f"at {url}" in server_log.read_text()  # the URL was printed
    with socket.socket() as sock, pytest.raises(ConnectionRefusedError):
        sock.connect(("127.0.0.1", port))  # nothing listens any more
    assert (tmp_path / "app-search.png").stat().st_size > 10_000
