"""The HTTP contract: request and response bodies."""

from __future__ import annotations

import unicodedata
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model

from data.label_schema import LABELS


def _no_control_characters(value: str) -> str:
    # Identifiers and names are stored and echoed: NUL breaks PostgreSQL text, lone surrogates break
    # UTF-8 encoding, other controls only hide what an agent sees. (``text`` itself is normalised instead.)
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in value):
        raise ValueError("must not contain control characters or unpaired surrogates")
    return value


def _no_nul_or_surrogates(value: str) -> str:
    if any(ch == "\x00" or unicodedata.category(ch) == "Cs" for ch in value):
        raise ValueError("must not contain NUL or unpaired surrogate characters")
    return value


CleanStr = Annotated[str, AfterValidator(_no_control_characters)]
NoteStr = Annotated[str, AfterValidator(_no_nul_or_surrogates)]
CategoryCode = Literal[LABELS.categories]  # type: ignore[valid-type]
SeverityCode = Literal[LABELS.severities]  # type: ignore[valid-type]
SentimentCode = Literal[LABELS.sentiments]  # type: ignore[valid-type]


class TriageRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(..., description="The customer's message.", examples=["快递五天了还没到，订单号[ORDERID_1234]，麻烦查一下"])
    id: CleanStr | None = Field(None, min_length=1, max_length=128, description="Your ticket id; generated when absent.")
    received_at: str | None = Field(None, description="ISO-8601 with offset, e.g. 2026-03-10T10:00:00+08:00; default now.")
    channel: CleanStr | None = Field(None, max_length=64)
    customer_name: CleanStr | None = Field(None, max_length=64)
    order_id: CleanStr | None = Field(None, max_length=64)


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[TriageRequest] = Field(..., min_length=1, description="Requests to triage, in order.")


def batch_request_model(max_items: int) -> type[BatchRequest]:
    """BatchRequest with the configured item limit, which pydantic checks before validating any item."""
    return create_model(
        "BatchRequest",
        __base__=BatchRequest,
        items=(list[TriageRequest], Field(..., min_length=1, max_length=max_items,
                                          description=f"Requests to triage, in order; at most {max_items}.")),
    )


class HeadResult(BaseModel):
    label: str
    name: str
    confidence: float
    scores: dict[str, float]


class SlaResult(BaseModel):
    first_response_due: str
    resolution_due: str
    rule: str
    clock: str
    timezone: str
    escalate_immediately: bool


class ReplyResult(BaseModel):
    template_id: str
    text: str


class TriageResponse(BaseModel):
    id: str
    model_version: str
    category: HeadResult
    severity: HeadResult
    sentiment: HeadResult
    needs_human_review: bool
    review_reasons: list[str]
    sla: SlaResult
    queue: str
    reply: ReplyResult
    truncated: bool
    degraded: bool


class BatchResponse(BaseModel):
    items: list[TriageResponse] = Field(..., description="One result per request item, in order.")


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: CleanStr = Field(..., min_length=1, max_length=128, description="The id of a triaged message.")
    category: CategoryCode | None = Field(None, description="Corrected category.")
    severity: SeverityCode | None = Field(None, description="Corrected severity.")
    sentiment: SentimentCode | None = Field(None, description="Corrected sentiment.")
    agent: CleanStr | None = Field(None, max_length=128, description="Who corrected it.")
    note: NoteStr | None = Field(None, max_length=2000, description="Free text; stored as given.")

    def corrections(self) -> dict[str, str]:
        return {head: value for head in ("category", "severity", "sentiment") if (value := getattr(self, head)) is not None}


class FeedbackResponse(BaseModel):
    feedback_id: int
    id: str
    applied: dict[str, str] = Field(..., description="The corrections stored, head -> label.")


class LiveResponse(BaseModel):
    status: Literal["ok"] = "ok"


class ReadyResponse(BaseModel):
    status: Literal["ready"] = "ready"
    model_version: str
    degraded: bool
    degraded_reason: str | None = None
    storage: bool


class ErrorDetail(BaseModel):
    code: str
    message: str
    field: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail
