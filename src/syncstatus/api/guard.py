"""What every request meets before the API reads it: a token, a cap on bodies, and the
browser's security headers (the deadline for a connection to deliver its request is the
server's: runtime/health.py).

The security headers keep the dashboard, which holds a token, from being framed, sniffed or
fed scripts from elsewhere; only the OpenAPI page, when `SYNCSTATUS_API_DOCS` turns it on, goes
without them, since it loads swagger-ui from a CDN.

A write without a valid token is answered 401 or 403 before one byte of its body is read, so no
one without a token can make the API buffer anything; a body over the cap is answered 413 after
at most the cap was read. Any configured token passes here, whatever its role: the route's
dependency (api/dependencies.py) checks that the role allows the write.

A read (GET, HEAD, OPTIONS) needs a valid token too, unless `SYNCSTATUS_API_PUBLIC_READS` is
on; a bearer token presented with a public read is still checked (a wrong one is 403). The
dashboard's page `/`, its `/static/` files, `/openapi.json` and `/docs` are always public:
they describe the API and hold no data. Covering every read here, not route by route, protects
routes added later (the dead letters') without each having to ask.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from syncstatus.tokens import ApiToken, TokenTable

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

READS = frozenset({"GET", "HEAD", "OPTIONS"})
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
        b"form-action 'self'; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


PUBLIC_PATHS = frozenset({"/", "/openapi.json", "/docs", "/docs/oauth2-redirect"})
PUBLIC_PREFIXES = ("/static/",)
"""What anyone may read: the dashboard's page and files, and the API's description."""

REFUSED = {401: "a bearer token is required", 403: "the bearer token is not valid"}


def bearer_token(header: bytes | None) -> bytes | None:
    """The token of an `Authorization: Bearer ...` header; None without one."""
    scheme, _, token = (header or b"").partition(b" ")
    return token.strip() if scheme.lower() == b"bearer" and token.strip() else None


def authenticate(header: bytes | None, tokens: TokenTable) -> ApiToken | int:
    """The token presented, or 401 without a bearer token and 403 with an unknown one."""
    presented = bearer_token(header)
    if presented is None:
        return 401
    return tokens.identify(presented) or 403


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


class RequestGuard:
    """ASGI middleware: security headers on every response; reads authenticated unless public;
    writes authenticated first, then their body read whole, up to `max_body_bytes`, and handed
    on."""

    def __init__(
        self,
        app: ASGIApp,
        tokens: TokenTable,
        max_body_bytes: int,
        public_reads: bool = False,
        relaxed_paths: tuple[str, ...] = (),
    ) -> None:
        self.app = app
        self.tokens = tokens
        self.max_body_bytes = max_body_bytes
        self.public_reads = public_reads
        self.relaxed_paths = relaxed_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not scope["path"].startswith(self.relaxed_paths or ("\0",)):
            send = _with_security_headers(send)
        headers = dict(scope["headers"])
        header = headers.get(b"authorization")
        read = scope["method"] in READS
        if read and (is_public(scope["path"]) or (self.public_reads and not bearer_token(header))):
            await self.app(scope, receive, send)
            return
        found = authenticate(header, self.tokens)
        if isinstance(found, int):
            await _answer(send, found, REFUSED[found], close=True)
            return
        if read:
            await self.app(scope, receive, send)
            return
        declared = headers.get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > self.max_body_bytes:
            await _answer(send, 413, f"request bodies are at most {self.max_body_bytes} bytes")
            return
        body = await self._read_body(receive)
        if body is None:
            await _answer(send, 413, f"request bodies are at most {self.max_body_bytes} bytes")
            return
        await self.app(scope, _replay(body, receive), send)

    async def _read_body(self, receive: Receive) -> bytes | None:
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return b"".join(chunks)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


def _with_security_headers(send: Send) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            present = {name for name, _ in message.get("headers", [])}
            message["headers"] = [
                *message.get("headers", []),
                *((n, v) for n, v in SECURITY_HEADERS if n not in present),
            ]
        await send(message)

    return wrapped


async def _answer(send: Send, status: int, detail: str, close: bool = False) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    if close or status == 413:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
