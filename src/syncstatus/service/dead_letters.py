"""Dead-letter triage: what redriving a dead letter would do now, and asking for redrives.

A redrive is never applied here. The message is published again on its original topic (queued
in the unit of work, published by the redrive relay once it commits), so it goes through the
consumer like any other message: decoded, claimed, decided. Its idempotency is the consumer's,
under the claim key of `Inbound.claim_key`. The dry run decides the very message the relay
would publish, with the consumer's decoder and the engine's rehearsal, so the two agree.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol

from syncstatus.service.engine import BatchResult, StatusEngine, utc_now
from syncstatus.service.inbound import Inbound, Origin, RejectedMessage
from syncstatus.service.ports import Store
from syncstatus.statemachine.connection import Outcome
from syncstatus.statemachine.events import SessionEvent
from syncstatus.statemachine.statuses import Status
from syncstatus.statemachine.workspaces import Scope

DRY_RUN = "dry-run"
"""Who a dry run's message names as its redriver: it is never published."""


class DeadLetterNotFound(LookupError):
    """No dead letter has this id, or it is outside the caller's scope."""


class NotRedrivable(Exception):
    """The dead letter has no message to publish again, or nowhere to publish it."""


class Decoder(Protocol):
    def __call__(self, origin: Origin) -> Inbound | RejectedMessage:
        """The message as the consumer takes it: an event, or refused before it is one."""
        ...


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a redrive would do now: apply (from → to; both None for an account event, which
    changes no status), park, be refused again (why), or be a duplicate (already taken)."""

    dead_letter_id: int
    outcome: Outcome
    from_status: Status | None = None
    to_status: Status | None = None
    reason: str | None = None
    detail: str | None = None
    releases: int = 0
    """Transitions of parked events that applying it would release."""


@dataclass(frozen=True, slots=True)
class RedriveReport:
    requested: list[int]
    refused: dict[int, str]
    """Each dead letter that cannot be redriven, and why."""


class DeadLetterTriage:
    """The operator's side of dead letters: it decides nothing the engine would not, and
    publishes nothing itself; redrives go out through the outbox like every other record."""

    def __init__(
        self,
        store: Store,
        engine: StatusEngine,
        decode: Decoder,
        input_topics: Collection[str],
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._store, self._engine, self._decode = store, engine, decode
        self._input_topics = frozenset(input_topics)
        self._clock = clock

    def dry_run(self, dead_letter_id: int, *, scope: Scope) -> Verdict:
        """Decide the redriven message on what is stored now and keep nothing; a dead letter
        outside `scope` (None: every workspace) is DeadLetterNotFound."""
        with self._store.unit_of_work() as uow:
            messages = uow.dead_letters.messages([dead_letter_id], scope)
        if dead_letter_id not in messages:
            raise DeadLetterNotFound(dead_letter_id)
        origin = messages[dead_letter_id]
        why = self._why_not(origin)
        if origin is None or why:
            raise NotRedrivable(why)
        decoded = self._decode(origin.redriven(dead_letter_id, DRY_RUN))
        if isinstance(decoded, RejectedMessage):
            return Verdict(
                dead_letter_id, Outcome.REFUSED, reason=decoded.reason, detail=decoded.detail
            )
        verdict = _verdict(dead_letter_id, decoded.event, self._engine.rehearse([decoded]))
        if verdict.outcome is Outcome.PARKED:
            window = self._engine.policy.park_window.total_seconds()
            return replace(verdict, detail=f"it would wait up to {window:g} s for its predecessors")
        return verdict

    def redrive(self, dead_letter_ids: Sequence[int], by: str, *, scope: Scope) -> RedriveReport:
        """Queue a redrive of each dead letter that can be redriven, recording `by` and now;
        DeadLetterNotFound (and nothing queued) if one of the ids names none in `scope`.
        Redriving one again is allowed and harmless: its claim key was taken the first time."""
        ids = list(dict.fromkeys(dead_letter_ids))
        with self._store.unit_of_work() as uow:
            messages = uow.dead_letters.messages(ids, scope)
            if missing := [i for i in ids if i not in messages]:
                raise DeadLetterNotFound(missing[0])
            refused = {i: why for i in ids if (why := self._why_not(messages[i]))}
            requested = [i for i in ids if i not in refused]
            if requested:
                uow.dead_letters.request_redrive(requested, by, self._clock())
        return RedriveReport(requested, refused)

    def _why_not(self, origin: Origin | None) -> str | None:
        if origin is None:
            return "it has no message: the service raised the event itself"
        if origin.topic not in self._input_topics:
            return f"{origin.topic} is not an input topic now"
        return None


def _verdict(dead_letter_id: int, event: SessionEvent, result: BatchResult) -> Verdict:
    outcome = result.outcomes[0]
    own = next((t for t in result.transitions if t.event_id == event.event_id), None)
    refusal = next((r for r in result.refusals if r.event.event_id == event.event_id), None)
    if outcome is Outcome.DUPLICATE:
        detail = "this dead letter's redrive was already taken; publishing it again changes nothing"
        return Verdict(dead_letter_id, outcome, detail=detail)
    if outcome is Outcome.REFUSED and refusal is not None:
        return Verdict(
            dead_letter_id,
            outcome,
            from_status=refusal.from_status,
            reason=refusal.reason.value,
            detail=refusal.detail,
        )
    return Verdict(
        dead_letter_id,
        outcome,
        from_status=own.from_status if own else None,
        to_status=own.to_status if own else None,
        releases=len(result.transitions) - (1 if own else 0),
    )
