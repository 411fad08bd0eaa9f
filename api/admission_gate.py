"""The request gate of admission control (``api.admission``) as an ASGI middleware: a model-bound request
is refused (503 overloaded, Retry-After) before FastAPI parses and validates its body, after the
overload hold (``Settings.overload_hold_ms``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection

from starlette.types import ASGIApp, Receive, Scope, Send

from helpdesk_triage.api.admission import Admission
from helpdesk_triage.api.errors import error_response


class AdmissionMiddleware:
    """The request gate for the model-bound routes (``POST`` to ``paths``), before the body is parsed."""

    def __init__(self, app: ASGIApp, admission: Admission, paths: Collection[str], hold_s: float = 0.0,
                 on_reject: Callable[[str], None] = lambda reason: None) -> None:
        self.app = app
        self.hold_s = hold_s
        self.admission = admission
        self.paths = frozenset(paths)
        self.on_reject = on_reject

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        admission = self.admission
        if not admission.try_enter_request():
            self.on_reject("overloaded")
            retry_after = admission.retry_after()
            await overload_hold(self.hold_s, retry_after)
            await error_response(
                503, "overloaded",
                f"worker {admission.pid}: {admission.requests_in_flight} requests and {admission.texts_in_flight} texts "
                f"already in flight; retry in {retry_after} s",
                headers={"Retry-After": str(retry_after)})(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            admission.leave_request()


async def overload_hold(hold_s: float, retry_after_s: int) -> None:
    """Wait before answering a refusal (never longer than the Retry-After it carries)."""
    if hold_s > 0:
        await asyncio.sleep(min(hold_s, retry_after_s))
