"""Optional API keys: ``Authorization: Bearer <key>`` on every ``/v1/`` route.

Checked before the body is read, so an unauthenticated client gets 401 whatever it sends. The key
is compared with ``hmac.compare_digest`` against every configured key (no early exit), so timing
tells nothing about how much of a key matched or which key. /livez, /readyz, /metrics and /docs
stay open.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Sequence

from starlette.types import ASGIApp, Receive, Scope, Send

from helpdesk_triage.api.errors import error_response

PROTECTED_PREFIX = "/v1/"


class BearerAuthMiddleware:
    def __init__(self, app: ASGIApp, keys: Sequence[str], on_reject: Callable[[str], None] = lambda reason: None) -> None:
        self.app = app
        self.keys = [key.encode("utf-8") for key in keys]
        self.on_reject = on_reject

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.keys or not scope["path"].startswith(PROTECTED_PREFIX):
            await self.app(scope, receive, send)
            return
        if self.accepts(_bearer_token(scope)):
            await self.app(scope, receive, send)
            return
        self.on_reject("unauthorized")
        response = error_response(401, "unauthorized", "missing or invalid API key: send Authorization: Bearer <key>",
                                  headers={"WWW-Authenticate": "Bearer"})
        await response(scope, receive, send)

    def accepts(self, token: bytes | None) -> bool:
        return token is not None and matching_key(token, self.keys) is not None


def matching_key(token: bytes, keys: Sequence[bytes]) -> bytes | None:
    """The key equal to ``token``, or None. Every key is compared (no early exit), so timing tells nothing
    about how much of a key matched or which key (the bearer check and the pages' sign-in)."""
    matched = None
    for key in keys:
        if hmac.compare_digest(token, key):
            matched = key
    return matched


def _bearer_token(scope: Scope) -> bytes | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            if scheme.lower() == b"bearer" and token.strip():
                return token.strip()
            return None
    return None
