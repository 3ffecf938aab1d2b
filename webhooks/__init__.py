"""Inbound HTTP from Meta (and later N8N): authenticate, parse, persist, enqueue. No business rules."""
