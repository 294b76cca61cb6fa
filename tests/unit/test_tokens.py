"""Named API tokens: parsed from settings, refused at start when unusable, matched in constant
time, and ordered by role."""

from __future__ import annotations

import hashlib

import pytest
from pydantic import ValidationError

from syncstatus import tokens
from syncstatus.api.guard import authenticate, bearer_token, is_public
from syncstatus.settings import Settings
from syncstatus.tokens import (
    ApiToken,
    InvalidTokens,
    Role,
    TokenTable,
    legacy_token,
    parse_entries,
    parse_entry,
    token_digest,
)

ALICE, BOB, CI = "alice-s3cret", "bob-s3cret", "ci-s3cret"


def entry(name: str, role: str, token: str) -> str:
    return f"{name}:{role}:{token_digest(token)}"


def test_roles_are_ordered_read_operate_admin():
    assert Role.READ < Role.OPERATE < Role.ADMIN
    assert [str(r) for r in Role] == ["read", "operate", "admin"]
    admin = ApiToken("a", Role.ADMIN, b"")
    read = ApiToken("r", Role.READ, b"")
    assert admin.allows(Role.READ) and admin.allows(Role.OPERATE) and admin.allows(Role.ADMIN)
    assert read.allows(Role.READ) and not read.allows(Role.OPERATE)


def test_entries_parse_with_commas_white_space_comments_and_any_case():
    text = f"""
        # the team
        {entry("alice", "admin", ALICE)}, {entry("bob", "READ", BOB)}
        {entry("ci.bot@acme", "operate", CI).upper().replace("CI.BOT@ACME", "ci.bot@acme")}
    """
    parsed = parse_entries(text, "tokens.txt")
    assert [(t.name, t.role) for t in parsed] == [
        ("alice", Role.ADMIN),
        ("bob", Role.READ),
        ("ci.bot@acme", Role.OPERATE),
    ]
    assert parsed[0].digest == hashlib.sha256(ALICE.encode()).digest()


def test_the_digest_is_the_hex_sha256_of_the_token():
    assert token_digest("abc") == hashlib.sha256(b"abc").hexdigest()
    assert token_digest(b"abc") == token_digest("abc")


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ("alice", "expected name:role:sha256hex\\[:workspace\\], got 1 field"),
        ("alice:admin", "got 2 field"),
        (f"alice:admin:{token_digest('x')}:acme:extra", "got 5 field"),
        (f"alice:admin:{token_digest('x')}:", "the token's workspace, is an id"),
        (f"alice:admin:{token_digest('x')}:ac\tme", "the token's workspace, is an id"),
        (f":admin:{token_digest('x')}", "a name is 1-64 letters"),
        (f"al ice!:admin:{token_digest('x')}".replace(" ", ""), "a name is 1-64 letters"),
        (f"{'a' * 65}:admin:{token_digest('x')}", "a name is 1-64 letters"),
        (f"scheduler:admin:{token_digest('x')}", "reserved"),
        (f"alice:boss:{token_digest('x')}", "the role is one of read, operate, admin"),
        ("alice:admin:plain-token-by-mistake", "64 hex digits, not the token itself"),
        (f"alice:admin:{token_digest('x')[:-1]}", "64 hex digits"),
    ],
)
def test_a_bad_entry_says_what_is_wrong_and_never_quotes_the_hash(bad, says):
    with pytest.raises(InvalidTokens, match=says) as raised:
        parse_entry(bad, "SYNCSTATUS_API_TOKENS entry 1")
    assert "SYNCSTATUS_API_TOKENS entry 1" in str(raised.value)
    third = bad.split(":")[2] if bad.count(":") >= 2 else None
    if third:
        assert third not in str(raised.value)


