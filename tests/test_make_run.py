"""`make run` on a fresh clone: its launcher (`python -m devtools.run`, what the Makefile's `run` target
executes after installing) migrates a new SQLite file, seeds the demo data, starts gunicorn with the
Graph API stand-in and the local analyser, prints where to go; a farmer then goes through the whole
journey over HTTP via `/dev/chat/api`, and Ctrl-C stops everything."""

from __future__ import annotations

import re

import pytest
import requests
from dotenv import dotenv_values
from redis import Redis

from devtools.demo import ADMIN_EMAIL, CODE_QUANTITY, SPONSOR_NAME
from devtools.run import port_free
from settings import PROJECT_ROOT
from tests.conftest import TEST_REDIS_URL
from tests.dev_live import SimFarmer, has_text, make_run, offers, wait_for


def journey(farmer: SimFarmer) -> dict[str, list[dict]]:
    """Consent, the menu, a photo with a crop caption and a location, the result, `Detaylar`.
    Returns the bot's answers at each step."""
    seen: dict[str, list[dict]] = {}
    farmer.says("Merhaba")
    seen["consent"] = farmer.bot_replies(offers("Kabul ediyorum"))
    farmer.taps("Kabul ediyorum")
    seen["menu"] = farmer.bot_replies(offers("Analiz gönder"))
    farmer.taps("Analiz gönder")
    seen["ask_photo"] = farmer.bot_replies(lambda m: m["kind"] == "text")
    farmer.photo("lekeli_yaprak", caption="domates yapraklarında lekeler var")
    seen["ask_location"] = farmer.bot_replies(offers("Geç"))
    farmer.location("Antalya")
    seen["confirm"] = farmer.bot_replies(offers("Gönder"))
    farmer.taps("Gönder")
    seen["result"] = farmer.bot_replies(offers("Detaylar"), timeout=60)
    farmer.taps("Detaylar")
    seen["details"] = farmer.bot_replies(has_text("Takip"), timeout=30)
    return seen


def check_journey(seen: dict[str, list[dict]]) -> None:
    assert "KVKK" in seen["consent"][-1]["text"]
    assert seen["menu"][-1]["kind"] == "list"
    assert "fotoğraf" in seen["ask_photo"][-1]["text"]
    assert any("Domates" in m["text"] for m in seen["ask_location"])  # the caption named the crop
    confirm = seen["confirm"][-1]["text"]
    assert "Domates" in confirm and "Antalya" in confirm
    result = next(m for m in seen["result"] if offers("Detaylar")(m))
    assert re.search(r"Sağlık puanı: \d+/10", result["text"])  # computed by the local analyser from the photo
    assert "Kahverengi lekeler" in result["text"]  # the spotted sample leaf
    assert any("Hastalıklar" in m["text"] for m in seen["details"])


def test_make_run_serves_the_whole_journey_and_stops_on_ctrl_c(tmp_path):
    with make_run(tmp_path) as service:
        banner = service.log()
        assert f"{service.base}/dev/chat" in banner
        assert f"{service.base}/api/v1" in banner
        login = re.search(rf"{re.escape(ADMIN_EMAIL)} / (\S+)", banner)
        assert login, banner
        assert "local stand-in" in banner and "local analyser" in banner
        assert len(set(re.findall(r"AGRI-[A-Z0-9]{4}-[A-Z0-9]{4}", banner))) == 3

        page = requests.get(f"{service.base}/dev/chat", timeout=5)
        assert page.status_code == 200 and 'id="messages"' in page.text
        farmer = SimFarmer(service.base, "905551112233", "Ayşe Demir")
        check_journey(journey(farmer))
        # Every bot message was sent through the stand-in and its signed statuses accepted: all read.
        messages = wait_for(lambda: (m := farmer.conversation()) and all(x["status"] == "read" for x in m) and m,
                            10, what="blue ticks everywhere")
        assert len(messages) > 15

        # The printed admin login works on the admin API.
        token = requests.post(f"{service.base}/api/v1/auth/login", timeout=10,
                              json={"email": ADMIN_EMAIL, "password": login.group(1)})
        assert token.status_code == 200, token.text
        port = int(service.base.rsplit(":", 1)[1])
    assert service.process.wait(timeout=30) == 0
    assert "stopped." in service.log()
    assert port_free(port)  # nothing listens any more
    # No secret in the environment: generated ones, shared by every process, whose place (not value) is logged.
    generated = dotenv_values(PROJECT_ROOT / "instance" / "dev-secrets.env")  # the processes' own file
    assert "dev-secrets.env" in service.log() and generated.get("WHATSAPP_APP_SECRET")
    assert not [name for name, value in generated.items() if value and value in service.log()]


def test_a_second_run_keeps_the_data_and_does_not_show_the_password_again(tmp_path):
    with make_run(tmp_path):
        pass
    first = (tmp_path / "make-run.log").read_text()
    with make_run(tmp_path) as service:  # the same SQLite file, another free port
        pass
    second = service.log()
    assert f"{ADMIN_EMAIL} / " in first
    assert f"{ADMIN_EMAIL} / " not in second and "password shown on the first run" in second
    assert "already there" in second


@pytest.mark.skipif(not TEST_REDIS_URL, reason="needs TEST_REDIS_URL: with REDIS_URL, make run starts "
                                               "gunicorn + flask worker + flask scheduler")
def test_make_run_with_redis_starts_a_worker_and_the_scheduler(tmp_path):
    # A fresh SQLite file numbers messages from 1 again: jobs (`inbound-<id>`) left in Redis by earlier
    # tests would make the new ones look like duplicates.
    Redis.from_url(TEST_REDIS_URL).flushdb()
    with make_run(tmp_path, REDIS_URL=TEST_REDIS_URL) as service:
        assert "Redis at REDIS_URL" in service.log()
        farmer = SimFarmer(service.base, "905551112244")
        check_journey(journey(farmer))
        log = service.log()
    assert service.process.wait(timeout=30) == 0
    assert "Listening on" in log  # the RQ worker process
    assert "scheduler started" in log  # the scheduler process


def test_seed_demo_is_idempotent_and_shows_the_password_once(runner, session):
    from sqlalchemy import func, select

    from models import Sponsor, SponsorCode, StaffUser

    first = runner.invoke(args=["seed-demo"])
    assert first.exit_code == 0, first.output
    password = re.search(rf"{re.escape(ADMIN_EMAIL)} / (\S+)", first.output).group(1)
    assert len(password) >= 12
    second = runner.invoke(args=["seed-demo"])
    assert second.exit_code == 0 and password not in second.output
    assert "already there" in second.output and "password shown when it was created" in second.output
    assert session.scalar(select(func.count()).select_from(Sponsor).where(Sponsor.name == SPONSOR_NAME)) == 1
    assert session.scalar(select(func.count()).select_from(SponsorCode)) == CODE_QUANTITY
    assert session.scalar(select(func.count()).select_from(StaffUser)) == 1

    renewed = runner.invoke(args=["seed-demo", "--new-admin-password"])
    new_password = re.search(rf"{re.escape(ADMIN_EMAIL)} / (\S+)", renewed.output).group(1)
    assert new_password != password
    client = runner.app.test_client()
    assert client.post("/api/v1/auth/login", json={"email": ADMIN_EMAIL, "password": password}).status_code == 401
    assert client.post("/api/v1/auth/login", json={"email": ADMIN_EMAIL, "password": new_password}).status_code == 200
