"""The review queue page, its actions, page access (sessions, CSRF) and the demo data."""

import json
import logging
import re
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from helpdesk_triage.api.app import create_app
from helpdesk_triage.api.decision_store import open_store
from helpdesk_triage.api.demo_data import fill_demo_store
from helpdesk_triage.api.schemas import TriageRequest
from helpdesk_triage.api.triage_service import TriageService
from helpdesk_triage.api.ui_pages import make_session, read_session
from helpdesk_triage.policy.keyword_rules import KeywordClassifier
from helpdesk_triage.policy.settings import Settings

KEY = "page-key-" + "x" * 16
NOW = datetime.now(UTC).replace(microsecond=0)


def _settings(**overrides) -> Settings:
    return Settings(**{"database_url": "sqlite:///:memory:", **overrides})


def _triage(service: TriageService, id: str, text: str, hours_ago: float) -> None:
    at = NOW - timedelta(hours=hours_ago)
    service.triage_many([TriageRequest(id=id, text=text, received_at=at.isoformat())], now=at)


@pytest.fixture
def store():
    store = open_store("sqlite:///:memory:")
    yield store
    store.close()


def _client(store, **overrides) -> TestClient:
    app = create_app(_settings(**overrides), classifier=KeywordClassifier(), store=store)
    return TestClient(app, base_url="http://testserver")


@pytest.fixture
def queue(store):
    """A queue of three messages (the keyword rules answer degraded: every one needs a person)."""
    with _client(store) as client:
        service = client.app.state.service
        _triage(service, "t-emergency", "吃了你们的零食孩子过敏住院了", hours_ago=3)  # critical: due 15 min after, overdue
        _triage(service, "t-order", "快递五天了还没到，麻烦查一下", hours_ago=0.1)
        _triage(service, "t-question", "这款有XL码吗", hours_ago=0.05)
        yield client


def _ids(html: str) -> list[str]:
    return re.findall(r'<article class="item[^"]*" data-id="([^"]+)"', html)


def _csrf(client: TestClient) -> dict:
    return {"X-CSRF-Token": client.cookies.get("triage_csrf")}


def test_queue_lists_open_reviews_soonest_due_first_with_overdue_in_red(queue):
    page = queue.get("/ui/review")
    assert page.status_code == 200
    ids = _ids(page.text)
    assert ids[0] == "t-emergency" and set(ids) == {"t-emergency", "t-order", "t-question"}
    emergency = page.text.split('data-id="t-emergency"')[1].split("</article>")[0]
    assert 'class="due overdue"' in emergency and "已超时" in emergency
    assert "吃了你们的零食孩子过敏住院了" in emergency and "紧急处理组" in emergency


def test_filters_keep_matching_items_and_count_each_value(queue):
    page = queue.get("/ui/review", params={"category": "D"})
    assert _ids(page.text) == ["t-emergency"]
    # Counts of another filter are over the items the chosen filters keep; the category counts ignore the category filter.
    assert re.search(r'<option value="critical" data-count="1"', page.text)
    categories = dict(re.findall(r'<option value="([ABCD])" data-count="(\d+)"', page.text))
    assert sum(map(int, categories.values())) == 3 and categories["D"] == "1"
    assert _ids(queue.get("/ui/review", params={"reason": "degraded", "severity": "low"}).text) == ["t-question"]
    assert _ids(queue.get("/ui/review", params={"date": "1999-01-01"}).text) == []


