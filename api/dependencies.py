"""Dependencies the routes share: the app's service (the API's routes and the agents' pages)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from helpdesk_triage.api.errors import ApiError
from helpdesk_triage.api.triage_service import TriageService


def get_service(request: Request) -> TriageService:
    """The app's service once its lifespan has started; until then every route that needs it is not ready."""
    service = getattr(request.app.state, "service", None)
    if service is None:
        raise ApiError(503, "not_ready", "the service is starting", headers={"Retry-After": "1"})
    return service


ServiceDep = Annotated[TriageService, Depends(get_service)]
