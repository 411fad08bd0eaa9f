"""What the agents' pages share: templates, words beside codes, page access and cross-site request checks.

Access. With API keys off (local use) the pages open directly and the agent types a name, kept in the
browser. With keys on, a page without a session sends the browser to ``/ui/login``; the key given there,
with the agent's name, becomes a session cookie (HttpOnly, SameSite=Strict, ``ui_session_hours``) signed
with that key: any replica holding the key accepts it, and removing the key ends its sessions.

Cross-site requests. Every POST under ``/ui/`` must carry the header ``X-CSRF-Token`` equal to the
``triage_csrf`` cookie (double submit: another site can neither read the cookie nor send the header
without a CORS preflight the service never grants), and an ``Origin``, when the browser sends one, must
be this host.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
import tomllib
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Annotated
from urllib.parse import quote, urlsplit

from fastapi import Depends, Request
from fastapi.templating import Jinja2Templates

from helpdesk_triage.api.errors import ApiError
from helpdesk_triage.policy.labels import HEADS, LABELS
from helpdesk_triage.policy.settings import Settings

SESSION_COOKIE = "triage_session"
CSRF_COOKIE = "triage_csrf"
CSRF_HEADER = "x-csrf-token"
UI_PREFIX = "/ui"

templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
STATIC_DIR = Path(__file__).parent / "static"
FONT_FILE = Path(str(resources.files("helpdesk_triage.data") / "fonts" / "NotoSansCJKsc-Regular-GB2312.woff2"))


def _load_terms() -> dict:
    with (resources.files("helpdesk_triage.data") / "ui_terms.toml").open("rb") as handle:
        return tomllib.load(handle)


UI_TERMS = _load_terms()


def queue_name(queue: str) -> str:
    return UI_TERMS["queues"].get(queue, queue)


def reason_code(reason: str) -> str:
    """The code of a review reason: ``low_confidence: category 0.50 < 0.6`` -> ``low_confidence``."""
    if reason.startswith("degraded"):
        return "degraded"
    if reason.startswith("customer deadline"):
        return "customer_deadline"
    code = reason.split(":", 1)[0].strip()
    return code if code in UI_TERMS["review_reasons"] else "other"


def reason_name(code: str) -> str:
    return UI_TERMS["review_reasons"].get(code, code)


HEAD_NAMES: dict[str, str] = UI_TERMS["heads"]


def reason_label(text: str) -> str:
    """A review reason in words: its name, and the head it is about when it names one (置信度低·类别)."""
    name = reason_name(reason_code(text))
    words = text.replace(":", " ").split()
    head = next((word for word in words[1:3] if word in HEAD_NAMES), None)
    return f"{name}·{HEAD_NAMES[head]}" if head else name


def label_name(head: str, code: str) -> str:
    return LABELS.get(head, code).name_zh


templates.env.globals.update(HEADS=HEADS, HEAD_NAMES=HEAD_NAMES, LABELS=LABELS, queue_name=queue_name,
                             reason_name=reason_name, reason_label=reason_label, label_name=label_name)


# -- sessions ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PageUser:
    """Who uses a page: the agent's name (None until they give one with keys off) and the CSRF token."""

    agent: str | None
    csrf_token: str
    keys_on: bool


def _sign(key: str, payload: str) -> str:
    return hmac.new(key.encode("utf-8"), payload.encode("utf-8"), hashlib.sha256).hexdigest()


def make_session(key: str, agent: str, hours: float, now: float | None = None) -> str:
    """A session cookie value: expiry, agent name and a signature by ``key``."""
    expires = int((now or time.time()) + hours * 3600)
    agent_b64 = base64.urlsafe_b64encode(agent.encode("utf-8")).decode("ascii")
    payload = f"{expires}.{agent_b64}"
    return f"{payload}.{_sign(key, payload)}"


def read_session(value: str | None, keys: list[str], now: float | None = None) -> str | None:
    """The agent name of a valid, unexpired session signed by one of ``keys``; else None. Every key is
    compared (no early exit), so timing does not tell which key signed it."""
    if not value or value.count(".") != 2:
        return None
    expires, agent_b64, signature = value.split(".")
    payload = f"{expires}.{agent_b64}"
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(_sign(key, payload), signature)
    if not matched or not expires.isdigit() or int(expires) < (now or time.time()):
        return None
    try:
        return base64.urlsafe_b64decode(agent_b64.encode("ascii")).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None


def api_keys(settings: Settings) -> list[str]:
    return [key.get_secret_value() for key in settings.api_keys]


class LoginRequired(Exception):
    """A page was asked for without a session while keys are on: answered with a redirect to the login page."""

    def __init__(self, next_path: str) -> None:
        self.next_path = next_path


def csrf_token(request: Request) -> str:
    """The browser's CSRF token, or a new one that ``render`` sets as a cookie."""
    token = request.cookies.get(CSRF_COOKIE)
    if token:
        return token
    request.state.csrf_to_set = secrets.token_urlsafe(24)
    return request.state.csrf_to_set


def page_user(request: Request) -> PageUser:
    """The user of a page (GET). Raises LoginRequired when keys are on and there is no valid session."""
    settings: Settings = request.app.state.settings
    keys = api_keys(settings)
    csrf = csrf_token(request)
    if not keys:
        return PageUser(agent=None, csrf_token=csrf, keys_on=False)
    agent = read_session(request.cookies.get(SESSION_COOKIE), keys)
    if agent is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequired(target)
    return PageUser(agent=agent, csrf_token=csrf, keys_on=True)


def check_cross_site(request: Request) -> None:
    """Refuse a POST that another site could have sent: 403 unless the CSRF header equals the cookie and
    the Origin, when sent, is this host."""
    cookie = request.cookies.get(CSRF_COOKIE, "")
    header = request.headers.get(CSRF_HEADER, "")
    if not cookie or not hmac.compare_digest(cookie.encode(), header.encode()):
        raise ApiError(403, "csrf_failed", "missing or wrong X-CSRF-Token: reload the page and try again")
    origin = request.headers.get("origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host", ""):
        raise ApiError(403, "csrf_failed", f"a request from another origin ({origin}) is refused")


def action_user(request: Request) -> str | None:
    """The agent of a POST from a page: checked against cross-site use, then the session's agent (keys on;
    401 without a valid session) or None (keys off: the body names the agent)."""
    check_cross_site(request)
    keys = api_keys(request.app.state.settings)
    if not keys:
        return None
    agent = read_session(request.cookies.get(SESSION_COOKIE), keys)
    if agent is None:
        raise ApiError(401, "unauthorized", "the session has expired or is missing: sign in again at /ui/login")
    return agent


PageUserDep = Annotated[PageUser, Depends(page_user)]
ActionAgentDep = Annotated[str | None, Depends(action_user)]


def render(request: Request, template: str, user: PageUser, **context) -> object:
    """A page, setting the CSRF cookie when the browser has none yet."""
    response = templates.TemplateResponse(request, template, {"user": user, "now": datetime.now().astimezone(),
                                                              **context})
    if getattr(request.state, "csrf_to_set", None):
        response.set_cookie(CSRF_COOKIE, request.state.csrf_to_set, httponly=False, samesite="strict",
                            path=UI_PREFIX, secure=request.url.scheme == "https")
    response.headers["Cache-Control"] = "no-store"
    return response


def login_redirect(next_path: str) -> str:
    return f"{UI_PREFIX}/login?next={quote(next_path, safe='')}"
