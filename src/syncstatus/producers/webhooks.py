"""The webhook relay: every subscription receives the feed's records (status_history in commit
order, store/changes.py) that its filter wants, signed, one at a time and in order.

A dispatcher wakes on the outbox's notification (a status change committed) or every
`idle_s`, lists the active subscriptions not waiting for a retry, and hands each to a worker
thread (at most `workers` at once). A worker claims its subscription (an advisory lock, so
several processes never deliver one subscription at once), carries out any redelivery asked
for, then delivers what follows the subscription's position, strictly in order: a record that
fails blocks its subscription only, and every later record waits behind it, which keeps each
connection's records in sequence order. Each round's attempts and new position are written
in one transaction after the round; a crash in between delivers those records again, with the
same `webhook-id`.

A failed record is tried again on the schedule of `RetryPolicy` (kept in the database, so it
survives restarts and holds no thread); once the retry period is over the subscription is
paused (`failing`) until someone resumes it, and no other subscription notices.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum

import httpx
import structlog

from syncstatus.producers.relay import NewRowsWaiter
from syncstatus.producers.webhook_delivery import (
    Answer,
    HttpSender,
    RetryPolicy,
    body_of,
    message_id,
    signed_headers,
)
from syncstatus.schemas.changes import FeedPosition, change_json
from syncstatus.schemas.messages import StatusChangeMessages
from syncstatus.service.ports import StoreError
from syncstatus.store.changes import Change
from syncstatus.store.webhooks import (
    ACTIVE,
    Attempt,
    Claimed,
    Progress,
    Redelivery,
    Subscription,
    WebhookClaims,
    WebhookStore,
)

log = structlog.get_logger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Delivered:
    """What the metrics hear of each attempt."""

    subscription_id: uuid.UUID
    answer: Answer
    recorded_at: datetime
    delivered_at: datetime


class Round(Enum):
    """How a worker's round ended."""

    MORE = "more"  # delivered; look again at once
    IDLE = "idle"  # nothing left to deliver
    DONE = "done"  # stop serving it: failing, waiting for a retry, gone or held elsewhere


