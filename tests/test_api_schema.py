"""The OpenAPI contract (/openapi.json) against what the server does, with Schemathesis, in-process (ASGI).

Every operation is run through the three phases Schemathesis has for a test function: the schema's
examples, coverage (boundary and invalid values derived from each keyword: lengths, patterns, enums,
required and unknown fields, wrong methods and media types) and fuzzing (up to 30 Hypothesis examples
per operation, derandomized, no example database, no deadline), with positive and negative data. Every
response goes through all the built-in checks (call_and_validate's default: every check enabled):
not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
response_headers_conformance, positive_data_acceptance, negative_data_rejection, missing_required_header,
unsupported_method, allow_header_conformance, use_after_free, ensure_resource_availability, ignored_auth,
object_level_authorization.

Negative data may also be refused with 413: a batch over TRIAGE_MAX_BATCH_ITEMS (the schema's maxItems)
is 413 too_many_items, as documented.

Schemathesis 4.32.5: 416 cases (feedback 146, batch 129, triage 111, 10 for each GET route), about 8 s.
"""

import re
import unicodedata
from datetime import datetime

import pytest
import schemathesis

from helpdesk_triage.api.app import create_app
from helpdesk_triage.api.decision_store import open_store
from helpdesk_triage.policy.keyword_rules import KeywordClassifier
from helpdesk_triage.policy.settings import Settings
from helpdesk_triage.policy.text_normalization import normalize_text
from helpdesk_triage.policy.triage import NO_CONTROL_CHARACTERS_PATTERN, RECEIVED_AT_PATTERN

# One store for the whole module: Schemathesis runs the app's lifespan once per operation, and a store the
# app opened itself would start empty each time.
STORE = open_store("sqlite:///:memory:")
APP = create_app(Settings(database_url="sqlite:///:memory:"), classifier=KeywordClassifier(), store=STORE)
CONFIG = schemathesis.Config.from_dict({
    "generation": {"max-examples": 30, "deterministic": True, "database": "none"},
    "checks": {"negative_data_rejection": {"expected-statuses": ["400", "401", "404", "405", "413", "415", "422"]}},
})
schema = schemathesis.openapi.from_asgi("/openapi.json", APP, config=CONFIG)
OPENAPI = APP.openapi()


@pytest.fixture(scope="module", autouse=True)
def triaged_example():
    """The decision the feedback example corrects, so that feedback is answered 201 too, not only 404."""
    response = schema["/v1/triage"]["POST"].Case(body={"text": "快递五天了还没到", "id": "t-1001"}).call()
    assert response.status_code == 200, response.text
    yield
    STORE.close()


@schema.parametrize()
def test_the_server_keeps_its_openapi_contract(case):
    case.call_and_validate()


# --------------------------------------------------------------------------------------------
# What the schema states, and that its patterns say exactly what the server checks
# --------------------------------------------------------------------------------------------


def request_schema(name: str) -> dict:
    return OPENAPI["components"]["schemas"][name]


def json_schema_regex(pattern: str) -> re.Pattern:
    """A JSON Schema pattern as ECMA-262 reads it: "$" is the end of the string (in Python, also before a final newline)."""
    return re.compile(pattern.removesuffix("$") + "\\Z" if pattern.endswith("$") else pattern)


def test_the_schema_states_the_limits_the_server_enforces():
    triage = request_schema("TriageRequest")["properties"]
    assert triage["text"]["minLength"] == 1 and "pattern" in triage["text"]
    assert triage["received_at"]["anyOf"][0]["pattern"] == RECEIVED_AT_PATTERN
    assert triage["id"]["anyOf"][0] == {"type": "string", "minLength": 1, "maxLength": 128,
                                        "pattern": NO_CONTROL_CHARACTERS_PATTERN}
    assert request_schema("BatchRequest")["properties"]["items"]["maxItems"] == 64
    assert len(request_schema("FeedbackRequest")["anyOf"]) == 3  # one of category, severity, sentiment, not null
    for path in ("/v1/triage", "/v1/triage/batch", "/v1/feedback"):
        assert {"400", "408", "413", "415", "422"} <= set(OPENAPI["paths"][path]["post"]["responses"])


def test_the_text_and_id_patterns_are_exactly_what_the_server_checks():
    text = json_schema_regex(request_schema("TriageRequest")["properties"]["text"]["pattern"])
    identifier = json_schema_regex(NO_CONTROL_CHARACTERS_PATTERN)
    for cp in range(0x110000):
        category = unicodedata.category(chr(cp))
        if category == "Cs":  # no JSON Schema string holds a lone surrogate
            continue
        kept = normalize_text(chr(cp), max_chars=None).text != ""  # the triage step's empty_text check
        assert bool(text.search(chr(cp))) == kept, f"U+{cp:04X}"
        assert bool(identifier.search(chr(cp))) == (category != "Cc"), f"U+{cp:04X}"


def test_the_received_at_pattern_is_exactly_the_real_times_of_1970_to_2199_with_an_offset():
    pattern = json_schema_regex(RECEIVED_AT_PATTERN)
    for year in (1969, 1970, 1971, 1972, 1999, 2000, 2023, 2024, 2100, 2104, 2196, 2199, 2200):
        for month in range(0, 14):
            for day in range(0, 33):
                value = f"{year:04d}-{month:02d}-{day:02d}T10:00:00+08:00"
                try:
                    real = 1970 <= datetime.fromisoformat(value).year <= 2199
                except ValueError:
                    real = False
                assert bool(pattern.search(value)) == real, value

    # Times and offsets: the usual spellings, each one that matches read by datetime.fromisoformat as aware.
    for hour in (0, 9, 23, 24):
        for minute in ("00", "59", "60"):
            for second in ("", ":00", ":59", ":60", ":00.5", ":00.1234567"):
                for offset in ("Z", "", "+08:00", "-0530", "+08", "+23:59", "+24:00", "-00:60"):
                    value = f"2026-03-10T{hour:02d}:{minute}{second}{offset}"
                    expected = hour < 24 and minute != "60" and second != ":60" and offset not in ("", "+24:00", "-00:60")
                    assert bool(pattern.search(value)) == expected, value
                    if expected:
                        assert datetime.fromisoformat(value).tzinfo is not None
