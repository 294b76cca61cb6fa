"""Kafka client configuration and topic administration shared by consumers and producers.

Every Kafka client the service makes is configured here, once: the connection (`client_config`),
the consumer group member of `syncstatus run` (`consumer_config`), and the producers
(`producer_config` for the relays, `DELIVERY` for every producer, the publisher too).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
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


DELIVERY: dict[str, Any] = {"acks": "all", "enable_idempotence": True, "linger_ms": 5}
"""How every producer of syncstatus sends: acknowledged by all in-sync replicas, without
duplicates from its own retries, a few milliseconds of batching."""


def consumer_config(settings: Settings) -> dict[str, Any]:
    """The input consumer: a group member that commits by hand, after the database did."""
    return {
        **client_config(settings),
        "group_id": settings.consumer_group,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "session_timeout_ms": settings.kafka_session_timeout_ms,
        "heartbeat_interval_ms": settings.kafka_heartbeat_interval_ms,
        "fetch_max_wait_ms": settings.kafka_fetch_max_wait_ms,
        "max_poll_records": settings.batch_size,
    }


def producer_config(settings: Settings) -> dict[str, Any]:
    """The relays' producer: `DELIVERY`, bounded in time (a send fails rather than hangs) and
    in record size (under the brokers' limit)."""
    return {
        **client_config(settings),
        **DELIVERY,
        "max_block_ms": 10000,
        "max_request_size": settings.kafka_max_record_bytes,
        "request_timeout_ms": settings.delivery_timeout_ms // 2,
        "delivery_timeout_ms": settings.delivery_timeout_ms,
    }


def consumer_factory(settings: Settings) -> Callable[[], KafkaConsumer]:
    return lambda: KafkaConsumer(**consumer_config(settings))


def producer_factory(settings: Settings) -> Callable[[], KafkaProducer]:
    return lambda: KafkaProducer(**producer_config(settings))


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