class WebhookRelay:
    def __init__(
        self,
        store: WebhookStore,
        claims: Callable[[], WebhookClaims],
        sender: HttpSender,
        retry: RetryPolicy,
        new_rows: NewRowsWaiter,
        batch_size: int = 100,
        workers: int = 8,
        idle_s: float = 0.5,
        on_attempt: Callable[[Delivered], None] = lambda _: None,
        on_failure: Callable[[str], None] = lambda _: None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._store = store
        self._new_claims = claims
        self._sender = sender
        self._retry = retry
        self._new_rows = new_rows
        self._batch_size = batch_size
        self._workers = workers
        self._idle_s = idle_s
        self._on_attempt = on_attempt
        self._on_failure = on_failure
        self._clock = clock
        self._messages = StatusChangeMessages()
        self._lock = threading.Lock()
        self._woken = threading.Condition(self._lock)
        self._wakes = 0
        self._waiting = 0
        """Due subscriptions the last wake found no free worker for."""
        self._running: set[uuid.UUID] = set()
        self._let_go: dict[uuid.UUID, int] = {}
        """The wake at which each subscription's worker last let go: the longest waiting go
        first, so more subscriptions than workers take turns."""
        self._local = threading.local()
        self._all_claims: list[WebhookClaims] = []

    def run(self, stop: threading.Event) -> None:
        executor = ThreadPoolExecutor(self._workers, thread_name_prefix="webhook")
        try:
            while not stop.is_set():
                try:
                    due, next_retry = self._store.due(self._clock())
                except StoreError as error:
                    log.warning("webhook relay cannot reach the database", error=str(error))
                    stop.wait(1.0)
                    continue
                with self._lock:
                    self._wakes += 1
                    self._waiting = 0
                    for sid in sorted(due, key=lambda sid: self._let_go.get(sid, -1)):
                        if sid in self._running:
                            continue
                        if len(self._running) < self._workers:
                            self._running.add(sid)
                            executor.submit(self._work, sid, stop)
                        else:
                            self._waiting += 1
                    self._woken.notify_all()
                timeout = self._idle_s
                if next_retry is not None:
                    until = (next_retry - self._clock()).total_seconds()
                    timeout = max(0.01, min(timeout, until))
                self._new_rows.wait(stop, timeout)
        finally:
            with self._lock:
                self._woken.notify_all()
            executor.shutdown(wait=True)
            self._new_rows.close()
            for claims in self._all_claims:
                claims.close()

    def _claims(self) -> WebhookClaims:
        claims = getattr(self._local, "claims", None)
        if claims is None:
            claims = self._local.claims = self._new_claims()
            with self._lock:
                self._all_claims.append(claims)
        return claims

    def _work(self, subscription_id: uuid.UUID, stop: threading.Event) -> None:
        """Serve one subscription until it lets go; a wake that came after it looked for the
        last time makes it look again, so no notification is lost."""
        try:
            while True:
                ended, seen = self.serve(subscription_id, stop)
                with self._lock:
                    if ended is Round.DONE or stop.is_set() or self._wakes == seen:
                        self._running.discard(subscription_id)
                        self._let_go[subscription_id] = self._wakes
                        return
        except StoreError as error:
            log.warning("webhook worker cannot reach the database", error=str(error))
        except Exception:
            log.exception("webhook worker failed", subscription=str(subscription_id))
            self._on_failure("webhook-worker")
        with self._lock:
            self._running.discard(subscription_id)
            self._let_go[subscription_id] = self._wakes

    def serve(self, subscription_id: uuid.UUID, stop: threading.Event) -> tuple[Round, int]:
        """Claim the subscription and deliver until it fails, is stopped, or is caught up
        and either another subscription waits for a worker or no wake comes for `idle_s`
        twice over: between wakes it keeps its claim and its connection to the receiver, so
        a new record goes out without claiming anew. Returns how it ended and the wake it
        last looked after."""
        with self._claims().claim(subscription_id) as claimed:
            if claimed is None:
                return Round.DONE, 0
            with self._sender.client() as client:
                while True:
                    with self._lock:
                        seen = self._wakes
                    if stop.is_set():
                        return Round.DONE, seen
                    ended = self._round(claimed, client, stop)
                    if ended is Round.DONE:
                        return ended, seen
                    if ended is Round.IDLE:
                        woken = self._linger(seen, stop)
                        if woken is None:
                            return Round.DONE, seen  # the dispatcher hands it back later
                        if not woken:
                            return ended, seen

    def _linger(self, seen: int, stop: threading.Event) -> bool | None:
        """Wait for the next wake: True when it came, False when none did or the relay
        stops, None when another subscription waits for this worker."""
        with self._woken:
            if not self._waiting:
                self._woken.wait_for(
                    lambda: self._wakes != seen or self._waiting or stop.is_set(),
                    timeout=2 * self._idle_s,
                )
            if self._waiting:
                return None
            return self._wakes != seen and not stop.is_set()

    def _round(self, claimed: Claimed, client: httpx.Client, stop: threading.Event) -> Round:
        subscription = claimed.subscription()
        now = self._clock()
        if (
            subscription is None
            or subscription.state != ACTIVE
            or (subscription.retry_at is not None and subscription.retry_at > now)
        ):
            return Round.DONE
        redelivery = claimed.pending_redelivery() if subscription.redelivering else None
        if redelivery is not None and redelivery.rewind is not None:
            claimed.rewind(redelivery, now)
            log.info("webhook subscription rewound", subscription=str(subscription.id))
            return Round.MORE
        if redelivery is not None:
            changes = claimed.connection_records(redelivery, subscription.where, self._batch_size)
            if not changes:
                claimed.finish(redelivery, now)
                return Round.MORE
            ended = self._deliver(claimed, client, subscription, changes, redelivery, stop=stop)
            return Round.MORE if ended is Round.IDLE else ended
        page = claimed.feed(subscription.position, subscription.where, self._batch_size)
        if not page.changes:
            if page.scanned_to > subscription.position:
                claimed.record(_kept(subscription, Progress(position=page.scanned_to)))
            return Round.IDLE
        ended = self._deliver(
            claimed, client, subscription, page.changes, None, page.scanned_to, stop
        )
        return Round.MORE if ended is Round.IDLE else ended

    def _deliver(
        self,
        claimed: Claimed,
        client: httpx.Client,
        subscription: Subscription,
        changes: list[Change],
        redelivery: Redelivery | None,
        scanned_to: FeedPosition | None = None,
        stop: threading.Event | None = None,
    ) -> Round:
        """Deliver `changes` in order, stopping at the first that fails; record the round."""
        progress = _kept(subscription, Progress(redelivery=redelivery))
        for change in changes:
            if stop is not None and stop.is_set():
                break
            t = change.transition
            msg_id = message_id(subscription.id, t.connection_id, t.sequence)
            body = body_of(change_json(self._messages.record(t), change.position))
            at = self._clock()
            headers = signed_headers(subscription.secret, msg_id, body, at)
            answer = self._sender.send(client, subscription.url, body, headers)
            done_at = self._clock()
            self._on_attempt(Delivered(subscription.id, answer, t.recorded_at, done_at))
            progress.attempts.append(
                Attempt(
                    msg_id,
                    t.connection_id,
                    t.sequence,
                    progress.failures + 1,
                    at,
                    answer.outcome.value,
                    answer.status_code,
                    answer.seconds,
                    answer.error,
                    redelivery is not None,
                )
            )
            if not answer.ok:
                self._failed(subscription, progress, answer, done_at)
                break
            progress.failures, progress.failing_since, progress.retry_at = 0, None, None
            progress.delivered_at = done_at
            if redelivery is None:
                progress.position = change.position
            else:
                progress.redelivery_next = t.sequence + 1
        else:
            if redelivery is None and scanned_to is not None and not (stop and stop.is_set()):
                progress.position = scanned_to  # past what the filter passed over too
        if not claimed.record(progress):
            return Round.DONE
        return Round.DONE if progress.retry_at or progress.pause_reason else Round.IDLE

    def _failed(
        self, subscription: Subscription, progress: Progress, answer: Answer, now: datetime
    ) -> None:
        progress.failures += 1
        progress.failing_since = progress.failing_since or now
        retry_at = self._retry.next_attempt(progress.failing_since, now, progress.failures)
        if retry_at is not None:
            progress.retry_at = retry_at
            return
        progress.retry_at = None
        progress.pause_reason = (
            f"{progress.failures} failed attempts since "
            f"{progress.failing_since.isoformat(timespec='seconds')}; last: "
            f"{answer.error or answer.outcome.value}"
        )
        log.warning(
            "webhook subscription paused: its retry period ran out",
            subscription=str(subscription.id),
            attempts=progress.failures,
            error=answer.error,
        )


def _kept(subscription: Subscription, progress: Progress) -> Progress:
    """A round's progress starts from the subscription's retry state."""
    progress.failures = subscription.attempts
    progress.failing_since = subscription.failing_since
    progress.retry_at = None
    return progress
