"""The audit log writer, for the admin API's modules: it lives in `services.audit` (the staff console
writes the same log)."""

from __future__ import annotations

from services.audit import audit, client_ip

__all__ = ["audit", "client_ip"]
