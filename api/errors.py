"""The one error shape, ``{"error": {"code", "message", "field"?}}``, and the handlers that produce it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from helpdesk_triage.api.admission import Overloaded
from helpdesk_triage.api.decision_store import UnknownDecision
from helpdesk_triage.api.schemas import ErrorResponse
from helpdesk_triage.api.triage_service import StorageUnavailable
from helpdesk_triage.policy.triage import InvalidInput

log = logging.getLogger("triage.errors")

_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 400: "bad_request"}
# pydantic error types that deserve their own code; every other validation error is invalid_request.
_VALIDATION_CODES = {"json_invalid": "malformed_json", "literal_error": "invalid_label",
                     "invalid_timestamp": "invalid_timestamp"}


class ApiError(Exception):
    """Raised by routes and dependencies for a non-2xx answer in the error shape."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field
        self.headers = dict(headers or {})


def error_response(status: int, code: str, message: str, field: str | None = None,
                   headers: Mapping[str, str] | None = None) -> JSONResponse:
    body = ErrorResponse(error={"code": code, "message": message, "field": field})
    return JSONResponse(status_code=status, content=body.model_dump(exclude_none=True), headers=headers)


def install_error_handlers(app: FastAPI, retry_after_s: int, overload_hold_s: float = 0.0, on_too_many_items: Callable[[], None] = lambda: None) -> None:
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.field, exc.headers)

    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
        field = ".".join(str(part) for part in first.get("loc", ()) if part != "body") or None
        message = str(first.get("msg", "invalid request"))
        if first.get("type") == "too_long" and field == "items":
            on_too_many_items()
            return error_response(413, "too_many_items", message, field)
        code = _VALIDATION_CODES.get(first.get("type", ""), "invalid_request")
        if code == "malformed_json":
            # pydantic's loc here is the character offset into the body, not a field.
            position = field
            field = None
            message = f"the body is not valid JSON ({first.get('ctx', {}).get('error', message)} at character {position})"
        return error_response(422, code, message, field)

    async def invalid_input(request: Request, exc: InvalidInput) -> JSONResponse:
        return error_response(422, exc.code, exc.message, exc.field)

    async def unknown_decision(request: Request, exc: UnknownDecision) -> JSONResponse:
        return error_response(404, "unknown_id", "no triage decision with this id; triage the message first", "id")

    async def storage_unavailable(request: Request, exc: StorageUnavailable) -> JSONResponse:
        return error_response(503, "storage_unavailable", "the decision store did not confirm the write; retry",
                              headers={"Retry-After": str(retry_after_s)})

    async def overloaded(request: Request, exc: Overloaded) -> JSONResponse:
        if overload_hold_s > 0:  # as api.admission_gate does
            await asyncio.sleep(min(overload_hold_s, exc.retry_after_s))
        return error_response(503, "overloaded", exc.message, headers={"Retry-After": str(exc.retry_after_s)})

    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and isinstance(exc.__cause__, RecursionError):
            # FastAPI's 400 for a body json.loads gives up on: still malformed JSON, and the message says why.
            return error_response(422, "malformed_json", "the body is nested too deep to be read as JSON")
        if exc.status_code == 400 and isinstance(exc.__cause__, ValueError):
            return error_response(422, "malformed_json", "the body is not valid JSON in UTF-8")
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail), headers=exc.headers)

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(InvalidInput, invalid_input)
    app.add_exception_handler(UnknownDecision, unknown_decision)
    app.add_exception_handler(StorageUnavailable, storage_unavailable)
    app.add_exception_handler(Overloaded, overloaded)
    app.add_exception_handler(StarletteHTTPException, http_error)
