"""Engine and session setup for PostgreSQL (production) and SQLite (embedded default), and the
dialect-specific INSERTs both databases share (`ON CONFLICT`)."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import (
    BigInteger,
    CursorResult,
    Engine,
    Insert,
    Integer,
    Result,
    Select,
    SmallInteger,
    String,
    Update,
    create_engine,
    event,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Dialect, make_url
from sqlalchemy.exc import DBAPIError, InvalidatePoolError
from sqlalchemy.orm import Session, sessionmaker

if TYPE_CHECKING:
    import psycopg
    from psycopg_pool import ConnectionPool

log = logging.getLogger(__name__)

POOL_SIZE = 10  # connections per process kept by the engine's pool (and as many again, briefly, beyond)
HOT_POOL_MAX = 10  # the hot path's own pool (`Database.driver_autocommit`), per web process
MAX_ROW_ID = 2**31 - 1  # ids are 32-bit integer columns: a larger id names no row (and PostgreSQL refuses it)
PING_AFTER_IDLE_SECONDS = 1.0  # a pooled connection unused this long is pinged before it is handed out


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
        engine = create_engine(url, pool_size=POOL_SIZE, max_overflow=POOL_SIZE, pool_use_lifo=True)
        _ping_when_idle(engine)
    # A forked child (a gunicorn worker of a preloaded app, say) must not reuse the parent's connections.
    os.register_at_fork(after_in_child=lambda: engine.dispose(close=False))
    return engine


def _ping_when_idle(engine: Engine) -> None:
    """Ping (one round trip) a pooled connection before handing it out only when it sat unused for
    `PING_AFTER_IDLE_SECONDS`: a busy worker checks out five per message within milliseconds, and a ping
    each cost about 80 us of its CPU. Most recently used first (LIFO), so a busy process keeps reusing
    the connections it just had. A connection PostgreSQL dropped within a second of its last use (a
    restart under load) fails the work it is given, once per process (retried as any dropped connection
    is): that failure has the pool replace every connection it held. One that sat idle is pinged first."""

    @event.listens_for(engine, "checkin")
    def _checkin(_dbapi_conn, record):  # type: ignore[no-untyped-def]
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_conn, record, _proxy):  # type: ignore[no-untyped-def]
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_SECONDS:
            return  # fresh, or used a moment ago
        try:
            engine.dialect.do_ping(dbapi_conn)
        except Exception as exc:  # dead: this and every older pooled connection are replaced
            raise InvalidatePoolError(f"ping after idle failed: {exc!r}"[:200]) from exc


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


class Database:
    """The engine and session factory one process uses; `session()` is a plain context manager."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.sessionmaker = make_sessionmaker(self.engine)
        self._hot_pool: ConnectionPool[psycopg.Connection[Any]] | None = None
        self._hot_pool_pid = 0
        self._hot_lock = threading.Lock()
        event.listen(self.engine, "engine_disposed", self._close_hot_pool)  # tests and forks dispose the engine

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def session(self) -> Session:
        return self.sessionmaker()

    def reader(self) -> Session:
        """A session whose every statement sees the latest committed data and locks nothing."""
        return self.autocommit()

    def autocommit(self) -> Session:
        """A session whose every statement commits by itself, for work that is one statement (a claim):
        no BEGIN and COMMIT round trips around it."""
        return Session(self._autocommit_engine, expire_on_commit=False)

    @functools.cached_property
    def _autocommit_engine(self) -> Engine:
        return self.engine.execution_options(isolation_level="AUTOCOMMIT")

    @contextlib.contextmanager
    def driver_autocommit(self) -> Iterator[psycopg.Connection[Any]]:
        """PostgreSQL only: a psycopg connection in autocommit for a hot path that is one statement (the
        webhook's plain message): every statement commits by itself, so there is no BEGIN or COMMIT round
        trip, and no SQLAlchemy between the caller and the driver (its per-statement bookkeeping, and its
        pool's checkout, cost more than the driver's whole execute).

        The connections come from a small psycopg pool of their own (`HOT_POOL_MAX`, opened on first use
        in each process), always in autocommit and checked out WITHOUT a liveness ping: a connection
        PostgreSQL dropped meanwhile (a restart, an idle timeout) fails the one statement given to it
        (the webhook answers 500 and Meta delivers again); the failure has every idle connection of the
        pool checked, so one failure per process, not one per pooled connection. Parameters are passed
        as the driver takes them: JSON as text (cast in the SQL), datetimes aware."""
        if self.dialect != "postgresql":
            raise RuntimeError("driver_autocommit is for PostgreSQL")
        pool = self._hot_pool if self._hot_pool_pid == os.getpid() and self._hot_pool else self._open_hot_pool()
        conn = pool.getconn()
        try:
            yield conn
        except Exception as exc:
            import psycopg

            if isinstance(exc, psycopg.OperationalError):  # the server went away, say: replace what it broke
                log.warning("PostgreSQL connection failed; checking the webhook pool's idle connections")
                pool.check()
            raise
        finally:
            pool.putconn(conn)  # a broken connection is discarded, not pooled again

    def _open_hot_pool(self) -> ConnectionPool[psycopg.Connection[Any]]:
        """The pool of this process (a forked child opens its own: the parent's sockets are not its to use)."""
        from psycopg_pool import ConnectionPool

        with self._hot_lock:
            if self._hot_pool is None or self._hot_pool_pid != os.getpid():
                conninfo = make_url(self.url).set(drivername="postgresql").render_as_string(hide_password=False)
                pool = ConnectionPool(conninfo, min_size=1, max_size=HOT_POOL_MAX,
                                      kwargs={"autocommit": True}, name="webhook", open=True)
                # Its first connection made before the first checkout: a checkout that has to wait makes the
                # pool open a second one meanwhile, and which of the two the next delivery gets is then luck.
                pool.wait()  # on failure (PostgreSQL unreachable for the pool's timeout) it closes the pool
                self._hot_pool, self._hot_pool_pid = pool, os.getpid()
            return self._hot_pool

    def _close_hot_pool(self, _engine: Engine) -> None:
        """With the engine's disposal: close the hot pool if this process opened it, else just forget it."""
        if self._hot_pool_pid != os.getpid():  # a forked child (no lock: a parent's thread may have held it)
            self._hot_pool = None
            return
        with self._hot_lock:
            pool, self._hot_pool = self._hot_pool, None
        if pool is not None:
            pool.close()


