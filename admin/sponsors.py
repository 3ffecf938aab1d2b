"""Sponsors, their purchases, codes, statistics and sponsored analyses (not built yet)."""

from __future__ import annotations

from typing import Any

OPENAPI_PATHS: dict[str, Any] = {}
OPENAPI_SCHEMAS: dict[str, Any] = {}
