"""Notifier: delivers tasks and alerts to units' webhooks, signed, retried."""
