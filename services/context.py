"""Access to the current app's database, Redis and settings from request handlers and jobs."""

from __future__ import annotations

from flask import current_app
from redis import Redis

from models.db import Database
from settings import Settings


def settings() -> Settings:
    return current_app.extensions["settings"]


def db() -> Database:
    return current_app.extensions["db"]


def redis() -> Redis:
    return current_app.extensions["redis"]
