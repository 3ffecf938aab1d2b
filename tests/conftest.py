"""Fixtures in the flaskr style: `app`, `client`, `runner`, plus `session`, `no_quiet_hours`, `graph` and
`http_stand_in`.

The suite runs on the embedded defaults (a temporary SQLite file + fakeredis) unless
`TEST_DATABASE_URL` / `TEST_REDIS_URL` are set, in which case the same tests run against real
PostgreSQL and Redis, on a schema built by the Alembic migrations. Only fixtures live here: what
tests call by name is in `tests/helpers.py`, the HTTP stand-ins in `tests/stand_ins.py`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import responses
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text

import settings as settings_module
from app import create_app
from models import Base
from tests.chat import GraphStub
from tests.helpers import TEST_DATABASE_URL, clean_stores, make_settings, migrate, set_runtime
from tests.stand_ins import HTTPStandIn

StandIn = TypeVar("StandIn", bound=HTTPStandIn)


@pytest.fixture(scope="session", autouse=True)
def generated_secrets_elsewhere(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Settings built for development in a test keep their generated secrets in a temporary file, not in
    the checkout's instance/ (processes a test starts, like `make run`'s, use the real one)."""
    path = tmp_path_factory.mktemp("instance") / "dev-secrets.env"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(settings_module, "DEV_SECRETS_FILE", path)
        yield path


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    if TEST_DATABASE_URL:
        from sqlalchemy import create_engine

        engine = create_engine(TEST_DATABASE_URL)
        with engine.begin() as conn:  # start from nothing, then build the schema with the migrations
            Base.metadata.drop_all(conn)
            conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
        engine.dispose()
        url = TEST_DATABASE_URL
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.sqlite3'}"
    migrate(url)
    return url


@pytest.fixture
def app(database_url: str) -> Iterator[Flask]:
    app = create_app(make_settings(database_url))
    clean_stores(app)
    with app.app_context():
        yield app
    app.extensions["db"].engine.dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask):
    return app.test_cli_runner()


@pytest.fixture
def no_quiet_hours(app: Flask) -> None:
    """Quiet hours off: a message we write first is sent whatever the hour in Istanbul, so a test about
    something else gives the same result at 23:00 as at noon."""
    set_runtime(app, quiet_hours_start="00:00", quiet_hours_end="00:00")


@pytest.fixture
def graph() -> Iterator[GraphStub]:
    """Meta's Graph API answered in-process: every message the bot sends is recorded, nothing leaves the
    machine. A test file whose Graph must answer otherwise (errors, fixed wamids) defines its own."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield GraphStub(mock)


@pytest.fixture
def session(app: Flask) -> Iterator[Any]:
    """An observer session: autocommit, so each query sees what the app has committed."""
    with app.extensions["db"].reader() as s:
        yield s


@pytest.fixture
def http_stand_in() -> Iterator[Callable[[StandIn], StandIn]]:
    """Starts the stand-ins a test hands it (`graph = http_stand_in(GraphStandIn())`) and stops every
    one of them when the test ends, whatever happened."""
    started: list[HTTPStandIn] = []

    def start(stand_in: StandIn) -> StandIn:
        started.append(stand_in)
        return stand_in if stand_in.running else stand_in.start()

    yield start
    for stand_in in reversed(started):
        stand_in.stop()
