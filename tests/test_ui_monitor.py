"""GET /ui/monitor: the page's figures (data-figure / data-value and the text shown) are the report's, with its charts."""

from __future__ import annotations

import re
from datetime import date, timedelta

import pytest
from fastapi.testclient import TestClient

from helpdesk_triage.api.app import create_app
from helpdesk_triage.api.decision_store import open_store
from helpdesk_triage.api.monitor_source import local_today, store_report
from helpdesk_triage.evaluation.monitoring import figures
from helpdesk_triage.policy.keyword_rules import KeywordClassifier
from helpdesk_triage.policy.settings import Settings
from tests.monitor_store import fill_example

FIGURE = re.compile(r'data-figure="([^"]+)" data-value="([^"]*)"')
SHOWN = re.compile(r'<(?:td|span|strong) data-figure="([^"]+)" data-value="[^"]*"[^>]*>([^<]*)<')


@pytest.fixture(scope="module")
def example():
    store = open_store("sqlite:///:memory:")
    fill_example(store)
    settings = Settings(database_url="sqlite:///:memory:")
    with TestClient(create_app(settings, classifier=KeywordClassifier(), store=store)) as client:
        yield client, store, settings
    store.close()


def test_page_figures_equal_the_report(example):
    client, store, settings = example
    response = client.get("/ui/monitor", params={"since": "2026-11-02", "until": "2026-11-15"})
    assert response.status_code == 200
    page = response.text
    named = figures(store_report(store, settings, date(2026, 11, 2), date(2026, 11, 15)))
    on_page = FIGURE.findall(page)
    assert len({name for name, _ in on_page}) > 100
    for name, value in on_page:
        expected = named[name]
        assert value == ("" if expected is None else str(expected)), name
    shown = dict(SHOWN.findall(page))
    assert shown["total.volume"] == "17" and shown["weeks.2026-W46.volume"] == "9"
    assert shown["total.accuracy.category"] == "0.750" and shown["weeks.2026-W45.accuracy.severity"] == "0.500"
    assert shown["total.accuracy_low.category"] == f"{named['total.accuracy_low.category']:.3f}"
    assert shown["total.psi.severity"] == f"{named['total.psi.severity']:.3f}"
    assert shown["weeks.2026-W46.accuracy.sentiment"] == "0.000" and shown["days.2026-11-04.review_rate"] == "—"
    for name in ("total.review_rate", "total.degraded_rate", "weeks.2026-W45.psi.category"):
        assert name in shown


def test_page_has_the_server_drawn_charts(example):
    client, _, _ = example
    page = client.get("/ui/monitor", params={"since": "2026-11-02", "until": "2026-11-15"}).text
    assert page.count("<svg") == 6 and "<script" not in page  # volume, accuracy, drift, a label mix per head
    assert re.search(r'<rect [^>]*fill="#c62828" data-figure="weeks.2026-W46.psi.category"', page)  # flagged: red
    assert re.search(r'<rect [^>]*fill="#1f5fbf" data-figure="weeks.2026-W45.psi.category"', page)
    assert 'class="alert"' in page and "警戒线 0.2" in page
    assert page.count('class="whisker"') == 3
    assert 'data-figure="days.2026-11-10.volume" data-value="8"' in page
    assert 'data-figure="weeks.2026-W46.label_share.category.D" data-value="0.444"' in page


def test_default_period_is_the_last_28_days_and_bad_dates_are_refused(example):
    client, _, _ = example
    response = client.get("/ui/monitor")
    today = local_today("Asia/Shanghai")
    days = sorted(set(re.findall(r'data-figure="days\.(\d{4}-\d\d-\d\d)\.', response.text)))
    assert response.status_code == 200
    assert days[0] == (today - timedelta(days=27)).isoformat() and days[-1] == today.isoformat() and len(days) == 28
    empty = client.get("/ui/monitor", params={"since": "2027-01-01", "until": "2027-01-03"})
    assert "该时段没有分诊记录" in empty.text and 'data-figure="total.volume" data-value="0"' in empty.text
    assert client.get("/ui/monitor", params={"since": "2026-11-15", "until": "2026-11-02"}).status_code == 422
    assert client.get("/ui/monitor", params={"since": "soon"}).status_code == 422
