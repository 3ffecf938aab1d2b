"""The support pages in a real headless Chromium (laptop size, 1280x800, and a phone, 390x844), on the app on a
real port with the Graph API stand-in (devtools/graph_api.py) and the embedded worker: a farmer talks to the bot
through `/dev/chat`; support signs in, opens the conversations and the farmer, takes over, replies; the reply
reaches the farmer's chat through the stand-in, and a message of the farmer meanwhile gets no bot answer.
No page may break its Content-Security-Policy.

Needs Debian's `chromium` and `chromium-driver`; skipped without them except in CI (tests/browser.py).
Screenshots go to `tests/output/console/support-*.png`; with `UPDATE_DOCS_SCREENSHOTS=1` they are also
copied to `docs/img/console/` for docs/CONSOLE_SUPPORT.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from devtools.demo import seed_demo
from models import AuditLog, CannedReply, Direction, Farmer, Message, SupportNote, utcnow
from tests.admin_helpers import PASSWORD, make_staff
from tests.browser import LAPTOP, PHONE, Console, chrome
from tests.dev_live import SimFarmer, has_text, live_app, offers
from tests.helpers import wait_until

FARMER_PHONE = "905551112233"
REPLY = "Merhaba Ali Bey, ben destek ekibinden Ayşe. Fotoğrafı gün ışığında yeniden çeker misiniz?"


@pytest.fixture
def browser() -> Iterator[Any]:
    with chrome(*LAPTOP) as driver:
        yield driver


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


def test_a_long_unbroken_text_wraps_instead_of_widening_any_page(database_url: str) -> None:
    long_word = "x" * 2000
    with live_app(database_url, worker=False) as live:
        admin_id = make_staff(live.app, "admin", "yonetici@ziraai.local")
        with live.app.extensions["db"].session() as session, session.begin():
            farmer = Farmer(phone="+905551112299", profile_name="Ali" + "k" * 197, locale="tr")
            session.add(farmer)
            session.flush()
            session.add(SupportNote(farmer_id=farmer.id, author_id=admin_id, text=long_word, created_at=utcnow()))
            session.add(CannedReply(title="T" + "t" * 99, text=long_word, updated_by=admin_id, updated_at=utcnow()))
            session.add(AuditLog(action="farmer.note", record_type="farmer", record_id=str(farmer.id), at=utcnow(),
                                 details={"text": long_word}, user_id=admin_id))
            farmer_id = farmer.id
        for size in (LAPTOP, PHONE):
            with chrome(*size, mobile=size == PHONE) as driver:
                c = Console(driver, live.base)
                c.open("/console/login")
                c.type('input[name="email"]', "yonetici@ziraai.local")
                c.type('input[name="password"]', PASSWORD)
                c.click('main form button[type="submit"]')
                for path in (f"/console/support/farmers/{farmer_id}", "/console/support/canned", "/console/support",
                             "/console/admin/audit"):
                    c.open(path)
                    width = driver.execute_script("return document.documentElement.scrollWidth")
                    assert width <= size[0], (path, size, width)


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
