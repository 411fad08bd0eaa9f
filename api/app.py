"""The FastAPI application: thin routes over TriageService, one error shape for every failure.

Middleware, outermost first: request log (request id, access log, request metrics) -> request framing
(Content-Length with Transfer-Encoding: 400) -> HEAD as GET -> API keys -> body limit (size, time) ->
JSON body (415, UTF-8 only) -> admission (the request gate, api.admission_gate) -> FastAPI (readiness is a
dependency of the model-bound routes; the texts gate of admission is in the service).
"""

# No `from __future__ import annotations`: the batch body model is built per app, and FastAPI must
# see it as a real annotation, not a string naming a local variable.

import logging
import os
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import Depends, FastAPI, Request, Response, Security
from fastapi.responses import RedirectResponse
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPBearer

from helpdesk_triage.api.admission_gate import AdmissionMiddleware
from helpdesk_triage.api.auth import BearerAuthMiddleware
from helpdesk_triage.api.body_limit import BodyLimitMiddleware
from helpdesk_triage.api.dependencies import ServiceDep, get_service
from helpdesk_triage.api.decision_store import DecisionStore, SchemaTooNew, open_store
from helpdesk_triage.api.errors import ApiError, install_error_handlers
from helpdesk_triage.api.http_rules import HeadAsGetMiddleware, RequestFramingMiddleware
from helpdesk_triage.api.json_body import JsonBodyMiddleware
from helpdesk_triage.api.metrics import TriageMetrics
from helpdesk_triage.api.monitor_metrics import MonitorGauges
from helpdesk_triage.api.request_log import RequestLogMiddleware
from helpdesk_triage.api.schemas import (
    BatchResponse,
    ErrorResponse,
    FeedbackRequest,
    FeedbackResponse,
    LiveResponse,
    ReadyResponse,
    TriageRequest,
    TriageResponse,
    batch_request_model,
)
from helpdesk_triage.policy.settings import Settings
from helpdesk_triage.api.triage_service import TriageService, admission_for
from helpdesk_triage.api import ui_login, ui_monitor, ui_review
from helpdesk_triage.api.ui_pages import LoginRequired, login_redirect
from helpdesk_triage.policy.labels import HEADS
from helpdesk_triage.policy.prediction import Classifier

log = logging.getLogger("triage.app")

TRIAGE_ROUTE = "/v1/triage"
BATCH_ROUTE = "/v1/triage/batch"
# Threads for sync routes: every admitted request may hold one while it waits for the model.
SPARE_THREADS = 16


# What any route with a body may answer before it runs: 400 ambiguous_body_length, 408 body_timeout,
# 413 body_too_large (or too_many_items), 415 unsupported_media_type, 422.
BODY_ERRORS = (400, 408, 413, 415, 422)


def _errors(*statuses: int) -> dict:
    return {status: {"model": ErrorResponse} for status in sorted(statuses)}


