"""Pages and links people and monitors open, as opposed to webhooks other systems post to: the farmer's
report page (`web.report`), the signed photo links N8N fetches (`web.media`), and the health and metrics
endpoints (`web.health`). Blueprints only; the app factory registers them."""
