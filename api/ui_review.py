"""The agents' review queue: ``GET /ui/review`` and the action behind its keys, ``POST /ui/api/review``.

The queue lists the decisions a person should look at (review reasons, low confidence, critical, degraded:
``DecisionRecord.needs_review``) that nobody has given feedback on yet, soonest first-response deadline
first, filtered by queue, category, severity, reason and received date, with a count per filter value.
A review stores every head as the agent settled it, as a feedback row of kind "review": a confirmation
when the labels are the service's, a correction otherwise. Each action is logged without the message text.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Annotated

from fastapi import FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from helpdesk_triage.api.decision_store import DecisionRecord, UnknownDecision
from helpdesk_triage.api.errors import ApiError
from helpdesk_triage.api.schemas import CategoryCode, SentimentCode, SeverityCode
from helpdesk_triage.api.dependencies import ServiceDep
from helpdesk_triage.api.ui_pages import ActionAgentDep, PageUserDep, reason_code, render
from helpdesk_triage.policy.labels import HEADS, LABELS
from helpdesk_triage.policy.triage import clean_str

log = logging.getLogger("triage.ui")


FILTERS = ("queue", "category", "severity", "reason", "date")


@dataclass(frozen=True)
class ReviewItem:
    """One decision as the queue shows it."""

    record: DecisionRecord
    labels: dict[str, str]
    scores: dict[str, dict[str, float]]
    queue: str
    reasons: list[tuple[str, str]]  # (code, text as the service gave it)
    due: datetime | None
    received: datetime
    reply: str

    def facet(self, name: str, tz: tzinfo) -> set[str]:
        """The values this item has for a filter (an item has several reasons)."""
        if name == "queue":
            return {self.queue}
        if name == "reason":
            return {code for code, _ in self.reasons}
        if name == "date":
            return {self.received.astimezone(tz).date().isoformat()}
        return {self.labels[name]}

    def minutes_left(self, now: datetime) -> int | None:
        return None if self.due is None else int((self.due - now).total_seconds() // 60)


def _review_item(record: DecisionRecord) -> ReviewItem:
    answer = record.answer or {}
    sla = answer.get("sla", {})
    return ReviewItem(
        record=record,
        labels=answer.get("labels") or record.labels,
        scores=record.scores,
        queue=answer.get("queue", ""),
        reasons=[(reason_code(text), text) for text in answer.get("review_reasons", [])],
        due=datetime.fromisoformat(sla["first_response_due"]) if sla.get("first_response_due") else None,
        received=datetime.fromisoformat(record.received_at),
        reply=answer.get("reply", {}).get("text", ""),
    )


def _ordered(name: str, counts: dict[str, int]) -> dict[str, int]:
    """Filter values in label order for the heads, newest first for dates, by name otherwise."""
    if name in HEADS:
        order = LABELS.codes(name)
        return {code: counts[code] for code in order if code in counts}
    return dict(sorted(counts.items(), reverse=name == "date"))


def _time_left(minutes: int | None) -> str:
    if minutes is None:
        return "无期限"
    span = abs(minutes)
    text = f"{span // 60}小时{span % 60}分" if span >= 60 else f"{span}分钟"
    return f"已超时 {text}" if minutes < 0 else f"剩余 {text}"


async def review_page(
    request: Request, user: PageUserDep, service: ServiceDep,
    queue: Annotated[str, Query(max_length=64)] = "",
    category: Annotated[str, Query(max_length=16)] = "",
    severity: Annotated[str, Query(max_length=16)] = "",
    reason: Annotated[str, Query(max_length=64)] = "",
    date: Annotated[str, Query(max_length=10)] = "",
):
    settings = request.app.state.settings
    tz = service.policy.sla.calendar.timezone
    records = await run_in_threadpool(service.store.open_reviews, settings.ui_review_scan_limit)
    items = [_review_item(r) for r in records]
    chosen = {"queue": queue, "category": category, "severity": severity, "reason": reason, "date": date}

    def matches(item: ReviewItem, skip: str | None = None) -> bool:
        return all(not value or name == skip or value in item.facet(name, tz) for name, value in chosen.items())

    # A count per filter value, over the items the other filters keep (what choosing it would show).
    counts: dict[str, dict[str, int]] = {name: {} for name in FILTERS}
    for name in FILTERS:
        for item in items:
            if matches(item, skip=name):
                for value in item.facet(name, tz):
                    counts[name][value] = counts[name].get(value, 0) + 1
    shown = [item for item in items if matches(item)]
    now = datetime.now(UTC)
    return render(request, "review.html", user, active="review", items=shown[: settings.ui_review_page_size],
                  total=len(shown), open_total=len(items), scanned_all=len(records) < settings.ui_review_scan_limit,
                  counts={name: _ordered(name, values) for name, values in counts.items()}, chosen=chosen,
                  time_left=lambda item: _time_left(item.minutes_left(now)),
                  minutes_left=lambda item: item.minutes_left(now), tz=tz)


class ReviewAction(BaseModel):
    """An agent's review of one decision: every head as they settled it."""

    model_config = ConfigDict(extra="forbid")

    id: clean_str(128, min_length=1)
    category: CategoryCode
    severity: SeverityCode
    sentiment: SentimentCode
    agent: clean_str(64) | None = Field(None, description="The agent's name when API keys are off; with keys on the "
                                        "session's name is used.")


class ReviewResult(BaseModel):
    feedback_id: int
    id: str
    action: str = Field(..., description="confirmed (the service's labels) or corrected")
    changed: list[str] = Field(..., description="The heads the agent changed.")


def record_review(body: ReviewAction, request: Request, service: ServiceDep,
                  session_agent: ActionAgentDep) -> ReviewResult:
    agent = session_agent or (body.agent or "").strip()
    if not agent:
        raise ApiError(422, "agent_required", "enter your name (客服姓名) before reviewing", field="agent")
    record = service.store.get_decision(body.id)
    if record is None:
        raise UnknownDecision(body.id)  # 404 unknown_id, as /v1/feedback answers it
    answered = (record.answer or {}).get("labels") or record.labels
    labels = {head: getattr(body, head) for head in HEADS}
    changed = [head for head in HEADS if labels[head] != answered.get(head)]
    feedback_id = service.record_review(body.id, labels, agent)
    action = "corrected" if changed else "confirmed"
    request.state.log_fields.update(id=body.id, agent=agent, ui_action=action, changed=changed)
    log.info("ui_review", extra={"fields": {"id": body.id, "agent": agent, "action": action, "changed": changed,
                                            "feedback_id": feedback_id}})
    return ReviewResult(feedback_id=feedback_id, id=body.id, action=action, changed=changed)


def add_routes(app: FastAPI) -> None:
    """This module's routes, on the app itself (``create_app`` says why not ``include_router``)."""
    app.add_api_route("/ui/review", review_page, methods=["GET"], include_in_schema=False)
    app.add_api_route("/ui/api/review", record_review, methods=["POST"], status_code=201, response_model=ReviewResult,
                      include_in_schema=False)
