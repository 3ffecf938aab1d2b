"""Inbound HTTP that other systems post to, Meta (`webhooks.whatsapp`) and N8N (`webhooks.n8n`):
authenticate, parse, persist, enqueue. No business rules."""
