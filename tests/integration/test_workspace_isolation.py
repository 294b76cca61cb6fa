"""No token of one workspace reads or changes another workspace's data, through any route.

The routes come from the app itself (every route `create_app` serves, with the parameters of
its handler and their dependencies), so a route added later is attacked too; the test fails
for a route it cannot attack (a path parameter it cannot fill, a body it has no example of,
something mounted it does not know) until the route is taught to it or exempted here, with
the reason.

An attack is one request by a token scoped to workspace A (any role) naming workspace B's
data: B's connections (live or deleted), sessions, dead letters and webhook subscriptions in
the path, B's workspace or connection in the query or the body. It holds when

- what the database holds of B (every row of every table that names B's ids or its dead
  letters) is the same after the request as before: nothing of B changed, no command, redrive
  or subscription of B was added;
- the answer, with the ids of B the request named replaced by ids of nothing, is exactly the
  answer to the same request naming nothing (404 as for an unknown id, never 403; an empty
  list as for a workspace without connections), and names nothing else of B.

As a control, an unscoped token gets B's data from the same requests, so the attacks do name
something that is there.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.routing import APIRoute
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from starlette.routing import Mount, Route

from syncstatus.api.app import create_app
from syncstatus.store.database import create_engine, migrate
from syncstatus.tokens import Role

from .workspace_world import ROLES, WORKSPACES, Workspace, World, bearer, build_world, secret

try:  # FastAPI >= 0.120 keeps included routers whole; iterate their effective routes.
    from fastapi.routing import iter_route_contexts
except ImportError:  # pragma: no cover - older FastAPI flattens them into app.routes
    iter_route_contexts = None

EXEMPT: dict[tuple[str, str], str] = {
    ("GET", "/"): "the dashboard's page: no data",
    ("GET", "/statuses"): "the machine's status table: no connection's data",
    ("GET", "/changes/stream"): "never ends, so TestClient cannot read it; its records come "
    "from the scoped query GET /changes is attacked through (store/changes.py `after`)",
}
"""Routes not attacked, and why; each must still exist (a stale exemption fails)."""
NOT_API = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc", "/static"}
"""Routes that are not the API's: its description and the dashboard's files."""

UNKNOWN = {
    "workspace": "nobody-ws",
    "connection_id": "nobody-live",
    "session_id": "nobody-s1",
    "dead_letter_id": "987654321",
    "subscription_id": "0b1e4f6a-5c1d-4a8e-9f00-00000000dead",
}
"""What an attack's ids of B are replaced with: ids of nothing, in the same shapes."""


def victim_path(name: str, victim: Workspace, deleted: bool = False) -> str | None:
    """B's value of a path parameter; None: not one the test knows."""
    return {
        "connection_id": victim.gone if deleted else victim.live,
        "session_id": victim.sessions[0],
        "dead_letter_id": str(victim.dead_letter),
        "subscription_id": victim.subscription,
    }.get(name)


def victim_query(name: str, victim: Workspace, deleted: bool = False) -> str | None:
    """B's value of a query parameter that names B's data; None: one that names none."""
    return {
        "workspace": victim.workspace_id,
        "connection_id": victim.gone if deleted else victim.live,
    }.get(name)


FREE_QUERY = {"dry_run": ["false", "true"], "force": ["false", "true"]}
"""Query parameters naming no one's data that attacks vary; others keep their defaults."""

BODIES: dict[tuple[str, str], Callable[[dict[str, str]], dict[str, Any]]] = {
    ("PUT", "/connections/{connection_id}/sync-frequency"): lambda ids: {"minutes": 60},
    ("POST", "/webhooks"): lambda ids: {
        "url": "https://hooks.example/attack",
        **({"workspace": ids["workspace"]} if "workspace" in ids else {}),
    },
}
"""A body for each route that takes one, from the ids the attack names (`workspace`)."""
BODY_NAMES = {("POST", "/webhooks"): ("workspace",)}
"""The ids of B a route's body may name."""


def _flat(dependant: Any, kind: str) -> list[Any]:
    found = list(getattr(dependant, kind))
    for sub in dependant.dependencies:
        found += _flat(sub, kind)
    return found


@dataclass(frozen=True)
class Target:
    method: str
    path: str
    path_params: tuple[str, ...]
    query_params: tuple[str, ...]
    body: Callable[[dict[str, str]], dict[str, Any]] | None = None
    body_names: tuple[str, ...] = ()

    @property
    def names_data(self) -> tuple[str, ...]:
        """The query and body parameters through which a request can name B's data."""
        query = tuple(q for q in self.query_params if q in ("workspace", "connection_id"))
        return (*query, *self.body_names)


@dataclass
class Plan:
    targets: list[Target] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _routes(app: FastAPI) -> list[tuple[Any, str | None, set[str] | None]]:
    if iter_route_contexts is None:  # pragma: no cover
        return [(r, getattr(r, "path", None), getattr(r, "methods", None)) for r in app.routes]
    return [(c.original_route, c.path, c.methods) for c in iter_route_contexts(app.routes)]


