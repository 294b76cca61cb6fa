"""Judging a campaign from the outside: what came out on the topics and into the tables,
against what the oracle says the stories must produce."""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from bench.faults.oracle import Expected, ExpectedRecord
from bench.faults.processes import Record, Sent, log

COMPARED = ("session_id", "from_code", "to_code", "cause_event_type", "error")


@dataclass
class Verdict:
    lost_topic: int = 0
    lost_tables: int = 0
    twice: int = 0
    wrong: int = 0
    gaps: int = 0
    dead_lettered: int = 0
    to_dead_letter: int = 0
    problems: list[str] = field(default_factory=list)
    details: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    def note(self, problem: str, detail: str) -> None:
        self.details[problem].append(detail)
        if problem not in self.problems:
            self.problems.append(problem)


def differences(want: ExpectedRecord, got: dict[str, Any]) -> list[str]:
    found = [
        f"{name} {getattr(want, name)!r} != {got[name]!r}"
        for name in COMPARED
        if getattr(want, name) != got[name]
    ]
    if want.cause_event_id is not None and want.cause_event_id != got["cause_event_id"]:
        found.append(f"cause {want.cause_event_id} != {got['cause_event_id']}")
    if want.occurred_at is not None and want.occurred_at != got["occurred_at"]:
        found.append(f"occurred_at {want.occurred_at} != {got['occurred_at']}")
    return found


def judge_topic(
    verdict: Verdict, expected: dict[str, Expected], records: dict[str, list[Record]]
) -> None:
    """Every record of the status topic against the oracle, field by field; a redelivered
    record must be identical to the first."""
    for cid, want in expected.items():
        got = records.get(cid, [])
        by_sequence: dict[int, list[dict[str, Any]]] = defaultdict(list)
        first_seen: list[int] = []
        for record in got:
            sequence = record.fields["sequence"]
            if sequence not in by_sequence:
                first_seen.append(sequence)
            by_sequence[sequence].append(record.fields)
        if first_seen != sorted(first_seen) or first_seen != list(range(1, len(first_seen) + 1)):
            verdict.gaps += 1
            verdict.note("sequence gaps", f"{cid}: sequences first seen {first_seen}")
        causes = Counter(copies[0]["cause_event_id"] for copies in by_sequence.values())
        verdict.twice += sum(n - 1 for n in causes.values() if n > 1)
        for expect in want.records:
            copies = by_sequence.get(expect.sequence)
            if not copies:
                verdict.lost_topic += 1
                verdict.note(
                    "records missing from the status topic",
                    f"{cid} #{expect.sequence} never arrived",
                )
                continue
            for copy in copies:
                if wrong := differences(expect, copy):
                    verdict.wrong += 1
                    verdict.note(
                        "wrong status records", f"{cid} #{expect.sequence}: {'; '.join(wrong)}"
                    )
                    break
        extra = sorted(set(by_sequence) - {r.sequence for r in want.records})
        if extra:
            verdict.twice += len(extra)
            verdict.note("records the stories never made", f"{cid}: extra sequences {extra}")


def judge_tables(
    verdict: Verdict, expected: dict[str, Expected], database_url: str
) -> dict[str, int]:
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as db:
            history = db.execute(
                sa.text(
                    "SELECT connection_id, sequence, session_id, from_status, to_status, "
                    "event_type, event_id, error, occurred_at FROM status_history"
                )
            ).all()
            leftovers = db.execute(
                sa.text(
                    "SELECT (SELECT count(*) FROM parked_events), "
                    "(SELECT count(*) FROM outbox WHERE published_at IS NULL), "
                    "(SELECT count(*) FROM dead_letters WHERE published_at IS NULL)"
                )
            ).one()
    finally:
        engine.dispose()
    stored: dict[str, dict[int, dict[str, Any]]] = defaultdict(dict)
    applied = Counter()
    for row in history:
        stored[row.connection_id][row.sequence] = {
            "session_id": row.session_id,
            "from_code": row.from_status,
            "to_code": row.to_status,
            "cause_event_type": row.event_type,
            "cause_event_id": row.event_id,
            "error": row.error,
            "occurred_at": row.occurred_at,
        }
        applied[row.event_id] += 1
    verdict.twice += sum(n - 1 for n in applied.values() if n > 1)
    for cid, want in expected.items():
        rows = stored.get(cid, {})
        for expect in want.records:
            row = rows.get(expect.sequence)
            if row is None:
                verdict.lost_tables += 1
                verdict.note(
                    "history rows missing", f"{cid} #{expect.sequence} not in status_history"
                )
            elif wrong := differences(expect, row):
                verdict.wrong += 1
                verdict.note(
                    "wrong history rows",
                    f"{cid} #{expect.sequence} in the table: {'; '.join(wrong)}",
                )
        if len(rows) > len(want.records):
            verdict.twice += len(rows) - len(want.records)
            verdict.note(
                "history rows the stories never made",
                f"{cid}: {len(rows)} rows, {len(want.records)} expected",
            )
    parked, unpublished, unpublished_dead = leftovers
    if unpublished or unpublished_dead:
        verdict.note(
            "rows never published",
            f"unpublished status changes {unpublished}, dead letters {unpublished_dead}",
        )
    return {
        "parked": parked,
        "unpublished": unpublished,
        "unpublished dead letters": unpublished_dead,
    }


def judge_dead_letters(
    verdict: Verdict,
    sent: list[Sent],
    expected: dict[str, Expected],
    dead_letters: list[tuple[bytes | None, bytes | None, dict[str, bytes]]],
) -> None:
    """Each invalid message by where it came from (topic, partition, offset and its unique
    key, as offsets start again after a broker restart): its reason;
    each refused event by its id: reason; and no other valid event dead-lettered."""
    by_origin = {}
    by_event: dict[uuid.UUID, set[str]] = defaultdict(set)
    for key, _, headers in dead_letters:
        reason = headers.get("reason", b"").decode()
        origin = (
            headers.get("source_topic", b"").decode(),
            headers.get("source_partition", b"-1"),
            headers.get("source_offset", b"-1"),
        )
        by_origin[(origin[0], int(origin[1]), int(origin[2]), key)] = reason
        if "event_id" in headers:
            by_event[uuid.UUID(headers["event_id"].decode())].add(reason)
    for message in sent:
        if message.invalid is None:
            continue
        verdict.to_dead_letter += 1
        origin = (message.topic, message.partition, message.offset, message.key)
        found = by_origin.get(origin)
        if found == message.invalid.reason:
            verdict.dead_lettered += 1
        else:
            verdict.note(
                "invalid messages not dead-lettered right",
                f"{message.invalid.what} at {message.topic}/{message.partition}/"
                f"{message.offset}: got {found}",
            )
    refusals = {
        event_id: reason for want in expected.values() for event_id, reason in want.refusals.items()
    }
    for event_id, reason in refusals.items():
        verdict.to_dead_letter += 1
        if reason in by_event.get(event_id, ()):
            verdict.dead_lettered += 1
        else:
            verdict.note(
                "refused events not dead-lettered right",
                f"{event_id}: want {reason}, got {by_event.get(event_id)}",
            )
    valid = {m.planned.event.event_id for m in sent if m.planned is not None}
    others = {e: r for e, r in by_event.items() if e in valid and e not in refusals}
    if others:
        verdict.note(
            "valid events dead-lettered", f"{len(others)}, e.g. {next(iter(others.items()))}"
        )


def report(verdict: Verdict, each: int = 6) -> None:
    for problem, details in verdict.details.items():
        log(f"  {problem}: {len(details)}")
        for line in details[:each]:
            log(f"    {line}")
