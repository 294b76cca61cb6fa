"""Kafka producers: the relays that publish what the engine recorded, and the publisher other
services use to send well-formed input events."""