def plan(app: FastAPI) -> Plan:
    """Every route of `app` to attack, or why one cannot be."""
    found = Plan()
    seen: set[tuple[str, str]] = set()
    for route, path, methods in _routes(app):
        if not isinstance(route, APIRoute):
            if isinstance(route, Mount | Route) and path in NOT_API:
                continue
            found.problems.append(f"{type(route).__name__} {path}: not an API route I know")
            continue
        for method in sorted(methods or ()):
            seen.add((method, path))
            if (method, path) in EXEMPT:
                continue
            paths = tuple(p.name for p in _flat(route.dependant, "path_params"))
            unknown = [p for p in paths if victim_path(p, WORKSPACE_PROBE) is None]
            if unknown:
                found.problems.append(f"{method} {path}: cannot fill path parameter {unknown}")
                continue
            body = None
            if _flat(route.dependant, "body_params"):
                body = BODIES.get((method, path))
                if body is None:
                    found.problems.append(f"{method} {path}: takes a body; add one to BODIES")
                    continue
            queries = tuple(p.alias for p in _flat(route.dependant, "query_params"))
            found.targets.append(
                Target(method, path, paths, queries, body, BODY_NAMES.get((method, path), ()))
            )
    found.problems += [
        f"{m} {p}: exempt, but no such route" for m, p in EXEMPT if (m, p) not in seen
    ]
    return found


WORKSPACE_PROBE = Workspace("probe", "probe-live", "probe-gone", ("probe-s1", "probe-s2"), 1, "x")


# --- the attack ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Attack:
    target: Target
    attacker: str
    role: Role
    victim: str
    deleted: bool = False
    """Name B's deleted connection rather than its live one."""
    named: tuple[str, ...] | None = None
    """The query and body parameters that name B (None: every one the route has)."""
    own_path: bool = False
    """Fill the path with the attacker's own data (only with B named in the query or body)."""
    free: tuple[tuple[str, str], ...] = ()


def _names_of(world: World, victim: Workspace) -> tuple[str, ...]:
    return (*victim.names, victim.subscription)


def victim_rows(world: World, victim: Workspace) -> list[str]:
    """Every row of every table that names B, as JSON: B's ids in any text, or one of B's
    dead letters by id."""
    names = _names_of(world, victim)
    rows = []
    with world.application.database.connect() as connection:
        tables = [t for t in sa.inspect(connection).get_table_names() if t != "alembic_version"]
        union = " UNION ALL ".join(
            f"SELECT '{t}', row_to_json(t)::text FROM {t} t" for t in sorted(tables)
        )
        for table, text in connection.execute(sa.text(union)):
            row = json.loads(text)
            letter = row.get("dead_letter_id", row.get("id") if table == "dead_letters" else None)
            if letter == victim.dead_letter or any(n in text for n in names):
                rows.append(f"{table} {text}")
    return sorted(rows)


@dataclass
class Request:
    method: str
    path: str
    params: dict[str, str]
    body: dict[str, Any] | None
    replaced: dict[str, str]
    """Each id of B the request names, and the id of nothing that replaces it."""

    def send(self, world: World, token: str) -> tuple[int, str]:
        response = world.client.request(
            self.method,
            self.path,
            params=self.params,
            json=self.body,
            headers=bearer(token),
        )
        return response.status_code, response.content.decode("latin-1")


def requests_of(world: World, attack: Attack) -> tuple[Request, Request]:
    """The attack, and the same request with every id of B replaced by one of nothing."""
    target, victim = attack.target, world.spaces[attack.victim]
    own = world.spaces[attack.attacker]
    named = target.names_data if attack.named is None else attack.named
    as_b: dict[str, str] = {}
    replaced: dict[str, str] = {}
    path_b, path_unknown = target.path, target.path
    for name in target.path_params:
        if attack.own_path and named:
            value = victim_path(name, own, attack.deleted)
            unknown = value
        else:
            value, unknown = victim_path(name, victim, attack.deleted), UNKNOWN[name]
            replaced[value] = unknown
        path_b = path_b.replace(f"{{{name}}}", value)
        path_unknown = path_unknown.replace(f"{{{name}}}", unknown)
    params_b = dict(attack.free)
    params_unknown = dict(attack.free)
    for name in named:
        value = victim_query(name, victim, attack.deleted)
        assert value is not None, name
        replaced[value] = UNKNOWN[name]
        as_b[name] = value
        if name in target.query_params:
            params_b[name] = value
            params_unknown[name] = UNKNOWN[name]
    body_b = body_unknown = None
    if target.body is not None:
        body_names = {n: as_b[n] for n in target.body_names if n in as_b}
        body_b = target.body(body_names)
        body_unknown = target.body({n: UNKNOWN[n] for n in body_names})
    return (
        Request(target.method, path_b, params_b, body_b, replaced),
        Request(target.method, path_unknown, params_unknown, body_unknown, replaced),
    )


