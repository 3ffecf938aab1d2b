"""A farmer's journey in a real headless Chromium at phone size (360x740), against `make run`'s processes:
consent, the menu, a sample photo with a crop caption, a location, the result, `Detaylar`; then an album of
three photos chosen at once after the day's trial analysis is used: the limit said at the photo, a sponsor
code typed, the same three photos confirmed ("3 fotoğraf") and analysed once; both report pages at 390 px.
And the simulator sends a farmer's messages in the order made, none dropped, when a request is slow, each as
the farmer who made it when the number is changed meanwhile.

Needs Debian's `chromium` and `chromium-driver` (tests/browser.py says how; skipped without them except in
CI). Screenshots go to `tests/output/`: `chat.png` (the diagnosis), `chat-details.png` (the end of the
chat), `chat-album.png`, `report.png` and `report-album.png` (gitignored; CI keeps them).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser import chrome, save_screenshot
from tests.dev_live import make_run

SAMPLES = Path(__file__).parent.parent / "devtools" / "static" / "samples"
WIDTH, HEIGHT = 360, 740
REPORT_WIDTH, REPORT_HEIGHT = 390, 844  # the report page on a common phone


@pytest.fixture
def browser() -> Iterator[Any]:
    with chrome(WIDTH, HEIGHT, mobile=True) as driver:
        yield driver


def open_chat(browser: Any, base: str) -> None:
    """The simulator, once its script has filled the farmer's fields and listens: typed into earlier, a
    number would be overwritten and a message submitted as a plain form, never sent."""
    browser.get(f"{base}/dev/chat")
    newest(browser, 'body[data-ready="true"]')


def newest(browser: Any, css: str, text: str | None = None, timeout: float = 30) -> Any:
    """The newest element matching `css` (whose text contains `text`), waiting for it to appear."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def find(driver: Any) -> Any:
        found = [e for e in driver.find_elements(By.CSS_SELECTOR, css) if text is None or text in e.text]
        return found[-1] if found else None
    return WebDriverWait(browser, timeout, poll_frequency=0.2).until(find, f"{css} {text or ''}")


