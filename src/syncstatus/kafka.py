"""Kafka client configuration and topic administration shared by consumers and producers."""

from __future__ import annotations

from typing import Any

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from syncstatus.settings import Settings
from syncstatus.statemachine.events import EventFamily


def client_config(settings: Settings) -> dict[str, Any]:
    """Connection and security settings every Kafka client of the service shares."""
    config: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers.split(","),
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_security_protocol.startswith("SASL"):
        config["sasl_mechanism"] = settings.kafka_sasl_mechanism
        config["sasl_plain_username"] = settings.kafka_sasl_username
        if settings.kafka_sasl_password is not None:
            config["sasl_plain_password"] = settings.kafka_sasl_password.get_secret_value()
    if settings.kafka_security_protocol.endswith("SSL"):
        config["ssl_cafile"] = settings.kafka_ssl_cafile
        config["ssl_certfile"] = settings.kafka_ssl_certfile
        config["ssl_keyfile"] = settings.kafka_ssl_keyfile
        if settings.kafka_ssl_password is not None:
            config["ssl_password"] = settings.kafka_ssl_password.get_secret_value()
    return config


def input_topics(settings: Settings) -> dict[str, EventFamily]:
    """Each input topic and the one event family it may carry."""
    return {
        settings.topic_auth: EventFamily.AUTHORIZATION,
        settings.topic_webhooks: EventFamily.WEBHOOK,
        settings.topic_pipeline: EventFamily.PIPELINE,
    }


def family_topics(settings: Settings) -> dict[EventFamily, str]:
    """The topic each event family is published to."""
    return {family: topic for topic, family in input_topics(settings).items()}


def ensure_topics(settings: Settings) -> list[str]:
    """Create the topics that do not exist yet; return the names it created."""
    names = [
        *input_topics(settings),
        settings.topic_status,
        settings.topic_dead_letter,
        settings.topic_commands,
    ]
    admin = KafkaAdminClient(**client_config(settings))
    try:
        missing = [name for name in names if name not in set(admin.list_topics())]
        created = []
        for name in missing:
            try:
                admin.create_topics(
                    [NewTopic(name, settings.topic_partitions, settings.topic_replication)]
                )
                created.append(name)
            except TopicAlreadyExistsError:
                pass
        return created
    finally:
        admin.close()
