"""Two HTTP rules applied before anything else looks at a request (pure ASGI, like the other middlewares).

``RequestFramingMiddleware``: a request with both Content-Length and Transfer-Encoding is refused,
``400 ambiguous_body_length`` with ``Connection: close``, before its body is read. The server here
lets Transfer-Encoding win, but a proxy in front may have used Content-Length: the two would then
disagree on where this request ends and the next begins (request smuggling), so neither reading is
safe, and the connection is not reused.

``HeadAsGetMiddleware``: ``HEAD`` is answered as ``GET`` without the body (RFC 9110 9.3.2), same
status and headers; FastAPI's routes declare GET only, and would say 405.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from helpdesk_triage.api.errors import error_response


class RequestFramingMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            names = {name for name, _ in scope.get("headers", ())}
            if b"content-length" in names and b"transfer-encoding" in names:
                response = error_response(400, "ambiguous_body_length",
                                          "send either Content-Length or Transfer-Encoding, not both",
                                          headers={"Connection": "close"})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class HeadAsGetMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def send_without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        # A copy: the access log outside still sees (and logs) HEAD.
        await self.app({**scope, "method": "GET"}, receive, send_without_body)
