"""The HTTP contract: request and response bodies. A triage request and answer are the triage step's own
models (``policy.triage``): the API returns exactly what ``triage()`` returns."""

from __future__ import annotations

import unicodedata
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model

from helpdesk_triage.policy.labels import HEADS, LABELS
from helpdesk_triage.policy.triage import (
    CleanStr,
    TriageRequest,
    TriageResponse,
)


def _no_nul_or_surrogates(value: str) -> str:
    if any(ch == "\x00" or unicodedata.category(ch) == "Cs" for ch in value):
        raise ValueError("must not contain NUL or unpaired surrogate characters")
    return value


NoteStr = Annotated[str, AfterValidator(_no_nul_or_surrogates)]
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
    model_config = ConfigDict(extra="forbid")

    id: CleanStr = Field(..., min_length=1, max_length=128, description="The id of a triaged message.")
    category: CategoryCode | None = Field(None, description="Corrected category.")
    severity: SeverityCode | None = Field(None, description="Corrected severity.")
    sentiment: SentimentCode | None = Field(None, description="Corrected sentiment.")
    agent: CleanStr | None = Field(None, max_length=128, description="Who corrected it.")
    note: NoteStr | None = Field(None, max_length=2000, description="Free text; stored as given.")

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


class ErrorDetail(BaseModel):
    code: str
    message: str
    field: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail
