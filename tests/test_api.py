import json

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import Settings
from api.sla_policy import parse_timestamp
from model.keyword_rules import KeywordClassifier


@pytest.fixture(scope="module")
def client() -> TestClient:
    # The keyword rules make these contract tests independent of what the trained model predicts.
    return TestClient(create_app(Settings(max_body_bytes=4096, max_text_chars=300), classifier=KeywordClassifier()))


@pytest.fixture(scope="module")
def model_client() -> TestClient:
    return TestClient(create_app(Settings()))


def test_default_app_serves_the_embedded_model(model_client):
    ready = model_client.get("/readyz").json()
    assert ready["degraded"] is False
    assert ready["model_version"] == "triage-e5s-default-1"
    body = model_client.post("/v1/triage", json={"text": "吃了你们的零食孩子过敏住院了，我要投诉到12315", "id": "m-1"}).json()
    assert body["degraded"] is False
    assert body["category"]["label"] == "D"
    assert abs(sum(body["category"]["scores"].values()) - 1) < 1e-3
    assert body["category"]["confidence"] == max(body["category"]["scores"].values())
    shipping = model_client.post("/v1/triage", json={"text": "我的快递到哪了，三天了还没到"}).json()
    assert shipping["category"]["label"] == "B"
    assert shipping["queue"] == "orders"


def test_triage_returns_the_full_contract(client):
    r = client.post("/v1/triage", json={
        "text": "快递五天了还没到，再不到就投诉你们！",
        "id": "t-1",
        "received_at": "2026-03-10T10:00:00+08:00",
    })
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"] == "t-1"
    assert body["category"]["label"] == "D" and body["category"]["name"] == "投诉不满"
    assert set(body["category"]["scores"]) == {"A", "B", "C", "D"}
    assert abs(sum(body["severity"]["scores"].values()) - 1) < 1e-3
    assert body["sentiment"]["label"] == "negative"
    assert body["queue"] == "escalation"
    assert body["sla"]["rule"] == "category:D" and body["sla"]["escalate_immediately"] is True
    assert parse_timestamp(body["sla"]["first_response_due"]) > parse_timestamp("2026-03-10T10:00:00+08:00")
    assert body["degraded"] is True and body["needs_human_review"] is True
    assert body["truncated"] is False


def test_order_id_and_name_fill_the_reply(client):
    body = client.post("/v1/triage", json={"text": "我的快递到哪了", "order_id": "ORDER778899", "customer_name": "王女士"}).json()
    assert body["category"]["label"] == "B"
    assert "ORDER778899" in body["reply"]["text"]
    assert "{" not in body["reply"]["text"]


def test_critical_goes_to_emergency_queue(client):
    body = client.post("/v1/triage", json={"text": "孩子吃了你们的饼干过敏住院了", "received_at": "2026-03-10T23:50:00+08:00"}).json()
    assert body["severity"]["label"] == "critical"
    assert body["queue"] == "emergency"
    assert body["sla"]["first_response_due"] == "2026-03-11T00:05:00+08:00"
    assert "critical_severity" in body["review_reasons"]


def test_traditional_and_full_width_text_is_normalised(client):
    body = client.post("/v1/triage", json={"text": "收到的杯子碎了，質量太差"}).json()
    assert body["category"]["label"] == "C"


def test_long_text_is_truncated_and_flagged(client):
    body = client.post("/v1/triage", json={"text": "请问有货吗" * 100}).json()
    assert body["truncated"] is True


def test_id_generated_when_absent(client):
    a = client.post("/v1/triage", json={"text": "有货吗"}).json()["id"]
    b = client.post("/v1/triage", json={"text": "有货吗"}).json()["id"]
    assert a and b and a != b


@pytest.mark.parametrize(
    "payload, code, field",
    [
        ({"text": "   \u200b\n\t "}, "empty_text", "text"),
        ({"text": ""}, "empty_text", "text"),
        ({"text": 123}, "invalid_request", "text"),
        ({}, "invalid_request", "text"),
        ({"text": "有货吗", "received_at": "2026-03-10T10:00:00"}, "invalid_timestamp", "received_at"),
        ({"text": "有货吗", "received_at": "tomorrow"}, "invalid_timestamp", "received_at"),
        ({"text": "有货吗", "recieved_at": "2026-03-10T10:00:00Z"}, "invalid_request", "recieved_at"),
        ({"text": "有货吗", "order_id": "x" * 65}, "invalid_request", "order_id"),
    ],
)
def test_bad_requests_get_422_with_stable_shape(client, payload, code, field):
    r = client.post("/v1/triage", json=payload)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == code
    assert error["field"] == field
    assert error["message"]


def test_malformed_json_is_422(client):
    r = client.post("/v1/triage", content=b'{"text": "abc"', headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "malformed_json"


def test_body_over_limit_is_413(client):
    r = client.post("/v1/triage", content=json.dumps({"text": "好" * 5000}).encode(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "body_too_large"


def test_unknown_route_uses_error_shape(client):
    r = client.get("/v2/nothing")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "http_error"


def test_health_endpoints(client):
    assert client.get("/livez").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["model_version"]
