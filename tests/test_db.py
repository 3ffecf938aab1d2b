"""`models.db.DriverStatement`: a hot statement run on the driver (PostgreSQL) or through SQLAlchemy
(SQLite) must bind, answer and fail the same way either way."""

from __future__ import annotations

import pytest
from sqlalchemy import Integer, bindparam, func, insert, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from models import Conversation, Farmer, utcnow
from models.db import DriverStatement
from tests.helpers import TEST_DATABASE_URL

UTC_DATETIME = Conversation.__table__.c.updated_at.type
_NEW_CONVERSATION = DriverStatement(
    insert(Conversation).values(farmer_id=bindparam("farmer"), state=bindparam("state"),
                                data=bindparam("data", type_=Conversation.__table__.c.data.type),
                                updated_at=bindparam("now", type_=UTC_DATETIME))
    .returning(Conversation.id, Conversation.state))


def _farmer(app) -> int:
    with app.extensions["db"].session() as s, s.begin():
        farmer = Farmer(phone="+905551112233", profile_name="Ayşe", created_at=utcnow(), updated_at=utcnow())
        s.add(farmer)
        s.flush()
        return farmer.id


def test_a_driver_statement_binds_each_value_through_its_type_and_answers_rows_by_name_and_position(app):
    farmer_id = _farmer(app)
    db = app.extensions["db"]
    with db.session() as s, s.begin():
        rows = _NEW_CONVERSATION.rows(s, {"farmer": farmer_id, "state": "ask_location",
                                          "data": {"photo": {"media_id": "m1"}, "note": "şeker"}, "now": utcnow()})
    assert len(rows) == 1 and rows[0].state == "ask_location" and rows[0][0] == rows[0].id
    with db.reader() as s:
        stored = s.get_one(Conversation, rows[0].id)
        assert stored.data == {"photo": {"media_id": "m1"}, "note": "şeker"}  # JSON, not a string of it
        assert stored.updated_at.utcoffset() is not None


def test_a_naive_datetime_is_refused_on_the_driver_as_through_sqlalchemy(app):
    farmer_id = _farmer(app)
    with pytest.raises(Exception, match="naive datetime"), app.extensions["db"].session() as s, s.begin():
        _NEW_CONVERSATION.rows(s, {"farmer": farmer_id, "state": "start", "data": {},
                                   "now": utcnow().replace(tzinfo=None)})


def test_a_driver_statement_keeps_the_constants_written_into_it(app):
    doubled_or_seven = DriverStatement(select(func.coalesce(bindparam("x", type_=Integer) * 2, 7)))
    with app.extensions["db"].session() as s:
        assert doubled_or_seven.rows(s, {"x": None})[0][0] == 7
        assert doubled_or_seven.rows(s, {"x": 4})[0][0] == 8


def test_a_driver_statement_that_returns_nothing_answers_no_rows(app):
    farmer_id = _farmer(app)
    db = app.extensions["db"]
    rename = DriverStatement(update(Conversation).where(Conversation.farmer_id == bindparam("farmer"))
                             .values(state=bindparam("state"), updated_at=bindparam("now", type_=UTC_DATETIME)))
    with db.session() as s, s.begin():
        _NEW_CONVERSATION.rows(s, {"farmer": farmer_id, "state": "start", "data": {}, "now": utcnow()})
        assert rename.rows(s, {"farmer": farmer_id, "state": "menu", "now": utcnow()}) == []
    with db.reader() as s:
        assert s.scalar(select(Conversation.state).where(Conversation.farmer_id == farmer_id)) == "menu"


def test_a_statement_that_leaves_a_column_to_its_python_default_is_refused_when_built():
    with pytest.raises(ValueError, match="updated_at"):  # `onupdate=utcnow`: SQLAlchemy's to compute, not the driver's
        DriverStatement(update(Conversation).where(Conversation.farmer_id == bindparam("farmer"))
                        .values(state=bindparam("state")))


def test_a_database_error_on_the_driver_is_sqlalchemys_and_the_session_goes_on_after_rollback(app):
    farmer_id = _farmer(app)
    db = app.extensions["db"]
    values = {"farmer": farmer_id, "state": "start", "data": {}, "now": utcnow()}
    with db.session() as s:
        with s.begin():
            _NEW_CONVERSATION.rows(s, values)
        with pytest.raises(IntegrityError), s.begin():  # one conversation per farmer
            _NEW_CONVERSATION.rows(s, values)
        with s.begin():
            assert s.scalar(select(func.count()).select_from(Conversation)) == 1


@pytest.mark.skipif(not TEST_DATABASE_URL, reason="the driver runs the statement on PostgreSQL only")
def test_a_connection_postgresql_dropped_fails_the_statement_and_is_replaced(app):
    db = app.extensions["db"]
    one = DriverStatement(select(func.abs(bindparam("n", type_=Integer))))
    with db.session() as s:
        backend = s.connection().exec_driver_sql("SELECT pg_backend_pid()").scalar()
        with db.engine.connect() as other:
            other.exec_driver_sql(f"SELECT pg_terminate_backend({backend})")
        with pytest.raises(DBAPIError) as failed:
            one.rows(s, {"n": -3})
        assert failed.value.connection_invalidated
    with db.session() as s:
        assert one.rows(s, {"n": -3})[0][0] == 3
