"""The input-topic consumer: decode, apply a whole poll in one transaction, then commit."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping

import structlog
from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import CommitFailedError
from kafka.structs import OffsetAndMetadata
from tenacity import Retrying, retry_if_exception_type, stop_any, wait_exponential

from syncstatus.schemas.messages import EventMessages, MessageRejected
from syncstatus.service.engine import BatchResult, StatusEngine
from syncstatus.service.inbound import Inbound, Origin, RejectedMessage
from syncstatus.service.ports import ConcurrentUpdate, StoreUnavailable
from syncstatus.service.reports import BatchReport, log_result
from syncstatus.statemachine.connection import Outcome, RefusalReason
from syncstatus.statemachine.events import EventFamily

log = structlog.get_logger(__name__)


RETRIED = (StoreUnavailable, ConcurrentUpdate)


class EventConsumer:
    """Consumes the input topics in a consumer group and drives the status engine.

    Offsets are committed only after the database transaction that applied the batch
    committed: a crash in between redelivers the batch, and the engine's idempotency keys turn
    the redelivered events into duplicates. While the database is down the batch in hand is
    retried with backoff and nothing is committed.
    """

    def __init__(
        self,
        consumer_factory: Callable[[], KafkaConsumer],
        engine: StatusEngine,
        topics: Mapping[str, EventFamily],
        messages: EventMessages,
        max_records: int,
        on_batch: Callable[[BatchReport], None] = lambda _: None,
    ) -> None:
        self._consumer_factory = consumer_factory
        self._engine = engine
        self._topics = topics
        self._max_records = max_records
        self._decoder = MessageDecoder(messages, topics)
        self._on_batch = on_batch
        self.assignment: set[TopicPartition] = set()

    def run(self, stop: threading.Event) -> None:
        consumer = self._consumer_factory()
        consumer.subscribe(list(self._topics))
        try:
            while not stop.is_set():
                polled = consumer.poll(timeout_ms=200, max_records=self._max_records)
                self.assignment = set(consumer.assignment())
                if not polled:
                    continue
                records = [record for batch in polled.values() for record in batch]
                if not self._apply_until_done(records, stop):
                    break
                self._commit(consumer, records)
        finally:
            consumer.close(autocommit=False)
            log.info("consumer stopped")

    def _apply_until_done(self, records: list[ConsumerRecord], stop: threading.Event) -> bool:
        """Apply the batch, retrying while the database is unreachable (or other writers keep
        winning: a lost race is never a reason to dead-letter an event); False if told to stop."""
        inbound, rejected = self.decode(records)
        retrying = Retrying(
            retry=retry_if_exception_type(RETRIED),
            wait=wait_exponential(multiplier=0.1, max=5),
            stop=stop_any(lambda _: stop.is_set()),
            before_sleep=lambda state: log.warning(
                "batch not applied (database unavailable or lost a race); retrying",
                attempt=state.attempt_number,
                error=str(state.outcome.exception()).splitlines()[0],
            ),
            reraise=True,
        )
        started = time.perf_counter()
        try:
            try:
                result = retrying(self._engine.apply_batch, inbound, rejected)
            except RETRIED:
                raise
            except Exception:
                log.exception("batch failed; applying its events one by one")
                result = self._apply_one_by_one(inbound, rejected, retrying)
        except RETRIED:
            log.warning("stopping with the batch unapplied; it will be redelivered")
            return False
        seconds = time.perf_counter() - started
        self._log(inbound, result, rejected)
        consumed = [(i.origin.topic, i.event.type.value) for i in inbound if i.origin]
        consumed += [(m.origin.topic, m.reason) for m in rejected]
        refused = [(m.event.producer if m.event else None, m.reason) for m in rejected]
        self._on_batch(BatchReport(consumed, refused, result, seconds))
        return True

    def _apply_one_by_one(
        self, inbound: list[Inbound], rejected: list[RejectedMessage], retrying: Retrying
    ) -> BatchResult:
        """Isolate the event the engine cannot take: it is dead-lettered as unprocessable
        and the rest apply, so one bad event never stalls its partition."""
        result = retrying(self._engine.apply_batch, [], rejected)
        for item in inbound:
            try:
                one = retrying(self._engine.apply_batch, [item])
            except RETRIED:
                raise
            except Exception as error:
                log.exception(
                    "event cannot be applied",
                    event_id=str(item.event.event_id),
                    connection_id=item.event.connection_id,
                )
                unprocessable = RejectedMessage(
                    RefusalReason.UNPROCESSABLE.value, repr(error)[:1000], item.origin, item.event
                )
                retrying(self._engine.apply_batch, [], [unprocessable])
                rejected.append(unprocessable)
                result.outcomes.append(Outcome.REFUSED)
                continue
            result.outcomes += one.outcomes
            result.transitions += one.transitions
            result.refusals += one.refusals
        return result

    def decode(self, records: list[ConsumerRecord]) -> tuple[list[Inbound], list[RejectedMessage]]:
        inbound, rejected = [], []
        for record in records:
            origin = Origin(
                record.topic,
                record.partition,
                record.offset,
                record.key,
                record.value,
                tuple(record.headers or ()),
            )
            decoded = self._decoder(origin)
            if isinstance(decoded, Inbound):
                inbound.append(decoded)
            else:
                rejected.append(decoded)
        return inbound, rejected

    def _commit(self, consumer: KafkaConsumer, records: list[ConsumerRecord]) -> None:
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        for record in records:
            partition = TopicPartition(record.topic, record.partition)
            offsets[partition] = OffsetAndMetadata(record.offset + 1, "", -1)
        try:
            consumer.commit(offsets)
        except CommitFailedError as error:
            log.warning(
                "offset commit failed after a rebalance; batch will be redelivered "
                "and deduplicated",
                error=str(error),
            )

    def _log(
        self, inbound: list[Inbound], result: BatchResult, rejected: list[RejectedMessage]
    ) -> None:
        for item, outcome in zip(inbound, result.outcomes, strict=True):
            if outcome is not Outcome.APPLIED:
                log.info(
                    f"event {outcome.value}",
                    connection_id=item.event.connection_id,
                    session_id=item.event.session_id,
                    event_id=str(item.event.event_id),
                    event_type=item.event.type.value,
                )
        log_result(result)
        for m in rejected:
            log.warning(
                "message rejected",
                reason=m.reason,
                detail=m.detail,
                topic=m.origin.topic,
                partition=m.origin.partition,
                offset=m.origin.offset,
            )


class MessageDecoder:
    """A message as the consumer takes it: an event fit for its topic, or refused before it
    becomes one. The dry run of a redrive decodes with it too, so both judge alike."""

    def __init__(self, messages: EventMessages, topics: Mapping[str, EventFamily]) -> None:
        self._messages = messages
        self._topics = topics

    def __call__(self, origin: Origin) -> Inbound | RejectedMessage:
        try:
            event = self._messages.decode(origin.value)
        except MessageRejected as error:
            return RejectedMessage(error.reason.value, error.detail, origin)
        if event.type.family is not self._topics.get(origin.topic):
            return RejectedMessage(
                RefusalReason.WRONG_TOPIC.value,
                f"{event.type.value} does not belong on {origin.topic}",
                origin,
                event,
            )
        return Inbound(event, origin)
