"""Adapters: one inbound adapter per channel, each publishing the raw report to Kafka."""
