"""Reads output topics without a consumer group, for people: `tail` and `demo` use it.

A reader starts at the end of each partition unless asked for history: an audit topic kept for
years would otherwise be read in full before the first live record. The end is the high
watermark a fetch reports, which is right on Apache Kafka and on Tansu alike (Tansu's answers to
ListOffsets, and so `end_offsets` and `seek_to_end`, lag behind).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord


class TopicReader:
    def __init__(
        self, client_config: dict[str, Any], topics: list[str], from_beginning: bool = False
    ) -> None:
        self._consumer = KafkaConsumer(
            **client_config,
            enable_auto_commit=False,
            fetch_max_wait_ms=50,
        )
        partitions = [p for topic in topics for p in self._partitions(topic)]
        self._consumer.assign(partitions)
        self._consumer.seek_to_beginning(*partitions)
        if not from_beginning:
            for partition, end in high_watermarks(client_config, partitions).items():
                self._consumer.seek(partition, end)

    def _partitions(self, topic: str) -> list[TopicPartition]:
        deadline = time.monotonic() + 10
        found = self._consumer.partitions_for_topic(topic)
        while not found and time.monotonic() < deadline:
            time.sleep(0.1)
            found = self._consumer.partitions_for_topic(topic)
        if not found:
            raise RuntimeError(f"topic {topic} does not exist; is the service running?")
        return [TopicPartition(topic, p) for p in sorted(found)]

    def poll(self, timeout_ms: int = 100) -> list[ConsumerRecord]:
        polled = self._consumer.poll(timeout_ms=timeout_ms)
        return [record for batch in polled.values() for record in batch]

    def follow(self, stop: threading.Event) -> Iterator[ConsumerRecord]:
        """Records as they come, until `stop` is set: a signal handler sets it, so an
        interrupt never lands inside the client and leaves it half closed."""
        while not stop.is_set():
            yield from self.poll()

    def close(self) -> None:
        self._consumer.close()


def high_watermarks(
    client_config: dict[str, Any], partitions: list[TopicPartition], timeout_s: float = 10
) -> dict[TopicPartition, int]:
    """The offset the next record of each partition will get, from one small fetch each.

    The probe fetches at most one record batch per partition (the broker's minimum), so the
    cost does not grow with the history a topic holds.
    """
    probe = KafkaConsumer(
        **client_config,
        enable_auto_commit=False,
        fetch_max_wait_ms=10,
        max_partition_fetch_bytes=1,
        fetch_max_bytes=1,
    )
    try:
        probe.assign(partitions)
        probe.seek_to_beginning(*partitions)
        deadline = time.monotonic() + timeout_s
        while any(probe.highwater(p) is None for p in partitions):
            if time.monotonic() > deadline:
                raise RuntimeError("the broker reported no high watermark; is it running?")
            probe.poll(timeout_ms=50, max_records=1)
        return {p: probe.highwater(p) for p in partitions}
    finally:
        probe.close()