def test_a_farmer_in_chromium_gets_a_diagnosis_and_opens_the_report(browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select, WebDriverWait

    def last(css: str, text: str | None = None, timeout: float = 30):
        return newest(browser, css, text, timeout)

    def bot_says(fragment: str, timeout: float = 30):
        return last('.msg[data-dir="out"]', fragment, timeout)

    def said(fragment: str) -> list:
        return [e for e in browser.find_elements(By.CSS_SELECTOR, '.msg[data-dir="out"]') if fragment in e.text]

    def report_links() -> list[str]:
        return [href for a in browser.find_elements(By.CSS_SELECTOR, "#messages a")
                if "/r/" in (href := a.get_attribute("href") or "")]

    def said_again(fragment: str, seen: int, timeout: float = 30):
        """The bot's newest message with `fragment` once there are more than `seen` of them (old buttons and
        bubbles stay on the page, so the newest match alone could be an earlier one)."""
        return WebDriverWait(browser, timeout, poll_frequency=0.2).until(
            lambda driver: said(fragment)[seen:], f"a new message with {fragment!r}")[-1]

    with make_run(tmp_path) as service:
        open_chat(browser, service.base)
        phone = last("#phone")
        phone.clear()
        phone.send_keys("905557778899", Keys.TAB)
        name = last("#name")
        name.clear()
        name.send_keys("Fatma Kaya", Keys.TAB)

        last("#text-input").send_keys("Merhaba", Keys.ENTER)
        assert "KVKK" in bot_says("KVKK").text
        last(".reply-btn", "Kabul ediyorum").click()

        bot_says("Ne yapmak istersiniz")
        last(".list-open").click()
        # The welcome and the menu say "fotoğrafını gönderin" too: wait for the answer to this tap, or the
        # photo below may reach the bot before the tap does.
        photo_prompts = len(said("fotoğrafını gönderin"))
        last("#list-sheet .list-row", "Analiz gönder").click()
        said_again("fotoğrafını gönderin", photo_prompts)

        last("#attach-btn").click()
        last("#caption-input").send_keys("domates yapraklarında lekeler var")
        last("#sample-lekeli_yaprak").click()
        last(".reply-btn", "Geç")
        last("#location-btn").click()
        Select(last("#province-select")).select_by_value("Antalya")
        last("#send-location-btn").click()
        confirmation = bot_says("Göndermeden önce")
        assert "Domates" in confirmation.text and "Antalya" in confirmation.text
        last(".reply-btn", "Gönder").click()

        result = bot_says("Sağlık puanı", timeout=60)
        score = re.search(r"Sağlık puanı: (\d+)/10", result.text)
        assert score, result.text
        first_action = re.search(r"1\. (.+)", result.text)
        assert first_action, result.text
        # The farmer's own photo is shown, and the bot's messages got their ticks from the status webhooks.
        assert browser.find_elements(By.CSS_SELECTOR, '.msg[data-dir="in"] img')
        last('.msg[data-dir="out"][data-status="read"]')
        last(".reply-btn", "Detaylar").click()
        details = bot_says("Hastalıklar")
        assert "Kahverengi" in details.text
        last('.msg[data-dir="out"]', "Takip")
        assert browser.execute_script("return document.documentElement.scrollWidth") <= WIDTH  # no sideways scroll

        link = last("#messages a", "/r/").get_attribute("href")
        browser.execute_script("document.querySelector('#messages').scrollTop = 1e9")
        save_screenshot(browser, "chat-details")
        browser.execute_script("arguments[0].scrollIntoView({block: 'start'})", result)  # the diagnosis
        save_screenshot(browser, "chat")

        # --- An album: three photos chosen at once, sent as three image messages (as WhatsApp does). The
        # trial's one analysis a day is used up, so the farmer hears it at the photo, types a sponsor code,
        # and the same three photos go on to one analysis. --------------------------------------------
        photos = '.msg[data-dir="in"][data-kind="image"]'
        before = len(browser.find_elements(By.CSS_SELECTOR, photos))
        album = [SAMPLES / f"{name}.jpg" for name in ("saglikli_yaprak", "sararan_yaprak", "kuruyan_kenarlar")]
        last("#attach-btn").click()
        last("#photo-file").send_keys("\n".join(str(path) for path in album))
        WebDriverWait(browser, 20, poll_frequency=0.2).until(
            lambda driver: len(driver.find_elements(By.CSS_SELECTOR, photos)) == before + 3, "three photo bubbles")
        assert last('[data-label="photo_title"]').get_attribute("textContent") == "Fotoğraf"  # the page's own words
        bot_says("Fotoğrafınız bekliyor")
        code = re.search(r"Sponsor codes:\s+(\S+)", service.log())
        assert code, service.log()[-2000:]
        asked_location = len(said("Tarla nerede"))
        confirmations = len(said("Göndermeden önce"))
        results = len(said("Sağlık puanı"))
        last("#text-input").send_keys(code.group(1), Keys.ENTER)
        bot_says("Hangi ürün")
        last("#text-input").send_keys("Domates", Keys.ENTER)
        said_again("Tarla nerede", asked_location)
        last(".reply-btn", "Geç").click()
        confirmation = said_again("Göndermeden önce", confirmations)
        assert "3 fotoğraf" in confirmation.text, confirmation.text
        last(".reply-btn", "Gönder").click()
        album_result = said_again("Sağlık puanı", results, timeout=60)
        links_before = len(report_links())
        last(".reply-btn", "Detaylar").click()
        album_link = WebDriverWait(browser, 30, poll_frequency=0.2).until(
            lambda driver: report_links()[links_before:], "the album's report link")[-1]
        assert album_link != link
        browser.execute_script("arguments[0].scrollIntoView({block: 'start'})", album_result)
        save_screenshot(browser, "chat-album")

        # --- The report page, on a 390 px phone ---------------------------------------------------------
        browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                                {"width": REPORT_WIDTH, "height": REPORT_HEIGHT, "deviceScaleFactor": 1,
                                 "mobile": True})
        browser.get(link)
        page = browser.find_element(By.TAG_NAME, "body").text
        assert "Sağlık puanı" in page
        assert re.search(rf"\b{score.group(1)}\s*/\s*10\b", page), page[:500]  # the same score as in the chat
        action = first_action.group(1).strip()[:30]
        assert action in page, f"the first recommendation {action!r} is not on the report page"
        assert browser.execute_script("return document.documentElement.scrollWidth") <= REPORT_WIDTH
        save_screenshot(browser, "report")
        browser.get(album_link)  # the album's report shows its three photos
        WebDriverWait(browser, 10, poll_frequency=0.2).until(
            lambda driver: len(driver.find_elements(By.CSS_SELECTOR, "img")) >= 3, "the album's three photos")
        assert browser.execute_script("return document.documentElement.scrollWidth") <= REPORT_WIDTH
        save_screenshot(browser, "report-album")
        # The simulator and the report page have their tab's icon: no 404 in the browser's console for it.
        assert not [e["message"] for e in browser.get_log("browser") if "favicon" in e["message"]]


