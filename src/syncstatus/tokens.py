"""The API's named tokens: who holds which, and what each may do. Standard library only.

A token is configured as one entry `name:role:sha256hex`: the name the API records as
`requested_by`, its role, and the SHA-256 of the token in hex (the token itself is never
stored); `name:role:sha256hex:workspace` scopes the token to one workspace, whose connections
alone it sees and acts on (another workspace's connection is a 404 to it, as an unknown one).
Entries are separated by commas or white space; a file of them may also hold blank
lines and `#` comments. The presented token is hashed and compared with every entry's hash
in constant time, so neither the names nor which entry matched show in the timing.

Roles are ordered: `read` (the connections, their history, explain, statuses, dead letters) <
`operate` (the commands) < `admin` (delete, redrive); each includes the ones below it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import IntEnum

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
"""A token's name: what commands record as `requested_by`, so a plain identifier."""

RESERVED_NAMES = frozenset({"scheduler"})
"""Names the service itself records: the scheduler's commands (and retention prunes those)."""

LEGACY_NAME = "default"
"""The name of `SYNCSTATUS_API_TOKEN`, the single token of earlier versions (an admin)."""

SEPARATORS = re.compile(r"[\s,]+")
DIGEST = re.compile(r"[0-9a-fA-F]{64}")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class Role(IntEnum):
    """What a token may do; a higher role may do everything a lower one may."""

    READ = 1
    OPERATE = 2
    ADMIN = 3

    def __str__(self) -> str:
        return self.name.lower()


class InvalidTokens(ValueError):
    """A token entry that cannot be used; the message names the entry, never its hash."""


def token_digest(token: str | bytes) -> str:
    """The hex SHA-256 an entry holds for `token` (what `name:role:` is followed by)."""
    return hashlib.sha256(token.encode() if isinstance(token, str) else token).hexdigest()


@dataclass(frozen=True, slots=True)
class ApiToken:
    name: str
    role: Role
    digest: bytes = field(repr=False)
    workspace: str | None = None
    """The one workspace the token sees and acts on; None: every workspace."""

    def allows(self, needed: Role) -> bool:
        return self.role >= needed


def parse_entry(entry: str, where: str) -> ApiToken:
    """One `name:role:sha256hex`, or `name:role:sha256hex:workspace` for a token scoped to one
    workspace (so a workspace a token names holds no `:`). Errors say `where` the entry is and
    quote only a valid name, never a field that failed (it may be a token pasted by mistake).
    Settings check the workspace against the id rule connection ids follow."""
    parts = entry.split(":")
    if len(parts) not in (3, 4):
        raise InvalidTokens(
            f"{where}: expected name:role:sha256hex[:workspace], got {len(parts)} field(s)"
        )
    name, role, digest = parts[:3]
    workspace = parts[3] if len(parts) == 4 else None
    if not NAME.fullmatch(name):
        raise InvalidTokens(
            f"{where}: a name is 1-64 letters, digits or . _ @ - (starting with a letter or digit)"
        )
    if name in RESERVED_NAMES:
        raise InvalidTokens(f"{where}: the name {name!r} is reserved for the service itself")
    try:
        parsed_role = Role[role.upper()]
    except KeyError:
        raise InvalidTokens(
            f"{where} ({name}): the role is one of {', '.join(str(r) for r in Role)}"
        ) from None
    if not DIGEST.fullmatch(digest):
        raise InvalidTokens(
            f"{where} ({name}): the third field is the token's SHA-256 as 64 hex digits, "
            "not the token itself"
        )
    if workspace is not None and (not workspace or CONTROL.search(workspace)):
        raise InvalidTokens(
            f"{where} ({name}): the fourth field, the token's workspace, is an id: not empty, "
            "no control characters"
        )
    return ApiToken(name, parsed_role, bytes.fromhex(digest), workspace)


def parse_entries(text: str, source: str) -> list[ApiToken]:
    """Every entry of `text` (from `source`, named in errors): separated by commas or white
    space, with `#` starting a comment to the end of its line."""
    multiline = len(text.strip().splitlines()) > 1
    tokens: list[ApiToken] = []
    for number, line in enumerate(text.splitlines(), 1):
        for entry in SEPARATORS.split(line.split("#", 1)[0]):
            if entry:
                where = f"{source} entry {len(tokens) + 1}" + (
                    f" (line {number})" if multiline else ""
                )
                tokens.append(parse_entry(entry, where))
    return tokens


def legacy_token(token: str) -> ApiToken:
    """`SYNCSTATUS_API_TOKEN`: an admin token named `default`."""
    return ApiToken(LEGACY_NAME, Role.ADMIN, hashlib.sha256(token.encode()).digest())


class TokenTable:
    """The configured tokens, checked for clashes once; `identify` finds who presented one."""

    def __init__(self, tokens: Iterable[ApiToken] = ()) -> None:
        self._tokens = tuple(tokens)
        names: set[str] = set()
        digests: set[bytes] = set()
        for token in self._tokens:
            if token.name in names:
                raise InvalidTokens(f"two tokens are named {token.name!r}")
            if token.digest in digests:
                raise InvalidTokens(
                    f"token {token.name!r} has the same hash as another: one token, one name"
                )
            names.add(token.name)
            digests.add(token.digest)

    def identify(self, presented: bytes) -> ApiToken | None:
        """The token whose hash is the presented token's, or None. Every entry is compared,
        in constant time, whichever matches (no early exit, no lookup by name)."""
        digest = hashlib.sha256(presented).digest()
        found = None
        for token in self._tokens:
            matches = hmac.compare_digest(digest, token.digest)
            found = token if matches else found
        return found

    def __iter__(self) -> Iterator[ApiToken]:
        return iter(self._tokens)

    def __len__(self) -> int:
        return len(self._tokens)

    def describe(self) -> str:
        """Names, roles and workspaces, for people (`syncstatus config`): no hashes."""
        return (
            ", ".join(
                f"{t.name}:{t.role}" + ("" if t.workspace is None else f":{t.workspace}")
                for t in self._tokens
            )
            or "-"
        )
