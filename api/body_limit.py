"""Request body limits: size (also for chunked bodies and lying Content-Lengths) and time.

A declared Content-Length over the limit is refused without buffering anything. Otherwise the body
is read here, counting bytes as they arrive, and refused as soon as it passes the limit; a body
within the limit is handed on to the app unchanged. Limits are small (64 KiB, 1 MiB for the batch
route), so buffering costs nothing the app would not spend anyway.

Before a 413 the rest of the body is read and dropped (up to MAX_DRAIN_BYTES): closing a socket with
unread data makes the kernel send a reset, and the client would see "connection reset" instead of
the 413. Past that much the answer goes out at once with ``Connection: close``.

The whole body, a drain included, must arrive within ``read_timeout_s`` of the first read. A client
that declares a body and then stalls (or trickles it) would otherwise hold a connection and a task
for as long as it likes: it gets ``408 body_timeout`` with ``Connection: close``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from helpdesk_triage.api.errors import error_response

MAX_DRAIN_BYTES = 16 * 1024 * 1024


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, default_limit: int, route_limits: Mapping[str, int], read_timeout_s: float,
                 on_reject: Callable[[str], None] = lambda reason: None) -> None:
        self.app = app
        self.default_limit = default_limit
        self.route_limits = dict(route_limits)
        self.read_timeout_s = read_timeout_s
        self.on_reject = on_reject

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.route_limits.get(scope["path"], self.default_limit)
        deadline = anyio.current_time() + self.read_timeout_s

        async def receive_in_time() -> Message | None:
            """The next message, or None once the deadline has passed."""
            with anyio.CancelScope(deadline=deadline):
                return await receive()
            return None

        declared = _content_length(scope)
        if declared is not None and declared > limit:
            drained = await _drain(receive_in_time, MAX_DRAIN_BYTES) if declared <= MAX_DRAIN_BYTES else False
            if drained is not None:
                await self._refuse(scope, receive, send, limit, drained)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive_in_time()
            if message is None:
                await self._time_out(scope, receive, send)
                return
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                drained = await _drain(receive_in_time, MAX_DRAIN_BYTES) if message.get("more_body", False) else True
                if drained is not None:
                    await self._refuse(scope, receive, send, limit, drained)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        await self.app(scope, replay_body(b"".join(chunks), receive), send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, limit: int, drained: bool) -> None:
        self.on_reject("too_large")
        response = error_response(413, "body_too_large", f"request body over {limit} bytes",
                                  headers=None if drained else {"Connection": "close"})
        await response(scope, receive, send)

    async def _time_out(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.on_reject("body_timeout")
        response = error_response(408, "body_timeout",
                                  f"the request body did not arrive within {self.read_timeout_s:g} s",
                                  headers={"Connection": "close"})
        await response(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


async def _drain(receive: Callable[[], Awaitable[Message | None]], budget: int) -> bool | None:
    """Read and drop the rest of the body: True when done, False when over ``budget`` or out of time,
    None when the client left."""
    while budget >= 0:
        message = await receive()
        if message is None:
            return False
        if message["type"] == "http.disconnect":
            return None
        budget -= len(message.get("body", b""))
        if not message.get("more_body", False):
            return True
    return False


def replay_body(body: bytes, receive: Receive) -> Receive:
    """``receive`` for an app downstream: the whole body in one message, then the client's own messages."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: wait for the disconnect, as the server would

    return replay
