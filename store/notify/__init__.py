"""Telling someone: event changes (changes.py), alert rules (rules.py), a durable outbox per delivery target
(outbox.py), webhooks (webhooks.py) and MQTT (mqtt/). docs/integrations.md says what users get."""
