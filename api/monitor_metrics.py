"""The monitor's figures of the current day and ISO week (SLA timezone) as Prometheus gauges on /metrics.

Computed from the decision store at scrape time, at most once per ``monitor_cache_s`` seconds per process,
and rendered from a registry of their own (a custom collector, so no multiprocess value files): in
multiprocess mode every worker reads the same store, so any worker's scrape gives the same figures.

Gauges (``window`` is ``day`` or ``week``; a figure without a denominator - no decision, no verdict - is left out):

* ``triage_monitor_decisions{window}``: decisions decided in the window
* ``triage_monitor_review_rate{window}``, ``triage_monitor_degraded_rate{window}``: shares of them
* ``triage_monitor_agent_verdicts{head,window}``: decisions with an agent's verdict on the head
* ``triage_monitor_agent_accuracy{head,window}``: share of those where the verdict equals the label answered
* ``triage_monitor_psi{head,window}``: PSI of the head's label mix against the reference window
* ``triage_monitor_psi_alert``: the PSI over which drift is flagged (the setting ``monitor_psi_alert``)
* ``triage_review_queue_open``, ``triage_review_queue_overdue``: decisions waiting in the review queue (/ui/review),
  and those of them past their first-response deadline: what a lead alerts on
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily

from helpdesk_triage.api.decision_store import DecisionStore
from helpdesk_triage.api.monitor_source import current_report
from helpdesk_triage.policy.labels import HEADS
from helpdesk_triage.policy.settings import Settings

log = logging.getLogger("triage.monitor")


def _families(report: dict, psi_alert: float, backlog: dict[str, int]) -> Iterator[GaugeMetricFamily]:
    windows = {"day": report["days"][-1], "week": report["weeks"][-1]}  # the report ends today
    scalar = {
        "decisions": ("volume", "Decisions decided in the current local day or ISO week."),
        "review_rate": ("review_rate", "Share of those decisions that needed human review."),
        "degraded_rate": ("degraded_rate", "Share of those decisions answered by the keyword rules (degraded)."),
    }
    for name, (field, help_text) in scalar.items():
        family = GaugeMetricFamily(f"triage_monitor_{name}", help_text, labels=["window"])
        for window, bucket in windows.items():
            if bucket[field] is not None:
                family.add_metric([window], bucket[field])
        yield family
    per_head = {
        "agent_verdicts": ("verdicts", "Decisions of the window with an agent's verdict on the head."),
        "agent_accuracy": ("accuracy", "Share of the agents' verdicts on the head equal to the label answered."),
        "psi": ("psi", "Population stability index of the head's label mix against the monitor's reference window."),
    }
    for name, (field, help_text) in per_head.items():
        family = GaugeMetricFamily(f"triage_monitor_{name}", help_text, labels=["head", "window"])
        for window, bucket in windows.items():
            for head in HEADS:
                if bucket[field][head] is not None:
                    family.add_metric([head, window], bucket[field][head])
        yield family
    yield GaugeMetricFamily("triage_monitor_psi_alert", "PSI over which drift is flagged.", value=psi_alert)
    yield GaugeMetricFamily("triage_review_queue_open", "Decisions waiting for a person in the review queue.",
                            value=backlog["open"])
    yield GaugeMetricFamily("triage_review_queue_overdue", "Decisions in the review queue past their first-response "
                            "deadline.", value=backlog["overdue"])


class _ReportCollector:
    def __init__(self, report: dict, psi_alert: float, backlog: dict[str, int]) -> None:
        self._report, self._psi_alert, self._backlog = report, psi_alert, backlog

    def collect(self) -> Iterator[GaugeMetricFamily]:
        return _families(self._report, self._psi_alert, self._backlog)


class MonitorGauges:
    """The exposition text of the monitor gauges, recomputed when older than ``settings.monitor_cache_s``."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        self._settings = settings
        self._clock = clock
        self._lock = threading.Lock()  # one computation at a time; concurrent scrapes wait for it
        self._text = b""
        self._computed_at: float | None = None

    def render(self, store: DecisionStore) -> bytes:
        with self._lock:
            now = self._clock()
            if self._computed_at is None or now - self._computed_at >= self._settings.monitor_cache_s:
                self._text = self._compute(store)
                self._computed_at = now
            return self._text

    def _compute(self, store: DecisionStore) -> bytes:
        try:
            report = current_report(store, self._settings)
            backlog = store.review_backlog(datetime.now(UTC).isoformat(timespec="seconds"))
        except Exception as exc:  # the store may be down: /metrics still answers with the service's own metrics
            log.warning("monitor_gauges_failed", extra={"fields": {"error": f"{type(exc).__name__}: {exc}"}})
            return b""
        registry = CollectorRegistry()
        registry.register(_ReportCollector(report, self._settings.monitor_psi_alert, backlog))
        return generate_latest(registry)
