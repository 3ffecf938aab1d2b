"""The support pages in a real headless Chromium (laptop size, 1280x800, and a phone, 390x844), on the app on a
real port with the Graph API stand-in (devtools/graph_api.py) and the embedded worker: a farmer talks to the bot
through `/dev/chat`; support signs in, opens the conversations and the farmer, takes over, replies; the reply
reaches the farmer's chat through the stand-in, and a message of the farmer meanwhile gets no bot answer.
No page may break its Content-Security-Policy.

Needs Debian's `chromium` and `chromium-driver`; skipped without them except in CI (tests/test_browser.py).
Screenshots go to `tests/output/console/support-*.png`; with `UPDATE_DOCS_SCREENSHOTS=1` they are also
copied to `docs/img/console/` for docs/CONSOLE_SUPPORT.md.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from devtools.demo import seed_demo
from models import Direction, Farmer, Message
from tests.admin_helpers import PASSWORD, make_staff
from tests.dev_live import SimFarmer, has_text, live_app, offers
from tests.helpers import wait_until
from tests.test_browser import CHROMEDRIVER, CHROMIUM, _require_browser

OUTPUT = Path(__file__).parent / "output" / "console"
DOCS_IMAGES = Path(__file__).parent.parent / "docs" / "img" / "console"
LAPTOP = (1280, 800)
PHONE = (390, 844)
FARMER_PHONE = "905551112233"
REPLY = "Merhaba Ali Bey, ben destek ekibinden Ayşe. Fotoğrafı gün ışığında yeniden çeker misiniz?"


@pytest.fixture
def browser() -> Iterator[Any]:
    _require_browser()
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     f"--window-size={LAPTOP[0]},{LAPTOP[1]}", "--lang=tr-TR", "--hide-scrollbars"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


class Console:
    """The browser on the live console, with the few moves every step needs."""

    def __init__(self, driver: Any, base: str) -> None:
        from selenium.webdriver.common.by import By

        self.driver, self.base, self.by = driver, base, By

    def open(self, path: str) -> None:
        self.driver.get(self.base + path)

    def find(self, css: str) -> Any:
        return self.driver.find_element(self.by.CSS_SELECTOR, css)

    def click(self, css: str) -> None:
        """Click what submits a form or follows a link, and wait for the next page to replace this one."""
        from selenium.webdriver.support import expected_conditions
        from selenium.webdriver.support.ui import WebDriverWait

        page = self.find("html")
        self.find(css).click()
        WebDriverWait(self.driver, 20, poll_frequency=0.1).until(expected_conditions.staleness_of(page))

    def type(self, css: str, value: str) -> None:
        field = self.find(css)
        field.clear()
        field.send_keys(value)

    def text(self) -> str:
        return str(self.find("body").text)

    def path(self) -> str:
        return str(self.driver.current_url).removeprefix(self.base)

    def shot(self, name: str, size: tuple[int, int] = LAPTOP, max_height: int = 1400) -> None:
        """A screenshot of the page at this width (the height grows with the page, up to `max_height`)."""
        width, height = size
        metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600}
        self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
        full = min(max_height, int(self.driver.execute_script("return document.documentElement.scrollHeight")))
        self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {**metrics, "height": max(height, full)})
        OUTPUT.mkdir(parents=True, exist_ok=True)
        path = OUTPUT / f"{name}.png"
        self.driver.save_screenshot(str(path))
        self.driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        if os.environ.get("UPDATE_DOCS_SCREENSHOTS"):
            _save_small(path, DOCS_IMAGES / path.name)

    def csp_violations(self) -> list[str]:
        return [entry["message"] for entry in self.driver.get_log("browser")
                if "Content Security Policy" in entry["message"] or "Refused to" in entry["message"]]


def test_support_takes_over_a_conversation_and_replies_in_chromium(browser: Any, database_url: str) -> None:
    with live_app(database_url) as live:
        seed_demo(live.app.extensions["db"])
        make_staff(live.app, "support", "destek@ziraai.local")
        farmer = SimFarmer(live.base, FARMER_PHONE, name="Ali Kara")
        farmer.says("Merhaba")
        farmer.bot_replies(offers("Kabul ediyorum"))
        farmer.taps("Kabul ediyorum")
        farmer.bot_replies(offers("Analiz gönder"))

        c = Console(browser, live.base)
        c.open("/console/login")
        c.type('input[name="email"]', "destek@ziraai.local")
        c.type('input[name="password"]', PASSWORD)
        c.click('main form button[type="submit"]')
        assert c.path() == "/console/support" and "Ali Kara" in c.text()
        c.shot("support-conversations")

        farmer_page = f"/console/support/farmers/{_farmer_id(live.app)}"
        c.click(f'a[href$="{farmer_page}"]')
        assert "Merhaba" in c.text() and "Devral" in c.text()
        c.click('form[action$="/takeover"] button')
        assert "Bu çiftçiye artık siz yanıt veriyorsunuz" in c.text()

        c.type("#reply-text", REPLY)
        c.click('form[action$="/reply"] button')
        assert "Yanıtınız yolda." in c.text()
        farmer.bot_replies(has_text(REPLY))  # through the outbox and the Graph stand-in into the farmer's chat

        farmer.says("Tamam, hemen çekiyorum.")
        asked = _message_id(live.app, "Tamam, hemen çekiyorum.")
        wait_until(lambda: _status(live.app, asked) == "processed", 30, 0.2, what="the farmer's message handled")
        assert _outbound_after(live.app, asked) == []  # the bot stayed silent
        c.open(farmer_page)
        assert "Tamam, hemen çekiyorum." in c.text() and "destek@ziraai.local" in c.text()
        c.shot("support-farmer")
        c.shot("support-farmer-phone", PHONE, max_height=2400)

        c.open("/console/support/deletions")
        assert "Fatma Kaya" in c.text()
        c.shot("support-deletions")
        c.open("/console/support?filter=human")
        assert "Ali Kara" in c.text() and "Mehmet Yılmaz" in c.text()
        c.open("/console/support/failed-jobs")
        c.open("/console/support/canned")
        assert "Karşılama" in c.text()
        assert c.csp_violations() == []


def _save_small(source: Path, target: Path) -> None:
    """The docs' copy in 256 colours (a screenshot of flat colours loses nothing visible; under 150 KB)."""
    from PIL import Image

    target.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(source) as image:
        image.convert("RGB").quantize(256).save(target, optimize=True)


def _farmer_id(app: Any) -> int:
    with app.extensions["db"].reader() as session:
        return int(session.scalar(select(Farmer.id).where(Farmer.phone == "+" + FARMER_PHONE)))


def _message_id(app: Any, text: str) -> int:
    def find() -> int | None:
        with app.extensions["db"].reader() as session:
            return session.scalar(select(Message.id).where(Message.text == text))
    return int(wait_until(find, 30, 0.2, what="the farmer's message stored"))


def _status(app: Any, message_id: int) -> str | None:
    with app.extensions["db"].reader() as session:
        return session.scalar(select(Message.status).where(Message.id == message_id))


def _outbound_after(app: Any, message_id: int) -> list[str | None]:
    with app.extensions["db"].reader() as session:
        return list(session.scalars(select(Message.text).where(Message.direction == Direction.OUTBOUND.value,
                                                                Message.id > message_id)))
