"""The FastAPI application: thin routes over TriageService, one error shape for every failure."""

from __future__ import annotations

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.schemas import ErrorResponse, TriageRequest, TriageResponse
from api.settings import Settings
from api.triage_service import InvalidInput, TriageService
from model.prediction import Classifier

ERROR_RESPONSES = {code: {"model": ErrorResponse} for code in (413, 422)}


def create_app(settings: Settings | None = None, classifier: Classifier | None = None) -> FastAPI:
    settings = settings or Settings()
    service = TriageService.from_settings(settings, classifier)
    app = FastAPI(title="Help-desk triage", version="0.1.0")
    app.state.service = service
    app.state.settings = settings

    @app.middleware("http")
    async def limit_body_size(request: Request, call_next):
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > settings.max_body_bytes:
            return error_response(413, "body_too_large", f"request body over {settings.max_body_bytes} bytes")
        return await call_next(request)

    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(InvalidInput, _invalid_input)
    app.add_exception_handler(StarletteHTTPException, _http_error)

    @app.post("/v1/triage", response_model=TriageResponse, responses=ERROR_RESPONSES)
    def triage(body: TriageRequest, svc: TriageService = Depends(get_service)) -> TriageResponse:
        return svc.triage(body)

    @app.get("/livez")
    def livez() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz(svc: TriageService = Depends(get_service)) -> dict[str, str | bool]:
        return {"status": "ready", "model_version": svc.classifier.version, "degraded": svc.degraded}

    return app


def get_service(request: Request) -> TriageService:
    return request.app.state.service


def error_response(status: int, code: str, message: str, field: str | None = None) -> JSONResponse:
    body = ErrorResponse(error={"code": code, "message": message, "field": field})
    return JSONResponse(status_code=status, content=body.model_dump(exclude_none=True))


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    loc = [str(part) for part in first.get("loc", ()) if part != "body"]
    code = "malformed_json" if first.get("type") == "json_invalid" else "invalid_request"
    return error_response(422, code, first.get("msg", "invalid request"), ".".join(loc) or None)


async def _invalid_input(request: Request, exc: InvalidInput) -> JSONResponse:
    return error_response(422, exc.code, exc.message, exc.field)


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    return error_response(exc.status_code, "http_error", str(exc.detail))
