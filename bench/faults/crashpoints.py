"""`syncstatus run`, with the campaign's hands on it: `python -m bench.faults.crashpoints`.

The real service, its real code, with three boundaries the campaign can aim at. Each fires once
when the campaign creates its arm file in `$BENCH_FAULTS_ARMS`, then disarms:

- `after-commit`: SIGKILL right after a batch's database commit, before its offsets are
  committed (the batch comes again and must be found duplicate);
- `after-ack`: SIGKILL right after the broker acknowledged a relay's round, before the rows are
  marked published (the records go out twice and must be identical);
- `relay-dies`: the status relay's loop raises, alone, while the rest runs on.

`$BENCH_FAULTS_MUTATE_RELAY=1` corrupts every seventh status record (wrong `to_code` and cause
type): a broken relay the campaign must catch.
"""

from __future__ import annotations

import os
import signal
from dataclasses import replace
from pathlib import Path

from syncstatus.cli.app import app
from syncstatus.consumers.event_consumer import EventConsumer
from syncstatus.producers.relay import Relay
from syncstatus.schemas.messages import StatusChangeMessages
from syncstatus.statemachine.events import EventType
from syncstatus.statemachine.statuses import Status
from syncstatus.store.outbox import RelayBatch

ARMS = Path(os.environ.get("BENCH_FAULTS_ARMS", "/nonexistent"))


def fires(point: str) -> bool:
    try:
        (ARMS / point).unlink()
    except FileNotFoundError:
        return False
    return True


def _patch() -> None:
    commit, mark, relay_once = EventConsumer._commit, RelayBatch.mark_published, Relay.relay_once

    def killed_after_commit(self, consumer, records):  # noqa: ANN001
        if fires("after-commit"):
            os.kill(os.getpid(), signal.SIGKILL)
        return commit(self, consumer, records)

    def killed_after_ack(self, ids):  # noqa: ANN001
        if ids and fires("after-ack"):
            os.kill(os.getpid(), signal.SIGKILL)
        return mark(self, ids)

    def dies(self):  # noqa: ANN001
        if self.name == "status-relay" and fires("relay-dies"):
            raise RuntimeError("the campaign killed this relay's loop")
        return relay_once(self)

    EventConsumer._commit = killed_after_commit
    RelayBatch.mark_published = killed_after_ack
    Relay.relay_once = dies
    if os.environ.get("BENCH_FAULTS_MUTATE_RELAY") == "1":
        _mutate_the_status_relay()


def _mutate_the_status_relay() -> None:
    encode, count = StatusChangeMessages.encode, [0]

    def corrupted(self, t):  # noqa: ANN001
        count[0] += 1
        if count[0] % 7 == 0:
            wrong = Status.SYNCED if t.to_status is not Status.SYNCED else Status.LOADING
            t = replace(t, to_status=wrong, event_type=EventType.LOADING_STARTED)
        return encode(self, t)

    StatusChangeMessages.encode = corrupted


if __name__ == "__main__":
    _patch()
    app(["run"])
