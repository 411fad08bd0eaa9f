"""JSON bodies only, and only in UTF-8, on the routes that take a body.

FastAPI reads a body as JSON only when its Content-Type says JSON; any other body reaches
validation as bytes and fails with a message about dictionaries. And ``json.loads`` guesses
UTF-16 and UTF-32 from a byte order mark or NUL bytes, so such a body would be accepted although
the contract says UTF-8. Here, before FastAPI (and after the body limit, which has read the body):

* a Content-Type other than ``application/json`` or ``application/*+json``, or a body without one:
  ``415 unsupported_media_type``;
* a charset other than UTF-8, a byte order mark, a NUL byte (no JSON text in UTF-8 has one outside
  an escape) or bytes that are not UTF-8: ``422 malformed_json``.
"""

from __future__ import annotations

import codecs
import email.message
from collections.abc import Sequence

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Receive, Scope, Send

from helpdesk_triage.api.body_limit import replay_body
from helpdesk_triage.api.errors import error_response

_BOMS = (codecs.BOM_UTF8, codecs.BOM_UTF32_BE, codecs.BOM_UTF32_LE, codecs.BOM_UTF16_BE, codecs.BOM_UTF16_LE)


class JsonBodyMiddleware:
    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.body_routes = [route for route in routes if getattr(route, "body_field", None) is not None]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not any(route.matches(scope)[0] == Match.FULL for route in self.body_routes):
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        if body is None:  # the client left
            return
        problem = _problem(_header(scope, b"content-type"), body)
        if problem is None:
            await self.app(scope, replay_body(body, receive), send)
            return
        status, code, message = problem
        await error_response(status, code, message)(scope, receive, send)


def _problem(content_type: str | None, body: bytes) -> tuple[int, str, str] | None:
    if content_type is None:
        if not body:
            return None  # no body at all: FastAPI says which field is missing
        return 415, "unsupported_media_type", "the body has no Content-Type; send it as application/json"
    parsed = email.message.Message()
    parsed["content-type"] = content_type
    subtype = parsed.get_content_subtype()
    if parsed.get_content_maintype() != "application" or not (subtype == "json" or subtype.endswith("+json")):
        return 415, "unsupported_media_type", "send the body as JSON, with Content-Type: application/json"
    charset = parsed.get_param("charset")
    if isinstance(charset, str) and charset.strip().lower() not in ("utf-8", "utf8"):
        return 422, "malformed_json", f"the body must be JSON in UTF-8, not {charset[:40]!r}"
    if body.startswith(_BOMS):
        return 422, "malformed_json", "the body starts with a byte order mark; send JSON in UTF-8 without one"
    if b"\x00" in body:
        return 422, "malformed_json", "the body holds a NUL byte: not JSON in UTF-8 (UTF-16 or UTF-32?)"
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return 422, "malformed_json", f"the body is not UTF-8 (byte {exc.start})"
    return None


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


async def _read_body(receive: Receive) -> bytes | None:
    """The whole body (the body limit has read it already, so this waits for nothing), or None when the client left."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)
