"""The monitor report read from a decision store: the one place that turns settings, dates and a store into
``evaluation.monitoring.monitor_report`` (used by ``triage monitor``, the /metrics gauges and /ui/monitor)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from helpdesk_triage.api.decision_store import DecisionStore
from helpdesk_triage.evaluation.monitoring import default_reference, local_day, monitor_report, utc_bounds
from helpdesk_triage.policy.settings import Settings, parse_date_range
from helpdesk_triage.policy.sla import SlaPolicy


def sla_timezone(settings: Settings) -> str:
    """The SLA calendar's timezone (data/sla_policy.toml or TRIAGE_SLA_POLICY): where days and weeks begin."""
    return SlaPolicy.load(settings.sla_policy).calendar.timezone.key


def local_today(timezone_name: str) -> date:
    return datetime.now(ZoneInfo(timezone_name)).date()


def store_report(store: DecisionStore, settings: Settings, since: date, until: date,
                 reference: tuple[date, date] | None = None, timezone_name: str | None = None) -> dict:
    """The report of local dates ``since``..``until`` (both included). ``reference``: None means the
    setting ``monitor_reference``, or when that is empty the store's first week before the period."""
    timezone_name = timezone_name or sla_timezone(settings)
    zone = ZoneInfo(timezone_name)
    if reference is None and settings.monitor_reference:
        reference = parse_date_range(settings.monitor_reference)
    if reference is None:
        first = store.first_decided_at()
        reference = default_reference(local_day(first, zone) if first else None, since)
    return monitor_report(store.window(*utc_bounds(since, until, zone)),
                          store.window(*utc_bounds(*reference, zone)),
                          since=since, until=until, reference=reference, timezone_name=timezone_name,
                          psi_alert=settings.monitor_psi_alert)


def current_report(store: DecisionStore, settings: Settings, timezone_name: str | None = None) -> dict:
    """The report of the current ISO week so far (Monday to today, local): its last day is today."""
    timezone_name = timezone_name or sla_timezone(settings)
    today = local_today(timezone_name)
    return store_report(store, settings, today - timedelta(days=today.isoweekday() - 1), today,
                        timezone_name=timezone_name)
