"""The HTTP contract: request and response bodies. A triage request and answer are the triage step's own
models (``policy.triage``): the API returns exactly what ``triage()`` returns."""

from __future__ import annotations

import unicodedata
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, create_model

from helpdesk_triage.policy.labels import HEADS, LABELS
from helpdesk_triage.policy.triage import (
    JsonSchemaExtra,
    TriageRequest,
    TriageResponse,
    clean_str,
)


def _no_nul_or_surrogates(value: str) -> str:
    if any(ch == "\x00" or unicodedata.category(ch) == "Cs" for ch in value):
        raise ValueError("must not contain NUL or unpaired surrogate characters")
    return value


NoteStr = Annotated[str, StringConstraints(max_length=2000), AfterValidator(_no_nul_or_surrogates),
                    JsonSchemaExtra(pattern="^[^\\u0000]*$")]
CategoryCode = Literal[LABELS.categories]  # type: ignore[valid-type]
SeverityCode = Literal[LABELS.severities]  # type: ignore[valid-type]
SentimentCode = Literal[LABELS.sentiments]  # type: ignore[valid-type]


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


class BatchResponse(BaseModel):
    items: list[TriageResponse] = Field(..., description="One result per request item, in order.")


class FeedbackRequest(BaseModel):
    # At least one label that is not null: the service refuses the rest (no_correction); the contract says so.
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "anyOf": [{"required": [head], "properties": {head: {"not": {"type": "null"}}}} for head in HEADS],
        "examples": [{"id": "t-1001", "category": "D", "severity": "high", "agent": "wang.wu", "note": "客户第二次来催"}],
    })

    id: clean_str(128, min_length=1) = Field(..., description="The id of a triaged message.")
    category: CategoryCode | None = Field(None, description="Corrected category.")
    severity: SeverityCode | None = Field(None, description="Corrected severity.")
    sentiment: SentimentCode | None = Field(None, description="Corrected sentiment.")
    agent: clean_str(128) | None = Field(None, description="Who corrected it; stored with PII masked like the note.")
    note: NoteStr | None = Field(None, description="Free text; stored with PII masked (mobile numbers, e-mails, ID-card, "
                                 "bank-card and order numbers, as in the message text) unless TRIAGE_STORE_RAW_TEXT is "
                                 "on, then as given.")

    def corrections(self) -> dict[str, str]:
        return {head: value for head in HEADS if (value := getattr(self, head)) is not None}


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
    worker_pid: int = Field(..., description="The process that answered: with several workers, which one this is.")
    replica: str = Field(..., description="The replica that answered (TRIAGE_REPLICA_NAME): behind a balancer, which one this is.")


class ErrorDetail(BaseModel):
    code: str
    message: str
    field: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail
