"""Contract tests of the HTTP API, through a real HTTP client against uvicorn serving on a socket."""

import io
import json
import logging
import os
import sqlite3
import threading
import time

import httpx
import pytest
from pydantic import ValidationError

from helpdesk_triage.api.app import create_app
from helpdesk_triage.api.decision_store import open_store
from helpdesk_triage.api.request_log import JsonFormatter
from helpdesk_triage.api.schemas import TriageRequest
from helpdesk_triage.policy.settings import Settings
from helpdesk_triage.policy.sla import parse_timestamp
from helpdesk_triage.policy.keyword_rules import KeywordClassifier
from helpdesk_triage.policy.labels import HEADS
from helpdesk_triage.policy.prediction import HeadPrediction, TextPrediction, one_label_distribution
from tests.api_test_server import serve_in_thread


KEY = "k" * 24
OTHER_KEY = "z" * 32


def settings(**overrides) -> Settings:
    return Settings(**{"database_url": "sqlite:///:memory:", **overrides})


@pytest.fixture(scope="module")
def store():
    store = open_store("sqlite:///:memory:")
    yield store
    store.close()


@pytest.fixture(scope="module")
def http(store):
    # The keyword rules make these contract tests independent of what the trained model predicts.
    app = create_app(settings(max_body_bytes=4096, max_text_chars=300, max_batch_items=5, max_batch_body_bytes=16384),
                     classifier=KeywordClassifier(), store=store)
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def model_http(tmp_path_factory):
    app = create_app(settings(database_url=f"sqlite:///{tmp_path_factory.mktemp('db')}/t.db"))
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        assert app.state.service.wait_ready(120)
        yield client


class BlockingClassifier:
    """The keyword rules once ``release`` is set; ``started`` is set when a prediction begins."""

    version = "blocking-test-1"

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.calls = 0
        self.rules = KeywordClassifier()

    def predict(self, texts):
        self.calls += 1
        self.started.set()
        self.release.wait(30)
        return self.rules.predict(texts)


class CountingClassifier:
    version = "counting-test-1"

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[list[str]] = []
        self.fail = fail
        self.rules = KeywordClassifier()

    def predict(self, texts):
        self.calls.append(list(texts))
        if self.fail:
            raise RuntimeError("GPU on fire")
        # the rules' labels with a confident distribution: the decision policy then keeps them (expected cost)
        return [TextPrediction(**{h: one_label_distribution(h, p.head(h).label, 0.9) for h in HEADS})
                for p in self.rules.predict(texts)]


def assert_error(response: httpx.Response, status: int, code: str, field: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) <= {"code", "message", "field"}
    assert error["code"] == code and error["message"]
    if field is not None:
        assert error["field"] == field
    return error


# --------------------------------------------------------------------------------------------
# POST /v1/triage
# --------------------------------------------------------------------------------------------


def test_default_app_serves_the_embedded_model(model_http, embedded_version):
    ready = model_http.get("/readyz").json()
    assert ready["degraded"] is False and ready["storage"] is True
    assert ready["model_version"] == embedded_version
    body = model_http.post("/v1/triage", json={"text": "吃了你们的零食孩子过敏住院了，我要投诉到12315", "id": "m-1"}).json()
    assert body["degraded"] is False
    assert body["category"]["label"] == "D"
    assert abs(sum(body["category"]["scores"].values()) - 1) < 1e-3
    assert body["category"]["confidence"] == max(body["category"]["scores"].values())
    shipping = model_http.post("/v1/triage", json={"text": "我的快递到哪了，三天了还没到"}).json()
    assert shipping["category"]["label"] == "B"
    assert shipping["queue"] == "orders"
    assert shipping["truncated"] is False


def test_text_over_the_model_token_window_is_flagged_truncated(model_http):
    # 300 characters: under max_text_chars (2000) but far over the 128-token window of the model.
    body = model_http.post("/v1/triage", json={"text": "我想问一下这个商品什么时候有货，" * 19}).json()
    assert body["truncated"] is True and body["degraded"] is False


def test_triage_returns_the_full_contract(http):
    r = http.post("/v1/triage", json={
        "text": "快递五天了还没到，再不到就投诉你们！",
        "id": "t-1",
        "received_at": "2026-03-10T10:00:00+08:00",
        "channel": "chat",
    })
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"id", "model_version", "category", "severity", "sentiment", "needs_human_review",
                         "review_reasons", "sla", "queue", "reply", "truncated", "degraded"}
    assert body["id"] == "t-1"
    assert body["category"]["label"] == "D" and body["category"]["name"] == "投诉不满"
    assert set(body["category"]["scores"]) == {"A", "B", "C", "D"}
    assert abs(sum(body["severity"]["scores"].values()) - 1) < 1e-3
    assert body["sentiment"]["label"] == "negative"
    assert body["queue"] == "escalation"
    assert body["sla"]["rule"] == "category:D" and body["sla"]["escalate_immediately"] is True
    assert body["sla"]["timezone"] == "Asia/Shanghai"
    assert parse_timestamp(body["sla"]["first_response_due"]) > parse_timestamp("2026-03-10T10:00:00+08:00")
    assert body["reply"]["template_id"].startswith("D.") and body["reply"]["text"]
    assert body["degraded"] is True and body["needs_human_review"] is True
    assert any(reason.startswith("degraded:") for reason in body["review_reasons"])
    assert body["truncated"] is False


def test_order_id_and_name_fill_the_reply(http):
    body = http.post("/v1/triage", json={"text": "我的快递到哪了", "order_id": "ORDER778899", "customer_name": "王女士"}).json()
    assert body["category"]["label"] == "B"
    assert "ORDER778899" in body["reply"]["text"]
    assert "{" not in body["reply"]["text"]


def test_critical_goes_to_emergency_queue(http):
    body = http.post("/v1/triage", json={"text": "孩子吃了你们的饼干过敏住院了", "received_at": "2026-03-10T23:50:00+08:00"}).json()
    assert body["severity"]["label"] == "critical"
    assert body["queue"] == "emergency"
    assert body["sla"]["first_response_due"] == "2026-03-11T00:05:00+08:00"
    assert "critical_severity" in body["review_reasons"]


class ConfidentHighClassifier:
    """Always C / high / negative with high confidence: a model that misses a critical case."""

    version = "confident-high-1"

    def predict(self, texts):
        return [TextPrediction(category=one_label_distribution("category", "C", 0.95),
                               severity=one_label_distribution("severity", "high", 0.95),
                               sentiment=one_label_distribution("sentiment", "negative", 0.95)) for _ in texts]


def test_a_critical_cue_the_model_calls_lower_goes_to_human_review():
    from helpdesk_triage.api.triage_service import TriageService

    decisions = open_store("sqlite:///:memory:")
    service = TriageService(settings(), decisions, classifier=ConfidentHighClassifier())
    try:
        flagged, plain = service.triage_many([TriageRequest(text="用了你们的面霜脸过敏了，红肿一片"),
                                              TriageRequest(text="杯子收到就裂了一条缝")])
    finally:
        service.close()
        decisions.close()
    assert flagged.severity.label == "high"  # the label is the model's; only the review flag changes
    assert flagged.needs_human_review and flagged.review_reasons == ["critical_cue: 过敏"]
    assert not plain.needs_human_review and plain.review_reasons == []


def test_traditional_and_full_width_text_is_normalised(http):
    body = http.post("/v1/triage", json={"text": "收到的杯子碎了，質量太差"}).json()
    assert body["category"]["label"] == "C"


def test_long_text_is_truncated_and_flagged(http):
    assert http.post("/v1/triage", json={"text": "请问有货吗" * 100}).json()["truncated"] is True
    assert http.post("/v1/triage", json={"text": "请问有货吗" * 10}).json()["truncated"] is False


def test_id_generated_when_absent(http):
    a = http.post("/v1/triage", json={"text": "有货吗"}).json()["id"]
    b = http.post("/v1/triage", json={"text": "有货吗"}).json()["id"]
    assert a and b and a != b


@pytest.mark.parametrize(
    "payload, code, field",
    [
        ({"text": "   \u200b\n\t "}, "empty_text", "text"),
        ({"text": ""}, "empty_text", "text"),
        ({"text": "\x00\x01\x7f"}, "empty_text", "text"),
        ({"text": 123}, "invalid_request", "text"),
        ({"text": None}, "invalid_request", "text"),
        ({"text": ["有货吗"]}, "invalid_request", "text"),
        ({}, "invalid_request", "text"),
        ({"text": "有货吗", "received_at": "2026-03-10T10:00:00"}, "invalid_timestamp", "received_at"),
        ({"text": "有货吗", "received_at": "tomorrow"}, "invalid_timestamp", "received_at"),
        ({"text": "有货吗", "received_at": "9999-12-31T23:59:59+00:00"}, "invalid_timestamp", "received_at"),
        ({"text": "有货吗", "received_at": 1700000000}, "invalid_request", "received_at"),
        ({"text": "有货吗", "recieved_at": "2026-03-10T10:00:00Z"}, "invalid_request", "recieved_at"),
        ({"text": "有货吗", "order_id": "x" * 65}, "invalid_slot", "order_id"),
        ({"text": "有货吗", "id": ""}, "invalid_request", "id"),
        ({"text": "有货吗", "id": "a\x00b"}, "invalid_request", "id"),
        ({"text": "有货吗", "id": "a\nb"}, "invalid_request", "id"),
    ],
)
def test_bad_requests_get_422_with_stable_shape(http, payload, code, field):
    assert_error(http.post("/v1/triage", json=payload), 422, code, field)


def test_malformed_json_is_422(http):
    r = http.post("/v1/triage", content=b'{"text": "abc"', headers={"content-type": "application/json"})
    assert_error(r, 422, "malformed_json")
    error = r.json()["error"]
    assert "field" not in error  # pydantic's location is a character offset, not a field
    assert "at character 14" in error["message"]


def test_body_over_limit_is_413(http):
    r = http.post("/v1/triage", content=json.dumps({"text": "好" * 5000}).encode(), headers={"content-type": "application/json"})
    assert_error(r, 413, "body_too_large")


def test_unknown_route_and_wrong_method_use_error_shape(http):
    assert_error(http.get("/v2/nothing"), 404, "not_found")
    r = http.get("/v1/triage")
    assert_error(r, 405, "method_not_allowed")
    assert r.headers["allow"] == "POST"


# --------------------------------------------------------------------------------------------
# Storage of decisions
# --------------------------------------------------------------------------------------------


def test_every_decision_is_stored_with_masked_text_only(http, store):
    r = http.post("/v1/triage", json={"text": "我的手机13812345678，快递到哪了", "id": "store-1",
                                      "received_at": "2026-03-10T10:00:00+08:00"})
    body = r.json()
    record = store.get_decision("store-1")
    assert record is not None
    assert "13812345678" not in record.masked_text and "[手机号]" in record.masked_text
    assert record.raw_text is None
    assert record.labels == {h: body[h]["label"] for h in ("category", "severity", "sentiment")}
    assert record.scores["category"]["B"] == pytest.approx(body["category"]["scores"]["B"], abs=1e-4)
    assert record.model_version == body["model_version"] and record.degraded is True
    assert parse_timestamp(record.received_at) == parse_timestamp("2026-03-10T10:00:00+08:00")
    assert parse_timestamp(record.decided_at).tzinfo is not None


def test_raw_text_is_stored_only_when_asked():
    store = open_store("sqlite:///:memory:")
    with serve_in_thread(create_app(settings(store_raw_text=True), classifier=KeywordClassifier(), store=store)) as url:
        httpx.post(f"{url}/v1/triage", json={"text": "我的手机13812345678", "id": "raw-1"})
    assert store.get_decision("raw-1").raw_text == "我的手机13812345678"
    store.close()


class FailingStore:
    """A store whose writes fail, as a full disk or a lost database connection would."""

    def __init__(self) -> None:
        self.inner = open_store("sqlite:///:memory:")

    def record_decisions(self, records):
        raise OSError("disk full")

    def record_feedback(self, record):
        raise OSError("disk full")

    def ping(self):
        return False

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_a_failed_store_write_is_503_never_a_success():
    app = create_app(settings(), classifier=KeywordClassifier(), store=FailingStore())
    with serve_in_thread(app) as url, httpx.Client(base_url=url) as client:
        r = client.post("/v1/triage", json={"text": "有货吗"})
        assert_error(r, 503, "storage_unavailable")
        assert r.headers["retry-after"]
        assert_error(client.post("/v1/triage/batch", json={"items": [{"text": "有货吗"}]}), 503, "storage_unavailable")
        assert_error(client.post("/v1/feedback", json={"id": "x", "category": "A"}), 503, "storage_unavailable")
        assert_error(client.get("/readyz"), 503, "storage_unavailable")


# --------------------------------------------------------------------------------------------
# POST /v1/triage/batch
# --------------------------------------------------------------------------------------------


def test_batch_answers_in_order_with_one_model_call_and_stores_all():
    classifier, store = CountingClassifier(), open_store("sqlite:///:memory:")
    items = [{"text": "我的快递到哪了", "id": "b-1"}, {"text": "收到的杯子碎了"}, {"text": "再不发货我就投诉", "id": "b-3"}]
    with serve_in_thread(create_app(settings(), classifier=classifier, store=store)) as url:
        r = httpx.post(f"{url}/v1/triage/batch", json={"items": items})
    assert r.status_code == 200, r.text
    results = r.json()["items"]
    assert [x["category"]["label"] for x in results] == ["B", "C", "D"]
    assert results[0]["id"] == "b-1" and results[2]["id"] == "b-3" and results[1]["id"]
    assert len(classifier.calls) == 1 and len(classifier.calls[0]) == 3
    assert store.counts()["decisions"] == 3
    assert store.get_decision("b-3").labels["category"] == "D"
    store.close()


def test_batch_with_an_invalid_item_is_422_and_stores_nothing():
    classifier, store = CountingClassifier(), open_store("sqlite:///:memory:")
    app = create_app(settings(), classifier=classifier, store=store)
    with serve_in_thread(app) as url, httpx.Client(base_url=url) as client:
        r = client.post("/v1/triage/batch", json={"items": [{"text": "有货吗"}, {"text": "ok"}, {"text": "  "}]})
        assert_error(r, 422, "empty_text", "items.2.text")
        r = client.post("/v1/triage/batch", json={"items": [{"text": "有货吗"}, {"text": 5}]})
        assert_error(r, 422, "invalid_request", "items.1.text")
        r = client.post("/v1/triage/batch", json={"items": [{"text": "有货吗", "received_at": "noon"}]})
        assert_error(r, 422, "invalid_timestamp", "items.0.received_at")
        assert_error(client.post("/v1/triage/batch", json={"items": []}), 422, "invalid_request", "items")
        assert_error(client.post("/v1/triage/batch", json=[{"text": "x"}]), 422, "invalid_request")
    assert classifier.calls == [] and store.counts()["decisions"] == 0
    store.close()


def test_batch_over_the_item_limit_is_413(http):
    r = http.post("/v1/triage/batch", json={"items": [{"text": "有货吗"}] * 6})
    error = assert_error(r, 413, "too_many_items", "items")
    assert "5" in error["message"]
    # The batch route has its own, larger body limit: 5 items of 1,000 characters pass (over 4 KiB).
    r = http.post("/v1/triage/batch", json={"items": [{"text": "请问有货吗" * 200}] * 5})
    assert r.status_code == 200, r.text
    assert_error(http.post("/v1/triage/batch", json={"items": [{"text": "好" * 6000}]}), 413, "body_too_large")


# --------------------------------------------------------------------------------------------
# POST /v1/feedback
# --------------------------------------------------------------------------------------------