def test_the_simulator_sends_a_farmer_s_messages_in_the_order_made_even_when_one_is_slow(browser, tmp_path):
    """As a phone does: here each tap's and each text's request is held back half a second in the page, and
    what the farmer sends right behind it must still reach the bot after it (else the bot takes a photo at the
    menu and the tap then starts the analysis over), and text typed meanwhile is sent, not dropped."""
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    def inbound_in_order(labels: dict[str, str]) -> list[str]:
        """The labels of the farmer's bubbles that contain each label's text (or are photos), in page order,
        once every label has its bubble."""
        return WebDriverWait(browser, 30, poll_frequency=0.2).until(lambda driver: driver.execute_script("""
            const labels = arguments[0];
            const seen = [...document.querySelectorAll('.msg[data-dir="in"]')].map((e) => Object.keys(labels)
                .find((label) => labels[label] === "photo" ? e.dataset.kind === "image"
                                                            : e.textContent.includes(labels[label]))).filter(Boolean);
            return Object.keys(labels).every((label) => seen.includes(label)) ? seen : null;
        """, labels), f"the farmer's bubbles {sorted(labels)}")

    with make_run(tmp_path) as service:
        open_chat(browser, service.base)
        phone = newest(browser, "#phone")
        phone.clear()
        phone.send_keys("905557778800", Keys.TAB)
        newest(browser, "#text-input").send_keys("Merhaba", Keys.ENTER)
        newest(browser, ".reply-btn", "Kabul ediyorum").click()
        newest(browser, '.msg[data-dir="out"]', "Ne yapmak istersiniz")
        browser.execute_script("""
            const real = window.fetch;
            window.fetch = (url, options) => /[/](reply|text)$/.test(String(url))
                ? new Promise((resolve) => setTimeout(resolve, 500)).then(() => real(url, options))
                : real(url, options);
        """)
        newest(browser, ".list-open").click()
        newest(browser, "#list-sheet .list-row", "Analiz gönder").click()
        newest(browser, "#attach-btn").click()
        newest(browser, "#sample-lekeli_yaprak").click()
        assert inbound_in_order({"tap": "Analiz gönder", "photo": "photo"}) == ["tap", "photo"]
        newest(browser, '.msg[data-dir="out"]', "Hangi ürün")  # the photo taken into the analysis

        newest(browser, "#text-input").send_keys("Domates", Keys.ENTER)
        newest(browser, "#text-input").send_keys("yapraklarda lekeler", Keys.ENTER)
        assert inbound_in_order({"first": "Domates", "second": "yapraklarda lekeler"}) == ["first", "second"]


def test_the_simulator_sends_each_message_as_the_farmer_who_made_it_when_the_number_changes_meanwhile(
        browser, tmp_path):
    """The sample album's three photos and an album chosen from the computer are made by the farmer whose
    number is in the field when they are made: changing the number right after (while the first photo's
    request is still under way) must not send the rest as the other farmer."""
    import requests
    from selenium.webdriver.common.keys import Keys

    from tests.helpers import wait_until

    def images(base: str, phone: str) -> int:
        messages = requests.get(f"{base}/dev/chat/api/conversation", params={"phone": phone}, timeout=10)
        return sum(1 for m in messages.json()["messages"] if m["dir"] == "in" and m["kind"] == "image")

    def set_phone(number: str) -> None:
        phone = newest(browser, "#phone")
        phone.clear()
        phone.send_keys(number, Keys.TAB)

    farmer_a, farmer_b = "905551110012", "905551110013"
    with make_run(tmp_path) as service:
        open_chat(browser, service.base)
        set_phone(farmer_a)
        browser.execute_script("""
            const real = window.fetch;
            window.fetch = (url, options) => /[/]photo([?]|$)/.test(String(url))
                ? new Promise((resolve) => setTimeout(resolve, 400)).then(() => real(url, options))
                : real(url, options);
        """)
        newest(browser, "#attach-btn").click()
        newest(browser, "#sample-album").click()
        set_phone(farmer_b)
        wait_until(lambda: images(service.base, farmer_a) + images(service.base, farmer_b) == 3, 30, 0.2,
                   what="the sample album's three photos")
        assert (images(service.base, farmer_a), images(service.base, farmer_b)) == (3, 0)

        newest(browser, "#attach-btn").click()
        album = [SAMPLES / f"{name}.jpg" for name in ("saglikli_yaprak", "lekeli_yaprak")]
        newest(browser, "#photo-file").send_keys("\n".join(str(path) for path in album))
        set_phone(farmer_a)
        wait_until(lambda: images(service.base, farmer_a) + images(service.base, farmer_b) == 5, 30, 0.2,
                   what="the chosen album's two photos")
        assert (images(service.base, farmer_a), images(service.base, farmer_b)) == (3, 2)
