"""Relays: publish rows the engine recorded (status changes, dead letters) to Kafka.

A row is marked published only after the broker acknowledged it, and only up to the first
send of its key that was not: the rest of that key is sent again, in order, next round. So a
reader may see a message twice after a crash, never out of order and never with a gap.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
from kafka import KafkaProducer
from kafka.errors import KafkaError, KafkaTimeoutError

from syncstatus.messages import CommandMessages, EventMessages, StatusChangeMessages
from syncstatus.statemachine.commands import IssuedCommand
from syncstatus.statemachine.connection import Transition
from syncstatus.store.errors import DATABASE
from syncstatus.store.outbox import DeadLetter, RelayBatch

log = structlog.get_logger(__name__)


class NewRowsWaiter(Protocol):
    """Returns when rows may have been added, or after the timeout (store.notifications)."""

    def wait(self, stop: threading.Event, timeout_s: float) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Message:
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


class Relay:
    """Moves rows from one outbox-like table to one topic."""

    def __init__(
        self,
        name: str,
        fetch: Callable[[int], AbstractContextManager[RelayBatch | None]],
        to_message: Callable[[Any], Message],
        producer_factory: Callable[[], KafkaProducer],
        topic: str,
        batch_size: int,
        idle_s: float,
        flush_timeout_s: float,
        new_rows: NewRowsWaiter,
        on_published: Callable[[int], None] = lambda _: None,
    ) -> None:
        self.name = name
        self._fetch = fetch
        self._to_message = to_message
        self._producer_factory = producer_factory
        self._producer: KafkaProducer | None = None
        self._topic = topic
        self._batch_size = batch_size
        self._idle_s = idle_s
        self._flush_timeout_s = flush_timeout_s
        self._new_rows = new_rows
        self._on_published = on_published

    def run(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                try:
                    published = self.relay_once()
                except DATABASE as error:
                    log.warning(
                        "relay cannot reach the database",
                        relay=self.name,
                        error=str(error).splitlines()[0],
                    )
                    stop.wait(1.0)
                    continue
                except KafkaError as error:
                    log.warning("relay cannot reach Kafka", relay=self.name, error=repr(error))
                    self._reset_producer()
                    stop.wait(1.0)
                    continue
                if published == 0:
                    self._new_rows.wait(stop, self._idle_s)
        finally:
            self._reset_producer()
            self._new_rows.close()

    def relay_once(self) -> int:
        """Publish one batch; return how many rows Kafka acknowledged."""
        with self._fetch(self._batch_size) as batch:
            if not batch or not batch.items:
                return 0
            producer = self._producer or self._producer_factory()
            self._producer = producer
            futures = []
            for row_id, row in batch.items:
                message = self._to_message(row)
                future = producer.send(
                    self._topic, key=message.key, value=message.value, headers=message.headers
                )
                futures.append((row_id, message.key, future))
            try:
                producer.flush(timeout=self._flush_timeout_s)
            except KafkaTimeoutError:
                log.warning("sends still pending after the flush timeout", relay=self.name)
            acknowledged, held_back = [], set()
            for row_id, key, future in futures:
                if key in held_back or not future.succeeded():
                    held_back.add(key)
                else:
                    acknowledged.append(row_id)
            if len(acknowledged) < len(futures):
                failed = next((f.exception for *_, f in futures if f.failed()), "still pending")
                log.warning(
                    "not all sends acknowledged; resending the rest",
                    relay=self.name,
                    acknowledged=len(acknowledged),
                    sent=len(futures),
                    error=repr(failed),
                )
                self._reset_producer()
            batch.mark_published(acknowledged)
        self._on_published(len(acknowledged))
        return len(acknowledged)

    def _reset_producer(self) -> None:
        """A producer that lost its broker may stay broken (its retries can hang forever);
        drop it with whatever it still holds, and the next round resends from the database."""
        producer, self._producer = self._producer, None
        if producer is None:
            return
        try:
            producer.close(timeout=1)
        except KafkaTimeoutError:
            # kafka-python's close() flushes first and gives up before stopping its sender
            # thread when sends are stuck; stop the thread ourselves rather than leak it.
            producer._sender.force_close()


def status_change_message(messages: StatusChangeMessages) -> Callable[[Transition], Message]:
    def to_message(t: Transition) -> Message:
        return Message(t.connection_id.encode(), messages.encode(t), [])

    return to_message


def command_message(messages: CommandMessages) -> Callable[[IssuedCommand], Message]:
    def to_message(c: IssuedCommand) -> Message:
        return Message(c.connection_id.encode(), messages.encode(c), [])

    return to_message


def dead_letter_message(messages: EventMessages) -> Callable[[DeadLetter], Message]:
    """The original key and bytes untouched, and headers that say why and where from."""

    def to_message(d: DeadLetter) -> Message:
        headers = [("reason", d.reason.encode()), ("detail", d.detail.encode())]
        headers += _optional_headers(
            event_id=None if d.event is None else str(d.event.event_id),
            event_type=d.event_type,
            from_status=None if d.from_status is None else str(d.from_status),
            connection_id=d.connection_id,
        )
        if d.origin is not None:
            headers += [
                ("source_topic", d.origin.topic.encode()),
                ("source_partition", str(d.origin.partition).encode()),
                ("source_offset", str(d.origin.offset).encode()),
            ]
            return Message(d.origin.key, d.origin.value, headers)
        assert d.event is not None, "a dead letter has its message or its event"
        return Message(d.event.connection_id.encode(), messages.encode(d.event), headers)

    return to_message


def _optional_headers(**values: str | None) -> Iterator[tuple[str, bytes]]:
    for name, value in values.items():
        if value is not None:
            yield name, value.encode()
