"""One webhook delivery: the body, its Standard Webhooks signature, the HTTP attempt, and when
to try again.

Signed as https://www.standardwebhooks.com says, with the `standardwebhooks` package:
`webhook-id` (stable per subscription and record, so a receiver drops what it already has),
`webhook-timestamp` (seconds since the epoch, of this attempt) and `webhook-signature`
(`v1,` + base64 HMAC-SHA256, keyed with the subscription's secret, of
`<webhook-id>.<webhook-timestamp>.<body>`). No database here: the unit tier tests it alone.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import secrets
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from math import floor
from typing import Any
from urllib.parse import urlsplit

import httpx
import tenacity
from standardwebhooks.webhooks import Webhook

from syncstatus.schemas.changes import webhook_payload

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
USER_AGENT = "syncstatus-webhooks/1"
MAX_RESPONSE_BYTES = 65536
"""Read of a receiver's answer, then the connection is dropped: only the status counts."""
MAX_ERROR_LENGTH = 512


def new_secret() -> str:
    """A signing secret as Standard Webhooks writes them: `whsec_` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def message_id(subscription_id: uuid.UUID, connection_id: str, sequence: int) -> str:
    """`webhook-id`: the same for every attempt and redelivery of one record to one
    subscription (a UUIDv5 of the connection and sequence, in the subscription's namespace)."""
    return "msg_" + uuid.uuid5(subscription_id, f"{connection_id}\x00{sequence}").hex


def body_of(change: Mapping[str, Any]) -> bytes:
    """The JSON body of a change (`schemas.changes.change_json`), compact, ASCII."""
    return json.dumps(webhook_payload(change), separators=(",", ":")).encode()


def signed_headers(secret: str, msg_id: str, body: bytes, at: datetime) -> dict[str, str]:
    """The request's headers: the three of Standard Webhooks, and the content type."""
    at = at.astimezone(UTC)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(floor(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, at, body.decode()),
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }


LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})


def target_problem(url: str, allow_http_loopback: bool) -> str | None:
    """Why `url` cannot be a subscription's target, or None: https only, or http to a
    loopback address when `SYNCSTATUS_WEBHOOK_ALLOW_HTTP_LOOPBACK` allows it."""
    try:
        parts = urlsplit(url)
        host, _ = parts.hostname, parts.port
    except ValueError as error:
        return f"not a URL: {error}"
    if not host:
        return "the URL has no host"
    if parts.username is not None or parts.password is not None:
        return "no credentials in the URL; authenticate the signature instead"
    if parts.fragment:
        return "no fragment in the URL"
    if parts.scheme == "https":
        return None
    if parts.scheme != "http":
        return "the URL must be https"
    if not allow_http_loopback:
        return "the URL must be https (http only to loopback, when the service allows it)"
    if not _loopback(host):
        return "http is allowed to loopback addresses only"
    return None


def _loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Outcome(StrEnum):
    """What became of one attempt (the `outcome` label of the deliveries metric)."""

    DELIVERED = "delivered"  # a 2xx
    REJECTED = "rejected"  # any other status
    TIMEOUT = "timeout"  # no answer within the timeouts
    UNREACHABLE = "unreachable"  # no connection, or it broke


@dataclass(frozen=True, slots=True)
class Answer:
    outcome: Outcome
    status_code: int | None
    seconds: float
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.DELIVERED


class HttpSender:
    """POSTs deliveries with httpx: no redirects followed, no proxy from the environment, a
    connect and a read timeout, and only the status of the answer kept."""

    def __init__(
        self,
        timeout_s: float,
        connect_timeout_s: float,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._timeout = httpx.Timeout(timeout_s, connect=connect_timeout_s)
        self._transport = transport

    def client(self) -> httpx.Client:
        return httpx.Client(
            timeout=self._timeout,
            follow_redirects=False,
            trust_env=False,
            transport=self._transport,
            headers={"user-agent": USER_AGENT},
        )

    def send(
        self, client: httpx.Client, url: str, body: bytes, headers: Mapping[str, str]
    ) -> Answer:
        started = time.perf_counter()
        try:
            with client.stream("POST", url, content=body, headers=dict(headers)) as response:
                status = response.status_code
                _drain(response)
        except httpx.TimeoutException as error:
            return Answer(Outcome.TIMEOUT, None, time.perf_counter() - started, _text(error))
        except httpx.HTTPError as error:
            return Answer(Outcome.UNREACHABLE, None, time.perf_counter() - started, _text(error))
        seconds = time.perf_counter() - started
        if 200 <= status < 300:
            return Answer(Outcome.DELIVERED, status, seconds)
        return Answer(Outcome.REJECTED, status, seconds, f"HTTP {status}")


def _drain(response: httpx.Response) -> None:
    """Read a little of the answer, so a short one leaves the connection reusable."""
    read = 0
    try:
        for chunk in response.iter_raw():
            read += len(chunk)
            if read > MAX_RESPONSE_BYTES:
                return
    except httpx.StreamConsumed:
        return  # already read (a test transport)


def _text(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"[:MAX_ERROR_LENGTH]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When a failed record is tried again: tenacity's exponential backoff with jitter
    (`wait_exponential_jitter`: `initial_s` · 2^(n-1) + up to `initial_s` of jitter, at most
    `max_s`), until the next attempt would start more than `period_s` after the first
    failure (`stop_before_delay`); then the subscription is paused."""

    period_s: float
    initial_s: float = 1.0
    max_s: float = 300.0

    def wait_s(self, failures: int) -> float:
        wait = tenacity.wait_exponential_jitter(
            multiplier=self.initial_s, max=self.max_s, jitter=self.initial_s
        )
        return wait(_state(failures))

    def next_attempt(
        self, failing_since: datetime, now: datetime, failures: int
    ) -> datetime | None:
        """When to try again after the `failures`-th failure in a row; None: give up."""
        wait = self.wait_s(failures)
        state = _state(failures, elapsed=(now - failing_since).total_seconds(), upcoming=wait)
        if tenacity.stop_before_delay(self.period_s)(state):
            return None
        return now + timedelta(seconds=wait)


def _state(attempt: int, elapsed: float = 0.0, upcoming: float = 0.0) -> tenacity.RetryCallState:
    """A tenacity retry state as its strategies read it, for a schedule kept in the database
    rather than in a sleeping thread (so retries survive restarts and hold no worker)."""
    state = tenacity.RetryCallState(None, None, (), {})  # type: ignore[arg-type]
    state.attempt_number = attempt
    state.start_time = 0.0
    state.outcome_timestamp = max(0.0, elapsed)
    state.upcoming_sleep = upcoming
    return state
