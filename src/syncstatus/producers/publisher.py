"""The helper other services use to publish input events to syncstatus.

    from syncstatus.producers.publisher import EventPublisher
    publisher = EventPublisher({"bootstrap_servers": "kafka:9092"})
    publisher.publish(event)   # SessionEvent -> its family's topic, keyed by connection_id
    publisher.close()

It encodes with the same code the service decodes with, so a message it sends is well formed
by construction; the key keeps a connection's events in order within a topic.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kafka import KafkaProducer
from kafka.producer.future import FutureRecordMetadata

from syncstatus.kafka import DELIVERY
from syncstatus.schemas.messages import EventMessages
from syncstatus.statemachine.events import EventFamily, SessionEvent

DEFAULT_TOPICS = {
    EventFamily.AUTHORIZATION: "syncstatus.auth",
    EventFamily.WEBHOOK: "syncstatus.webhooks",
    EventFamily.PIPELINE: "syncstatus.pipeline",
}


class EventPublisher:
    def __init__(
        self,
        client_config: Mapping[str, Any],
        topics: Mapping[EventFamily, str] = DEFAULT_TOPICS,
    ) -> None:
        """`client_config`: kafka-python settings (bootstrap_servers, security...); it sends
        the way every producer of syncstatus does (`syncstatus.kafka.DELIVERY`)."""
        self._topics = dict(topics)
        self._messages = EventMessages()
        self._producer = KafkaProducer(**client_config, **DELIVERY)

    def topic_for(self, event: SessionEvent) -> str:
        return self._topics[event.type.family]

    def publish(self, event: SessionEvent) -> FutureRecordMetadata:
        return self._producer.send(
            self.topic_for(event),
            key=event.connection_id.encode(),
            value=self._messages.encode(event),
        )

    def flush(self) -> None:
        self._producer.flush()

    def close(self) -> None:
        self._producer.close()
