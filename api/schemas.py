"""The HTTP contract: request and response bodies."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class TriageRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(..., description="The customer's message.", examples=["快递五天了还没到，订单号[ORDERID_1234]，麻烦查一下"])
    id: str | None = Field(None, max_length=128, description="Your ticket id; generated when absent.")
    received_at: str | None = Field(None, description="ISO-8601 with offset, e.g. 2026-03-10T10:00:00+08:00; default now.")
    channel: str | None = Field(None, max_length=64)
    customer_name: str | None = Field(None, max_length=64)
    order_id: str | None = Field(None, max_length=64)


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


class ErrorDetail(BaseModel):
    code: str
    message: str
    field: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail
