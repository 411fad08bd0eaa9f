"""A battery of bad and odd inputs: never a 5xx, always the error shape on a 4xx, the right code where it matters.

Most go through ``TestClient`` with the keyword rules (fast); the transport-level ones (chunked bodies,
huge declared lengths, connection reuse after a 413) through uvicorn on a real socket; a handful
through the embedded model.
"""

import json
import random
import socket
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from helpdesk_triage.api.app import create_app
from helpdesk_triage.policy.settings import Settings
from helpdesk_triage.policy.keyword_rules import KeywordClassifier
from helpdesk_triage.policy.replies import MAX_SLOT_CHARS
from helpdesk_triage.policy.triage import InvalidInput, TriagePolicy, TriageRequest, triage
from tests.api_test_server import serve_in_thread

JSON = {"content-type": "application/json"}
SEED = 20240611


def app_settings(**overrides) -> Settings:
    return Settings(**{"database_url": "sqlite:///:memory:", **overrides})


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(app_settings(), classifier=KeywordClassifier()), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture(scope="module")
def server_url():
    with serve_in_thread(create_app(app_settings(), classifier=KeywordClassifier())) as url:
        yield url


def check(response: httpx.Response, status: int | None = None, code: str | None = None) -> dict | None:
    """No 5xx; a 4xx has exactly the error shape; and the expected status/code when given."""
    assert response.status_code < 500, response.text
    if status is not None:
        assert response.status_code == status, response.text
    if response.status_code >= 400:
        body = response.json()
        assert set(body) == {"error"} and set(body["error"]) <= {"code", "message", "field"}, body
        assert isinstance(body["error"]["code"], str) and isinstance(body["error"]["message"], str)
        if code is not None:
            assert body["error"]["code"] == code, body
        return body["error"]
    assert response.headers["content-type"].startswith("application/json")
    return None


def random_unicode(rng: random.Random, length: int) -> str:
    """Code points from every plane, surrogates, controls and unassigned ones included."""
    ranges = [(0x0, 0x7F), (0x80, 0x7FF), (0x800, 0xFFFF), (0xD800, 0xDFFF), (0x10000, 0x10FFFF), (0x4E00, 0x9FFF)]
    chars = []
    for _ in range(length):
        lo, hi = rng.choice(ranges)
        chars.append(chr(rng.randint(lo, hi)))
    return "".join(chars)


# --------------------------------------------------------------------------------------------
# Malformed bodies and content types
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [
    b"{", b'{"text": }', b'{"text": "a",}', b"{'text': 'a'}", b"nul", b'{"text": "abc"', b"\xff\xfe\x00",
    b'{"text": "\xff\xfe"}', b"{\"text\": \"a\"}garbage", b"\x00" * 10,
])
def test_malformed_json_is_422(client, body):
    check(client.post("/v1/triage", content=body, headers=JSON), 422, "malformed_json")


@pytest.mark.parametrize("body", [
    b"[]", b'"text"', b"123", b"null", b"true", b'[{"text": "a"}]', b'{"text": NaN}', b'{"text": Infinity}',
    b'{"text": {"a": [1, {"b": null}]}}', b'{"text": ["a", ["b", ["c"]]]}', b'{"text": 1e999}', b'{"text": true}',
    b'{"text": "a", "id": 5}', b'{"text": "a", "id": ["x"]}', b'{"text": "a", "received_at": {}}',
    b'{"text": "a", "customer_name": false}', b'{"text": "a", "": 1}', b'{"text": "a", "text2": "b"}',
])
def test_wrong_types_and_shapes_are_422(client, body):
    check(client.post("/v1/triage", content=body, headers=JSON), 422)


def test_deeply_nested_json_is_refused_not_crashed(client):
    for body in (b"[" * 30_000 + b"]" * 30_000, b'{"text": ' + b'{"a": ' * 5_000 + b"1" + b"}" * 5_001):
        error = check(client.post("/v1/triage", content=body, headers=JSON), 422, "malformed_json")
        assert "nested too deep" in error["message"]


@pytest.mark.parametrize("content_type", [
    None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/xml",
    "application/json; charset=latin-1", "application/vnd.api+json", "garbage/!!", "application/json\x01",
])
def test_odd_content_types_never_5xx(client, content_type):
    headers = {} if content_type is None else {"content-type": content_type}
    check(client.post("/v1/triage", content='{"text": "有货吗"}'.encode(), headers=headers))
    check(client.post("/v1/triage", content=b"text=abc", headers=headers))


def test_form_body_is_415_not_accepted(client):
    r = client.post("/v1/triage", data={"text": "有货吗"})
    check(r, 415, "unsupported_media_type")


@pytest.mark.parametrize("content_type", [
    "text/plain", "text/plain; charset=utf-8", "application/x-www-form-urlencoded", "application/xml",
    "multipart/form-data; boundary=x", "application/octet-stream", "garbage/!!", "json", None,
])
@pytest.mark.parametrize("path", ["/v1/triage", "/v1/triage/batch", "/v1/feedback"])
def test_bodies_that_are_not_declared_json_are_415(client, path, content_type):
    headers = {} if content_type is None else {"content-type": content_type}
    error = check(client.post(path, content='{"text": "有货吗"}'.encode(), headers=headers), 415, "unsupported_media_type")
    assert "application/json" in error["message"]


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "application/json;charset=UTF-8",
                                          "Application/JSON", "application/merge-patch+json"])
def test_json_content_types_in_utf8_are_served(client, content_type):
    check(client.post("/v1/triage", content='{"text": "有货吗"}'.encode(), headers={"content-type": content_type}), 200)


@pytest.mark.parametrize("body, content_type", [
    ('{"text": "有货吗"}'.encode("utf-16"), "application/json"),  # with a BOM
    ('{"text": "有货吗"}'.encode("utf-16-le"), "application/json"),  # without: json.loads would guess it
    ('{"text": "有货吗"}'.encode("utf-16-be"), "application/json"),
    ('{"text": "有货吗"}'.encode("utf-32"), "application/json"),
    ('{"text": "有货吗"}'.encode("utf-8-sig"), "application/json"),
    ('{"text": "caf\u00e9"}'.encode("latin-1"), "application/json"),
    (b'{"text": "\xed\xa0\x80"}', "application/json"),  # a surrogate encoded as if it were UTF-8
    ('{"text": "有货吗"}'.encode(), "application/json; charset=latin-1"),
    ('{"text": "有货吗"}'.encode("utf-16"), "application/json; charset=utf-16"),
])
def test_bodies_not_in_utf8_are_422_malformed_json(client, body, content_type):
    error = check(client.post("/v1/triage", content=body, headers={"content-type": content_type}), 422, "malformed_json")
    assert "UTF-8" in error["message"]


def test_empty_body_is_422(client):
    check(client.post("/v1/triage", content=b"", headers=JSON), 422)
    check(client.post("/v1/feedback", content=b"", headers=JSON), 422)
    check(client.post("/v1/triage/batch", content=b"", headers=JSON), 422)


# --------------------------------------------------------------------------------------------
# Odd texts
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, expected_category", [
    ("😀😀😀", None),
    ("👨‍👩‍👧🙏🏽🇨🇳", None),
    ("收到的杯子碎了，質量太差，我要退貨", "C"),
    ("訂單號123456789012還沒發貨", "B"),
    ("<script>alert('退款')</script>", None),
    ("<b>快递</b>到哪了<img src=x onerror=alert(1)>", "B"),
    ("' OR 1=1; DROP TABLE decisions; --", None),
    ("{{customer_name}} {order_id} %s %(x)s ${jndi:ldap://x}", None),
    ("快递\x00到哪了\x07\x1b[31m", "B"),
    ("\u202e了哪到递快\u202c", None),
    ("ＡＢＣ１２３，全角的快递到哪了？", "B"),
    ("a" * 60_000, None),
    ("\ufeff\u200b有货吗\u200d", None),
    ("\U000e0041\U000e0042 tag chars", None),
])
def test_odd_texts_are_triaged(client, text, expected_category):
    r = client.post("/v1/triage", json={"text": text, "id": "odd"})
    check(r, 200)
    body = r.json()
    if expected_category:
        assert body["category"]["label"] == expected_category
    assert "<script" not in body["reply"]["text"]


@pytest.mark.parametrize("escaped_text", [r'"\ud800"', r'"\udfff\ud800"', r'"\u0000"', r'"\u0000\u0001\u200b"'])
def test_texts_of_only_lone_surrogates_or_controls_are_empty(client, escaped_text):
    body = ('{"text": ' + escaped_text + "}").encode()
    check(client.post("/v1/triage", content=body, headers=JSON), 422, "empty_text")


def test_lone_surrogates_inside_text_are_dropped_and_stored(client):
    r = client.post("/v1/triage", content=rb'{"text": "\u5feb\ud800\u9012\udc00\u5230\u54ea\u4e86", "id": "sur-1"}', headers=JSON)
    check(r, 200)
    stored = client.app.state.service.store.get_decision("sur-1")
    assert stored.masked_text == "快递到哪了"


@pytest.mark.parametrize("field, code", [("id", "invalid_request"), ("channel", "invalid_request"),
                                         ("customer_name", "invalid_slot"), ("order_id", "invalid_slot")])
@pytest.mark.parametrize("value", ["\ud800", "a\x00b", "\x1b[31m"])
def test_control_characters_in_identifier_fields_are_422(client, field, code, value):
    body = json.dumps({"text": "有货吗", field: value}).encode()  # ensure_ascii: surrogates travel as \ud800
    error = check(client.post("/v1/triage", content=body, headers=JSON), 422, code)
    assert error["field"] == field


# Each of these came back inside the suggested reply (issue 18, finding 4).
HOSTILE_SLOT_VALUES = ["这不归我们管", "<script>alert(1)</script>", "王\u202e士女", "王\u200b女士", "{order_id}", "[[x]]",
                       "张\ue000", "李" * 65]


@pytest.mark.parametrize("field", ["customer_name", "order_id"])
@pytest.mark.parametrize("value", HOSTILE_SLOT_VALUES)
def test_slot_values_that_would_spoil_the_reply_are_refused(client, field, value):
    r = client.post("/v1/triage", json={"text": "快递到哪了", "id": "slot-bad", field: value})
    error = check(r, 422, "invalid_slot")
    assert error["field"] == field and error["message"].startswith(field)
    assert client.app.state.service.store.get_decision("slot-bad") is None


def test_a_batch_with_a_bad_slot_names_the_item_and_stores_nothing(client):
    store = client.app.state.service.store
    before = store.counts()["decisions"]
    items = [{"text": "快递到哪了", "customer_name": "张女士"}, {"text": "有货吗", "customer_name": "王\u202e士女"}]
    error = check(client.post("/v1/triage/batch", json={"items": items}), 422, "invalid_slot")
    assert error["field"] == "items.1.customer_name" and "U+202E" in error["message"]
    assert store.counts()["decisions"] == before


def test_a_plain_name_still_fills_the_reply(client):
    r = client.post("/v1/triage", json={"text": "快递五天了还没到", "customer_name": "张女士", "order_id": "JD2024-0518"})
    check(r, 200)
    assert "张女士" in r.json()["reply"]["text"]


def test_the_python_triage_step_refuses_a_bad_slot_the_same_way():
    with pytest.raises(InvalidInput) as refused:
        triage(["快递到哪了", TriageRequest(text="有货吗", customer_name="这不归我们管")], model=KeywordClassifier())
    assert (refused.value.code, refused.value.field) == ("invalid_slot", "items.1.customer_name")


def test_the_openapi_schema_states_the_slot_rules(client):
    schema = client.app.openapi()
    fields = schema["components"]["schemas"]["TriageRequest"]["properties"]
    for slot in ("customer_name", "order_id"):
        string = next(branch for branch in fields[slot]["anyOf"] if branch.get("type") == "string")
        assert string["maxLength"] == MAX_SLOT_CHARS and string["pattern"].startswith("^[^")
        assert "invalid_slot" in fields[slot]["description"]
    for path in ("/v1/triage", "/v1/triage/batch"):
        assert "422" in schema["paths"][path]["post"]["responses"]


def test_the_slot_pattern_refuses_exactly_the_characters_the_slot_check_refuses():
    """Every code point (surrogates aside): the schema's pattern and the triage step agree, one character at a time."""
    import re

    from helpdesk_triage.policy.replies import slot_value_pattern

    pattern = re.compile(slot_value_pattern().removesuffix("$") + "\\Z")  # ECMA's "$"; Python's allows a final newline
    replies = TriagePolicy.load(app_settings()).replies
    disagree = []
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        value = "王" + chr(cp)
        try:
            replies.check_slot_value("customer_name", value)
            accepted = True
        except ValueError:
            accepted = False
        if accepted != bool(pattern.search(value)):
            disagree.append(f"U+{cp:04X}")
    assert not disagree, disagree[:20]


@pytest.mark.parametrize("received_at", [
    "2026-11-01T10:00:00\u0000", "2026-11-01T10:00:00+08:00\u0000", "2026-11-01T10:00:00+08:00\n", "",
    " 2026-11-01T10:00:00+08:00", "2026-11-01T10:00:00", "2026-02-29T10:00:00+08:00", "2100-02-29T10:00:00Z",
    "2026-04-31T10:00:00Z", "1969-12-31T23:59:59Z", "2200-01-01T00:00:00Z", "2026-W10-1T10:00Z", "20260310T100000Z",
    "2026-03-10t10:00:00z", "2026-03-10T24:00:00Z", "2026-03-10T10:00:00+24:00",
])
def test_received_at_outside_the_documented_form_is_422(client, received_at):
    check(client.post("/v1/triage", json={"text": "有货吗", "received_at": received_at}), 422, "invalid_timestamp")
    r = client.post("/v1/triage/batch", json={"items": [{"text": "有货吗"}, {"text": "有货吗", "received_at": received_at}]})
    assert check(r, 422, "invalid_timestamp")["field"] == "items.1.received_at"


@pytest.mark.parametrize("received_at", [
    "2026-03-10T10:00:00+08:00", "2026-03-10 10:00:00+08:00", "2026-03-10T10:00Z", "2026-03-10T10:00:00.123456789-0530",
    "2026-03-10T10:00+08", "2024-02-29T10:00:00Z", "2000-02-29T10:00:00Z", "1970-01-01T00:00:00+08:00",
    "2199-12-31T23:59:59-12:00",
])
def test_received_at_in_the_documented_form_is_served(client, received_at):
    check(client.post("/v1/triage", json={"text": "有货吗", "received_at": received_at}), 200)


@pytest.mark.parametrize("path, body, field, limit, code", [
    ("/v1/triage", {"text": "a", "id": "x" * 129}, "id", 128, "invalid_request"),
    ("/v1/triage", {"text": "a", "channel": "好" * 65}, "channel", 64, "invalid_request"),
    ("/v1/triage", {"text": "a", "order_id": "1" * 65}, "order_id", 64, "invalid_slot"),
    ("/v1/feedback", {"id": "x" * 129, "category": "A"}, "id", 128, "invalid_request"),
    ("/v1/feedback", {"id": "x", "category": "A", "agent": "x" * 129}, "agent", 128, "invalid_request"),
    ("/v1/feedback", {"id": "x", "category": "A", "note": "x" * 2001}, "note", 2000, "invalid_request"),
])
def test_length_errors_count_characters(client, path, body, field, limit, code):
    error = check(client.post(path, json=body), 422, code)
    assert error["field"] == field
    assert f"at most {limit} characters" in error["message"], error


def test_random_unicode_never_5xx(client):
    rng = random.Random(SEED)
    statuses = []
    for _ in range(150):
        text = random_unicode(rng, rng.randint(0, 400))
        r = client.post("/v1/triage", content=json.dumps({"text": text}).encode(), headers=JSON)
        check(r)
        statuses.append(r.status_code)
        if r.status_code == 422:
            assert r.json()["error"]["code"] == "empty_text"
    assert statuses.count(200) > 100


def test_random_bytes_never_5xx(client):
    rng = random.Random(SEED)
    for _ in range(100):
        body = rng.randbytes(rng.randint(0, 300))
        for path in ("/v1/triage", "/v1/triage/batch", "/v1/feedback"):
            check(client.post(path, content=body, headers=JSON), 422)


# --------------------------------------------------------------------------------------------
# Sizes
# --------------------------------------------------------------------------------------------


def test_one_megabyte_text_is_413(client):
    check(client.post("/v1/triage", json={"text": "好" * 1_000_000}), 413, "body_too_large")


def test_text_just_under_the_body_limit_is_triaged_and_truncated(client):
    r = client.post("/v1/triage", json={"text": "a" * (64 * 1024 - 100)})
    check(r, 200)
    assert r.json()["truncated"] is True


def test_ten_thousand_item_batch_is_413(client):
    r = client.post("/v1/triage/batch", json={"items": [{"text": "有货吗"}] * 10_000})
    check(r, 413, "too_many_items")
    r = client.post("/v1/triage/batch", json={"items": [{"text": "有货吗" * 50}] * 10_000})
    check(r, 413, "body_too_large")
    r = client.post("/v1/triage/batch", json={"items": [{"text": 1}] * 10_000})  # invalid items: still 413
    check(r, 413, "too_many_items")
    assert client.app.state.service.store.counts()["decisions"] < 10_000


@pytest.mark.parametrize("body", [
    {"items": None}, {"items": "abc"}, {"items": ["a", "b"]}, {"items": [None]}, {"items": {"0": {"text": "a"}}},
    {"items": [{"text": "a"}], "extra": 1}, {}, {"items": [[{"text": "a"}]]},
])
def test_malformed_batches_are_422(client, body):
    check(client.post("/v1/triage/batch", json=body), 422)


class CountingKeywordRules(KeywordClassifier):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[list[str]] = []

    def predict(self, texts):
        self.calls.append(list(texts))
        return super().predict(texts)


def test_a_batch_with_the_same_id_twice_is_refused_and_nothing_is_classified_or_stored():
    rules = CountingKeywordRules()
    with TestClient(create_app(app_settings(), classifier=rules), raise_server_exceptions=False) as http:
        items = [{"text": "有货吗", "id": "a"}, {"text": "快递到哪了", "id": "dup"}, {"text": "谢谢"},
                 {"text": "杯子碎了", "id": "dup"}, {"text": "退款", "id": "dup"}]
        error = check(http.post("/v1/triage/batch", json={"items": items}), 422, "duplicate_id")
        assert error["field"] == "items.3.id"
        assert error["message"].startswith("items 1 and 3 have the same id 'dup'")
        assert rules.calls == [] and http.app.state.service.store.counts()["decisions"] == 0
        # ids that differ only in case are different ids; items without an id get their own
        items = [{"text": "有货吗", "id": "dup"}, {"text": "快递到哪了", "id": "DUP"}, {"text": "谢谢"}, {"text": "好"}]
        check(http.post("/v1/triage/batch", json={"items": items}), 200)
        assert http.app.state.service.store.counts()["decisions"] == 4


def test_the_python_triage_step_refuses_the_same_id_twice():
    requests = [TriageRequest(text="有货吗", id="t-1"), TriageRequest(text="快递到哪了", id="t-1")]
    with pytest.raises(InvalidInput) as refused:
        triage(requests, model=KeywordClassifier())
    assert (refused.value.code, refused.value.field) == ("duplicate_id", "items.1.id")


@pytest.mark.parametrize("body", [
    {"id": None, "category": "A"}, {"id": "", "category": "A"}, {"id": "x" * 129, "category": "A"},
    {"id": "x", "category": "a"}, {"id": "x", "category": ["A"]}, {"id": "x", "severity": "CRITICAL"},
    {"id": "x", "sentiment": 1}, {"id": "x", "category": "A", "agent": {"n": 1}}, {"id": "\ud800", "category": "A"},
    {"id": "x", "category": "A", "note": "\x00"}, [], "x",
])
def test_malformed_feedback_is_422(client, body):
    check(client.post("/v1/feedback", content=json.dumps(body).encode(), headers=JSON), 422)


def test_feedback_with_every_label_null_is_422_no_correction(client):
    body = {"id": "x", "category": None, "severity": None, "sentiment": None, "agent": "wang.wu"}
    check(client.post("/v1/feedback", json=body), 422, "no_correction")


# --------------------------------------------------------------------------------------------
# Methods and routes
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method, path", [
    ("GET", "/v1/triage"), ("PUT", "/v1/triage"), ("DELETE", "/v1/triage"), ("PATCH", "/v1/triage/batch"),
    ("GET", "/v1/feedback"), ("POST", "/livez"), ("POST", "/readyz"), ("DELETE", "/metrics"),
])
def test_wrong_methods_are_405(client, method, path):
    check(client.request(method, path, json={"text": "有货吗"}), 405, "method_not_allowed")


@pytest.mark.parametrize("path", [
    "/", "/v1", "/v1/", "/v1/triage/", "/v1/triage/batch/x", "/v2/triage", "/%2e%2e/etc/passwd", "/v1/triage%00",
    "/快递", "/" + "a" * 5000, "/v1//triage",
])
def test_unknown_routes_are_404(client, path):
    r = client.post(path, json={"text": "有货吗"}, follow_redirects=False)
    if r.status_code == 307:  # "/v1/triage/": redirected to the route without the slash
        assert r.headers["location"].endswith("/v1/triage")
    else:
        check(r, 404, "not_found")


def test_head_and_options_never_5xx(client):
    for method in ("HEAD", "OPTIONS", "TRACE"):
        for path in ("/v1/triage", "/livez", "/nothing"):
            assert client.request(method, path).status_code < 500


@pytest.mark.parametrize("path", ["/livez", "/readyz", "/metrics", "/openapi.json"])
def test_head_is_answered_like_get_without_a_body(client, path):
    got, head = client.get(path), client.head(path)
    assert head.status_code == got.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == got.headers["content-type"]
    if path != "/metrics":  # the counters move between the two requests
        assert head.headers["content-length"] == got.headers["content-length"]


def test_head_on_a_post_route_is_still_405(client):
    r = client.head("/v1/triage")
    assert r.status_code == 405 and r.content == b"" and r.headers["allow"] == "POST"


# --------------------------------------------------------------------------------------------
# Over a real socket
# --------------------------------------------------------------------------------------------


def chunks(total: int, size: int = 8192):
    sent = 0
    yield b'{"text": "'
    while sent < total:
        yield b"a" * min(size, total - sent)
        sent += size
    yield b'"}'


def test_chunked_body_over_the_limit_is_413_without_content_length(server_url):
    with httpx.Client(base_url=server_url, timeout=30) as http:
        r = http.post("/v1/triage", content=chunks(200_000), headers=JSON)
        assert "content-length" not in r.request.headers and r.request.headers["transfer-encoding"] == "chunked"
        check(r, 413, "body_too_large")
        # the connection stays usable: the rest of the body was drained
        check(http.post("/v1/triage", json={"text": "有货吗"}), 200)
        r = http.post("/v1/triage/batch", content=chunks(2_000_000), headers=JSON)
        check(r, 413, "body_too_large")


def test_chunked_body_within_the_limit_is_served(server_url):
    r = httpx.post(f"{server_url}/v1/triage", content=chunks(1000), headers=JSON, timeout=30)
    check(r, 200)
    assert r.json()["truncated"] is False


def test_huge_declared_content_length_is_refused_at_once(server_url):
    host, port = server_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"POST /v1/triage HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000000000\r\n\r\n" + b'{"text": "' + b"a" * 1000)
        response = b""
        while b"\r\n\r\n" not in response or not response.rstrip().endswith(b"}"):
            data = sock.recv(65536)
            if not data:
                break
            response += data
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413")
    assert b"connection: close" in head.lower()
    assert json.loads(body)["error"]["code"] == "body_too_large"


def raw_exchange(server_url: str, request: bytes, stall_after: bool = False, timeout: float = 10) -> tuple[bytes, float]:
    """Send ``request`` as is over a new connection and read until the server closes it: (all bytes, seconds)."""
    host, port = server_url.removeprefix("http://").split(":")
    started = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(request)
        response = b""
        while data := sock.recv(65536):
            response += data
    return response, time.monotonic() - started


