"""Kafka client configuration and topic administration shared by consumers and producers."""

from __future__ import annotations

from typing import Any

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from syncstatus.settings import Settings
from syncstatus.statemachine.events import EventFamily


def client_config(settings: Settings) -> dict[str, Any]:
    """Connection settings every client of the service shares."""
    return {"bootstrap_servers": settings.bootstrap_servers.split(",")}


def input_topics(settings: Settings) -> dict[str, EventFamily]:
    """Each input topic and the one event family it may carry."""
    return {
        settings.topic_auth: EventFamily.AUTHORIZATION,
        settings.topic_webhooks: EventFamily.WEBHOOK,
        settings.topic_pipeline: EventFamily.PIPELINE,
    }


def topic_for(settings: Settings, family: EventFamily) -> str:
    return {family: topic for topic, family in input_topics(settings).items()}[family]


def ensure_topics(settings: Settings) -> list[str]:
    """Create the topics that do not exist yet; return the names it created."""
    names = [*input_topics(settings), settings.topic_status, settings.topic_dead_letter]
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
