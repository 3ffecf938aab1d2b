"""Headless Chromium for the browser tests, set up once: the check that it is installed, a driver at a given
size, the `Console` page helper and the screenshots.

Needs Debian's `chromium` and `chromium-driver` (`apt-get install -y chromium chromium-driver`): a browser
test is skipped with that reason when they are missing, except in CI (`CI` set), where it fails instead.
Screenshots go to `tests/output/` (gitignored; CI keeps them). With `UPDATE_DOCS_SCREENSHOTS=1` the ones
the docs show are also copied, in 256 colours, to `docs/img/console/`.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
OUTPUT = Path(__file__).parent / "output"
DOCS_IMAGES = Path(__file__).parent.parent / "docs" / "img" / "console"
LAPTOP = (1280, 800)
PHONE = (390, 844)


def require_browser() -> None:
    """Skip (or, in CI, fail) the calling test when Chromium or its driver is not installed."""
    missing = [name for name, path in (("chromium", CHROMIUM), ("chromedriver", CHROMEDRIVER)) if not path]
    if missing:
        reason = f"{' and '.join(missing)} not installed (apt-get install -y chromium chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the browser test: {reason}")
        pytest.skip(reason)


@contextmanager
def chrome(width: int, height: int, *, mobile: bool = False) -> Iterator[Any]:
    """A headless Chromium whose viewport is exactly `width` x `height` (the window size alone leaves room for
    browser chrome), in Turkish, keeping the browser's console log for `Console.csp_violations`; quit on the
    way out."""
    require_browser()
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     f"--window-size={width},{height}", "--lang=tr-TR", "--hide-scrollbars"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    try:
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                               {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile})
        yield driver
    finally:
        driver.quit()


def save_screenshot(driver: Any, name: str, *, docs: bool = False) -> Path:
    """Save `tests/output/<name>.png` (`name` may hold a folder); a `docs` one is also copied to
    `docs/img/console/` when UPDATE_DOCS_SCREENSHOTS is set, so a test run never changes the docs by itself."""
    path = OUTPUT / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(path))
    if docs and os.environ.get("UPDATE_DOCS_SCREENSHOTS"):
        _save_small(path, DOCS_IMAGES / path.name)
    return path


def _save_small(source: Path, target: Path) -> None:
    """The docs' copy in 256 colours (a screenshot of flat colours loses nothing visible, and stays small)."""
    from PIL import Image

    target.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(source) as image:
        image.convert("RGB").quantize(256).save(target, optimize=True)


class Console:
    """The browser on the live console, with the few moves every step needs."""

    def __init__(self, driver: Any, base: str) -> None:
        from selenium.webdriver.common.by import By

        self.driver, self.base, self.by = driver, base, By

    def open(self, path: str) -> None:
        self.driver.get(self.base + path)

    def find(self, css: str) -> Any:
        return self.driver.find_element(self.by.CSS_SELECTOR, css)

    def all(self, css: str) -> list[Any]:
        return self.driver.find_elements(self.by.CSS_SELECTOR, css)

    def type(self, css: str, value: str) -> None:
        field = self.find(css)
        field.clear()
        field.send_keys(value)

    def fill(self, values: dict[str, str], form: str = "main form.stack") -> None:
        """Fill the form's fields by name (a select by value) and submit it."""
        for name, value in values.items():
            field = self.find(f'{form} [name="{name}"]')
            if field.tag_name == "select":
                from selenium.webdriver.support.ui import Select

                Select(field).select_by_value(value)
            else:
                field.clear()
                field.send_keys(value)
        self.click(f'{form} button[type="submit"]')

    def click(self, css: str, within: Any = None) -> None:
        """Click what submits a form or follows a link, and wait for the next page to replace this one."""
        from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
        from selenium.webdriver.support.ui import WebDriverWait

        page = self.find("html")
        (within or self.driver).find_element(self.by.CSS_SELECTOR, css).click()

        def replaced(_driver: Any) -> bool:
            # While the next page is being swapped in, chromedriver can answer about the old node with an
            # "unknown error" instead of "stale": that node belongs to a document that is going away.
            try:
                page.is_enabled()
            except StaleElementReferenceException:
                return True
            except WebDriverException as error:
                if "does not belong to the document" in str(error.msg):
                    return True
                raise
            return False

        WebDriverWait(self.driver, 20, poll_frequency=0.1).until(replaced)

    def text(self) -> str:
        return str(self.find("body").text)

    def path(self) -> str:
        return str(self.driver.current_url).removeprefix(self.base)

    def shot(self, name: str, size: tuple[int, int] = LAPTOP, max_height: int = 1600, *, docs: bool = True) -> None:
        """`tests/output/console/<name>.png`: the whole page at this width (the height grows with the page, up
        to `max_height`)."""
        width, height = size
        metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600}
        self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
        full = min(max_height, int(self.driver.execute_script("return document.documentElement.scrollHeight")))
        self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {**metrics, "height": max(height, full)})
        save_screenshot(self.driver, f"console/{name}", docs=docs)
        self.driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})

    def csp_violations(self) -> list[str]:
        return [entry["message"] for entry in self.driver.get_log("browser")
                if "Content Security Policy" in entry["message"] or "Refused to" in entry["message"]]
