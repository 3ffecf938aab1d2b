"""Support and admin operations beyond the message log (not built yet)."""

from __future__ import annotations

from typing import Any

OPENAPI_PATHS: dict[str, Any] = {}
OPENAPI_SCHEMAS: dict[str, Any] = {}
