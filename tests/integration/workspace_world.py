"""Two workspaces side by side on real PostgreSQL, with named tokens of every role scoped to
each and unscoped ones, for the workspace tests (test_workspaces.py, test_workspace_isolation.py).

Each workspace holds a live connection (authorized, an active account, two sessions), a
deleted one, a dead letter of the live one that can be redriven (its message kept), a
command people issued, and a webhook subscription of its own. Beside them: a connection of the
default workspace (its events named none) and a message that never decoded (a dead letter of
no connection). Every id a workspace owns starts with its workspace's id, and its producers
are named after it, so a response that mentions another workspace's data says so in its text.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import timedelta

from fastapi.testclient import TestClient

from syncstatus.api.app import create_app
from syncstatus.bootstrap import Application, build
from syncstatus.schemas.messages import EventMessages
from syncstatus.service.inbound import Inbound, Origin, RejectedMessage
from syncstatus.settings import Settings
from syncstatus.statemachine.commands import CommandType
from syncstatus.statemachine.events import Account, EventType, SessionEvent
from syncstatus.statemachine.workspaces import EVERY_WORKSPACE
from syncstatus.store.dead_letters import DeadLetterFilter
from syncstatus.tokens import Role, token_digest
from tests.helpers.factories import T0

E = EventType
ROLES = (Role.READ, Role.OPERATE, Role.ADMIN)
WORKSPACES = ("acme-ws", "globex-ws")
PIPELINE_TOPIC = "syncstatus.pipeline"
MESSAGES = EventMessages()


def secret(name: str) -> str:
    return f"{name}-s3cret"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def token_entries(extra_workspaces: tuple[str, ...] = ()) -> str:
    """`<role>` unscoped, `<workspace>-<role>` scoped, for every role."""
    entries = [f"{r}:{r}:{token_digest(secret(str(r)))}" for r in ROLES]
    for workspace in (*WORKSPACES, *extra_workspaces):
        for r in ROLES:
            name = f"{workspace}-{r}"
            entries.append(f"{name}:{r}:{token_digest(secret(name))}:{workspace}")
    return ",".join(entries)


@dataclass
class Workspace:
    """What one workspace owns, and every string that names it."""

    workspace_id: str
    live: str
    gone: str
    sessions: tuple[str, str]
    dead_letter: int = 0
    subscription: str = ""
    commands: list[str] = field(default_factory=list)

    @property
    def connections(self) -> tuple[str, str]:
        return self.live, self.gone

    @property
    def producers(self) -> tuple[str]:
        return (f"{self.workspace_id}-auth",)

    @property
    def names(self) -> tuple[str, ...]:
        """Strings that appear only in this workspace's data."""
        return (self.workspace_id, *self.connections, *self.sessions, *self.producers)

    def token(self, role: Role) -> str:
        return secret(f"{self.workspace_id}-{role}")


@dataclass
class World:
    application: Application
    client: TestClient
    spaces: dict[str, Workspace]
    plain: str = "plain-conn"
    orphan_letter: int = 0

    def other(self, workspace_id: str) -> Workspace:
        (other,) = [w for k, w in self.spaces.items() if k != workspace_id]
        return other

    def close(self) -> None:
        self.application.close()


def at(seconds: int):
    return T0 + timedelta(seconds=seconds)


def _event(kind: EventType, connection_id: str, session_id: str, when: int, **fields):
    return SessionEvent(
        event_id=uuid.uuid4(),
        type=kind,
        connection_id=connection_id,
        session_id=session_id,
        app="facebook_ads",
        occurred_at=at(when),
        **fields,
    )


def seed_connection(
    application: Application,
    connection_id: str,
    workspace_id: str | None,
    sessions: tuple[str, ...],
    producer: str,
    start: int = 0,
) -> None:
    """Authorized in each session in turn, with one active account."""
    engine = application.engine
    when = start
    for session in sessions:
        for kind in (E.AUTHORIZATION_STARTED, E.AUTHORIZATION_SUCCEEDED):
            when += 1
            attributes = {"business_account": f"{connection_id}@example", "credential_id": "c1"}
            engine.apply_event(
                _event(
                    kind,
                    connection_id,
                    session,
                    when,
                    producer=producer,
                    workspace_id=workspace_id,
                    attributes=attributes if kind is E.AUTHORIZATION_SUCCEEDED else {},
                )
            )
    engine.apply_event(
        _event(
            E.ACCOUNTS_SYNCED,
            connection_id,
            sessions[-1],
            when + 1,
            producer=producer,
            workspace_id=workspace_id,
            accounts=(Account(f"{connection_id}-acc", "Main", "active"),),
        )
    )


def build_world(database_url: str, **settings: object) -> World:
    application = build(
        Settings(database_url=database_url, api_tokens=token_entries(("initech-ws",)), **settings)
    )
    client = TestClient(create_app(application))
    spaces = {}
    for n, workspace_id in enumerate(WORKSPACES):
        space = Workspace(
            workspace_id,
            f"{workspace_id}-live",
            f"{workspace_id}-gone",
            (f"{workspace_id}-s1", f"{workspace_id}-s2"),
        )
        auth = space.producers[0]
        seed_connection(application, space.live, workspace_id, space.sessions, auth, 100 * n)
        seed_connection(application, space.gone, workspace_id, space.sessions[:1], auth, 100 * n)
        application.commands.issue(space.gone, CommandType.DELETE, "admin", scope=workspace_id)
        # Older than what its producer already reported: stale.
        refused = _event(E.LOADING_STARTED, space.live, space.sessions[1], 100 * n, producer=auth)
        origin = Origin(
            PIPELINE_TOPIC, 0, n, space.live.encode(), MESSAGES.encode(refused), (("h", b"v"),)
        )
        application.engine.apply_batch([Inbound(refused, origin)])
        (space.dead_letter,) = application.dead_letters.ids(
            _filter(space.live), 10, scope=EVERY_WORKSPACE
        )
        issued = client.post(
            f"/connections/{space.live}/reconnect", headers=bearer(secret("operate"))
        )
        assert issued.status_code == 202, issued.text
        space.commands.append(issued.json()["command_id"])
        created = client.post(
            "/webhooks",
            json={"url": f"https://hooks.example/{workspace_id}", "workspace": workspace_id},
            headers=bearer(secret("admin")),
        )
        assert created.status_code == 201, created.text
        space.subscription = created.json()["id"]
        spaces[workspace_id] = space
    world = World(application, client, spaces)
    seed_connection(application, world.plain, None, ("plain-s1",), "plain-auth", 500)
    garbage = Origin(PIPELINE_TOPIC, 1, 0, b"who-knows", b"\x00 not avro")
    application.engine.apply_batch([], [RejectedMessage("undecodable", "not Avro", garbage)])
    world.orphan_letter = max(
        application.dead_letters.ids(_filter(None, reason="undecodable"), 10, scope=None)
    )
    return world


def _filter(connection_id: str | None, reason: str | None = None) -> DeadLetterFilter:
    return DeadLetterFilter(connection_id=connection_id, reason=reason)
