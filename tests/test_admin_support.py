"""Support endpoints of the admin API: message-log search and a farmer's transcript."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from models import AuditLog, Farmer, Message, StaffUser
from tests.admin_helpers import bearer, make_staff, token_for
from tests.helpers import fixture_bytes, post_webhook

PROBLEM = "application/problem+json"
T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
PHONE = "+905321234567"
OTHER = "+905559876543"


def add_farmer(app, phone: str = PHONE) -> int:
    with app.extensions["db"].session() as s, s.begin():
        farmer = Farmer(phone=phone, profile_name="Mehmet", created_at=T0, updated_at=T0)
        s.add(farmer)
        s.flush()
        return farmer.id


def add_message(app, **fields: Any) -> int:
    row = {"direction": "in", "phone": PHONE, "type": "text", "text": "Merhaba", "status": "processed",
           "created_at": T0, "attempts": 0, **fields}
    with app.extensions["db"].session() as s, s.begin():
        message = Message(**row)
        s.add(message)
        s.flush()
        return message.id


@pytest.fixture
def support(app, client) -> dict[str, str]:
    return bearer(token_for(app, client, "support"))


def search(client, headers, **params: Any):
    return client.get("/api/v1/messages", query_string=params, headers=headers)


# --- roles --------------------------------------------------------------------------------------


def test_the_message_routes_admit_only_support_and_admins(app, client):
    farmer_id = add_farmer(app)
    tokens = {role: bearer(token_for(app, client, role)) for role in ("admin", "sponsor", "support")}
    expected = {None: 401, "sponsor": 403, "support": 200, "admin": 200}
    for path in ("/api/v1/messages", f"/api/v1/farmers/{farmer_id}/messages"):
        for role, status in expected.items():
            response = client.get(path, headers=tokens[role] if role else {})
            assert response.status_code == status, (path, role)
            if status >= 400:
                assert response.mimetype == PROBLEM


# --- search -------------------------------------------------------------------------------------


def _ids(response) -> list[int]:
    assert response.status_code == 200, response.get_json()
    return [m["id"] for m in response.get_json()["items"]]


def test_each_message_filter_narrows_the_search_newest_first(app, client, support):
    a = add_message(app, text="Domates yaprağında LEKE var", created_at=T0)
    b = add_message(app, direction="out", type="template", text=None, template_name="analysis_ready_tr",
                    status="failed", error_code=131047, error_title="Re-engagement message",
                    created_at=T0 + timedelta(hours=1), failed_at=T0 + timedelta(hours=2))
    c = add_message(app, phone=OTHER, type="image", text="100% sağlıklı_mı?", status="received",
                    created_at=T0 + timedelta(days=1))
    d = add_message(app, direction="out", text="Analiz hazır", status="read", created_at=T0 + timedelta(days=2))

    assert _ids(search(client, support)) == [d, c, b, a]  # newest first
    assert _ids(search(client, support, phone=PHONE)) == [d, b, a]
    assert _ids(search(client, support, phone="0090 555 987 65 43")) == [c]
    assert _ids(search(client, support, direction="out")) == [d, b]
    assert _ids(search(client, support, direction="in")) == [c, a]
    assert _ids(search(client, support, type="template")) == [b]
    assert _ids(search(client, support, type="image")) == [c]
    assert _ids(search(client, support, status="failed")) == [b]
    assert _ids(search(client, support, error_code=131047)) == [b]
    assert _ids(search(client, support, error_code=131026)) == []
    assert _ids(search(client, support, since=(T0 + timedelta(hours=1)).isoformat())) == [d, c, b]
    assert _ids(search(client, support, until=(T0 + timedelta(days=1)).isoformat())) == [b, a]
    assert _ids(search(client, support, since="2026-11-01T09:30:00", until="2026-11-02T09:00:01Z")) == [c, b]
    assert _ids(search(client, support, since="2026-11-02")) == [d, c]
    assert _ids(search(client, support, q="leke")) == [a]  # case-insensitive contains
    assert _ids(search(client, support, q="%")) == [c]  # LIKE wildcards are literal text
    assert _ids(search(client, support, q="_")) == [c]
    assert _ids(search(client, support, q="Analiz", direction="out", phone=PHONE)) == [d]

    failed = search(client, support, status="failed").get_json()["items"][0]
    assert failed["error_code"] == 131047 and failed["error_title"] == "Re-engagement message"
    assert failed["template_name"] == "analysis_ready_tr" and failed["failed_at"].startswith("2026-11-01T11:00")


@pytest.mark.parametrize("q", ["'; DROP TABLE messages; --", "' OR '1'='1", "\" OR 1=1 --", "\\", "%' --", "])}"])
def test_sql_metacharacters_are_just_text(app, client, support, session, q):
    add_message(app)

    response = search(client, support, q=q, phone="+90 532 123 45 67' OR 1=1")

    assert response.status_code in (200, 400)
    response = search(client, support, q=q)
    assert response.status_code == 200
    assert response.get_json()["items"] == [] and response.get_json()["total"] == 0
    assert session.scalar(select(func.count()).select_from(Message)) == 1


@pytest.mark.parametrize(("params", "fields"), [
    ({"page": "abc"}, {"page"}),
    ({"page": "0"}, {"page"}),
    ({"page": "-1"}, {"page"}),
    ({"page": "1.5"}, {"page"}),
    ({"page": "99999999999999999999999"}, {"page"}),
    ({"per_page": "x"}, {"per_page"}),
    ({"per_page": "0"}, {"per_page"}),
    ({"direction": "sideways"}, {"direction"}),
    ({"status": "lost"}, {"status"}),
    ({"type": "DROP TABLE"}, {"type"}),
    ({"error_code": "abc"}, {"error_code"}),
    ({"error_code": "1e3"}, {"error_code"}),
    ({"since": "yesterday"}, {"since"}),
    ({"until": "2026-13-01"}, {"until"}),
    ({"since": "2026-11-02", "until": "2026-11-01"}, {"until"}),
    ({"phone": "abc"}, {"phone"}),
    ({"phone": "٩٠٥٣٢١٢٣٤٥٦٧"}, {"phone"}),  # Arabic-Indic digits: refused, as the webhook refuses them
    ({"q": "x" * 201}, {"q"}),
    ({"page": "abc", "per_page": "y", "since": "z"}, {"page", "per_page", "since"}),
])
def test_wrong_types_are_400_with_field_errors(client, support, params, fields):
    response = search(client, support, **params)

    assert response.status_code == 400
    assert response.mimetype == PROBLEM
    body = response.get_json()
    assert body["status"] == 400 and body["title"] and body["detail"] and body["type"]
    assert {e["field"] for e in body["errors"]} == fields
    assert all(e["message"] for e in body["errors"])


def test_pagination_caps_per_page(app, client, support):
    with app.extensions["db"].session() as s, s.begin():
        s.add_all([Message(direction="in", phone=PHONE, type="text", text=f"m{i}", status="processed",
                           created_at=T0 + timedelta(seconds=i), attempts=0) for i in range(130)])

    capped = search(client, support, per_page=100000).get_json()
    assert capped["per_page"] == 100 and len(capped["items"]) == 100 and capped["total"] == 130
    assert capped["page"] == 1

    second = search(client, support, per_page=100000, page=2).get_json()
    assert len(second["items"]) == 30 and second["page"] == 2
    assert {m["id"] for m in capped["items"]}.isdisjoint(m["id"] for m in second["items"])

    default = search(client, support).get_json()
    assert default["per_page"] == 20 and len(default["items"]) == 20
    beyond = search(client, support, page=50).get_json()
    assert beyond["items"] == [] and beyond["total"] == 130


def test_search_finds_a_message_received_through_the_webhook(app, client, support):
    assert post_webhook(client, fixture_bytes("text.json")).status_code == 200

    items = search(client, support, phone="905321234567", q="merhaba").get_json()["items"]

    assert len(items) == 1
    assert items[0]["wamid"].startswith("wamid.") and items[0]["direction"] == "in"
    assert items[0]["phone"] == PHONE and items[0]["text"] == "Merhaba"


# --- transcript ---------------------------------------------------------------------------------


def test_transcript_in_order_with_statuses_and_errors(app, client, support):
    farmer_id = add_farmer(app)
    other_id = add_farmer(app, OTHER)
    # Inserted out of order; the transcript is by time.
    third = add_message(app, farmer_id=farmer_id, direction="out", text="Fotoğraf alındı", status="delivered",
                        created_at=T0 + timedelta(minutes=2), sent_at=T0 + timedelta(minutes=2, seconds=1),
                        delivered_at=T0 + timedelta(minutes=2, seconds=3))
    first = add_message(app, farmer_id=farmer_id, text="Merhaba", created_at=T0)
    second = add_message(app, farmer_id=farmer_id, type="image", text=None, created_at=T0 + timedelta(minutes=1))
    fourth = add_message(app, farmer_id=None, direction="out", type="template", text=None, status="failed",
                         error_code=131026, error_title="Message undeliverable", created_at=T0 + timedelta(minutes=3))
    add_message(app, farmer_id=other_id, phone=OTHER, text="başka çiftçi", created_at=T0 + timedelta(seconds=30))

    response = client.get(f"/api/v1/farmers/{farmer_id}/messages", headers=support)

    body = response.get_json()
    assert response.status_code == 200
    assert [m["id"] for m in body["items"]] == [first, second, third, fourth]
    assert body["total"] == 4 and body["page"] == 1
    delivered = body["items"][2]
    assert delivered["status"] == "delivered" and delivered["delivered_at"].startswith("2026-11-01T09:02:03")
    assert body["items"][3]["error_code"] == 131026 and body["items"][3]["error_title"] == "Message undeliverable"

    page = client.get(f"/api/v1/farmers/{farmer_id}/messages?per_page=3&page=2", headers=support).get_json()
    assert [m["id"] for m in page["items"]] == [fourth]


def test_transcript_of_unknown_farmer_is_404(client, support):
    response = client.get("/api/v1/farmers/999999/messages", headers=support)
    assert response.status_code == 404 and response.mimetype == PROBLEM
    assert client.get("/api/v1/farmers/abc/messages", headers=support).status_code == 404
    bad = client.get("/api/v1/farmers/1/messages?page=abc", headers=support)
    assert bad.status_code == 400 and bad.get_json()["errors"][0]["field"] == "page"


# --- audit --------------------------------------------------------------------------------------


def test_reads_are_audited_with_user_record_and_ip(app, client, session):
    farmer_id = add_farmer(app)
    make_staff(app, "support")
    token = client.post("/api/v1/auth/login", json={"email": "support@ziraai.test",
                                                    "password": "correct horse battery staple"},
                        environ_base={"REMOTE_ADDR": "192.0.2.7"}).get_json()["access_token"]
    user_id = session.scalars(select(StaffUser.id)).one()

    client.get(f"/api/v1/farmers/{farmer_id}/messages", headers=bearer(token),
               environ_base={"REMOTE_ADDR": "192.0.2.8"})
    client.get("/api/v1/messages", query_string={"phone": PHONE, "q": "leke"}, headers=bearer(token),
               environ_base={"REMOTE_ADDR": "192.0.2.9"})
    client.get("/api/v1/messages?page=abc", headers=bearer(token))  # refused: nothing was read

    rows = session.scalars(select(AuditLog).order_by(AuditLog.id)).all()
    assert [(r.action, r.user_id, r.record_type, r.record_id, r.ip) for r in rows] == [
        ("auth.login", user_id, "staff_user", str(user_id), "192.0.2.7"),
        ("farmer.messages.read", user_id, "farmer", str(farmer_id), "192.0.2.8"),
        ("messages.search", user_id, "message", None, "192.0.2.9"),
    ]
    assert rows[2].details["filters"] == {"phone": PHONE, "q": "leke"}
    assert all(r.at is not None for r in rows)