@pytest.mark.parametrize("declared", [1000, 100_000])  # within the limit; over it (the drain stalls)
def test_a_stalled_body_is_408_or_413_with_close_within_the_timeout(declared):
    app = create_app(app_settings(body_read_timeout_s=1.0), classifier=KeywordClassifier())
    with serve_in_thread(app) as url:
        request = (b"POST /v1/triage HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   b"Content-Length: %d\r\n\r\n" % declared + b'{"text": "')
        response, seconds = raw_exchange(url, request)  # then stall: recv returns once the server closes
    head, _, body = response.partition(b"\r\n\r\n")
    assert 0.9 < seconds < 4, seconds
    assert b"connection: close" in head.lower()
    if declared == 1000:
        assert head.startswith(b"HTTP/1.1 408")
        assert json.loads(body)["error"]["code"] == "body_timeout"
    else:
        assert head.startswith(b"HTTP/1.1 413")
        assert json.loads(body)["error"]["code"] == "body_too_large"
    assert app.state.metrics.rejected.labels(reason="body_timeout" if declared == 1000 else "too_large")._value.get() == 1


@pytest.mark.parametrize("parser", ["h11", "httptools"])
def test_content_length_with_transfer_encoding_is_400_and_closes_over_a_real_socket(parser):
    """Read by Content-Length the body is "0\\r\\n\\r\\nGET /…"; read as chunked it ends at "0\\r\\n\\r\\n" and a
    second request follows. Either way only one answer may come: the 400, and the connection closes. httptools
    (what ``triage serve`` runs) refuses it in the parser, with its own short 400; h11 lets it through, and
    api.http_rules refuses it in the error shape."""
    pytest.importorskip(parser)
    with serve_in_thread(create_app(app_settings(), classifier=KeywordClassifier()), http=parser) as server_url:
        _smuggling_is_refused(server_url, json_error=parser == "h11")


def _smuggling_is_refused(server_url: str, json_error: bool) -> None:
    smuggled = b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n"
    body = b"0\r\n\r\n" + smuggled
    request = (b"POST /v1/triage HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n" % len(body) + body)
    response, _ = raw_exchange(server_url, request)
    head, _, rest = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400")
    assert b"connection: close" in head.lower()
    if json_error:
        assert json.loads(rest)["error"]["code"] == "ambiguous_body_length"
    assert response.count(b"HTTP/1.1 ") == 1


def test_big_and_odd_inputs_over_a_real_socket(server_url):
    rng = random.Random(SEED + 1)
    with httpx.Client(base_url=server_url, timeout=30) as http:
        check(http.post("/v1/triage", json={"text": "好" * 1_000_000}), 413, "body_too_large")
        check(http.post("/v1/triage/batch", json={"items": [{"text": "有货吗"}] * 10_000}), 413, "too_many_items")
        check(http.post("/v1/triage", content=b'{"text": "\\ud800"}', headers=JSON), 422, "empty_text")
        check(http.post("/v1/triage", content=b"{bad", headers=JSON), 422, "malformed_json")
        check(http.post("/v1/triage", json={"text": "😀"}), 200)
        check(http.put("/v1/triage", json={"text": "a"}), 405, "method_not_allowed")
        check(http.get("/no/such/route"), 404, "not_found")
        head = http.head("/livez")
        assert head.status_code == 200 and head.content == b"" and head.headers["content-length"] == "15"
        for _ in range(30):
            check(http.post("/v1/triage", content=json.dumps({"text": random_unicode(rng, 200)}).encode(), headers=JSON))


# --------------------------------------------------------------------------------------------
# The embedded model
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_client(tmp_path_factory):
    app = create_app(app_settings(database_url=f"sqlite:///{tmp_path_factory.mktemp('db')}/m.db"))
    with TestClient(app, raise_server_exceptions=False) as client:
        assert app.state.service.wait_ready(120)
        yield client


def test_odd_inputs_through_the_embedded_model(model_client):
    rng = random.Random(SEED + 2)
    texts = ["😀😀😀", "收到的杯子碎了，質量太差", "<script>alert(1)</script>", "快递\x00到哪了\x07", "a" * 60_000,
             random_unicode(rng, 300)]
    r = model_client.post("/v1/triage/batch", content=json.dumps({"items": [{"text": t} for t in texts]}).encode(),
                          headers=JSON)
    check(r, 200)
    items = r.json()["items"]
    assert all(not item["degraded"] for item in items)
    assert items[1]["category"]["label"] == "C"
    assert items[4]["truncated"] is True
    check(model_client.post("/v1/triage", content=b'{"text": "\\ud800\\u0000"}', headers=JSON), 422, "empty_text")
