"""Reads output topics from the beginning, without a consumer group, for people: `tail` and
`demo` use it. (Tansu cannot seek to the end, so readers start at the beginning and filter.)"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord


class TopicReader:
    def __init__(self, client_config: dict[str, Any], topics: list[str]) -> None:
        self._consumer = KafkaConsumer(
            **client_config,
            enable_auto_commit=False,
            fetch_max_wait_ms=50,
        )
        partitions = []
        for topic in topics:
            deadline = time.monotonic() + 10
            found = self._consumer.partitions_for_topic(topic)
            while not found and time.monotonic() < deadline:
                time.sleep(0.1)
                found = self._consumer.partitions_for_topic(topic)
            if not found:
                raise RuntimeError(f"topic {topic} does not exist; is the service running?")
            partitions += [TopicPartition(topic, p) for p in sorted(found)]
        self._consumer.assign(partitions)
        self._consumer.seek_to_beginning(*partitions)

    def poll(self, timeout_ms: int = 100) -> list[ConsumerRecord]:
        polled = self._consumer.poll(timeout_ms=timeout_ms)
        return [record for batch in polled.values() for record in batch]

    def follow(self) -> Iterator[ConsumerRecord]:
        while True:
            yield from self.poll()

    def close(self) -> None:
        self._consumer.close()
