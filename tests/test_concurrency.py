"""Races through the whole path — webhook, Redis, several real `flask worker` processes, PostgreSQL —
where they matter to farmers: quota charged exactly as far as it goes, a code won by one farmer.
Needs a real Redis (separate processes cannot share the in-process fakeredis): runs in CI."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from sqlalchemy import func, select

from app import create_app
from models import Analysis, SponsorCode, Subscription, UsageLedger, utcnow
from services import quota, sponsorship
from settings import PROJECT_ROOT
from tests.chat import Farmer
from tests.helpers import APP_SECRET, REAL_REDIS, TEST_REDIS_URL, make_settings, post_concurrently, send_due
from tests.stand_ins import graph_stand_in

pytestmark = pytest.mark.skipif(not REAL_REDIS, reason="worker processes need a real Redis (TEST_REDIS_URL)")


def run_workers(database_url: str, graph_base: str, count: int, queues: tuple[str, ...] = ()) -> None:
    env = {**os.environ, "APP_ENV": "test", "DATABASE_URL": database_url, "REDIS_URL": TEST_REDIS_URL,
           "WHATSAPP_APP_SECRET": APP_SECRET, "WHATSAPP_API_BASE": graph_base, "WHATSAPP_TOKEN": "test-token-abc",
           "RETRY_BACKOFF_BASE": "0", "LOG_LEVEL": "WARNING"}
    listen = [f"--queue={queue}" for queue in queues]
    command = [sys.executable, "-m", "flask", "--app", "app:create_app", "worker", "--burst", *listen]
    workers = [subprocess.Popen(command,
                                cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True) for _ in range(count)]
    for w in workers:
        _, err = w.communicate(timeout=300)
        assert w.returncode == 0, err[-2000:]


def test_twenty_confirmations_with_five_left_charge_exactly_five(app, session, database_url):
    with graph_stand_in() as graph:
        web = create_app(make_settings(database_url, WHATSAPP_API_BASE=graph.base))
        with web.extensions["db"].session() as s, s.begin():
            quota.seed_tiers(s)
            sponsor = sponsorship.create_sponsor(s, "Tarım A.Ş.")
            _, [code] = sponsorship.create_purchase(s, sponsor.id, "S", 1, 90, 30, utcnow())  # 5 a day
        farmer = Farmer(web, graph)
        farmer.onboard()
        assert "Kod kabul edildi" in farmer.says(code)[0]
        taps = []
        for i in range(20):  # twenty photos, each taken to its confirmation
            farmer.timestamp += 60  # a minute apart: each its own submission, not an album's next photo
            farmer.photo("domates", media_id=f"90000{i}")
            farmer.taps("Geç")
            [send] = [b["reply"]["id"] for b in farmer.last_bodies[-1]["interactive"]["action"]["buttons"]
                      if b["reply"]["id"].startswith("submit:")]
            taps.append(farmer.message("interactive", {"type": "button_reply",
                                                        "button_reply": {"id": send, "title": "Gönder"}}))
        before = len(graph.sent)
        post_concurrently(web, [farmer.body(tap) for tap in taps])  # all twenty Gönder at once
        # Only the conversations: an analysis failing meanwhile (the stand-in has no photos) would refund
        # its charge and let a sixth `Gönder` through, which is right but not what this test counts.
        run_workers(database_url, graph.base, count=3, queues=("inbound",))
        with web.app_context():  # what the workers left to the senders (a reply queued behind another's send)
            for _ in range(10):
                if not send_due():
                    break

        answers = graph.texts()[before:]
        assert sum("sıraya alındı" in a for a in answers) == 5
        assert sum("Günlük analiz hakkınız doldu" in a for a in answers) == 15
        assert session.scalar(select(func.count()).select_from(Analysis)) == 5
        paid = session.scalar(select(Subscription.id).where(Subscription.code_id.is_not(None)))
        charges = session.scalar(select(func.count()).select_from(UsageLedger)
                                 .where(UsageLedger.kind == "charge", UsageLedger.subscription_id == paid))
        assert charges == 5
        web.extensions["db"].engine.dispose()


def test_two_farmers_one_code_exactly_one_wins(app, session, database_url):
    with graph_stand_in() as graph:
        web = create_app(make_settings(database_url, WHATSAPP_API_BASE=graph.base))
        with web.extensions["db"].session() as s, s.begin():
            quota.seed_tiers(s)
            sponsor = sponsorship.create_sponsor(s, "Tarım A.Ş.")
            _, [code] = sponsorship.create_purchase(s, sponsor.id, "M", 1, 90, 30, utcnow())
        mehmet = Farmer(web, graph)
        ayse = Farmer(web, graph, phone="905339876543", name="Ayşe Demir")
        mehmet.onboard()
        ayse.onboard()
        before = len(graph.sent)
        post_concurrently(web, [mehmet.body(mehmet.text(code)), ayse.body(ayse.text(code.lower()))])
        run_workers(database_url, graph.base, count=2)

        answers = graph.texts()[before:]
        assert sum("Kod kabul edildi" in a for a in answers) == 1
        assert sum("kullanılmış" in a for a in answers) == 1
        assert session.scalar(select(SponsorCode.status)) == "redeemed"
        assert session.scalar(select(func.count()).select_from(Subscription)
                              .where(Subscription.code_id.is_not(None))) == 1
        web.extensions["db"].engine.dispose()