def create_app(settings: Settings | None = None, classifier: Classifier | None = None,
               store: DecisionStore | None = None) -> FastAPI:
    """The app. ``classifier``: serve it at once instead of loading the configured model in the
    background; ``store``: use it instead of opening ``settings.database_url`` (the caller closes it)."""
    settings = settings or Settings()
    metrics = TriageMetrics()
    monitor_gauges = MonitorGauges(settings)
    admission = admission_for(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        limiter = anyio.to_thread.current_default_thread_limiter()
        limiter.total_tokens = max(limiter.total_tokens, admission.max_requests + SPARE_THREADS)
        own_store = store is None
        try:
            the_store = await run_in_threadpool(open_store, settings.database_url) if own_store else store
        except SchemaTooNew as exc:
            log.error("schema_too_new", extra={"fields": {"error": str(exc)}})  # one line before uvicorn's traceback
            raise
        service = TriageService(settings, the_store, metrics, classifier, admission=admission)
        app.state.service = service
        if classifier is None:
            # Serve at once (livez, readyz says not_ready) while the model loads and warms.
            threading.Thread(target=service.load_model, name="triage-model-loader", daemon=True).start()
        try:
            yield
        finally:
            service.close()
            if own_store:
                the_store.close()
            log.info("shutdown_complete")

    app = FastAPI(title="Help-desk triage", version="0.2.0", lifespan=lifespan,
                  description="Chinese help-desk triage: category, severity, sentiment, SLA deadlines, queue and reply.")
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.admission = admission
    install_error_handlers(app, settings.retry_after_s, settings.overload_hold_ms / 1000, on_too_many_items=lambda: metrics.observe_rejected("too_many_items"))

    # Keys are checked by BearerAuthMiddleware before the body is read; declared here so /docs offers "Authorize".
    v1_auth = [Security(HTTPBearer(auto_error=False, description="One of TRIAGE_API_KEYS"))] if settings.api_keys else []
    # Admission (api.admission_gate) refuses an overload before the body is parsed; the texts gate is in the service.
    model_bound = [*v1_auth, Depends(require_ready)]
    BatchRequest = batch_request_model(settings.max_batch_items)

    @app.post(TRIAGE_ROUTE, response_model=TriageResponse, dependencies=model_bound,
              responses=_errors(*BODY_ERRORS, 401, 503), summary="Triage one message")
    def triage(body: TriageRequest, request: Request, service: ServiceDep) -> TriageResponse:
        response = service.triage(body)
        _log_decisions(request, [response])
        return response

    @app.post(BATCH_ROUTE, response_model=BatchResponse, dependencies=model_bound,
              responses=_errors(*BODY_ERRORS, 401, 503), summary="Triage several messages, results in order")
    def triage_batch(body: BatchRequest, request: Request, service: ServiceDep) -> BatchResponse:
        responses = service.triage_many(body.items)
        _log_decisions(request, responses)
        return BatchResponse(items=responses)

    @app.post("/v1/feedback", response_model=FeedbackResponse, status_code=201, dependencies=v1_auth,
              responses=_errors(*BODY_ERRORS, 401, 404, 503), summary="Record an agent's correction of a triaged message")
    def feedback(body: FeedbackRequest, request: Request, service: ServiceDep) -> FeedbackResponse:
        response = service.record_feedback(body)
        request.state.log_fields.update(id=response.id, feedback_id=response.feedback_id, corrections=response.applied)
        return response

    @app.get("/livez", response_model=LiveResponse, summary="The process is up")
    async def livez() -> LiveResponse:
        return LiveResponse()

    @app.get("/readyz", response_model=ReadyResponse, responses=_errors(503),
             summary="Ready once the model is loaded and warmed and the store answers")
    async def readyz(request: Request) -> ReadyResponse:
        service = get_service(request)
        if not service.ready:
            raise ApiError(503, "not_ready", "the model is still loading",
                           headers={"Retry-After": str(settings.retry_after_s)})
        if not await service.storage_ready():
            raise ApiError(503, "storage_unavailable", "the decision store does not answer",
                           headers={"Retry-After": str(settings.retry_after_s)})
        return ReadyResponse(model_version=service.model_version, degraded=service.degraded_reason is not None,
                             degraded_reason=service.degraded_reason, storage=True, worker_pid=os.getpid(),
                             replica=settings.replica_name)

    @app.get("/metrics", response_class=Response, summary="Prometheus metrics")
    async def prometheus_metrics(request: Request) -> Response:
        body = metrics.render()
        service = getattr(request.app.state, "service", None)
        if service is not None:  # the monitor gauges read the store: off the event loop
            body += await run_in_threadpool(monitor_gauges.render, service.store)
        return Response(body, media_type=metrics.content_type)

    # The agents' pages (review queue, monitor): a session cookie instead of the bearer key (api.ui_pages).
    # Added to the app itself: include_router would wrap them in one route that the middlewares which match
    # routes (JSON bodies only, the request log's route label) cannot see into.
    for pages in (ui_login, ui_review, ui_monitor):
        pages.add_routes(app)

    @app.exception_handler(LoginRequired)
    async def to_login(request: Request, exc: LoginRequired) -> RedirectResponse:
        return RedirectResponse(login_redirect(exc.next_path), status_code=303)

    # add_middleware wraps: the last added is the outermost.
    app.add_middleware(AdmissionMiddleware, admission=admission, paths=(TRIAGE_ROUTE, BATCH_ROUTE),
                       hold_s=settings.overload_hold_ms / 1000, on_reject=metrics.observe_rejected)
    app.add_middleware(JsonBodyMiddleware, routes=app.routes)
    app.add_middleware(BodyLimitMiddleware, default_limit=settings.max_body_bytes,
                       route_limits={BATCH_ROUTE: settings.max_batch_body_bytes},
                       read_timeout_s=settings.body_read_timeout_s, on_reject=metrics.observe_rejected)
    app.add_middleware(BearerAuthMiddleware, keys=[key.get_secret_value() for key in settings.api_keys],
                       on_reject=metrics.observe_rejected)
    app.add_middleware(HeadAsGetMiddleware)
    app.add_middleware(RequestFramingMiddleware)
    app.add_middleware(RequestLogMiddleware, routes=app.routes, metrics=metrics, replica=settings.replica_name)
    return app


async def require_ready(request: Request) -> None:
    service = get_service(request)
    if not service.ready:
        request.app.state.metrics.observe_rejected("not_ready")
        raise ApiError(503, "not_ready", "the model is still loading; retry shortly",
                       headers={"Retry-After": str(request.app.state.settings.retry_after_s)})


def _log_decisions(request: Request, responses: list[TriageResponse]) -> None:
    request.state.log_fields.update(
        model_version=responses[0].model_version,
        degraded=any(r.degraded for r in responses),
        labels=[{head: getattr(r, head).label for head in HEADS} for r in responses],
    )
