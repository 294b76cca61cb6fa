"""Workspaces through the API on real PostgreSQL: the list's filter, `GET /workspaces`, every
role with and without a scope, another workspace's connection as a 404 exactly like an
unknown one (never 403), dead letters confined to their connection's workspace, commands
recording the workspace, and the `workspace_mismatch` dead letter. Kafka: status records and
commands carry the workspace (test_*_over_kafka below). tests/integration/
test_workspace_isolation.py runs every route of the app against the other workspace."""

from __future__ import annotations

import time
import uuid

import pytest
import sqlalchemy as sa

from syncstatus.bootstrap import build
from syncstatus.consumers.reader import TopicReader
from syncstatus.kafka import client_config
from syncstatus.schemas.messages import CommandMessages
from syncstatus.statemachine.commands import CommandType
from syncstatus.statemachine.events import EventType
from syncstatus.statemachine.statuses import Status
from syncstatus.tokens import Role
from tests.helpers.factories import event

from .support import OutputReader, latest_status, publisher_for, running_service, settings_for
from .workspace_world import (
    ROLES,
    World,
    bearer,
    build_world,
    secret,
    seed_connection,
    token_entries,
)

E = EventType
ACME, GLOBEX = "acme-ws", "globex-ws"


@pytest.fixture
def world(db_engine, database_url):
    world = build_world(database_url)
    yield world
    world.close()


def get(world: World, path: str, token: str, **params):
    return world.client.get(path, params=params, headers=bearer(secret(token)))


def ids(response) -> list[str]:
    assert response.status_code == 200, response.text
    return sorted(c["connection_id"] for c in response.json()["items"])


def rows(world: World, sql: str, **params) -> list[tuple]:
    with world.application.database.connect() as connection:
        return [tuple(r) for r in connection.execute(sa.text(sql), params)]


# --- the list and its filter -----------------------------------------------------------------


def test_the_list_filters_by_workspace_and_each_line_names_its_workspace(world):
    everything = get(world, "/connections", "read")
    assert ids(everything) == ["acme-ws-live", "globex-ws-live", "plain-conn"]
    assert {c["connection_id"]: c["workspace_id"] for c in everything.json()["items"]} == {
        "acme-ws-live": ACME,
        "globex-ws-live": GLOBEX,
        "plain-conn": "default",
    }
    assert ids(get(world, "/connections", "read", workspace=ACME)) == ["acme-ws-live"]
    assert ids(get(world, "/connections", "read", workspace=GLOBEX)) == ["globex-ws-live"]
    assert ids(get(world, "/connections", "read", workspace="default")) == ["plain-conn"]
    assert ids(get(world, "/connections", "read", workspace="nobody")) == []
    filtered = get(world, "/connections", "read", workspace=ACME, search="facebook", sort="created")
    assert ids(filtered) == ["acme-ws-live"] and filtered.json()["total"] == 1
    detail = get(world, "/connections/acme-ws-live", "read").json()
    assert detail["summary"]["workspace_id"] == ACME


@pytest.mark.parametrize("bad", ["a/b", "..", "x" * 257, ""])
def test_a_workspace_filter_that_is_no_id_is_refused(world, bad):
    assert get(world, "/connections", "read", workspace=bad).status_code == 422


def test_a_scoped_token_lists_its_own_workspace_alone_whatever_it_asks(world):
    for role in ROLES:
        token = f"{ACME}-{role}"
        assert ids(get(world, "/connections", token)) == ["acme-ws-live"]
        assert ids(get(world, "/connections", token, workspace=ACME)) == ["acme-ws-live"]
        for other in (GLOBEX, "default", "nobody"):
            listed = get(world, "/connections", token, workspace=other)
            assert ids(listed) == [] and listed.json()["total"] == 0, (role, other)
        assert ids(get(world, "/connections", token, search="ws-live")) == ["acme-ws-live"]


def test_public_anonymous_reads_see_every_workspace(db_engine, database_url):
    world = build_world(database_url, api_public_reads=True)
    try:
        listed = world.client.get("/connections")
        assert ids(listed) == ["acme-ws-live", "globex-ws-live", "plain-conn"]
        assert world.client.get("/workspaces").json()["scope"] is None
        scoped = world.client.get("/connections", headers=bearer(secret(f"{ACME}-read")))
        assert ids(scoped) == ["acme-ws-live"], "a token presented still scopes the read"
    finally:
        world.close()


# --- GET /workspaces --------------------------------------------------------------------------


def test_workspaces_are_listed_with_their_connection_counts_within_the_scope(world):
    seed_connection(world.application, "acme-ws-second", ACME, ("acme-ws-s9",), "acme-ws-auth")
    unscoped = get(world, "/workspaces", "read").json()
    assert unscoped == {
        "workspaces": [
            {"workspace_id": ACME, "connections": 2},
            {"workspace_id": "default", "connections": 1},
            {"workspace_id": GLOBEX, "connections": 1},
        ],
        "scope": None,
    }
    for role in ROLES:
        assert get(world, "/workspaces", f"{ACME}-{role}").json() == {
            "workspaces": [{"workspace_id": ACME, "connections": 2}],
            "scope": ACME,
        }
    assert get(world, "/workspaces", "initech-ws-read").json() == {
        "workspaces": [{"workspace_id": "initech-ws", "connections": 0}],
        "scope": "initech-ws",
    }, "a scoped token sees its workspace even before it has a connection"
    deleted = world.client.delete("/connections/acme-ws-second", headers=bearer(secret("admin")))
    assert deleted.status_code == 202
    counts = {
        w["workspace_id"]: w["connections"]
        for w in get(world, "/workspaces", "read").json()["workspaces"]
    }
    assert counts == {ACME: 1, "default": 1, GLOBEX: 1}


# --- roles x scopes, and 404 never 403 ----------------------------------------------------------

READS = [
    "/connections/{c}",
    "/connections/{c}/history",
    "/connections/{c}/sessions",
    "/connections/{c}/sessions/{s}",
    "/connections/{c}/explain",
]
COMMANDS = [
    ("post", "/connections/{c}/sync", Role.OPERATE),
    ("post", "/connections/{c}/sync-accounts", Role.OPERATE),
    ("post", "/connections/{c}/reconnect", Role.OPERATE),
    ("put", "/connections/{c}/sync-frequency", Role.OPERATE),
    ("delete", "/connections/{c}", Role.ADMIN),
]
TOKENS = [str(r) for r in ROLES] + [f"{ACME}-{r}" for r in ROLES]


def commands_of(world: World, connection_id: str) -> list[tuple[str, str, str]]:
    return rows(
        world,
        "SELECT command, requested_by, workspace_id FROM commands WHERE connection_id = :c "
        "ORDER BY id",
        c=connection_id,
    )


@pytest.mark.parametrize("token", TOKENS)
def test_reads_of_every_role_and_scope(world, token):
    scoped = token.startswith(ACME)
    for path in READS:
        own = get(world, path.format(c="acme-ws-live", s="acme-ws-s1"), token)
        assert own.status_code == 200, (path, own.text)
        other = path.format(c="globex-ws-live", s="globex-ws-s1")
        unknown = path.format(c="nobody-live", s="nobody-s1")
        theirs, nothing = get(world, other, token), get(world, unknown, token)
        if scoped:
            assert theirs.status_code == nothing.status_code == 404, path
            assert theirs.json()["detail"] == nothing.json()["detail"].replace("nobody", GLOBEX), (
                path
            )
        else:
            assert theirs.status_code == 200, path
        deleted_history = get(world, "/connections/globex-ws-gone/history", token)
        assert deleted_history.status_code == (404 if scoped else 200)


@pytest.mark.parametrize("token", TOKENS)
def test_commands_of_every_role_and_scope(world, token):
    """A role too low is 403 whatever the connection (its existence shows in neither); a role
    high enough is 404 for another workspace's connection exactly as for an unknown one, and
    writes nothing."""
    scoped = token.startswith(ACME)
    role = Role[token.rsplit("-", 1)[-1].upper()]
    before = commands_of(world, "globex-ws-live")
    for method, path, needed in COMMANDS:
        body = {"minutes": 60}
        theirs = world.client.request(
            method, path.format(c="globex-ws-live"), json=body, headers=bearer(secret(token))
        )
        nothing = world.client.request(
            method, path.format(c="nobody-live"), json=body, headers=bearer(secret(token))
        )
        if role < needed:
            assert theirs.status_code == nothing.status_code == 403, path
            assert theirs.json() == nothing.json()
        elif scoped:
            assert theirs.status_code == nothing.status_code == 404, path
            assert theirs.json()["detail"] == "no connection globex-ws-live"
            assert nothing.json()["detail"] == "no connection nobody-live"
        elif method != "delete":
            assert theirs.status_code == 202, (path, theirs.text)
    if scoped or role < Role.OPERATE:
        assert commands_of(world, "globex-ws-live") == before
    if role >= Role.OPERATE:
        own = world.client.post(
            "/connections/acme-ws-live/sync-accounts", headers=bearer(secret(token))
        )
        assert own.status_code == 202, own.text
        assert (own.json()["workspace_id"], own.json()["requested_by"]) == (ACME, token)
        assert commands_of(world, "acme-ws-live")[-1] == ("SYNC_ACCOUNTS", token, ACME)