def test_feedback_is_stored_and_acknowledged(http, store):
    http.post("/v1/triage", json={"text": "快递五天了还没到", "id": "fb-1"})
    r = http.post("/v1/feedback", json={"id": "fb-1", "category": "D", "severity": "high", "agent": "王五", "note": "客户很生气"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["id"] == "fb-1" and isinstance(body["feedback_id"], int)
    assert body["applied"] == {"category": "D", "severity": "high"}
    example = next(e for e in store.corrected_examples() if e["id"] == "fb-1")
    assert example["labels"]["category"] == "D" and example["labels"]["severity"] == "high"
    assert example["agent"] == "王五" and example["note"] == "客户很生气"
    second = http.post("/v1/feedback", json={"id": "fb-1", "sentiment": "negative"}).json()
    assert second["feedback_id"] > body["feedback_id"]


@pytest.mark.parametrize("store_raw_text", [False, True])
def test_feedback_agent_and_note_are_stored_masked_unless_raw_text_is_stored(tmp_path, store_raw_text):
    database = tmp_path / "feedback.db"
    note, agent = "客户说手机13812345678，邮箱 li.lei@example.com", "wang.wu@example.com"
    app = create_app(settings(database_url=f"sqlite:///{database}", store_raw_text=store_raw_text),
                     classifier=KeywordClassifier())
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        client.post("/v1/triage", json={"text": "快递到哪了", "id": "fb-pii"})
        r = client.post("/v1/feedback", json={"id": "fb-pii", "category": "B", "agent": agent, "note": note})
        assert r.status_code == 201, r.text
    with sqlite3.connect(database) as db:
        stored = db.execute("SELECT agent, note FROM feedback").fetchall()
    if store_raw_text:
        assert stored == [(agent, note)]
    else:
        assert stored == [("[邮箱]", "客户说手机[手机号]，邮箱 [邮箱]")]


def test_feedback_errors(http):
    http.post("/v1/triage", json={"text": "有货吗", "id": "fb-2"})
    assert_error(http.post("/v1/feedback", json={"id": "never-triaged", "category": "A"}), 404, "unknown_id", "id")
    assert_error(http.post("/v1/feedback", json={"id": "fb-2"}), 422, "no_correction")
    assert_error(http.post("/v1/feedback", json={"id": "fb-2", "agent": "x"}), 422, "no_correction")
    error = assert_error(http.post("/v1/feedback", json={"id": "fb-2", "severity": "urgent"}), 422, "invalid_label", "severity")
    assert all(code in error["message"] for code in ("low", "medium", "high", "critical"))
    error = assert_error(http.post("/v1/feedback", json={"id": "fb-2", "category": "E"}), 422, "invalid_label", "category")
    assert all(code in error["message"] for code in "ABCD")
    assert_error(http.post("/v1/feedback", json={"category": "A"}), 422, "invalid_request", "id")
    assert_error(http.post("/v1/feedback", json={"id": 7, "category": "A"}), 422, "invalid_request", "id")
    assert_error(http.post("/v1/feedback", json={"id": "fb-2", "category": "A", "extra": 1}), 422, "invalid_request", "extra")
    assert_error(http.post("/v1/feedback", json={"id": "fb-2", "note": "x" * 2001, "category": "A"}), 422, "invalid_request", "note")


# --------------------------------------------------------------------------------------------
# Health, metrics, docs
# --------------------------------------------------------------------------------------------


def test_health_endpoints(http):
    assert http.get("/livez").json() == {"status": "ok"}
    ready = http.get("/readyz").json()
    assert ready["status"] == "ready" and ready["model_version"] == "keyword-rules-1"
    assert ready["degraded"] is True and "keyword rules" in ready["degraded_reason"]


def test_docs_and_openapi(http):
    assert http.get("/docs").status_code == 200
    spec = http.get("/openapi.json").json()
    assert {"/v1/triage", "/v1/triage/batch", "/v1/feedback", "/livez", "/readyz", "/metrics"} <= set(spec["paths"])
    assert spec["components"]["schemas"]["BatchRequest"]["properties"]["items"]["maxItems"] == 5
    assert spec["components"]["schemas"]["FeedbackRequest"]["properties"]["severity"]["anyOf"][0]["enum"] == [
        "low", "medium", "high", "critical"]


def metric(text: str, name: str, **labels) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        metric_name, _, label_part = series.partition("{")
        if metric_name == name and ",".join(sorted(label_part.rstrip("}").split(","))) == wanted:
            return float(value)
    return 0.0


def test_metrics_count_requests_labels_reviews_and_rejections():
    app = create_app(settings(max_body_bytes=2048), classifier=KeywordClassifier())
    with serve_in_thread(app) as url, httpx.Client(base_url=url) as client:
        client.post("/v1/triage", json={"text": "孩子吃了你们的饼干过敏住院了"})
        client.post("/v1/triage/batch", json={"items": [{"text": "我的快递到哪了"}, {"text": "有货吗"}]})
        client.post("/v1/triage", json={"text": "   "})
        client.post("/v1/triage", content=b"x" * 4096)
        client.get("/random/path/7f3a9")
        text = client.get("/metrics").text
    assert metric(text, "triage_requests_total", route="/v1/triage", status="200") == 1
    assert metric(text, "triage_requests_total", route="/v1/triage", status="422") == 1
    assert metric(text, "triage_requests_total", route="/v1/triage", status="413") == 1
    assert metric(text, "triage_requests_total", route="/v1/triage/batch", status="200") == 1
    assert metric(text, "triage_requests_total", route="unmatched", status="404") == 1
    assert "7f3a9" not in text
    assert metric(text, "triage_request_seconds_count", route="/v1/triage") == 3
    assert metric(text, "triage_triaged_total") == 3
    assert metric(text, "triage_review_total") == 3  # keyword rules: degraded, so always reviewed
    assert metric(text, "triage_predictions_total", head="severity", label="critical") == 1
    assert metric(text, "triage_predictions_total", head="category", label="B") == 1
    # degraded answers keep the rules' labels (argmax) and all go to a person
    assert metric(text, "triage_decisions_total", head="category", decided_by="argmax", routing="review") == 3
    assert metric(text, "triage_decisions_total", head="category", decided_by="argmax", routing="auto") == 0
    assert metric(text, "triage_degraded_total", reason="no_model") == 3
    assert metric(text, "triage_rejected_total", reason="too_large") == 1
    # the rules have no sub-case head: the critical allergy gets the emergency script, the others a cue's template
    assert metric(text, "triage_replies_total", kind="emergency", subcase_by="cue") == 1
    assert sum(metric(text, "triage_replies_total", kind="template", subcase_by=by) for by in ("cue", "fallback")) == 2
    assert metric(text, "triage_replies_total", kind="answer", subcase_by="model") == 0


def test_the_api_answer_says_per_head_what_decided_and_the_sla_follows_the_decision():
    # 80% low, 20% critical: the cost matrix (a missed emergency 20, a false alarm 3) decides critical
    severity = HeadPrediction("low", 0.8, {"low": 0.8, "medium": 0.0, "high": 0.0, "critical": 0.2})
    answer = TextPrediction(category=one_label_distribution("category", "C", 0.97), severity=severity,
                            sentiment=one_label_distribution("sentiment", "negative", 0.9))

    class TwentyPercentEmergency:
        version = "twenty-percent-1"

        def predict(self, texts):
            return [answer for _ in texts]

    with serve_in_thread(create_app(settings(), classifier=TwentyPercentEmergency())) as url:
        body = httpx.post(f"{url}/v1/triage", json={"text": "吃完以后肚子不舒服", "received_at": "2026-03-10T10:00:00+08:00"}).json()
        text = httpx.get(f"{url}/metrics").text
    assert body["severity"] | {"scores": None} == {"label": "critical", "name": body["severity"]["name"], "confidence": 0.2,
                                                   "scores": None, "decided_by": "cost", "routing": "review",
                                                   "most_probable": "low"}
    assert body["category"]["decided_by"] == "argmax" and body["category"]["routing"] == "auto"
    assert body["sla"]["rule"].startswith("emergency") and body["sla"]["first_response_due"] == "2026-03-10T10:15:00+08:00"
    assert body["needs_human_review"]
    assert metric(text, "triage_decisions_total", head="severity", decided_by="cost", routing="review") == 1


def test_two_apps_in_one_process_have_their_own_metrics():
    a, b = create_app(settings(), classifier=KeywordClassifier()), create_app(settings(), classifier=KeywordClassifier())
    assert a.state.metrics.registry is not b.state.metrics.registry


# --------------------------------------------------------------------------------------------
# Request ids and logs
# --------------------------------------------------------------------------------------------


def test_request_id_is_echoed_or_generated_on_every_response(http):
    assert http.get("/livez", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"] == "abc-123"
    for bad in ("x" * 129, b"caf\xc3\xa9"):
        rid = http.get("/livez", headers={"X-Request-ID": bad}).headers["x-request-id"]
        assert rid and rid != bad and len(rid) == 32
    generated = {http.get("/nowhere").headers["x-request-id"] for _ in range(2)}
    assert len(generated) == 2
    r = http.post("/v1/triage", content=b"x" * 5000, headers={"X-Request-ID": "big-1"})
    assert r.status_code == 413 and r.headers["x-request-id"] == "big-1"
    r = http.post("/v1/triage", json={"text": ""}, headers={"X-Request-ID": "empty-1"})
    assert r.status_code == 422 and r.headers["x-request-id"] == "empty-1"


@pytest.fixture()
def json_log():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("triage")
    old_level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    yield stream
    logger.removeHandler(handler)
    logger.setLevel(old_level)


def test_access_log_is_json_with_request_id_and_labels_and_no_text(http, json_log):
    secret = "我的手机13812345678，快递到哪了"
    r = http.post("/v1/triage", json={"text": secret, "id": "log-1"}, headers={"X-Request-ID": "log-req-1"})
    assert r.status_code == 200
    http.post("/v1/feedback", json={"id": "log-1", "category": "B", "note": "客户说手机13812345678"})
    lines = [json.loads(line) for line in json_log.getvalue().splitlines()]
    entry = next(e for e in lines if e.get("request_id") == "log-req-1" and e["event"] == "request")
    assert entry["route"] == "/v1/triage" and entry["status"] == 200 and entry["method"] == "POST"
    assert entry["latency_ms"] >= 0 and entry["level"] == "INFO" and entry["ts"]
    assert entry["model_version"] == "keyword-rules-1" and entry["degraded"] is True
    assert entry["labels"] == [{head: r.json()[head]["label"] for head in ("category", "severity", "sentiment")}]
    logged = json_log.getvalue()
    assert "13812345678" not in logged and "快递到哪了" not in logged and "[手机号]" not in logged
    assert "客户说" not in logged


# --------------------------------------------------------------------------------------------
# API keys
# --------------------------------------------------------------------------------------------


def test_api_keys_guard_v1_routes_only():
    app = create_app(settings(api_keys=[KEY, OTHER_KEY]), classifier=KeywordClassifier())
    with serve_in_thread(app) as url, httpx.Client(base_url=url) as client:
        for headers in ({}, {"Authorization": "Bearer wrong-key-wrong-key-wrong"}, {"Authorization": KEY},
                        {"Authorization": f"Basic {KEY}"}, {"Authorization": f"Bearer {KEY[:-1]}"}):
            r = client.post("/v1/triage", json={"text": "有货吗"}, headers=headers)
            assert_error(r, 401, "unauthorized")
            assert r.headers["www-authenticate"] == "Bearer"
        # Refused before the body is read: no 422 or 413 leaks to an unauthenticated client.
        assert_error(client.post("/v1/triage", content=b"{not json"), 401, "unauthorized")
        assert_error(client.post("/v1/feedback", json={"id": "x", "category": "A"}), 401, "unauthorized")
        assert_error(client.post("/v1/triage/batch", json={"items": []}), 401, "unauthorized")
        for key in (KEY, OTHER_KEY):
            r = client.post("/v1/triage", json={"text": "有货吗"}, headers={"Authorization": f"Bearer {key}"})
            assert r.status_code == 200, r.text
        for path in ("/livez", "/readyz", "/metrics", "/docs", "/openapi.json"):
            assert client.get(path).status_code == 200, path
        assert metric(client.get("/metrics").text, "triage_rejected_total", reason="unauthorized") == 8
        assert "bearer" in json.dumps(client.get("/openapi.json").json()["components"]["securitySchemes"]).lower()


def test_settings_read_api_keys_from_the_environment(monkeypatch):
    monkeypatch.setenv("TRIAGE_API_KEYS", f"{KEY}, {OTHER_KEY}")
    assert [k.get_secret_value() for k in Settings().api_keys] == [KEY, OTHER_KEY]
    monkeypatch.setenv("TRIAGE_API_KEYS", json.dumps([KEY]))
    assert [k.get_secret_value() for k in Settings().api_keys] == [KEY]
    monkeypatch.setenv("TRIAGE_API_KEYS", "")
    assert Settings().api_keys == []
    assert KEY not in repr(Settings(api_keys=[KEY]))
    monkeypatch.setenv("TRIAGE_API_KEYS", "short")
    with pytest.raises(ValidationError, match="shorter than 16"):
        Settings()


@pytest.mark.parametrize("name, value", [
    ("TRIAGE_MAX_BATCH_ITEMS", "0"), ("TRIAGE_MAX_BODY_BYTES", "10"), ("TRIAGE_REQUEST_TIMEOUT_MS", "-5"),
    ("TRIAGE_LOG_LEVEL", "LOUD"), ("TRIAGE_MAX_CONCURRENT_REQUESTS", "many"), ("TRIAGE_REVIEW_THRESHOLD", "2"),
])
def test_bad_settings_fail_at_start_naming_the_setting(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=name.removeprefix("TRIAGE_").lower()):
        Settings()


# --------------------------------------------------------------------------------------------
# Readiness, overload, time budget, model failure
# --------------------------------------------------------------------------------------------


def test_not_ready_until_the_model_is_loaded(monkeypatch):
    from helpdesk_triage.api import triage_service

    release = threading.Event()

    def slow_load(model_dir, runtime, cache_dir):
        release.wait(30)
        return KeywordClassifier(), True

    monkeypatch.setattr(triage_service, "load_classifier", slow_load)
    with serve_in_thread(create_app(settings())) as url, httpx.Client(base_url=url) as client:
        assert client.get("/livez").status_code == 200
        assert_error(client.get("/readyz"), 503, "not_ready")
        r = client.post("/v1/triage", json={"text": "有货吗"})
        assert_error(r, 503, "not_ready")
        assert r.headers["retry-after"] == "1"
        assert_error(client.post("/v1/triage/batch", json={"items": [{"text": "有货吗"}]}), 503, "not_ready")
        release.set()
        wait_until_ready(client)
        ready = client.get("/readyz").json()
        assert ready["degraded"] is True and ready["degraded_reason"] == "no model found"
        assert client.post("/v1/triage", json={"text": "有货吗"}).json()["degraded"] is True


def wait_until_ready(client: httpx.Client, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, "never became ready"
        time.sleep(0.01)


def test_a_model_that_fails_to_load_leaves_the_keyword_rules_serving(monkeypatch):
    from helpdesk_triage.api import triage_service

    def broken_load(model_dir, runtime, cache_dir):
        raise OSError("weights missing")

    monkeypatch.setattr(triage_service, "load_classifier", broken_load)
    app = create_app(settings())
    with serve_in_thread(app) as url, httpx.Client(base_url=url) as client:
        assert app.state.service.wait_ready(10)
        ready = client.get("/readyz").json()
        assert ready["status"] == "ready" and ready["degraded"] is True
        assert ready["degraded_reason"] == "the model failed to load (OSError)"
        body = client.post("/v1/triage", json={"text": "收到的杯子碎了"}).json()
        assert body["degraded"] is True and body["category"]["label"] == "C"
        assert "the model failed to load (OSError)" in body["review_reasons"][0]


def test_overload_is_503_with_retry_after_not_a_queue():
    classifier = BlockingClassifier()
    app = create_app(settings(max_concurrent_requests=1, max_queued_requests=1, retry_after_s=2), classifier=classifier)
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        results = []
        threads = [threading.Thread(target=lambda: results.append(client.post("/v1/triage", json={"text": "有货吗"})))
                   for _ in range(2)]
        for t in threads:
            t.start()
        assert classifier.started.wait(10)
        while app.state.admission.requests_in_flight < 2:  # the second one waits for the model
            time.sleep(0.01)
        r = client.post("/v1/triage", json={"text": "有货吗"})
        assert_error(r, 503, "overloaded")
        assert r.headers["retry-after"] == "2"
        assert_error(client.post("/v1/triage/batch", json={"items": [{"text": "有货吗"}]}), 503, "overloaded")
        assert client.get("/livez").status_code == 200  # health and feedback are not model-bound
        classifier.release.set()
        for t in threads:
            t.join(30)
        assert [r.status_code for r in results] == [200, 200]
        assert all(r.json()["degraded"] is False for r in results)
        # The slot is released after the response is sent: wait for it instead of racing it.
        deadline = time.monotonic() + 5
        while app.state.admission.requests_in_flight and time.monotonic() < deadline:
            time.sleep(0.01)
        assert app.state.admission.requests_in_flight == 0
        assert metric(client.get("/metrics").text, "triage_rejected_total", reason="overloaded") == 2


def test_a_batch_weighs_its_texts_and_what_does_not_fit_is_refused_before_any_work():
    classifier = BlockingClassifier()
    app = create_app(settings(max_queued_texts=64, retry_after_s=1), classifier=classifier)
    batch = {"items": [{"text": f"第{i}个问题：有货吗"} for i in range(64)]}
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        first = []
        thread = threading.Thread(target=lambda: first.append(client.post("/v1/triage/batch", json=batch)))
        thread.start()
        assert classifier.started.wait(10)
        assert app.state.admission.texts_in_flight == 64
        # The model's queue is full: a second batch and even a single message are refused at once,
        # without being parsed, and the worker that refused says who it is.
        refused = client.post("/v1/triage/batch", json=batch)
        assert_error(refused, 503, "overloaded")
        assert f"worker {os.getpid()}" in refused.json()["error"]["message"]
        assert int(refused.headers["retry-after"]) >= 1
        assert_error(client.post("/v1/triage", json={"text": "有货吗"}), 503, "overloaded")
        assert classifier.calls == 1
        classifier.release.set()
        thread.join(30)
        assert first[0].status_code == 200 and not any(item["degraded"] for item in first[0].json()["items"])
        assert app.state.admission.texts_in_flight == 0
        assert client.post("/v1/triage", json={"text": "有货吗"}).status_code == 200


def test_texts_still_queued_when_the_budget_runs_out_are_refused_not_answered_by_rules():
    classifier = BlockingClassifier()
    app = create_app(settings(request_timeout_ms=300), classifier=classifier)
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        results = {}
        running = threading.Thread(target=lambda: results.setdefault("running", client.post("/v1/triage", json={"text": "有货吗"})))
        running.start()
        assert classifier.started.wait(10)
        queued = client.post("/v1/triage", json={"text": "收到的杯子碎了"})  # waits behind the blocked model call
        assert_error(queued, 503, "overloaded")
        assert "did not reach these texts within 300 ms" in queued.json()["error"]["message"]
        classifier.release.set()
        running.join(30)
        # the call the model was running when its budget ran out is the hung-model case: keyword rules, degraded
        assert results["running"].json()["degraded"] is True
        assert classifier.calls == 1  # the refused texts never reached the model
        text = client.get("/metrics").text
        assert metric(text, "triage_rejected_total", reason="queue_timeout") == 1
        assert metric(text, "triage_degraded_total", reason="timeout") == 1


def test_model_timeout_answers_from_keyword_rules_degraded():
    classifier = BlockingClassifier()
    app = create_app(settings(request_timeout_ms=200), classifier=classifier)
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        r = client.post("/v1/triage", json={"text": "收到的杯子碎了"})
        classifier.release.set()
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["degraded"] is True and body["model_version"] == "keyword-rules-1"
        assert body["category"]["label"] == "C" and body["needs_human_review"] is True
        assert body["review_reasons"][0] == "degraded: the model did not answer within 400 ms; answered by keyword rules"
        assert metric(client.get("/metrics").text, "triage_degraded_total", reason="timeout") == 1


def test_model_exception_answers_from_keyword_rules_degraded():
    app = create_app(settings(), classifier=CountingClassifier(fail=True))
    with serve_in_thread(app) as url, httpx.Client(base_url=url) as client:
        r = client.post("/v1/triage/batch", json={"items": [{"text": "收到的杯子碎了"}, {"text": "有货吗"}]})
        assert r.status_code == 200, r.text
        assert all(item["degraded"] for item in r.json()["items"])
        assert "the model failed (RuntimeError)" in r.json()["items"][0]["review_reasons"][0]
        assert metric(client.get("/metrics").text, "triage_degraded_total", reason="model_error") == 2


def test_the_http_answer_is_what_the_python_triage_step_returns(model_http):
    # The service and a Python user run the same triage step (policy.triage.decide) on the same model.
    from helpdesk_triage.model import TriageModel
    from helpdesk_triage.policy.triage import TriageRequest

    items = [
        {"id": "py-1", "text": "快递五天了还没到，订单号[ORDERID_1234]，麻烦查一下", "received_at": "2026-03-10T20:30:00+08:00",
         "order_id": "1234567890", "customer_name": "王女士"},
        {"id": "py-2", "text": "吃了你们的零食孩子过敏住院了，我要投诉", "received_at": "2026-03-10T09:00:00+08:00"},
        {"id": "py-3", "text": "请问这款保温杯有没有粉色的？", "received_at": "2026-03-14T23:59:00+08:00"},
    ]
    response = model_http.post("/v1/triage/batch", json={"items": items})
    assert response.status_code == 200, response.text
    python = TriageModel.load().triage([TriageRequest(**item) for item in items])
    assert response.json()["items"] == [answer.model_dump(mode="json") for answer in python]
