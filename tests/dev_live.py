"""Helpers for the development-tools tests: the app on a real port, `make run`'s processes, a farmer
driving `/dev/chat/api` over HTTP."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from flask import Flask

from app import create_app
from devtools import graph_api
from services.quota import seed_tiers
from services.worker import start_embedded_worker
from settings import PROJECT_ROOT
from tests.helpers import clean_stores, free_port, make_settings, wait_until
from tests.stand_ins import serve_app


@dataclass
class LiveApp:
    app: Flask
    base: str


@contextmanager
def live_app(database_url: str, *, worker: bool = True, **overrides: Any) -> Iterator[LiveApp]:
    """The app on a real port, pointed at its own Graph API stand-in and local analyser (as `make run`
    is), with the embedded worker thread running the jobs."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    settings = {"PUBLIC_BASE_URL": base, "PORT": port, "WHATSAPP_API_BASE": graph_api.api_base(base),
                "N8N_WEBHOOK_URL": f"{base}/dev/n8n/analyze", "DEV_TOOLS": True, **overrides}
    app = create_app(make_settings(database_url, **settings))
    clean_stores(app)
    with app.extensions["db"].session() as session, session.begin():
        seed_tiers(session)
    try:
        with serve_app(app, port):
            stop = start_embedded_worker(app, poll=0.05) if worker else None
            try:
                with app.app_context():
                    yield LiveApp(app, base)
            finally:
                deadline = time.monotonic() + 5
                while graph_api.sender.pending() and time.monotonic() < deadline:  # let the status webhooks land
                    time.sleep(0.05)
                if stop is not None:
                    stop.set()
    finally:
        app.extensions["db"].engine.dispose()


class SimFarmer:
    """A farmer using the `/dev/chat` page's API, as the page's JavaScript does."""

    def __init__(self, base: str, phone: str, name: str = "Mehmet Yılmaz") -> None:
        self.api = base.rstrip("/") + "/dev/chat/api"
        self.phone = phone
        self.name = name
        self.http = requests.Session()
        self.seen = 0  # the last transcript sequence number already looked at

    def post(self, path: str, **payload: Any) -> requests.Response:
        return self.http.post(self.api + path, json={"phone": self.phone, "name": self.name, **payload}, timeout=20)

    def _send(self, path: str, **payload: Any) -> dict[str, Any]:
        response = self.post(path, **payload)
        assert response.status_code == 200, response.text
        return response.json()

    def says(self, text: str) -> dict[str, Any]:
        return self._send("/text", text=text)

    def photo(self, sample: str, caption: str = "") -> dict[str, Any]:
        return self._send("/photo", sample=sample, caption=caption)

    def location(self, province: str) -> dict[str, Any]:
        return self._send("/location", province=province)

    def taps(self, title: str) -> dict[str, Any]:
        return self._send("/reply", title=title)

    def conversation(self) -> list[dict[str, Any]]:
        response = self.http.get(self.api + "/conversation", params={"phone": self.phone}, timeout=10)
        assert response.status_code == 200, response.text
        return response.json()["messages"]

    def bot_replies(self, until: Callable[[dict[str, Any]], bool], timeout: float = 30) -> list[dict[str, Any]]:
        """The bot's messages after the last call, waiting until one of them satisfies `until`."""
        def check() -> list[dict[str, Any]] | None:
            new = [m for m in self.conversation() if m["seq"] > self.seen and m["dir"] == "out"]
            return new if any(until(m) for m in new) else None

        found = wait_until(check, timeout, 0.2, what="the bot's answer")
        self.seen = max(m["seq"] for m in found)
        return found


def has_text(fragment: str) -> Callable[[dict[str, Any]], bool]:
    return lambda m: fragment in (m.get("text") or "")


def offers(title: str) -> Callable[[dict[str, Any]], bool]:
    """A bot message with this button or list row (list rows are numbered: `1. Analiz gönder`)."""
    def check(m: dict[str, Any]) -> bool:
        rows = [r["title"] for s in (m.get("list") or {}).get("sections", []) for r in s["rows"]]
        titles = [b["title"] for b in m.get("buttons") or []] + rows
        return title in [re.sub(r"^\d+\.\s*", "", t) for t in titles] + titles
    return check


@dataclass
class RunningService:
    base: str
    process: subprocess.Popen[str]
    output: Path

    def log(self) -> str:
        return self.output.read_text(errors="replace")


@contextmanager
def make_run(tmp_path: Path, **env: str) -> Iterator[RunningService]:
    """Start `make run`'s launcher (`python -m devtools.run`) as a fresh clone would: a new SQLite file, a
    free port, nothing but the defaults, unless `env` says otherwise. Stopped with SIGINT to its process
    group, as Ctrl-C in a terminal does."""
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("TEST_", "PYTEST_"))}
    # Empty values count as unset, and win over a developer's .env.
    defaults = {name: "" for name in ("APP_ENV", "REDIS_URL", "WHATSAPP_API_BASE", "N8N_WEBHOOK_URL",
                                      "PUBLIC_BASE_URL", "WHATSAPP_TOKEN", "WHATSAPP_APP_SECRET", "N8N_MODE")}
    full_env = {**clean, **defaults, "PORT": str(port), "DATABASE_URL": f"sqlite:///{tmp_path / 'ziraai.sqlite3'}",
                "MEDIA_DIR": str(tmp_path / "media"), "PYTHONUNBUFFERED": "1", **env}
    output = tmp_path / "make-run.log"
    with output.open("w") as sink:
        process = subprocess.Popen([sys.executable, "-m", "devtools.run"], cwd=PROJECT_ROOT, env=full_env,
                                   stdout=sink, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    service = RunningService(f"http://127.0.0.1:{port}", process, output)
    try:
        wait_until(lambda: "Ctrl-C stops everything" in service.log() or process.poll() is not None, 90, 0.2,
                 what="make run's banner")
        assert process.poll() is None, service.log()
        yield service
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