def test_a_scoped_admin_deletes_its_own_connection_but_not_anothers(world):
    refused = world.client.delete(
        "/connections/globex-ws-live", headers=bearer(secret(f"{ACME}-admin"))
    )
    assert (refused.status_code, refused.json()["detail"]) == (404, "no connection globex-ws-live")
    assert rows(
        world,
        "SELECT status, deleted_at IS NULL FROM connections WHERE connection_id = 'globex-ws-live'",
    ) == [(int(Status.AUTHORIZED), True)]
    deleted = world.client.delete(
        "/connections/acme-ws-live", headers=bearer(secret(f"{ACME}-admin"))
    )
    assert deleted.status_code == 202 and deleted.json()["workspace_id"] == ACME
    history = get(world, "/connections/acme-ws-live/history", f"{ACME}-read").json()
    assert history["entries"][-1]["to_status"]["code"] == 26
    assert {c["workspace_id"] for c in history["commands"]} == {ACME}
    assert rows(
        world,
        "SELECT DISTINCT workspace_id FROM status_history WHERE connection_id = 'acme-ws-live'",
    ) == [(ACME,)]


# --- dead letters ---------------------------------------------------------------------------------


def letter_ids(response) -> list[int]:
    assert response.status_code == 200, response.text
    return sorted(d["id"] for d in response.json()["items"])


def test_dead_letters_are_confined_to_their_connections_workspace(world):
    acme, globex = world.spaces[ACME], world.spaces[GLOBEX]
    everything = [acme.dead_letter, globex.dead_letter, world.orphan_letter]
    assert letter_ids(get(world, "/dead-letters", "read")) == sorted(everything)
    for role in ROLES:
        token = f"{ACME}-{role}"
        assert letter_ids(get(world, "/dead-letters", token)) == [acme.dead_letter]
        assert letter_ids(get(world, "/dead-letters", token, connection_id="globex-ws-live")) == []
        assert letter_ids(get(world, "/dead-letters", token, reason="undecodable")) == []
        for path in ("/dead-letters/{}", "/dead-letters/{}/original"):
            own = get(world, path.format(acme.dead_letter), token)
            assert own.status_code == 200, (path, own.text)
            for hidden in (globex.dead_letter, world.orphan_letter):
                theirs, nothing = (
                    get(world, path.format(hidden), token),
                    get(world, path.format(10**9), token),
                )
                assert theirs.status_code == nothing.status_code == 404
                assert theirs.json()["detail"] == nothing.json()["detail"].replace(
                    str(10**9), str(hidden)
                )
        card = get(world, "/dead-letters/scorecard", token)
        assert card.json()["totals"] == [
            {"producer": "acme-ws-auth", "reason": "stale", "count": 1, "bucket": None}
        ]
    card = get(world, "/dead-letters/scorecard", "read")
    assert {(t["producer"], t["count"]) for t in card.json()["totals"]} == {
        ("acme-ws-auth", 1),
        ("globex-ws-auth", 1),
        (None, 1),
    }


def test_a_scoped_admin_redrives_its_own_dead_letters_alone(world):
    acme, globex = world.spaces[ACME], world.spaces[GLOBEX]
    admin = bearer(secret(f"{ACME}-admin"))
    for dry_run in ("true", "false"):
        for hidden in (globex.dead_letter, world.orphan_letter):
            refused = world.client.post(
                f"/dead-letters/{hidden}/redrive?dry_run={dry_run}", headers=admin
            )
            assert (refused.status_code, refused.json()["detail"]) == (
                404,
                f"no dead letter {hidden}",
            )
        matching = world.client.post(
            f"/dead-letters/redrive?connection_id=globex-ws-live&dry_run={dry_run}", headers=admin
        )
        assert matching.status_code in (200, 202)
        assert matching.json()["requested"] == matching.json()["verdicts"] == []
        everything = world.client.post(
            f"/dead-letters/redrive?reason=stale&dry_run={dry_run}", headers=admin
        )
        body = everything.json()
        assert [v["dead_letter_id"] for v in body["verdicts"]] + body["requested"] == [
            acme.dead_letter
        ]
    assert rows(world, "SELECT dead_letter_id, requested_by FROM redrives") == [
        (acme.dead_letter, f"{ACME}-admin")
    ]


