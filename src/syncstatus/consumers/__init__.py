"""Kafka consumers: input events in, applied through the status engine."""
