"""Helpers shared by the admin API tests: staff users, login, bearer headers."""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from models import Sponsor, utcnow
from services.staff_auth import create_staff_user

PASSWORD = "correct horse battery staple"


def make_sponsor(app: Flask, name: str = "Agro A.Ş.") -> int:
    with app.extensions["db"].session() as s, s.begin():
        sponsor = Sponsor(name=name, created_at=utcnow())
        s.add(sponsor)
        s.flush()
        return sponsor.id


def make_staff(app: Flask, role: str, email: str | None = None, password: str = PASSWORD,
               sponsor_id: int | None = None) -> int:
    if role == "sponsor" and sponsor_id is None:
        sponsor_id = make_sponsor(app)
    with app.extensions["db"].session() as s, s.begin():
        return create_staff_user(s, email or f"{role}@ziraai.test", password, role, sponsor_id, utcnow()).id


def login(client: FlaskClient, email: str, password: str = PASSWORD, ip: str = "10.0.0.1") -> Any:
    return client.post("/api/v1/auth/login", json={"email": email, "password": password},
                       environ_base={"REMOTE_ADDR": ip})


def token_for(app: Flask, client: FlaskClient, role: str, email: str | None = None) -> str:
    email = email or f"{role}@ziraai.test"
    make_staff(app, role, email)
    response = login(client, email)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["access_token"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
