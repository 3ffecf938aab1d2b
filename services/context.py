"""Access to the current app's database, Redis and settings from request handlers and jobs."""

from __future__ import annotations

from typing import cast

from flask import current_app
from redis import Redis

from models.db import Database
from settings import Settings


def settings() -> Settings:
    return cast(Settings, current_app.extensions["settings"])


def db() -> Database:
    return cast(Database, current_app.extensions["db"])


def redis() -> Redis:
    return cast(Redis, current_app.extensions["redis"])
