"""Relays: publish rows the engine recorded (status changes, dead letters, commands, redrives)
to Kafka.

A row is marked published only after the broker acknowledged it, and only up to the first
send of its key that was not: the rest of that key is sent again, in order, next round. So a
reader may see a message twice after a crash, never out of order and never with a gap.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
from kafka import KafkaProducer
from kafka.errors import (
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
)
from kafka.future import Future

from syncstatus.schemas.messages import CommandMessages, EventMessages, StatusChangeMessages
from syncstatus.service.ports import StoreError
from syncstatus.statemachine.commands import IssuedCommand
from syncstatus.statemachine.connection import Transition
from syncstatus.store.outbox import DeadLetter, Redrive, RelayBatch

log = structlog.get_logger(__name__)


class NewRowsWaiter(Protocol):
    """Returns when rows may have been added, or after the timeout (store.notifications)."""

    def wait(self, stop: threading.Event, timeout_s: float) -> None: ...

    def close(self) -> None: ...


RECORD_OVERHEAD = 512
"""Bytes a record takes beyond its key, value and headers (batch and record framing), rounded
up: what the producer and the broker count against their size limits."""
TOO_LARGE = (MessageSizeTooLargeError, RecordListTooLargeError)


@dataclass(frozen=True, slots=True)
class Message:
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    topic: str | None = None
    """Where it goes, when not to its relay's topic (a redrive goes back where it came from)."""

    @property
    def size(self) -> int:
        headers = sum(len(name.encode()) + len(value) for name, value in self.headers)
        return len(self.key or b"") + len(self.value or b"") + headers + RECORD_OVERHEAD


@dataclass(frozen=True, slots=True)
class Oversize:
    """What a relay does with a record too large to send: `shrink` it into one that fits
    (None: it cannot, the record waits and is counted), and report it."""

    max_record_bytes: int
    shrink: Callable[[Any], Message] | None = None
    on_oversize: Callable[[], None] = lambda: None


class Relay:
    """Moves rows from one outbox-like table to one topic."""

    def __init__(
        self,
        name: str,
        fetch: Callable[[int], AbstractContextManager[RelayBatch | None]],
        to_message: Callable[[Any], Message],
        producer_factory: Callable[[], KafkaProducer],
        topic: str | None,
        batch_size: int,
        idle_s: float,
        flush_timeout_s: float,
        new_rows: NewRowsWaiter,
        oversize: Oversize,
        on_published: Callable[[int], None] = lambda _: None,
    ) -> None:
        self.name = name
        self._oversize = oversize
        self._shrunk: set[int] = set()
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
                except StoreError as error:
                    log.warning(
                        "relay cannot reach the database",
                        relay=self.name,
                        error=str(error),
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
                message = self._message(row_id, row)
                try:
                    future = producer.send(
                        message.topic or self._topic,
                        key=message.key,
                        value=message.value,
                        headers=message.headers,
                    )
                except TOO_LARGE as error:
                    future = Future().failure(error)
                futures.append((row_id, message.key, future))
            try:
                producer.flush(timeout=self._flush_timeout_s)
            except KafkaTimeoutError:
                log.warning("sends still pending after the flush timeout", relay=self.name)
            acknowledged, held_back = [], set()
            for row_id, key, future in futures:
                if future.failed() and isinstance(future.exception, TOO_LARGE):
                    self._too_large(row_id, future.exception)
                if key in held_back or not future.succeeded():
                    held_back.add(key)
                else:
                    acknowledged.append(row_id)
                    self._shrunk.discard(row_id)
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

    def _message(self, row_id: int, row: Any) -> Message:
        """The row's record, or its shrunk form once it is, or was refused as, too large."""
        if row_id in self._shrunk:
            return self._oversize.shrink(row)
        message = self._to_message(row)
        if message.size > self._oversize.max_record_bytes and self._oversize.shrink:
            self._too_large(row_id, "over SYNCSTATUS_KAFKA_MAX_RECORD_BYTES")
            return self._oversize.shrink(row)
        return message

    def _too_large(self, row_id: int, why: object) -> None:
        """Counted each time; shrunk from now on, or, if this relay cannot shrink, left to
        wait, holding back its own key only."""
        self._oversize.on_oversize()
        if self._oversize.shrink is not None and row_id not in self._shrunk:
            self._shrunk.add(row_id)
            return
        log.error("a record is too large to publish", relay=self.name, row=row_id, why=repr(why))

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
            redrive_of=None
            if d.origin is None or d.origin.redrive_of is None
            else str(d.origin.redrive_of),
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


def redrive_message(r: Redrive) -> Message:
    """The dead letter's message as it came in, to the topic it came in on, with the headers
    that name the redrive (`Origin.redriven`): the consumer claims it under the dead letter."""
    message = r.origin.redriven(r.dead_letter_id, r.requested_by)
    return Message(message.key, message.value, list(message.headers), message.topic)


MAX_KEY_BYTES = 1024


def shrunk_dead_letter(
    to_message: Callable[[DeadLetter], Message],
) -> Callable[[DeadLetter], Message]:
    """A dead letter too large for Kafka, in a form that fits: every header, no value, and
    what identifies the original: its size and SHA-256, and the dead letter's id, under which
    PostgreSQL keeps the bytes and the API serves them (`GET /dead-letters/{id}/original`)."""

    def shrink(d: DeadLetter) -> Message:
        whole = to_message(d)
        value = whole.value or b""
        key = whole.key
        if key is not None and len(key) > MAX_KEY_BYTES:
            key = hashlib.sha256(key).hexdigest().encode()
        headers = [(name, v[:MAX_KEY_BYTES]) for name, v in whole.headers]
        headers += [
            ("truncated", b"true"),
            ("dead_letter_id", str(d.id).encode()),
            ("original_size", str(len(value)).encode()),
            ("original_sha256", hashlib.sha256(value).hexdigest().encode()),
        ]
        return Message(key, b"", headers)

    return shrink


def _optional_headers(**values: str | None) -> Iterator[tuple[str, bytes]]:
    for name, value in values.items():
        if value is not None:
            yield name, value.encode()
