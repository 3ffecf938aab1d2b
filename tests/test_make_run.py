"""`make run` on a fresh clone: its launcher (`python -m devtools.run`, what the Makefile's `run` target
executes after installing) migrates a new SQLite file, seeds the demo data, starts gunicorn with the
Graph API stand-in and the local analyser, prints where to go; a farmer then goes through the whole
journey over HTTP via `/dev/chat/api`, and Ctrl-C stops everything. It supervises: a killed worker is
started again while the web server goes on answering. Production's supervision (the systemd units in
`deploy/systemd/`) runs the Procfile's commands and restarts them always."""

from __future__ import annotations

import configparser
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from dotenv import dotenv_values
from redis import Redis

from devtools.demo import ACTIVITY_CODES, ADMIN_EMAIL, CODE_QUANTITY, SPONSOR_NAME
from devtools.run import Child, child_environment, commands, metrics_directory, port_free
from devtools.sponsor_demo import CODES_PER_TIER
from settings import PROJECT_ROOT, load_settings
from tests.dev_live import SimFarmer, has_text, make_run, offers
from tests.helpers import TEST_REDIS_URL, wait_until


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
        assert f"{service.base}/api/v1" in banner and f"{service.base}/api/v1/docs" in banner
        assert f"Staff console:      {service.base}/console" in banner
        login = re.search(rf"{re.escape(ADMIN_EMAIL)} / (\S+)", banner)
        assert login, banner
        assert "local stand-in" in banner and "local analyser" in banner
        assert len(set(re.findall(r"AGRI-[A-Z0-9]{4}-[A-Z0-9]{4}", banner))) == 3

        page = requests.get(f"{service.base}/dev/chat", timeout=5)
        assert page.status_code == 200 and 'id="messages"' in page.text
        farmer = SimFarmer(service.base, "905551112233", "Ayşe Demir")
        check_journey(journey(farmer))
        # Every bot message was sent through the stand-in and its signed statuses accepted: all read.
        messages = wait_until(lambda: (m := farmer.conversation()) and all(x["status"] == "read" for x in m) and m,
                            10, what="blue ticks everywhere")
        assert len(messages) > 15

        # The printed admin login works on the admin API.
        token = requests.post(f"{service.base}/api/v1/auth/login", timeout=10,
                              json={"email": ADMIN_EMAIL, "password": login.group(1)})
        assert token.status_code == 200, token.text
        # ... and on the staff console, whose demo data has something to show.
        browser = requests.Session()
        form = browser.get(f"{service.base}/console/login", timeout=10)
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert csrf, form.text
        signed = browser.post(f"{service.base}/console/login", timeout=10,
                              data={"email": ADMIN_EMAIL, "password": login.group(1), "csrf_token": csrf.group(1)})
        assert signed.url.endswith("/console/admin") and "Demo Tarım A.Ş." in browser.get(
            f"{service.base}/console/admin/purchase-requests", timeout=10).text
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
                                               "gunicorn + flask worker + flask sender + flask scheduler")
def test_make_run_with_redis_starts_a_worker_a_sender_and_the_scheduler(tmp_path):
    # A fresh SQLite file numbers messages from 1 again: jobs (`inbound-<id>`) left in Redis by earlier
    # tests would make the new ones look like duplicates.
    Redis.from_url(TEST_REDIS_URL).flushdb()
    with make_run(tmp_path, REDIS_URL=TEST_REDIS_URL) as service:
        assert "Redis at REDIS_URL" in service.log()
        farmer = SimFarmer(service.base, "905551112244")
        check_journey(journey(farmer))
        log = service.log()
        sends = [_sent_count(requests.get(f"{service.base}/metrics", timeout=10).text) for _ in range(6)]
    assert service.process.wait(timeout=30) == 0
    assert sends[0] > 0 and len(set(sends)) == 1, sends  # the sender's count, whichever web worker answers
    assert "Listening on" in log  # the RQ worker process
    assert "sender started" in log  # the outbox's sender process
    assert "scheduler started" in log  # the scheduler process


COUNT_A_SEND = "from services import metrics; metrics.outbound_send('sent')"
SERVE_METRICS = ("import sys, fakeredis; from services import metrics; "
                 "sys.stdout.write(metrics.render(fakeredis.FakeRedis())[0].decode())")