def test_an_event_naming_another_workspace_is_dead_lettered_as_a_mismatch(world):
    engine = world.application.engine
    misrouted = event(
        E.LOADING_STARTED, "acme-ws-live", "acme-ws-s2", workspace_id=GLOBEX, producer="pipeline"
    )
    assert engine.apply_event(misrouted).value == "refused"
    (letter,) = get(world, "/dead-letters", f"{ACME}-read", reason="workspace_mismatch").json()[
        "items"
    ]
    assert (letter["connection_id"], letter["from_status"]["code"]) == (
        "acme-ws-live",
        int(Status.AUTHORIZED),
    )
    assert (
        letter["detail"] == f"the event names workspace {GLOBEX}; the connection belongs to {ACME}"
    )
    shown = get(world, f"/dead-letters/{letter['id']}", f"{ACME}-read").json()
    assert shown["event"]["workspace_id"] == GLOBEX
    assert (
        get(world, "/dead-letters", f"{GLOBEX}-read", reason="workspace_mismatch").json()["items"]
        == []
    )
    assert get(world, "/connections/acme-ws-live", "read").json()["summary"]["status"][
        "code"
    ] == int(Status.AUTHORIZED)
    unnamed = event(E.LOADING_STARTED, "acme-ws-live", "acme-ws-s2", producer="pipeline")
    assert engine.apply_event(unnamed).value == "applied", (
        "an event naming none is the connection's"
    )


# --- Kafka: status records and commands carry the workspace ---------------------------------


def test_status_records_carry_the_workspace_and_a_mismatch_is_dead_lettered_over_kafka(
    kafka, db_engine, database_url
):
    settings = settings_for(kafka, database_url)
    reader = OutputReader(settings)
    publisher = publisher_for(settings)
    sent = [
        event(E.AUTHORIZATION_STARTED, "k-acme", "k1", workspace_id=ACME),
        event(E.AUTHORIZATION_SUCCEEDED, "k-acme", "k1"),
        event(E.LOADING_STARTED, "k-acme", "k1", workspace_id=ACME),
        event(E.AUTHORIZATION_STARTED, "k-plain", "k2"),
        event(E.LOADING_COMPLETED, "k-acme", "k1", workspace_id=GLOBEX),
    ]
    with running_service(settings):
        for e in sent:
            publisher.publish(e)
        publisher.flush()
        seen = reader.wait_for(
            lambda seen: (
                latest_status(seen.changes["k-acme"]) == int(Status.LOADING)
                and seen.changes["k-plain"]
                and seen.dead_letters
            )
        )
    publisher.close()
    reader.close()
    assert [c["workspace_id"] for c in seen.changes["k-acme"]] == [ACME] * 3
    assert [c["workspace_id"] for c in seen.changes["k-plain"]] == ["default"]
    ((key, _, headers),) = seen.dead_letters
    assert key == b"k-acme"
    assert headers["reason"] == b"workspace_mismatch"
    assert headers["event_id"] == str(sent[-1].event_id).encode()


def test_the_commands_topic_carries_the_workspace(kafka, db_engine, database_url):
    settings = settings_for(
        kafka,
        database_url,
        api_tokens=token_entries(),
        topic_commands=f"t{uuid.uuid4().hex[:8]}.commands",
        scheduler_interval_s=0.3,
    )
    application = build(settings)
    seed_connection(application, "acme-conn", ACME, ("a1",), "auth")
    seed_connection(application, "plain-conn", None, ("p1",), "auth")
    issued = application.commands.issue("acme-conn", CommandType.RECONNECT, "alice", scope=ACME)
    assert issued.workspace_id == ACME
    messages = CommandMessages()
    seen: list[dict] = []
    with running_service(settings):
        reader = TopicReader(
            client_config(settings), [settings.topic_commands], from_beginning=True
        )
        deadline = time.monotonic() + 30
        wanted = {
            ("RECONNECT", "acme-conn"),
            ("SYNC_AND_REFRESH", "acme-conn"),
            ("SYNC_AND_REFRESH", "plain-conn"),
        }
        while time.monotonic() < deadline and not wanted <= {
            (c["type"], c["connection_id"]) for c in seen
        }:
            seen += [messages.decode(r.value) for r in reader.poll(200)]
        reader.close()
    application.close()
    by = {(c["type"], c["connection_id"]): c for c in seen}
    assert wanted <= set(by), seen
    assert by["RECONNECT", "acme-conn"]["command_id"] == issued.command_id
    assert by["RECONNECT", "acme-conn"]["workspace_id"] == ACME
    assert by["SYNC_AND_REFRESH", "acme-conn"]["requested_by"] == "scheduler"
    assert by["SYNC_AND_REFRESH", "acme-conn"]["workspace_id"] == ACME
    assert by["SYNC_AND_REFRESH", "plain-conn"]["workspace_id"] == "default"
