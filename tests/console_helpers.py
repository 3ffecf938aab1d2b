"""Helpers for the console tests: the CSRF token of a test client's session, signing in, posting a form, a
form's one-time token, and posting one form twice at once from the same session (a double click)."""

from __future__ import annotations

import re
from functools import partial
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from console.session import COOKIE_NAME
from tests.admin_helpers import PASSWORD, make_staff
from tests.helpers import run_concurrently


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


def form_nonce(html: str, action: str) -> str:
    """The one-time form token of the form posting to `action` on a rendered page."""
    form = re.search(r'<form[^>]*action="' + re.escape(action) + r'"[^>]*>(.*?)</form>', html, re.S)
    assert form is not None, action
    nonce = re.search(r'name="form_nonce" value="([^"]+)"', form.group(1))
    assert nonce is not None
    return nonce.group(1)


def post_twice_at_once(app: Flask, client: FlaskClient, path: str, data: dict[str, Any]) -> list[TestResponse]:
    """The same form posted twice at once from the client's session (a double click): two test clients with
    the same cookie, released together."""
    twin = app.test_client()
    cookie = client.get_cookie(COOKIE_NAME, path="/console")
    assert cookie is not None
    twin.set_cookie(COOKIE_NAME, cookie.value, path="/console")
    body = {"csrf_token": csrf(client), **data}
    return run_concurrently([partial(c.post, path, data=body) for c in (client, twin)])