def test_a_count_made_in_one_child_of_make_run_is_served_by_another():
    """The sender counts its sends, a gunicorn worker serves /metrics: both are children of `make run`."""
    directory = metrics_directory()
    try:
        assert directory.is_dir() and list(directory.iterdir()) == []
        env = child_environment(directory)
        for script in (COUNT_A_SEND, COUNT_A_SEND):
            subprocess.run([sys.executable, "-c", script], env=env, cwd=PROJECT_ROOT, check=True, timeout=60)
        served = subprocess.run([sys.executable, "-c", SERVE_METRICS], env=env, cwd=PROJECT_ROOT, check=True,
                                capture_output=True, text=True, timeout=60).stdout
        assert 'ziraai_outbound_sends_total{outcome="sent"} 2.0' in served
        second = metrics_directory()  # the next start's
        assert second != directory
        shutil.rmtree(second)
    finally:
        shutil.rmtree(directory)


def test_make_run_gives_its_children_a_metrics_directory_and_removes_it_at_the_stop(tmp_path):
    temp = tmp_path / "tmp"
    temp.mkdir()
    with make_run(tmp_path, TMPDIR=str(temp)) as service:
        [directory] = temp.glob("ziraai-metrics-*")
        SimFarmer(service.base, "905551112255").says("Merhaba")
        assert list(directory.iterdir()), "no process wrote its metrics there"
        assert "ziraai_webhooks_total" in requests.get(f"{service.base}/metrics", timeout=10).text
    assert service.process.wait(timeout=30) == 0
    assert list(temp.glob("ziraai-metrics-*")) == []


def test_seed_demo_is_idempotent_and_shows_the_password_once(runner, session):
    from sqlalchemy import func, select

    from models import Sponsor, SponsorCode, StaffUser

    first = runner.invoke(args=["seed-demo"])
    assert first.exit_code == 0, first.output
    shown = re.search(rf"{re.escape(ADMIN_EMAIL)} / (\S+)", first.output)
    assert shown is not None, first.output
    password = shown.group(1)
    assert len(password) >= 12
    second = runner.invoke(args=["seed-demo"])
    assert second.exit_code == 0 and password not in second.output
    assert "already there" in second.output and "password shown when it was created" in second.output
    assert session.scalar(select(func.count()).select_from(Sponsor).where(Sponsor.name == SPONSOR_NAME)) == 1
    demo_codes = CODE_QUANTITY + ACTIVITY_CODES + 4 * CODES_PER_TIER
    assert session.scalar(select(func.count()).select_from(SponsorCode)) == demo_codes
    assert session.scalar(select(func.count()).select_from(StaffUser)) == 1

    renewed = runner.invoke(args=["seed-demo", "--new-admin-password"])
    shown = re.search(rf"{re.escape(ADMIN_EMAIL)} / (\S+)", renewed.output)
    assert shown is not None, renewed.output
    new_password = shown.group(1)
    assert new_password != password
    client = runner.app.test_client()
    assert client.post("/api/v1/auth/login", json={"email": ADMIN_EMAIL, "password": password}).status_code == 401
    assert client.post("/api/v1/auth/login", json={"email": ADMIN_EMAIL, "password": new_password}).status_code == 200