def _integer_range(column_type: Integer) -> tuple[int, int]:
    """What PostgreSQL stores in the column (SQLite stores more: 64 bits in any integer column)."""
    bits = 64 if isinstance(column_type, BigInteger) else 16 if isinstance(column_type, SmallInteger) else 32
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def fitted_to_columns(model: Any, values: Mapping[str, Any]) -> dict[str, Any]:
    """`values` (column name -> value) fitted to `model`'s columns, so outside data can never make the INSERT
    or UPDATE fail: a string longer than its `String(n)` column is cut to it, ending in an ellipsis; an integer
    outside its column's range is None (PostgreSQL refuses both, SQLite an integer beyond 64 bits). Other
    values, and values of other column types, are left as they are."""
    columns = model.__table__.c
    fitted: dict[str, Any] = {}
    for name, value in values.items():
        column_type = columns[name].type
        length = column_type.length if isinstance(column_type, String) else None
        if isinstance(value, str) and length is not None and len(value) > length:
            value = value[: length - 1].rstrip() + "…"
        elif isinstance(value, int) and not isinstance(value, bool) and isinstance(column_type, Integer):
            low, high = _integer_range(column_type)
            if not low <= value <= high:
                value = None
        fitted[name] = value
    return fitted


def dialect_insert(dialect_name: str, table: Any) -> Any:
    """`INSERT` in the dialect that knows `ON CONFLICT` for this database (`postgresql`, else SQLite)."""
    return (postgresql if dialect_name == "postgresql" else sqlite).insert(table)


def insert_ignoring_conflicts(session: Session, model: type, index_elements: list[str]) -> Any:
    """`INSERT ... ON CONFLICT DO NOTHING` in the dialect of the session's database (built once per
    dialect, table and index: the statement is immutable, and building it costs more than running it)."""
    return _insert_ignoring(session.get_bind().dialect.name, model, tuple(index_elements))


