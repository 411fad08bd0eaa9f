"""GET /ui/monitor: the monitor report of a period as a page - summary, inline SVG charts, tables.

Query: ``since`` and ``until`` (local dates of the SLA timezone, both included; default the last 28 days
ending today). The figures are those of ``triage monitor --since .. --until .. --json`` for the same
period and settings.

Every figure on the page carries ``data-figure`` (its name) and ``data-value`` (the report's value as JSON
writes it; empty for None), so a browser test can compare the page with the CLI's JSON. Names are those of
``evaluation.monitoring.figures``: ``<bucket>.<field>[.<head>[.<label>]]`` where ``<bucket>`` is ``total``,
``weeks.<YYYY-Www>`` or ``days.<YYYY-MM-DD>``, and the fields are ``volume``, ``review_rate``,
``degraded_rate``, ``mean_confidence.<head>``, ``verdicts.<head>``, ``correct.<head>``, ``accuracy.<head>``,
``accuracy_low.<head>``, ``accuracy_high.<head>``, ``psi.<head>``, ``label_count.<head>.<label>`` and
``label_share.<head>.<label>``: e.g. ``total.accuracy.category``, ``weeks.2026-W47.volume``. The text shows
rates, shares and PSI with 3 decimals (the report is rounded to 3 already) and "—" for None.
"""

from __future__ import annotations

from datetime import date, timedelta

from fastapi import FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from markupsafe import Markup, escape

from helpdesk_triage.api import monitor_charts
from helpdesk_triage.api.errors import ApiError
from helpdesk_triage.api.dependencies import ServiceDep
from helpdesk_triage.api.monitor_source import local_today, store_report
from helpdesk_triage.api.ui_pages import PageUserDep, render
from helpdesk_triage.evaluation.monitoring import figures
from helpdesk_triage.policy.labels import HEADS

DEFAULT_DAYS = 28
MAX_DAYS = 366



def show(value) -> str:
    if value is None:
        return "—"
    return str(value) if isinstance(value, int) else f"{value:.3f}"


def figure_attributes(named: dict, name: str) -> Markup:
    """``data-figure="name" data-value="..."`` of one figure."""
    return Markup(f'data-figure="{escape(name)}" data-value="{escape(monitor_charts.value_attribute(named[name]))}"')


async def monitor_page(request: Request, user: PageUserDep, service: ServiceDep, since: date | None = Query(None),
                       until: date | None = Query(None)):
    settings = request.app.state.settings
    timezone_name = service.policy.sla.calendar.timezone.key  # the service's SLA policy, loaded once
    until = until or local_today(timezone_name)
    since = since or until - timedelta(days=DEFAULT_DAYS - 1)
    if until < since:
        raise ApiError(422, "invalid_request", f"until ({until}) is before since ({since})")
    if (until - since).days >= MAX_DAYS:
        raise ApiError(422, "invalid_request", f"the period is longer than {MAX_DAYS} days")
    report = await run_in_threadpool(store_report, service.store, settings, since, until, None, timezone_name)
    named = figures(report)
    charts = {"volume": monitor_charts.daily_volume(report), "accuracy": monitor_charts.accuracy(report),
              "drift": monitor_charts.drift(report),
              "mix": {head: monitor_charts.label_mix(report, head) for head in HEADS}}
    return render(request, "monitor.html", user, active="monitor", report=report, charts=charts, show=show,
                  fig=lambda name: figure_attributes(named, name), named=named)


def add_routes(app: FastAPI) -> None:
    """This module's routes, on the app itself (``create_app`` says why not ``include_router``)."""
    app.add_api_route("/ui/monitor", monitor_page, methods=["GET"], include_in_schema=False)