def children_named(pid: int, name: str) -> list[int]:
    """Processes started by `pid` whose command line contains `name` (e.g. the `flask ... worker` child)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if ppid == pid and name.encode() in argv:
                found.append(int(entry.name))
    return found


def test_make_run_with_redis_starts_as_many_worker_processes_as_worker_processes_says():
    settings = load_settings({"REDIS_URL": "redis://127.0.0.1:6379/0", "WORKER_PROCESSES": "3"}, environ={},
                             dotenv_path=None)
    names = [name for name, _ in commands(settings)]
    assert names == ["web", "worker", "worker2", "worker3", "sender", "scheduler"]
    assert [name for name, _ in commands(load_settings({}, environ={}, dotenv_path=None))] == ["web"]


@pytest.mark.skipif(not TEST_REDIS_URL, reason="needs TEST_REDIS_URL: with REDIS_URL the worker is a process")
def test_a_killed_worker_is_started_again_and_the_webhook_keeps_answering(tmp_path):
    Redis.from_url(TEST_REDIS_URL).flushdb()  # a fresh SQLite file numbers messages from 1 again
    with make_run(tmp_path, REDIS_URL=TEST_REDIS_URL) as service:
        farmer = SimFarmer(service.base, "905551112266")
        farmer.says("Merhaba")
        farmer.bot_replies(offers("Kabul ediyorum"))
        workers = children_named(service.process.pid, "worker")
        assert len(workers) == 2  # WORKER_PROCESSES' default
        for worker in workers:
            os.killpg(worker, signal.SIGKILL)  # every worker, and anything of its group
        farmer.taps("Kabul ediyorum")  # the webhook answers 200 meanwhile (SimFarmer checks)
        farmer.bot_replies(offers("Analiz gönder"), timeout=60)  # answered by a new worker
        log = service.log()
        again = wait_until(lambda: len(children_named(service.process.pid, "worker")) == 2
                           and children_named(service.process.pid, "worker"), 60, what="both workers back")
    assert not set(again) & set(workers)
    assert "supervisor: worker exited with signal SIGKILL; restarting in 1 s" in log
    assert "supervisor: starting worker again" in log
    assert service.process.wait(timeout=30) == 0


# --- production: the systemd units ------------------------------------------------------------------------

UNITS = PROJECT_ROOT / "deploy" / "systemd"


def procfile() -> dict[str, str]:
    lines = (PROJECT_ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if line.strip())


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNITS / name)
    return parser


def expand(command: str, env: dict[str, str]) -> str:
    """`${NAME}` and `${NAME:-default}` as a shell (Procfile) or systemd (unit) would expand them."""
    return re.sub(r"\$\{(\w+)(?::-([^}]*))?\}", lambda m: env.get(m.group(1), m.group(2) or ""), command)


@pytest.mark.parametrize(("process", "unit_name"), [("web", "ziraai-web.service"), ("worker", "ziraai-worker@.service"),
                                                    ("sender", "ziraai-sender.service"),
                                                    ("scheduler", "ziraai-scheduler.service")])
def test_each_process_of_the_procfile_has_a_systemd_unit_that_restarts_it_always(process, unit_name, tmp_path):
    service = unit(unit_name)["Service"]
    assert service["Restart"] == "always"
    assert unit(unit_name)["Unit"]["StartLimitIntervalSec"] == "0"  # never gives up restarting
    env = dict(pair.split("=", 1) for pair in service.get("Environment", "").split())
    program, *args = expand(service["ExecStart"], env).split()
    assert program.startswith("/srv/ziraai/.venv/bin/")
    assert " ".join([Path(program).name, *args]) == expand(procfile()[process], {})

    # The command runs here: the flask subcommand exists, gunicorn loads the app.
    run_env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}", "EMBEDDED_WORKER": "false"}
    local = [str(Path(sys.executable).parent / Path(program).name), *args]
    check = [*local, "--check-config"] if process == "web" else [*local, "--help"]
    result = subprocess.run(check, cwd=PROJECT_ROOT, env=run_env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="needs systemd-analyze")
def test_the_systemd_units_pass_systemd_analyze_verify(tmp_path):
    env_file = tmp_path / "env"
    env_file.write_text("APP_ENV=production\n")
    venv = Path(sys.executable).parent.parent
    for source in UNITS.glob("*.service"):
        text = (source.read_text().replace("/srv/ziraai/.venv", str(venv)).replace("/srv/ziraai", str(PROJECT_ROOT))
                .replace("/etc/ziraai/env", str(env_file)))
        (tmp_path / source.name.replace("@.", "@1.")).write_text(text)
    result = subprocess.run(["systemd-analyze", "verify", *map(str, tmp_path.glob("*.service"))],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def test_a_child_that_exits_takes_what_it_started_with_it(tmp_path: Path) -> None:
    """A worker killed with SIGKILL leaves RQ's scheduler child behind in its process group: the supervisor
    kills the group when it notices, so nothing outlives the process it restarts (nor Ctrl-C)."""
    pid_file = tmp_path / "grandchild.pid"
    child = Child("worker", ["sh", "-c", f"sleep 60 & echo $! > {pid_file}; exit 3"])
    child.start()
    assert child.process is not None and child.process.wait(timeout=10) == 3
    wait_until(pid_file.exists, timeout=5)
    grandchild = int(pid_file.read_text())
    os.kill(grandchild, 0)  # still running, orphaned
    child.check(now=child.started_at + 1)
    assert child.restart_at is not None
    wait_until(lambda: not _alive(grandchild), timeout=5)


def _sent_count(exposition: str) -> float:
    found = re.search(r'^ziraai_outbound_sends_total\{outcome="sent"\} (\S+)$', exposition, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"  # a zombie nobody reaped yet is gone as far as we care
