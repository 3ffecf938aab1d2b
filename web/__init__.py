"""Pages and links people and monitors open, as opposed to webhooks other systems post to: the farmer's
report page (`web.report`), the signed photo links N8N fetches (`web.media`), the health and metrics
endpoints (`web.health`) and the tab's icon (`web.icon`). Blueprints only; the app factory registers them."""
