"""The monitor gauges on /metrics: the current day's and ISO week's figures of the store, cached."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from helpdesk_triage.api.app import create_app
from helpdesk_triage.api.decision_store import open_store
from helpdesk_triage.api.monitor_metrics import MonitorGauges
from helpdesk_triage.api.monitor_source import current_report
from helpdesk_triage.policy.keyword_rules import KeywordClassifier
from helpdesk_triage.policy.labels import HEADS
from helpdesk_triage.policy.settings import Settings
from tests.monitor_store import fill_today


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples
            if s.name.startswith("triage_monitor_")}


@pytest.fixture()
def store():
    store = open_store("sqlite:///:memory:")
    yield store
    store.close()


def test_gauges_equal_the_report_of_today_and_this_week(store, monkeypatch):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    fill_today(store)
    settings = Settings(database_url="sqlite:///:memory:", monitor_reference="2026-01-01/2026-01-07")
    with TestClient(create_app(settings, classifier=KeywordClassifier(), store=store)) as client:
        response = client.get("/metrics")
    assert response.status_code == 200
    found = samples(response.text)
    report = current_report(store, settings)
    day = report["days"][-1]
    assert day["volume"] == 5
    assert found[("triage_monitor_decisions", (("window", "day"),))] == day["volume"]
    assert found[("triage_monitor_decisions", (("window", "week"),))] == report["weeks"][-1]["volume"]
    assert found[("triage_monitor_review_rate", (("window", "day"),))] == day["review_rate"]
    assert found[("triage_monitor_degraded_rate", (("window", "day"),))] == day["degraded_rate"] == 0.2
    for head in HEADS:
        assert found[("triage_monitor_agent_verdicts", (("head", head), ("window", "day")))] == day["verdicts"][head]
    # Two reviews (category right, then wrong) and a severity correction (wrong).
    assert found[("triage_monitor_agent_accuracy", (("head", "category"), ("window", "week")))] == 0.5
    assert found[("triage_monitor_agent_accuracy", (("head", "severity"), ("window", "day")))] == day["accuracy"]["severity"]
    # No decision in the reference week: no PSI sample.
    assert not any(name == "triage_monitor_psi" for name, _ in found)
    assert found[("triage_monitor_psi_alert", ())] == 0.2


def test_psi_gauge_against_a_reference_that_has_decisions(store, monkeypatch):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    fill_today(store)
    settings = Settings(monitor_cache_s=0)  # reference: empty setting, so the store's first week, here this one
    found = samples(MonitorGauges(settings).render(store).decode())
    report = current_report(store, settings)
    assert found[("triage_monitor_psi", (("head", "category"), ("window", "day")))] == report["days"][-1]["psi"]["category"]
    assert report["days"][-1]["psi"]["category"] == 0.0  # the same decisions on both sides


def test_gauges_are_cached_for_monitor_cache_s(store):
    clock = [100.0]
    gauges = MonitorGauges(Settings(monitor_cache_s=60), clock=lambda: clock[0])
    assert samples(gauges.render(store).decode())[("triage_monitor_decisions", (("window", "day"),))] == 0
    fill_today(store)
    clock[0] += 59
    assert samples(gauges.render(store).decode())[("triage_monitor_decisions", (("window", "day"),))] == 0
    clock[0] += 1
    assert samples(gauges.render(store).decode())[("triage_monitor_decisions", (("window", "day"),))] == 5


def test_a_failing_store_leaves_the_gauges_out_but_metrics_answer():
    class BrokenStore:
        def first_decided_at(self):
            raise RuntimeError("database is down")

        def window(self, start, end):
            raise RuntimeError("database is down")

    assert MonitorGauges(Settings()).render(BrokenStore()) == b""


def test_gauges_in_multiprocess_mode(store, tmp_path, monkeypatch):
    # The service's own metrics then come from the workers' files only; the gauges still come from the store.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    fill_today(store)
    with TestClient(create_app(Settings(database_url="sqlite:///:memory:"), classifier=KeywordClassifier(),
                               store=store)) as client:
        text = client.get("/metrics").text
    assert samples(text)[("triage_monitor_decisions", (("window", "day"),))] == 5