@functools.cache
def _insert_ignoring(dialect_name: str, model: type, index_elements: tuple[str, ...]) -> Any:
    return dialect_insert(dialect_name, model).on_conflict_do_nothing(index_elements=list(index_elements))


def psycopg_dialect() -> Dialect:
    """SQLAlchemy's PostgreSQL dialect for psycopg, without an engine: to compile a statement once, when built."""
    return make_url("postgresql+psycopg://").get_dialect()()


class DriverStatement:
    """A Core statement that loads no ORM object, for a hot path: on PostgreSQL it runs on the session's
    own psycopg connection (in its transaction), compiled once and prepared by the server, without
    SQLAlchemy's work around each execution (the statement's cache key, the execution context, the
    result), which costs more than the driver's whole execute (a one-line SELECT: 282,000 instructions
    through `Connection.execute`, 133,000 on the driver). Callers pass the parameters they would pass to
    `execute`; each goes through its SQLAlchemy type's bind processor (JSON serialised, say) as it would
    there. A database error comes back as SQLAlchemy's (`DBAPIError`), and a connection the server
    dropped is invalidated, as SQLAlchemy's own execution does. Elsewhere (SQLite) it runs through
    SQLAlchemy. Rows come back as named tuples (or SQLAlchemy rows): by position or by column name, as
    the driver reads them (no result types applied: for statements that answer ids, flags and text).
    Not for statements with expanding (`IN`) parameters, nor an INSERT without its values; one that leaves
    a column to a Python-side default (`default=`, `onupdate=`) is refused when it is built: SQLAlchemy
    computes those per execution, the driver would write NULL."""

    def __init__(self, statement: Insert | Update | Select[Any]) -> None:
        compiled = statement.compile(dialect=psycopg_dialect())
        left = [column.key for column in (*compiled.insert_prefetch, *compiled.update_prefetch)]
        if left:
            raise ValueError(f"give these columns values of their own (Python-side defaults): {', '.join(left)}")
        self.statement = statement
        self._compiled: tuple[str, dict[str, Any], dict[str, Callable[[Any], Any]]] | None = None

    def _postgresql(self, dialect: Dialect) -> tuple[str, dict[str, Any], dict[str, Callable[[Any], Any]]]:
        """The SQL as the driver takes it, the values of the statement's own constants, and the bind
        processors by parameter name (built on first use: the processors need the dialect)."""
        if self._compiled is None:
            compiled = self.statement.compile(dialect=dialect)
            processors: dict[str, Callable[[Any], Any]] = {}
            for name, bind in compiled.binds.items():
                process = bind.type.dialect_impl(dialect).bind_processor(dialect)
                if process is not None:
                    processors[name] = process
            self._compiled = found = (str(compiled), dict(compiled.params), processors)
            return found
        return self._compiled

    def rows(self, session: Session, params: Mapping[str, Any]) -> Sequence[Any]:
        """Run it with `params` on the session's connection; what it returns (no rows: empty)."""
        connection = session.connection()
        if connection.dialect.name != "postgresql":
            result = connection.execute(self.statement, dict(params))
            return list(result.all()) if result.returns_rows else []
        sql, constants, processors = self._postgresql(connection.dialect)
        values = constants | dict(params)
        for name, process in processors.items():
            if name in values:
                values[name] = process(values[name])
        return _run_on_driver(connection, sql, values)


def _run_on_driver(connection: Connection, sql: str, values: dict[str, Any]) -> list[Any]:
    from psycopg import Error
    from psycopg.rows import namedtuple_row

    driver = cast("psycopg.Connection[Any]", connection.connection.driver_connection)
    try:
        with driver.cursor(row_factory=namedtuple_row) as cursor:
            cursor.execute(sql, values, prepare=True)
            return cursor.fetchall() if cursor.description else []
    except Error as exc:
        dropped = connection.dialect.is_disconnect(cast(Any, exc), connection.connection, None)
        if dropped:
            connection.invalidate(exc)
        raise DBAPIError.instance(sql, values, exc, Error, connection_invalidated=dropped,
                                  dialect=connection.dialect) from exc


def affected_rows(result: Result[Any]) -> int:
    """How many rows an UPDATE or DELETE changed (`Session.execute` types its result without `rowcount`)."""
    return cast(CursorResult[Any], result).rowcount
