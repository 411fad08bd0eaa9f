"""The pages' entrance: ``/ui`` (to the queue), ``/ui/login`` and ``/ui/logout`` (only meaningful with API keys
on), and the static files the pages need (CSS, JavaScript and the Chinese font, all in the package)."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import FastAPI, Query, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from helpdesk_triage.api.auth import matching_key
from helpdesk_triage.api.errors import ApiError
from helpdesk_triage.api.ui_pages import (
    FONT_FILE,
    SESSION_COOKIE,
    STATIC_DIR,
    UI_PREFIX,
    PageUser,
    api_keys,
    check_cross_site,
    csrf_token,
    make_session,
    read_session,
    render,
)
from helpdesk_triage.policy.triage import clean_str

log = logging.getLogger("triage.ui")


STATIC_FILES = {"ui.css": "text/css", "review.js": "text/javascript", "login.js": "text/javascript"}


def _safe_next(next_path: str) -> str:
    """Only a path of these pages: never another site (open redirect)."""
    if next_path.startswith(UI_PREFIX + "/") and not next_path.startswith("//") and "\\" not in next_path:
        return next_path
    return f"{UI_PREFIX}/review"


async def ui_root() -> RedirectResponse:
    return RedirectResponse(f"{UI_PREFIX}/review", status_code=303)


async def login_page(request: Request, next: Annotated[str, Query(max_length=512)] = "/ui/review"):
    if not api_keys(request.app.state.settings):
        return RedirectResponse(_safe_next(next), status_code=303)
    visitor = PageUser(agent=None, csrf_token=csrf_token(request), keys_on=True)
    return render(request, "login.html", visitor, active="", next_path=_safe_next(next))


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str = Field(..., min_length=1, max_length=512)
    agent: clean_str(64, min_length=1)


def login(body: LoginRequest, request: Request) -> Response:
    check_cross_site(request)
    settings = request.app.state.settings
    keys = api_keys(settings)
    if not keys:
        raise ApiError(404, "keys_off", "API keys are off: the pages open without signing in")
    matched = matching_key(body.key.encode("utf-8"), [key.encode("utf-8") for key in keys])
    agent = body.agent.strip()
    if matched is None or not agent:
        log.info("ui_login_refused", extra={"fields": {"agent": agent}})
        raise ApiError(401, "unauthorized", "wrong API key", field="key")
    response = Response(status_code=204)
    response.set_cookie(SESSION_COOKIE, make_session(matched.decode("utf-8"), agent, settings.ui_session_hours),
                        max_age=int(settings.ui_session_hours * 3600), httponly=True, samesite="strict",
                        path=UI_PREFIX, secure=request.url.scheme == "https")
    log.info("ui_login", extra={"fields": {"agent": agent}})
    return response


async def logout(request: Request) -> RedirectResponse:
    agent = read_session(request.cookies.get(SESSION_COOKIE), api_keys(request.app.state.settings))
    if agent is not None:
        log.info("ui_logout", extra={"fields": {"agent": agent}})
    response = RedirectResponse(f"{UI_PREFIX}/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path=UI_PREFIX)
    return response


async def font() -> FileResponse:
    return FileResponse(FONT_FILE, media_type="font/woff2", headers={"Cache-Control": "public, max-age=86400"})


async def static_file(name: str) -> FileResponse:
    if name not in STATIC_FILES:
        raise ApiError(404, "not_found", f"no static file {name!r}")
    return FileResponse(STATIC_DIR / name, media_type=STATIC_FILES[name], headers={"Cache-Control": "no-cache"})


def add_routes(app: FastAPI) -> None:
    """This module's routes, on the app itself (``create_app`` says why not ``include_router``)."""
    app.add_api_route("/ui", ui_root, methods=["GET"], include_in_schema=False)
    app.add_api_route("/ui/login", login_page, methods=["GET"], include_in_schema=False)
    app.add_api_route("/ui/api/login", login, methods=["POST"], status_code=204, include_in_schema=False)
    app.add_api_route("/ui/logout", logout, methods=["GET"], include_in_schema=False)
    app.add_api_route("/ui/static/font.woff2", font, methods=["GET"], include_in_schema=False)
    app.add_api_route("/ui/static/{name}", static_file, methods=["GET"], include_in_schema=False)