def test_a_fourth_field_scopes_the_token_to_one_workspace():
    text = f"{entry('alice', 'admin', ALICE)}:acme, {entry('bob', 'read', BOB)}:Globex.EU-1"
    alice, bob = parse_entries(text + f" {entry('ci', 'operate', CI)}", "x")[:2]
    assert (alice.name, alice.role, alice.workspace) == ("alice", Role.ADMIN, "acme")
    assert (bob.role, bob.workspace) == (Role.READ, "Globex.EU-1")
    assert alice.digest == hashlib.sha256(ALICE.encode()).digest()
    unscoped = parse_entry(entry("ci", "operate", CI), "x")
    assert unscoped.workspace is None
    assert legacy_token("legacy").workspace is None
    table = TokenTable([alice, bob, unscoped])
    assert table.identify(ALICE.encode()).workspace == "acme"
    assert table.describe() == "alice:admin:acme, bob:read:Globex.EU-1, ci:operate"
    assert "acme" in repr(alice) and token_digest(ALICE) not in repr(alice)


def test_errors_name_the_entry_and_its_line():
    text = f"{entry('alice', 'admin', ALICE)}\n\n{entry('bob', 'read', BOB)} bob:nope\n"
    with pytest.raises(InvalidTokens, match=r"^/etc/tokens entry 3 \(line 3\): expected"):
        parse_entries(text, "/etc/tokens")


def test_two_entries_with_one_name_or_one_hash_are_refused():
    with pytest.raises(InvalidTokens, match="two tokens are named 'alice'"):
        TokenTable(
            parse_entries(f"{entry('alice', 'admin', ALICE)},{entry('alice', 'read', BOB)}", "x")
        )
    with pytest.raises(InvalidTokens, match="'bob' has the same hash as another"):
        TokenTable(
            parse_entries(f"{entry('alice', 'admin', ALICE)},{entry('bob', 'read', ALICE)}", "x")
        )


def test_identify_finds_the_token_by_its_hash_only():
    table = TokenTable(
        [
            legacy_token("legacy"),
            *parse_entries(f"{entry('alice', 'admin', ALICE)},{entry('bob', 'read', BOB)}", "x"),
        ]
    )
    assert table.identify(BOB.encode()).name == "bob"
    assert table.identify(b"legacy") == ApiToken(
        "default", Role.ADMIN, bytes.fromhex(token_digest("legacy"))
    )
    assert table.identify(b"bob") is None  # a name is no token
    assert table.identify(token_digest(BOB).encode()) is None  # nor is a hash
    assert table.identify(b"") is None
    assert TokenTable().identify(BOB.encode()) is None
    assert table.describe() == "default:admin, alice:admin, bob:read"


def test_identify_compares_every_entry_in_constant_time(monkeypatch):
    compared = []

    def compare_digest(a: bytes, b: bytes) -> bool:
        compared.append(b)
        return a == b

    monkeypatch.setattr(tokens.hmac, "compare_digest", compare_digest)
    table = TokenTable(
        parse_entries(f"{entry('alice', 'admin', ALICE)},{entry('bob', 'read', BOB)}", "x")
    )
    assert table.identify(ALICE.encode()).name == "alice"  # the first matches: no early exit
    assert len(compared) == 2
    compared.clear()
    assert table.identify(b"nobody") is None
    assert len(compared) == 2


def test_the_guard_reads_bearer_tokens_and_answers_401_403_or_the_token():
    table = TokenTable(parse_entries(entry("alice", "read", ALICE), "x"))
    assert bearer_token(b"Bearer  x ") == b"x"
    assert bearer_token(b"bearer x") == b"x"
    for no_token in (None, b"", b"Bearer", b"Bearer   ", b"Basic x", b"x"):
        assert bearer_token(no_token) is None
        assert authenticate(no_token, table) == 401
    assert authenticate(b"Bearer wrong", table) == 403
    assert authenticate(b"Bearer t\xf6ken", table) == 403
    assert authenticate(f"Bearer {ALICE}".encode(), table).name == "alice"


def test_only_the_dashboard_and_the_api_description_are_public():
    for public in ("/", "/static/app.js", "/openapi.json", "/docs", "/docs/oauth2-redirect"):
        assert is_public(public), public
    for private in ("/connections", "/statuses", "/dead-letters", "/docsx", "/static", "//"):
        assert not is_public(private), private


# --- settings ------------------------------------------------------------------------------------


