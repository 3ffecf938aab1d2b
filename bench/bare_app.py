"""Baseline for `webhook_ingress.py`: the cheapest Flask app that answers the webhook route.

Served by the same gunicorn command line as `wsgi:app` (only the module differs), so the ratio
between the two measures what our ingress costs on top of Flask + gunicorn on this machine.
"""

from __future__ import annotations

from flask import Flask, request

app = Flask(__name__)


@app.post("/webhooks/whatsapp")
def receive() -> tuple[str, int]:
    """Read the body (as the real route must) and answer 200."""
    request.get_data()
    return "ok", 200


@app.get("/health/live")
def live() -> tuple[str, int]:
    """Same readiness probe path as the real app, so the benchmark polls both the same way."""
    return "ok", 200
