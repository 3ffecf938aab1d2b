"""`flask chat` against a live server: real HTTP to the webhook, answers read from the message log."""

from __future__ import annotations

import responses

from devtools.terminal_chat import TerminalFarmer, run
from services import quota
from services.worker import start_embedded_worker
from tests.chat import GraphStub
from tests.helpers import APP_SECRET, PHONE_NUMBER_ID
from tests.stand_ins import serve_app


def test_terminal_chat_plays_a_farmer(app):
    with app.extensions["db"].session() as s, s.begin():
        quota.seed_tiers(s)
    lines = iter(["Merhaba", "/tap 1", "/tap 9", "/photo domates yaprakları sararıyor", "/tap location:skip",
                  "/voice", "/quit"])
    out: list[str] = []
    with serve_app(app) as base:
        stop = start_embedded_worker(app, poll=0.05)
        try:
            with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
                mock.add_passthru("http://127.0.0.1")
                GraphStub(mock)
                farmer = TerminalFarmer(base, APP_SECRET, app.extensions["db"], "+905321234567", "Mehmet",
                                        PHONE_NUMBER_ID)
                run(farmer, read=lambda _prompt: next(lines), write=out.append)
        finally:
            stop.set()
    bot = [line for line in out if line.startswith("bot> ")]
    assert "KVKK" in bot[0] and "[Kabul ediyorum]" in bot[0]
    assert any("(1. Analiz gönder)" in line for line in bot)  # consent given with /tap 1: the menu came
    assert any("no such button" in line for line in out)  # /tap 9: the consent message has 2 buttons
    assert any("Fotoğraf alındı: Domates" in line for line in bot)
    assert any("[Gönder]" in line and "domates yaprakları sararıyor" in line for line in bot)
    assert any("Sesli mesajları" in line for line in bot[-2:])  # then the pending question again
