"""Leases on work in progress: which worker holds a row, and until when.

A worker claims the row it works on (an inbound message being handled, an analysis `processing`, an
outbound message being sent) by writing its name and an expiry into `lease_owner` / `lease_until`,
renews the expiry while the work runs and gives the lease up when done. A worker that dies (SIGKILL,
a lost machine) stops renewing: once the expiry has passed, the sweeper re-queues the work, and the
next worker may claim it. The database is the judge, so the same rules hold for every process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import BindParameter, ColumnElement, Update, bindparam, or_, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from models import utcnow
from models.db import Database, affected_rows

log = logging.getLogger(__name__)

LEASE_SECONDS = 30  # how long a claim lasts without renewal; the holder renews it every third of that
RENEW_EVERY = LEASE_SECONDS / 3


def owner_name() -> str:
    """This process and thread: the holder written into a lease."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{threading.get_ident()}"


def lease_free(model: Any, now: datetime | ColumnElement[datetime]) -> ColumnElement[bool]:
    """Nobody holds the row: never claimed, given up, or expired (its holder stopped renewing)."""
    return or_(model.lease_owner.is_(None), model.lease_until < now)


def claim_statement(model: Any, *conditions: ColumnElement[bool], values: dict[str, Any] | None = None) -> Update:
    """The claim of one row as a statement that can be built once and run many times with `claim_params`
    (building a statement costs more CPU than running it): the row meets `conditions` and nobody else
    holds it (a lease of our own, or one held under the name `taking_over`, is taken too). `values`
    are written in the same statement."""
    now: BindParameter[datetime] = bindparam("lease_now")
    holder: BindParameter[str] = bindparam("lease_holder")
    return (update(model)
            .where(model.id == bindparam("lease_row_id"), *conditions,
                   or_(lease_free(model, now), model.lease_owner.in_([holder, bindparam("lease_taking_over")])))
            .values(lease_owner=holder, lease_until=bindparam("lease_expiry"), **(values or {}))
            .execution_options(synchronize_session=False))


def claim_params(row_id: int, owner: str, seconds: float = LEASE_SECONDS,
                 taking_over: str | None = None) -> dict[str, Any]:
    """The parameters of a `claim_statement`."""
    now = utcnow()
    return {"lease_row_id": row_id, "lease_now": now, "lease_holder": owner, "lease_taking_over": taking_over or owner,
            "lease_expiry": now + timedelta(seconds=seconds)}


def claim(session: Session, model: Any, row_id: int, *conditions: ColumnElement[bool], owner: str,
          seconds: float = LEASE_SECONDS, values: dict[str, Any] | None = None, taking_over: str | None = None) -> bool:
    """Take the lease on a row if it meets `conditions` and nobody else holds it (see `claim_statement`).
    True if we hold it now."""
    statement = claim_statement(model, *conditions, values=values)
    return affected_rows(session.execute(statement, claim_params(row_id, owner, seconds, taking_over))) > 0


def release(session: Session, model: Any, row_id: int, owner: str) -> None:
    """Give the lease up (if it is still ours); `lease_until` keeps the time it was given up."""
    session.execute(update(model).where(model.id == row_id, model.lease_owner == owner)
                    .values(lease_owner=None, lease_until=utcnow()).execution_options(synchronize_session=False))


def let_go(row: Any) -> None:
    """Give up the lease on a row loaded in the caller's transaction: written with the row's own UPDATE."""
    row.lease_owner, row.lease_until = None, utcnow()


class Held:
    """A lease `kept` holds. The block may give it up with its own last write of the row (`release_with`:
    no statement of its own); `kept` then skips its own release."""

    def __init__(self, model: Any, row_id: int, owner: str) -> None:
        self.model, self.row_id, self.owner = model, row_id, owner
        self.released = False

    def release_with(self, row: Any) -> None:
        """Give the lease up with the row's update in the caller's transaction (`let_go`); once that
        commits, call `done`. The row is the one held, loaded in that transaction: whoever holds it, the
        work on it is done when this commits."""
        let_go(row)

    def done(self) -> None:
        """The transaction that gave the lease up has committed."""
        self.released = True


class _Renewer:
    """The one thread of a process that renews the leases its `kept` blocks hold, each `RENEW_EVERY`
    seconds after it was taken or last renewed: starting a thread per lease cost more CPU than anything
    else a short message's handling does outside its statements. A worker runs one job at a time, so a
    renewal that waits (on the row its own job has locked, say) holds up no other lease."""

    def __init__(self) -> None:
        self.changed = threading.Condition()
        self.held: dict[Held, tuple[Database, float]] = {}  # the lease, its database and when it is due
        self.wakes_at = 0.0
        self.thread: threading.Thread | None = None

    def add(self, held: Held, db: Database) -> None:
        due = time.monotonic() + RENEW_EVERY
        with self.changed:
            self.held[held] = (db, due)
            if self.thread is None:
                self.thread = threading.Thread(target=self.run, name="lease-renewer", daemon=True)
                self.thread.start()
            elif due < self.wakes_at:  # never with a fixed RENEW_EVERY: a lease added later is due later
                self.changed.notify()

    def remove(self, held: Held) -> None:
        with self.changed:
            self.held.pop(held, None)

    def run(self) -> None:
        while True:
            with self.changed:
                now = time.monotonic()
                due = [(held, db) for held, (db, at) in self.held.items() if at <= now]
                if not due:
                    self.wakes_at = min((at for _, at in self.held.values()), default=now + RENEW_EVERY)
                    self.changed.wait(self.wakes_at - now)
                    continue
                for held, db in due:
                    self.held[held] = (db, now + RENEW_EVERY)
            for held, db in due:  # outside the lock: `kept` adds and removes leases meanwhile
                _renew(db, held)


def _renew(db: Database, held: Held) -> None:
    model, row_id = held.model, held.row_id
    try:
        with db.session() as session, session.begin():
            session.execute(update(model).where(model.id == row_id, model.lease_owner == held.owner)
                            .values(lease_until=utcnow() + timedelta(seconds=LEASE_SECONDS))
                            .execution_options(synchronize_session=False))
    except Exception as exc:  # the next renewal tries again (the lease lasts 3); the thread serves them all
        log.warning("could not renew a lease", extra={"table": model.__tablename__, "row_id": row_id,
                                                      "reason": type(exc).__name__})


_renewer = _Renewer()


def _forked() -> None:
    """A forked child has none of its parent's threads, and holds none of its leases."""
    global _renewer
    _renewer = _Renewer()


os.register_at_fork(after_in_child=_forked)


@contextlib.contextmanager
def kept(db: Database, model: Any, row_id: int, owner: str) -> Iterator[Held]:
    """Hold a claimed lease while the block runs: the process's renewer thread renews it every
    `RENEW_EVERY` seconds; it is given up when the block ends, however it ends (a killed process gives
    up nothing: it expires), unless the block gave it up itself (`Held.release_with`, then `Held.done`)."""
    held = Held(model, row_id, owner)
    renewer = _renewer
    renewer.add(held, db)
    try:
        yield held
    finally:
        renewer.remove(held)
        if not held.released:
            try:
                with db.session() as session, session.begin():
                    release(session, model, row_id, owner)
            except SQLAlchemyError as exc:  # it expires by itself
                log.warning("could not give up a lease", extra={"table": model.__tablename__, "row_id": row_id,
                                                                "reason": type(exc).__name__})
