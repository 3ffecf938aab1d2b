"""The admin API's documentation for people: Swagger UI at `/api/v1/docs`, reading `/api/v1/openapi.json`.

Swagger UI's files come from the `flask-swagger-ui` wheel (pinned in requirements.txt), which ships
Swagger UI's `dist` (v5, which reads OpenAPI 3.1); we serve them ourselves at `/api-docs/<file>`, with our
own page and start-up script (no inline script, nothing from a CDN), so the page's CSP allows
scripts, styles, images and requests from 'self' only. Only the package's blueprint is not used: its
page starts Swagger UI with an inline script, which that CSP forbids.
`GET /api/v1` (a person typing the API's address into a browser) leads to the docs.
"""

from __future__ import annotations

from pathlib import Path

import flask_swagger_ui
from flask import Blueprint, Response, abort, redirect, render_template, send_from_directory, url_for
from werkzeug.wrappers.response import Response as BaseResponse

from admin.openapi import declare

bp = Blueprint("api_docs", __name__, template_folder="templates", static_folder="static",
               static_url_path="/api-docs/ours")

SWAGGER_DIST = Path(flask_swagger_ui.__file__).resolve().parent / "dist"
SWAGGER_FILES = frozenset({"swagger-ui.css", "swagger-ui-bundle.js", "favicon-32x32.png", "favicon-16x16.png"})
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
       "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'")


@bp.after_request
def _headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@bp.get("/api/v1")
def api_root() -> BaseResponse:
    return redirect(url_for("api_docs.docs"))


@bp.get("/api/v1/docs")
def docs() -> str:
    return render_template("api_docs/index.html", spec_url=url_for("admin.openapi_json"))


@bp.get("/api-docs/<name>")
def swagger_file(name: str) -> Response:
    """One of Swagger UI's files, from the installed package (a fixed list: nothing else of the folder)."""
    if name not in SWAGGER_FILES:
        abort(404)
    response = send_from_directory(SWAGGER_DIST, name, max_age=86400)
    return response


declare({
    "/api/v1/docs": {
        "get": {
            "operationId": "docs", "summary": "This document for people: Swagger UI (HTML).", "tags": ["meta"],
            "security": [],
            "responses": {"200": {"description": "The documentation page.",
                                  "content": {"text/html": {"schema": {"type": "string"}}}}},
        },
    },
})
