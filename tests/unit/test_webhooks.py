"""The pure pieces of the change feed and its webhooks: the cursor, the payload, the signature,
the retry schedule, the targets a subscription may have, and the filters."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from syncstatus.producers.webhook_delivery import (
    HttpSender,
    Outcome,
    RetryPolicy,
    body_of,
    message_id,
    new_secret,
    signed_headers,
    target_problem,
)
from syncstatus.schemas.changes import (
    BEGINNING,
    ChangeFilter,
    FeedPosition,
    InvalidCursor,
    change_json,
    webhook_payload,
)
from syncstatus.schemas.codec import STATUS_CHANGED, load_schema
from syncstatus.schemas.messages import StatusChangeMessages
from syncstatus.statemachine.connection import Transition
from syncstatus.statemachine.events import EventType, Failure, FailureClass
from syncstatus.statemachine.statuses import Status

BIGINT = st.integers(min_value=0, max_value=2**63 - 1)
AT = datetime(2026, 12, 1, 10, 0, 0, 123456, tzinfo=UTC)


def transition(**overrides) -> Transition:
    values = {
        "connection_id": "c1",
        "sequence": 3,
        "session_id": "s1",
        "app": "plaid",
        "from_status": Status.LOADING,
        "to_status": Status.LOADING_ERROR,
        "event_id": uuid.UUID(int=7),
        "event_type": EventType.LOADING_FAILED,
        "producer": "pipeline",
        "occurred_at": AT - timedelta(seconds=2),
        "recorded_at": AT,
        "error": "boom",
        "substage": None,
        "failure": Failure(FailureClass.RATE_LIMIT, True, "429"),
    }
    return Transition(**{**values, **overrides})


@given(BIGINT, BIGINT)
def test_a_cursor_reads_back_as_the_position_it_was(xid, row):
    position = FeedPosition(xid, row)
    assert FeedPosition.parse(str(position)) == position
    assert position >= BEGINNING


@given(BIGINT, BIGINT, BIGINT, BIGINT)
def test_cursors_order_as_their_positions_in_commit_order(a, b, c, d):
    assert (FeedPosition(a, b) < FeedPosition(c, d)) == ((a, b) < (c, d))


@pytest.mark.parametrize(
    "text", ["", "1", "1-", "-1", "a-b", "1-2-3", "01-2", "1 -2", "99999999999999999999-1", "1_2"]
)
def test_anything_else_is_not_a_cursor(text):
    with pytest.raises(InvalidCursor):
        FeedPosition.parse(text)
    assert issubclass(InvalidCursor, ValueError), "the API answers 400"


def test_the_json_of_a_change_is_its_status_changed_record_and_its_cursor():
    record = StatusChangeMessages.record(transition())
    change = change_json(record, FeedPosition(12, 34))
    fields = [f["name"] for f in load_schema(STATUS_CHANGED)["fields"]]
    assert list(change) == [*fields, "cursor"], "every field, in the schema's order"
    assert change["cursor"] == "12-34"
    assert change["recorded_at"] == "2026-12-01T10:00:00.123Z", "UTC, to the millisecond"
    assert change["cause_event_id"] == str(uuid.UUID(int=7))
    assert (change["to_code"], change["to_name"], change["is_error"]) == (11, "Loading Error", True)
    assert (change["failure_class"], change["failure_retryable"]) == ("rate_limit", True)
    assert json.loads(json.dumps(change)) == change
    decoded = StatusChangeMessages().decode(StatusChangeMessages().encode(transition()))
    assert {k: v for k, v in change.items() if k not in ("cursor",)}.keys() == decoded.keys()


def test_the_payload_follows_the_standard_webhooks_structure():
    change = change_json(StatusChangeMessages.record(transition()), FeedPosition(1, 2))
    payload = webhook_payload(change)
    assert payload == {
        "type": "connection.status_changed",
        "timestamp": "2026-12-01T10:00:00.123Z",
        "data": change,
    }
    assert json.loads(body_of(change)) == payload
    assert body_of(change).isascii()


def test_a_delivery_verifies_with_standardwebhooks_and_by_hand():
    secret = new_secret()
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 32
    body = body_of(change_json(StatusChangeMessages.record(transition()), FeedPosition(1, 2)))
    msg_id = message_id(uuid.uuid4(), "c1", 3)
    now = datetime.now(UTC)
    headers = signed_headers(secret, msg_id, body, now)
    assert headers["webhook-id"] == msg_id
    assert headers["webhook-timestamp"] == str(int(now.timestamp()))
    assert Webhook(secret).verify(body, headers)["data"]["sequence"] == 3
    # What the shell one-liner of docs/contract.md computes:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{msg_id}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    assert headers["webhook-signature"] == f"v1,{expected}"
    for forged in (body.replace(b'"sequence":3', b'"sequence":4'), body + b" "):
        with pytest.raises(WebhookVerificationError):
            Webhook(secret).verify(forged, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, headers)
    stale = signed_headers(secret, msg_id, body, now - timedelta(minutes=10))
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(secret).verify(body, stale)


def test_a_records_webhook_id_is_stable_per_subscription_and_distinct_otherwise():
    subscription, other = uuid.uuid4(), uuid.uuid4()
    assert message_id(subscription, "c1", 3) == message_id(subscription, "c1", 3)
    assert (
        len(
            {
                message_id(subscription, "c1", 3),
                message_id(subscription, "c1", 4),
                message_id(subscription, "c13", 1),
                message_id(subscription, "c1", 31),
                message_id(other, "c1", 3),
            }
        )
        == 5
    )
    assert message_id(subscription, "ü ./x", 1).isascii()


def test_the_backoff_grows_exponentially_with_jitter_up_to_its_cap():
    policy = RetryPolicy(period_s=3600, initial_s=1, max_s=60)
    for failures, base in [(1, 1), (2, 2), (3, 4), (4, 8), (6, 32)]:
        waits = [policy.wait_s(failures) for _ in range(200)]
        assert all(base <= w <= base + 1 for w in waits), failures
        assert len(set(waits)) > 100, "jittered, so receivers are not hit in step"
    assert {policy.wait_s(30) for _ in range(20)} == {60}


def test_retries_stop_once_the_next_attempt_would_start_after_the_period():
    policy = RetryPolicy(period_s=10, initial_s=1, max_s=4)
    since = datetime(2026, 1, 1, tzinfo=UTC)
    now, failures, attempts = since, 1, [since]
    while (retry_at := policy.next_attempt(since, now, failures)) is not None:
        assert retry_at > now
        now, failures = retry_at, failures + 1
        attempts.append(now)
    assert all(at - since < timedelta(seconds=10) for at in attempts)
    assert 4 <= len(attempts) <= 6, attempts
    assert policy.next_attempt(since, since + timedelta(seconds=11), 1) is None


@pytest.mark.parametrize(
    ("url", "allow", "problem"),
    [
        ("https://hooks.example.com/x?y=1", False, None),
        ("https://127.0.0.1:8443/", False, None),
        ("http://127.0.0.1:8080/hook", True, None),
        ("http://[::1]:8080/hook", True, None),
        ("http://localhost/hook", True, None),
        ("http://127.0.0.1:8080/hook", False, "must be https"),
        ("http://10.0.0.1/hook", True, "loopback addresses only"),
        ("http://example.com/hook", True, "loopback addresses only"),
        ("ftp://example.com/", True, "must be https"),
        ("https://u:p@example.com/", False, "no credentials"),
        ("https:///x", False, "no host"),
        ("https://example.com/#x", False, "no fragment"),
        ("https://[::1/", False, "not a URL"),
    ],
)
def test_a_subscription_targets_https_or_loopback_http_where_allowed(url, allow, problem):
    found = target_problem(url, allow)
    assert (found is None) if problem is None else (problem in (found or "")), found


def test_filters_keep_what_they_name():
    record = StatusChangeMessages.record(transition(workspace_id="acme"))
    assert ChangeFilter().matches(record)
    assert ChangeFilter.of("acme", ["plaid"], [11], True).matches(record)
    assert not ChangeFilter.of("zeta").matches(record)
    assert not ChangeFilter.of(apps=["stripe"]).matches(record)
    assert not ChangeFilter.of(statuses=[19]).matches(record)
    synced = StatusChangeMessages.record(transition(to_status=Status.SYNCED))
    assert not ChangeFilter.of(errors_only=True).matches(synced)
    assert ChangeFilter.of(None, [], []) == ChangeFilter(), "empty lists filter nothing"
    with pytest.raises(ValueError):
        ChangeFilter.of(statuses=[3])


def test_the_sender_keeps_the_status_and_names_timeouts_and_unreachable_receivers():
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/slow":
            raise httpx.ReadTimeout("slow", request=request)
        if request.url.path == "/down":
            raise httpx.ConnectError("refused", request=request)
        if request.url.path == "/moved":
            return httpx.Response(301, headers={"location": "https://elsewhere/"})
        assert request.headers["webhook-id"] == "msg_1"
        return httpx.Response(204 if request.url.path == "/ok" else 500, content=b"x" * 100_000)

    sender = HttpSender(1, 1, transport=httpx.MockTransport(answer))
    with sender.client() as client:
        sent = {
            path: sender.send(client, f"https://r.example{path}", b"{}", {"webhook-id": "msg_1"})
            for path in ("/ok", "/fail", "/slow", "/down", "/moved")
        }
    assert {p: (a.outcome, a.status_code) for p, a in sent.items()} == {
        "/ok": (Outcome.DELIVERED, 204),
        "/fail": (Outcome.REJECTED, 500),
        "/slow": (Outcome.TIMEOUT, None),
        "/down": (Outcome.UNREACHABLE, None),
        "/moved": (Outcome.REJECTED, 301),
    }
    assert sent["/ok"].ok and not sent["/moved"].ok, "redirects are not followed"
    assert sent["/slow"].error.startswith("ReadTimeout")
    assert FeedPosition(0, 0) == BEGINNING
