"""Structured JSON logs and the per-request access log line, request id and request metrics.

One JSON object per line on stderr. Log calls pass their fields as ``extra={"fields": {...}}``.
No message text is ever logged, not even masked: the access line carries the request id, route,
status, latency, model version, labels and the degraded flag, which routes add through
``request.state.log_fields``.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Sequence
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from helpdesk_triage.api.errors import error_response
from helpdesk_triage.api.metrics import TriageMetrics

REQUEST_ID_HEADER = "x-request-id"
REPLICA_HEADER = "x-triage-replica"
_VALID_REQUEST_ID = re.compile(r"[\x20-\x7e]{1,128}")  # printable ASCII
UNMATCHED_ROUTE = "unmatched"
CLIENT_CLOSED = 499  # no response was sent: the client left first (nginx's code for it)

# The request being served, for log lines written deeper down (service, store) without passing it along.
current_request_id: ContextVar[str | None] = ContextVar("current_request_id", default=None)
access_log = logging.getLogger("triage.access")
log = logging.getLogger("triage.errors")


class JsonFormatter(logging.Formatter):
    def __init__(self, replica: str | None = None) -> None:
        super().__init__()
        self.replica = replica

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "event": record.getMessage(),
            "pid": record.process,  # with several workers, which one wrote the line
        }
        if self.replica is not None:
            entry["replica"] = self.replica  # with several replicas, which one
        request_id = current_request_id.get()
        if request_id is not None:
            entry["request_id"] = request_id
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def log_config(level: str = "INFO", replica: str | None = None) -> dict[str, Any]:
    """A logging.config dict (also given to uvicorn) that sends every logger through JsonFormatter to stderr;
    ``replica`` names this replica in every line."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter, "replica": replica}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
        "root": {"handlers": ["stderr"], "level": level},
        "loggers": {
            "uvicorn": {"handlers": [], "level": level, "propagate": True},
            "uvicorn.error": {"handlers": [], "level": level, "propagate": True},
            # Our own access line replaces uvicorn's (which would log raw paths without the request id).
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": True},
        },
    }


class RequestLogMiddleware:
    """Outermost middleware: every response, errors included, carries X-Request-ID (and X-Triage-Replica when
    ``replica`` is given), is counted and logged."""

    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute], metrics: TriageMetrics,
                 replica: str | None = None) -> None:
        self.app = app
        self.routes = routes
        self.metrics = metrics
        self._replica = [(REPLICA_HEADER.encode(), replica.encode("ascii"))] if replica else []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _request_id(scope)
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        state["log_fields"] = {}
        token = current_request_id.set(request_id)
        status = CLIENT_CLOSED
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                message = {**message, "headers": [*headers, (b"x-request-id", request_id.encode("ascii")), *self._replica]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:  # last resort: the error shape, never a bare 500 page
            log.exception("unhandled_error", extra={"fields": {"request_id": request_id, "error": type(exc).__name__}})
            status = 500
            if not response_started:
                await error_response(500, "internal_error", "internal error; see the log for the request id")(
                    scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            route = self._route(scope)
            self.metrics.observe_request(route, status, seconds)
            access_log.info("request", extra={"fields": {
                "request_id": request_id,
                "method": scope.get("method"),
                "route": route,
                "status": status,
                "latency_ms": round(seconds * 1000, 2),
                **state.get("log_fields", {}),
            }})
            current_request_id.reset(token)

    def _route(self, scope: Scope) -> str:
        """The route template ("/v1/triage"), never the raw path, so random paths add no label values."""
        route = scope.get("route")
        if route is not None and hasattr(route, "path"):
            return route.path
        for candidate in self.routes:  # refused before routing (401, 413): find the route it was for
            match, _ = candidate.matches({**scope, "type": "http"})
            if match != Match.NONE and hasattr(candidate, "path"):
                return candidate.path
        return UNMATCHED_ROUTE


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            try:
                candidate = value.decode("ascii")
            except UnicodeDecodeError:
                break
            if _VALID_REQUEST_ID.fullmatch(candidate):
                return candidate
            break
    return uuid.uuid4().hex