def test_a_confirmation_and_a_correction_are_stored_with_the_agent_and_leave_the_queue(queue, store, caplog):
    queue.get("/ui/review")
    answered = store.get_decision("t-order").answer["labels"]
    with caplog.at_level(logging.INFO, logger="triage.ui"):
        confirmed = queue.post("/ui/api/review", json={"id": "t-order", **answered, "agent": "王芳"}, headers=_csrf(queue))
    assert confirmed.status_code == 201 and confirmed.json()["action"] == "confirmed" and confirmed.json()["changed"] == []
    corrected = queue.post("/ui/api/review", headers=_csrf(queue), json={
        "id": "t-emergency", "category": "D", "severity": "critical", "sentiment": "negative", "agent": "李强"})
    body = corrected.json()
    assert body["action"] == ("corrected" if body["changed"] else "confirmed")
    verdicts = {row["id"]: row["verdicts"] for row in store.window("1970", "9999")}
    assert verdicts["t-order"] == answered
    assert verdicts["t-emergency"] == {"category": "D", "severity": "critical", "sentiment": "negative"}
    examples = {e["id"]: e for e in store.corrected_examples()}
    assert examples["t-order"]["agent"] == "王芳" and examples["t-emergency"]["agent"] == "李强"
    assert _ids(queue.get("/ui/review").text) == ["t-question"]
    logged = [json.dumps(r.__dict__.get("fields", {}), ensure_ascii=False) for r in caplog.records if r.msg == "ui_review"]
    assert logged and all("快递" not in line for line in logged) and '"agent": "王芳"' in logged[0]


GOOD = {"id": "t-order", "category": "B", "severity": "low", "sentiment": "neutral", "agent": "a"}


@pytest.mark.parametrize("csrf, origin, body, status, code", [
    ("missing", None, GOOD, 403, "csrf_failed"),
    ("wrong", None, GOOD, 403, "csrf_failed"),
    ("ok", "https://evil.example", GOOD, 403, "csrf_failed"),
    ("ok", None, {**GOOD, "agent": None}, 422, "agent_required"),
    ("ok", None, {**GOOD, "id": "nope"}, 404, "unknown_id"),
    ("ok", None, {**GOOD, "category": "E"}, 422, "invalid_label"),
    ("ok", None, {k: v for k, v in GOOD.items() if k != "severity"}, 422, "invalid_request"),
])
def test_a_bad_action_is_refused_with_a_reason_and_stores_nothing(queue, store, csrf, origin, body, status, code):
    queue.get("/ui/review")
    headers = {"ok": _csrf(queue), "wrong": {"X-CSRF-Token": "wrong"}, "missing": {}}[csrf]
    if origin:
        headers["Origin"] = origin
    answer = queue.post("/ui/api/review", json=body, headers=headers)
    assert answer.status_code == status
    assert answer.json()["error"]["code"] == code
    assert store.counts()["feedback"] == 0


def test_with_keys_on_pages_ask_for_a_key_once_and_keep_an_httponly_strict_session(store):
    with _client(store, api_keys=KEY) as client:
        _triage(client.app.state.service, "t-1", "快递五天了还没到", hours_ago=0.1)
        first = client.get("/ui/review?category=B", follow_redirects=False)
        assert first.status_code == 303 and first.headers["location"] == "/ui/login?next=%2Fui%2Freview%3Fcategory%3DB"
        monitor = client.get("/ui/monitor", follow_redirects=False)
        assert monitor.status_code == 303 and monitor.headers["location"] == "/ui/login?next=%2Fui%2Fmonitor"
        assert client.get("/ui/login").status_code == 200
        wrong = client.post("/ui/api/login", json={"key": "wrong", "agent": "王芳"}, headers=_csrf(client))
        assert wrong.status_code == 401
        no_csrf = client.post("/ui/api/login", json={"key": KEY, "agent": "王芳"})
        assert no_csrf.status_code == 403
        signed_in = client.post("/ui/api/login", json={"key": KEY, "agent": "王芳"}, headers=_csrf(client))
        assert signed_in.status_code == 204
        cookie = signed_in.headers["set-cookie"]
        assert "triage_session=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
        page = client.get("/ui/review")
        assert page.status_code == 200 and "王芳" in page.text and _ids(page.text) == ["t-1"]
        # The session's agent is recorded, whatever the body says.
        review = client.post("/ui/api/review", headers=_csrf(client), json={
            "id": "t-1", "category": "B", "severity": "medium", "sentiment": "negative", "agent": "someone else"})
        assert review.status_code == 201
        assert next(store.corrected_examples())["agent"] == "王芳"
        # The bearer key still guards the API; a page session is not an API key.
        assert client.post("/v1/triage", json={"text": "你好"}).status_code == 401
        assert client.get("/ui/monitor").status_code == 200
        client.cookies.delete("triage_session", path="/ui")
        assert client.post("/ui/api/review", headers=_csrf(client), json={
            "id": "t-1", "category": "B", "severity": "medium", "sentiment": "negative"}).status_code == 401


def test_a_session_is_bound_to_its_key_and_expires():
    value = make_session(KEY, "张敏", hours=1, now=1_000_000)
    assert read_session(value, ["other", KEY], now=1_000_000) == "张敏"
    assert read_session(value, ["other"], now=1_000_000) is None  # a removed key ends its sessions
    assert read_session(value, [KEY], now=1_000_000 + 3601) is None
    expires, agent, signature = value.split(".")
    assert read_session(f"{int(expires) + 999}.{agent}.{signature}", [KEY], now=1_000_000) is None
    assert read_session("garbage", [KEY]) is None and read_session(None, [KEY]) is None


def test_login_never_redirects_to_another_site(store):
    with _client(store, api_keys=KEY) as client:
        page = client.get("/ui/login", params={"next": "//evil.example/x"})
        assert 'data-next="/ui/review"' in page.text
    with _client(store) as client:  # keys off: no sign-in, straight to the page
        assert client.get("/ui/login", params={"next": "https://evil.example"}, follow_redirects=False).headers["location"] == "/ui/review"


def test_demo_fills_a_fresh_store_with_reviews_and_an_open_queue_and_refuses_a_used_one(store):
    service = TriageService(_settings(), store, classifier=KeywordClassifier())
    summary = fill_demo_store(service, messages=60, seed=3, now=NOW)
    rows = store.window((NOW - timedelta(days=29)).isoformat(), (NOW + timedelta(days=1)).isoformat())
    assert summary.decisions == len(rows) == 60
    reviewed = [r for r in rows if r["verdicts"]]
    assert summary.reviews == len(reviewed) > 0 and summary.open_reviews == len(store.open_reviews(1000)) > 0
    recent = (NOW - timedelta(days=2)).isoformat()
    assert all(r["decided_at"] < recent for r in reviewed)  # the last two days stay open for the queue
    with pytest.raises(ValueError, match="fresh store"):
        fill_demo_store(service, messages=5)
    other = open_store("sqlite:///:memory:")
    try:
        again = fill_demo_store(TriageService(_settings(), other, classifier=KeywordClassifier()), messages=60, seed=3, now=NOW)
        assert again == summary
    finally:
        other.close()


def _gauge(metrics_text: str, name: str) -> float:
    [line] = [line for line in metrics_text.splitlines() if line.startswith(name + " ")]
    return float(line.split()[1])


def test_the_review_backlog_and_its_overdue_part_are_gauges_on_metrics(store):
    with _client(store, monitor_cache_s=0) as client:
        service = client.app.state.service
        _triage(service, "t-emergency", "吃了你们的零食孩子过敏住院了", hours_ago=3)  # due 15 min after: overdue
        _triage(service, "t-question", "这款有XL码吗", hours_ago=0.01)
        text = client.get("/metrics").text
        assert _gauge(text, "triage_review_queue_open") == 2 and _gauge(text, "triage_review_queue_overdue") == 1
        client.get("/ui/review")
        client.post("/ui/api/review", headers=_csrf(client), json={
            "id": "t-emergency", "category": "D", "severity": "critical", "sentiment": "negative", "agent": "王芳"})
        text = client.get("/metrics").text
        assert _gauge(text, "triage_review_queue_open") == 1 and _gauge(text, "triage_review_queue_overdue") == 0


def test_page_posts_take_json_only_and_are_counted_under_their_route(queue):
    queue.get("/ui/review")
    form = queue.post("/ui/api/review", content=b"id=t-order&category=D", headers={
        **_csrf(queue), "Content-Type": "application/x-www-form-urlencoded"})
    assert form.status_code == 415 and form.json()["error"]["code"] == "unsupported_media_type"
    metrics = queue.get("/metrics").text
    assert 'triage_requests_total{route="/ui/review",status="200"}' in metrics
    assert 'triage_requests_total{route="/ui/api/review",status="415"}' in metrics
