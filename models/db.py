"""Engine and session setup for PostgreSQL (production) and SQLite (embedded default), and the
dialect-specific INSERTs both databases share (`ON CONFLICT`)."""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

from sqlalchemy import CursorResult, Engine, Result, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.orm import Session, sessionmaker


def _sqlite_setup(engine: Engine) -> None:
    """SQLite has no row locks: every transaction takes the write lock up front (BEGIN IMMEDIATE),
    which serialises writers the way `SELECT ... FOR UPDATE` does on PostgreSQL, and waits for it
    instead of failing with `database is locked`. Read-only callers use an AUTOCOMMIT connection
    (`Database.reader()`), which takes no lock."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        dbapi_conn.isolation_level = None  # let us emit BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):  # type: ignore[no-untyped-def]
        if conn.get_execution_options().get("isolation_level") != "AUTOCOMMIT":
            conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        _sqlite_setup(engine)
    else:
        engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)
    # A forked child (a gunicorn worker of a preloaded app, say) must not reuse the parent's connections.
    os.register_at_fork(after_in_child=lambda: engine.dispose(close=False))
    return engine


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


class Database:
    """The engine and session factory one process uses; `session()` is a plain context manager."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.sessionmaker = make_sessionmaker(self.engine)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def session(self) -> Session:
        return self.sessionmaker()

    def reader(self) -> Session:
        """A session whose every statement sees the latest committed data and locks nothing."""
        return Session(self._autocommit_engine, expire_on_commit=False)

    @functools.cached_property
    def _autocommit_engine(self) -> Engine:
        return self.engine.execution_options(isolation_level="AUTOCOMMIT")

    @contextlib.contextmanager
    def driver_autocommit(self) -> Iterator[DBAPIConnection]:
        """PostgreSQL only: the driver's own connection (psycopg) from the pool, in autocommit, for a hot
        path that is one statement (the webhook's plain message): every statement commits by itself, so
        there is no BEGIN or COMMIT round trip, and no SQLAlchemy between the caller and the driver
        (its per-statement bookkeeping costs more than the driver's whole execute). Parameters are
        passed as the driver takes them: JSON as text (cast in the SQL), datetimes aware."""
        if self.dialect != "postgresql":
            raise RuntimeError("driver_autocommit is for PostgreSQL")
        pooled = self.engine.raw_connection()  # pre-pinged like every checkout
        driver = cast(Any, pooled.driver_connection)  # psycopg.Connection
        try:
            driver.autocommit = True
            yield pooled
        finally:
            if not driver.closed:
                driver.autocommit = False  # as the pool hands it to everyone else
            pooled.close()  # back to the pool


def dialect_insert(dialect_name: str, table: Any) -> Any:
    """`INSERT` in the dialect that knows `ON CONFLICT` for this database (`postgresql`, else SQLite)."""
    return (postgresql if dialect_name == "postgresql" else sqlite).insert(table)


def insert_ignoring_conflicts(session: Session, model: type, index_elements: list[str]) -> Any:
    """`INSERT ... ON CONFLICT DO NOTHING` in the dialect of the session's database."""
    return dialect_insert(session.get_bind().dialect.name, model).on_conflict_do_nothing(index_elements=index_elements)


def affected_rows(result: Result[Any]) -> int:
    """How many rows an UPDATE or DELETE changed (`Session.execute` types its result without `rowcount`)."""
    return cast(CursorResult[Any], result).rowcount
