"""One triage decision: normalise, classify, then derive SLA deadlines, queue, review flag and reply."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

from api.reply_templates import ReplyTemplateLibrary
from api.schemas import HeadResult, ReplyResult, SlaResult, TriageRequest, TriageResponse
from api.settings import Settings
from api.sla_policy import SlaPolicy, parse_timestamp
from data.label_schema import HEADS, LABELS
from data.text_normalization import normalize_text
from model.keyword_rules import KeywordClassifier
from model.loading import load_classifier
from model.prediction import Classifier, TextPrediction

REVIEWED_HEADS = ("category", "severity")


class InvalidInput(ValueError):
    """A request that is well-formed JSON but cannot be triaged; becomes a 422."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


@dataclass
class TriageService:
    classifier: Classifier
    sla_policy: SlaPolicy
    replies: ReplyTemplateLibrary
    settings: Settings
    degraded: bool

    @classmethod
    def from_settings(cls, settings: Settings, classifier: Classifier | None = None) -> "TriageService":
        """Build from settings; pass ``classifier`` to serve a given one (tests, embedding)."""
        if classifier is None:
            classifier, degraded = load_classifier(settings.model_dir)
        else:
            degraded = isinstance(classifier, KeywordClassifier)
        return cls(
            classifier=classifier,
            sla_policy=SlaPolicy.load(settings.sla_policy),
            replies=ReplyTemplateLibrary.load(settings.reply_templates),
            settings=settings,
            degraded=degraded,
        )

    def triage(self, request: TriageRequest, now: datetime | None = None) -> TriageResponse:
        normalized = normalize_text(request.text, max_chars=self.settings.max_text_chars)
        if not normalized.text:
            raise InvalidInput("empty_text", "text is empty after normalisation (only whitespace or control characters)", "text")
        received_at = self._received_at(request, now)
        prediction = self.classifier.predict([normalized.text])[0]
        labels = prediction.labels()
        reasons = self._review_reasons(prediction)
        sla = self.sla_policy.deadlines(labels["category"], labels["severity"], received_at)
        reply = self.replies.suggest(
            labels["category"], labels["severity"], labels["sentiment"], normalized.text,
            slots={
                "customer_name": request.customer_name,
                "order_id": request.order_id,
                "first_response_due": _chinese_time(sla.first_response_due),
            },
        )
        return TriageResponse(
            id=request.id or uuid.uuid4().hex,
            model_version=self.classifier.version,
            **{head: _head_result(head, prediction) for head in HEADS},
            needs_human_review=bool(reasons),
            review_reasons=reasons,
            sla=SlaResult(**{k: v for k, v in sla.to_dict().items() if k in SlaResult.model_fields}),
            queue=LABELS.queue_for(labels["category"], labels["severity"]),
            reply=ReplyResult(template_id=reply.template_id, text=reply.text),
            truncated=normalized.truncated,
            degraded=self.degraded,
        )

    def _received_at(self, request: TriageRequest, now: datetime | None) -> datetime:
        if request.received_at is None:
            return now or datetime.now(timezone.utc)
        try:
            return parse_timestamp(request.received_at)
        except ValueError as exc:
            raise InvalidInput("invalid_timestamp", str(exc), "received_at") from exc

    def _review_reasons(self, prediction: TextPrediction) -> list[str]:
        reasons = []
        if self.degraded:
            reasons.append("degraded: answered by keyword rules, not the model")
        for head in REVIEWED_HEADS:
            result = prediction.head(head)
            if result.confidence < self.settings.review_threshold:
                reasons.append(f"low_confidence: {head} {result.confidence:.2f} < {self.settings.review_threshold}")
            elif result.margin() < self.settings.review_margin:
                reasons.append(f"close_call: {head} top two within {self.settings.review_margin}")
        if prediction.severity.label == "critical":
            reasons.append("critical_severity")
        return reasons


def _chinese_time(moment: datetime) -> str:
    return f"{moment.month}月{moment.day}日{moment:%H:%M}"


def _head_result(head: str, prediction: TextPrediction) -> HeadResult:
    result = prediction.head(head)
    return HeadResult(
        label=result.label,
        name=LABELS.get(head, result.label).name_zh,
        confidence=round(result.confidence, 4),
        scores={k: round(v, 4) for k, v in result.scores.items()},
    )