def test_settings_combine_the_legacy_token_the_list_and_the_file(tmp_path, monkeypatch):
    file = tmp_path / "tokens"
    file.write_text(f"# operators\n{entry('ci', 'operate', CI)}\n")
    monkeypatch.setenv("SYNCSTATUS_API_TOKEN", "legacy")
    monkeypatch.setenv(
        "SYNCSTATUS_API_TOKENS", f"{entry('alice', 'admin', ALICE)},{entry('bob', 'read', BOB)}"
    )
    monkeypatch.setenv("SYNCSTATUS_API_TOKENS_FILE", str(file))
    settings = Settings()
    assert [(t.name, t.role) for t in settings.tokens] == [
        ("default", Role.ADMIN),
        ("alice", Role.ADMIN),
        ("bob", Role.READ),
        ("ci", Role.OPERATE),
    ]
    assert settings.api_public_reads is False
    assert settings.redacted()["api_tokens"] == "alice:admin, bob:read (hashes masked)"
    assert token_digest(ALICE) not in repr(settings) + str(settings.redacted())


def test_blank_token_settings_are_unset_as_compose_passes_them(monkeypatch):
    for name in ("SYNCSTATUS_API_TOKEN", "SYNCSTATUS_API_TOKENS", "SYNCSTATUS_API_TOKENS_FILE"):
        monkeypatch.setenv(name, " ")
    settings = Settings()
    assert (settings.api_token, settings.api_tokens, settings.api_tokens_file) == (None,) * 3
    assert len(settings.tokens) == 0


@pytest.mark.parametrize(
    ("values", "says"),
    [
        ({"api_tokens": "alice:admin:mytoken"}, "SYNCSTATUS_API_TOKENS entry 1 \\(alice\\)"),
        ({"api_tokens": f"alice:root:{token_digest(ALICE)}"}, "the role is one of"),
        ({"api_tokens": entry("default", "read", ALICE), "api_token": "x"}, "named 'default'"),
        ({"api_tokens": entry("bob", "read", "x"), "api_token": "x"}, "same hash"),
        ({"api_tokens_file": "/no/such/file"}, "SYNCSTATUS_API_TOKENS_FILE /no/such/file cannot"),
        ({"api_tokens": entry("bob", "read", "x") + ":a/b"}, "'bob': its workspace does not"),
        ({"api_tokens": entry("bob", "read", "x") + ":.."}, "'bob': its workspace does not"),
        (
            {"api_tokens": entry("bob", "read", "x") + ":" + "w" * 9, "max_id_length": 8},
            "'bob': its workspace does not match the id rule",
        ),
        (
            {"api_tokens": entry("bob", "read", "x") + ":acme", "id_pattern": "[0-9]+"},
            "'bob': its workspace does not match the id rule",
        ),
    ],
)
def test_a_bad_token_setting_stops_the_start_with_a_clear_error(values, says):
    with pytest.raises(ValidationError, match=says) as raised:
        Settings(database_url="postgresql+psycopg://app:pgpass@db/s", **values)
    assert "mytoken" not in str(raised.value) and "pgpass" not in str(raised.value)


def test_settings_keep_each_tokens_workspace(tmp_path):
    file = tmp_path / "tokens"
    file.write_text(f"{entry('ci', 'operate', CI)}:globex\n")
    settings = Settings(api_tokens=f"{entry('alice', 'admin', ALICE)}:acme", api_tokens_file=file)
    assert [(t.name, t.workspace) for t in settings.tokens] == [
        ("alice", "acme"),
        ("ci", "globex"),
    ]
    assert settings.redacted()["api_tokens"] == "alice:admin:acme (hashes masked)"


def test_a_bad_line_of_the_tokens_file_is_named(tmp_path):
    file = tmp_path / "tokens"
    file.write_text(f"{entry('alice', 'admin', ALICE)}\n{entry('bob', 'read', BOB)[:-2]}\n")
    with pytest.raises(ValidationError, match=rf"{file} entry 2 \(line 2\) \(bob\): the third"):
        Settings(api_tokens_file=file)