def attack_holds(world: World, attack: Attack) -> None:
    victim = world.spaces[attack.victim]
    token = secret(f"{attack.attacker}-{attack.role}")
    naming_b, naming_nothing = requests_of(world, attack)
    before = victim_rows(world, victim)
    status, text = naming_b.send(world, token)
    assert victim_rows(world, victim) == before, f"{attack}: changed {victim.workspace_id}'s data"
    for value, unknown in sorted(naming_b.replaced.items(), key=lambda kv: -len(kv[0])):
        text = text.replace(value, unknown)
    leaked = [n for n in _names_of(world, victim) if n in text]
    assert not leaked, f"{attack}: the answer names {leaked}: {text[:500]}"
    if naming_b.replaced:
        expected = naming_nothing.send(world, token)
        assert (status, text) == expected, f"{attack}: answered unlike for nothing"
        assert status != 403 or attack.role < Role.ADMIN, f"{attack}: a 403 for data not its own"


# --- the world -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(postgres):
    url = postgres.create_database(f"test_{uuid.uuid4().hex[:16]}")
    engine = create_engine(url)
    migrate(engine)
    engine.dispose()
    world = build_world(url)
    yield world
    world.close()


@pytest.fixture(scope="module")
def targets(world) -> list[Target]:
    found = plan(world.client.app)
    assert found.problems == []
    return found.targets


# --- the tests -----------------------------------------------------------------------------------


def test_every_route_of_the_app_is_attacked_or_exempt_with_a_reason(world):
    found = plan(world.client.app)
    assert found.problems == [], "teach these routes to the isolation test, or exempt them"
    attacked = {(t.method, t.path) for t in found.targets}
    for core in [
        ("GET", "/connections"),
        ("GET", "/workspaces"),
        ("GET", "/connections/{connection_id}/sessions/{session_id}"),
        ("DELETE", "/connections/{connection_id}"),
        ("POST", "/dead-letters/redrive"),
        ("GET", "/dead-letters/{dead_letter_id}/original"),
    ]:
        assert core in attacked


def test_a_route_the_test_cannot_attack_fails_it(world):
    app = create_app(world.application)

    @app.get("/things/{thing_id}")
    def thing(thing_id: str) -> dict[str, str]:
        return {"thing": thing_id}

    @app.post("/notes")
    def note(body: dict[str, str]) -> dict[str, str]:
        return body

    app.mount("/files", app)
    problems = plan(app).problems
    assert "GET /things/{thing_id}: cannot fill path parameter ['thing_id']" in problems
    assert "POST /notes: takes a body; add one to BODIES" in problems
    assert "Mount /files: not an API route I know" in problems


def test_an_unscoped_token_gets_the_data_the_attacks_name(world, targets):
    """The control: the same requests by an unscoped admin find B's data, so an attack that
    gets nothing got nothing because of its scope."""
    for victim in world.spaces.values():
        for target in targets:
            if target.method != "GET":
                continue
            attack = Attack(target, victim.workspace_id, Role.ADMIN, victim.workspace_id)
            request, _ = requests_of(world, attack)
            status, text = request.send(world, secret("admin"))
            assert status == 200, (target, text)
            if not target.path_params:
                assert any(n in text for n in _names_of(world, victim)), (target, text[:300])


@pytest.mark.parametrize(("attacker", "victim"), [WORKSPACES, WORKSPACES[::-1]])
@pytest.mark.parametrize("role", ROLES, ids=str)
def test_no_route_lets_a_token_of_one_workspace_at_anothers_data(
    world, targets, attacker, victim, role
):
    for target in targets:
        attack_holds(world, Attack(target, attacker, role, victim))
        if "connection_id" in (*target.path_params, *target.query_params):
            attack_holds(world, Attack(target, attacker, role, victim, deleted=True))


@st.composite
def attacks(draw: st.DrawFn, targets: list[Target]) -> Attack:
    target = draw(st.sampled_from(targets))
    attacker = draw(st.sampled_from(WORKSPACES))
    names = target.names_data
    named = tuple(n for n in names if draw(st.booleans()))
    free = tuple(
        (name, draw(st.sampled_from(FREE_QUERY[name])))
        for name in target.query_params
        if name in FREE_QUERY and draw(st.booleans())
    )
    return Attack(
        target,
        attacker,
        draw(st.sampled_from(ROLES)),
        next(w for w in WORKSPACES if w != attacker),
        deleted=draw(st.booleans()),
        named=named,
        own_path=bool(named and target.path_params and draw(st.booleans())),
        free=free,
    )


@hypothesis_settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_no_request_of_any_shape_crosses_workspaces(world, targets, data):
    """Any route, role and direction, B named in any of the places the route takes ids (or
    the path filled with the attacker's own data and B named in the query or body), with the
    routes' other switches (dry runs, forced syncs) on or off."""
    attack_holds(world, data.draw(attacks(targets)))
