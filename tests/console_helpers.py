"""Helpers for the console tests: the CSRF token of a test client's session, signing in, posting a form."""

from __future__ import annotations

import re
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tests.admin_helpers import PASSWORD, make_staff


def csrf(client: FlaskClient) -> str:
    """The CSRF token of the client's console session (made by visiting the login page if needed)."""
    with client.session_transaction("/console/") as session:
        token = session.get("csrf")
    if token is None:
        client.get("/console/login")
        with client.session_transaction("/console/") as session:
            token = session.get("csrf")
    assert isinstance(token, str)
    return token


def post(client: FlaskClient, path: str, data: dict[str, Any] | None = None, **kwargs: Any) -> TestResponse:
    """A console form POST carrying the session's CSRF token."""
    return client.post(path, data={"csrf_token": csrf(client), **(data or {})}, **kwargs)


def console_login(client: FlaskClient, email: str, password: str = PASSWORD, ip: str = "10.0.0.1") -> TestResponse:
    client.get("/console/login", environ_base={"REMOTE_ADDR": ip})
    return post(client, "/console/login", {"email": email, "password": password}, environ_base={"REMOTE_ADDR": ip})


def signed_in(app: Flask, client: FlaskClient, role: str, email: str | None = None,
              sponsor_id: int | None = None) -> int:
    """Make a staff user of `role` and sign the client in as them; the user's id."""
    email = email or f"{role}@ziraai.test"
    user_id = make_staff(app, role, email, sponsor_id=sponsor_id)
    response = console_login(client, email)
    assert response.status_code == 302, response.get_data(as_text=True)
    return user_id


def form_fields(html: str) -> set[str]:
    return set(re.findall(r'name="([^"]+)"', html))
