"""The triage step, pure: a message and the model's labels → SLA deadlines, queue, suggested reply and the
reasons for human review. No store, no HTTP: the service calls this same code and then stores what it returns.

    from helpdesk_triage.model import TriageModel
    from helpdesk_triage.policy.triage import triage

    answers = triage(["快递五天了还没到"], received_at="2026-03-10T20:30:00+08:00", model=TriageModel.load())

Each answer is the :class:`TriageResponse` that ``POST /v1/triage`` returns for the same message.
"""

from __future__ import annotations

import unicodedata
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from helpdesk_triage.policy.answer_library import AnswerIndex, AnswerLibrary
from helpdesk_triage.policy.customer_deadline import stated_deadline
from helpdesk_triage.policy.decision_policy import DecisionPolicy, Decisions, HeadDecision
from helpdesk_triage.policy.keyword_rules import KeywordRules
from helpdesk_triage.policy.labels import HEADS, LABELS
from helpdesk_triage.policy.prediction import Classifier, TextPrediction
from helpdesk_triage.policy.replies import ReplyTemplateLibrary
from helpdesk_triage.policy.review import ReviewRules
from helpdesk_triage.policy.settings import Settings
from helpdesk_triage.policy.sla import SlaPolicy, parse_timestamp
from helpdesk_triage.policy.text_normalization import normalize_text

# SLA arithmetic works in business days; far-off years only overflow datetime.
EARLIEST_RECEIVED_AT = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_RECEIVED_AT = datetime(2200, 1, 1, tzinfo=UTC)


class InvalidInput(ValueError):
    """A message that cannot be triaged (an HTTP 422): ``code``, ``message`` and the ``field`` at fault."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


# ---------------------------------------------------------------------------------------------
# What goes in and what comes out (the HTTP contract uses these same models)
# ---------------------------------------------------------------------------------------------


def _no_control_characters(value: str) -> str:
    # Identifiers and names are stored and echoed: NUL breaks PostgreSQL text, lone surrogates break
    # UTF-8 encoding, other controls only hide what an agent sees. (``text`` itself is normalised instead.)
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in value):
        raise ValueError("must not contain control characters or unpaired surrogates")
    return value


CleanStr = Annotated[str, AfterValidator(_no_control_characters)]


class TriageRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(..., description="The customer's message.", examples=["快递五天了还没到，订单号[ORDERID_1234]，麻烦查一下"])
    id: CleanStr | None = Field(None, min_length=1, max_length=128, description="Your ticket id; generated when absent.")
    received_at: str | None = Field(None, description="ISO-8601 with offset, e.g. 2026-03-10T10:00:00+08:00; default now.")
    channel: CleanStr | None = Field(None, max_length=64)
    customer_name: CleanStr | None = Field(None, max_length=64)
    order_id: CleanStr | None = Field(None, max_length=64)


class HeadResult(BaseModel):
    label: str = Field(..., description="The decided label (data/decision_policy.toml or the model's own policy file).")
    name: str
    confidence: float = Field(..., description="The calibrated probability of the decided label.")
    scores: dict[str, float] = Field(..., description="Calibrated probability of every label.")
    decided_by: Literal["threshold", "cue", "cost", "argmax"] = Field(
        ..., description="What decided the label: a fitted threshold for a target recall, the keyword rules' evidence, "
        "the expected cost of a mistake (data/routing_costs.toml), or the most probable label.")
    routing: Literal["auto", "review"] = Field(
        ..., description="auto: routed without a person (the label's automation level and probability allow it).")
    most_probable: str = Field(..., description="The most probable label, which the decision may overrule.")


class SlaResult(BaseModel):
    first_response_due: str
    resolution_due: str
    rule: str = Field(..., description="The SLA rule; '+customer_deadline' when a deadline stated in the message capped it.")
    customer_deadline: str | None = Field(None, description="A deadline the customer stated (明天要用 …), when one was read.")
    clock: str = Field(..., description="How the first-response window is counted: business (working hours) or calendar.")
    resolution_clock: str = Field(..., description="How the resolution window is counted: business or calendar.")
    timezone: str
    escalate_immediately: bool


class SubcaseResult(BaseModel):
    code: str = Field(..., description="The sub-case of data/subcases.toml, as <category>.<code>, e.g. B.invoice.")
    name: str
    probability: float | None = Field(..., description="The model's probability of it within the decided category; "
                                      "null when the model has no sub-case output (keyword rules, an older model).")
    decided_by: Literal["model", "cue", "fallback"] = Field(
        ..., description="model: the sub-case head was sure enough; cue: a keyword of data/subcases.toml; "
        "fallback: the category's 'other'.")


class ReplyOptionResult(BaseModel):
    source: str = Field(..., description="A template id of data/reply_templates.toml, or answer:<id> of data/answer_library.toml.")
    subcase: str
    text: str


class ReplyResult(BaseModel):
    template_id: str = Field(..., description="The same as source (kept for older clients).")
    source: str = Field(..., description="A template id of data/reply_templates.toml, or answer:<id> of data/answer_library.toml.")
    subcase: SubcaseResult
    text: str
    answer_similarity: float | None = Field(None, description="Cosine similarity of the matched library question, when source is an answer.")
    alternatives: list[ReplyOptionResult] = Field(..., description="The next best replies (up to two), for one-click choice.")


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


# ---------------------------------------------------------------------------------------------
# The step
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Classification:
    """The model's answer for texts in input order."""

    predictions: list[TextPrediction]
    model_version: str
    degraded_reason: str | None  # None when the model answered; else why the keyword rules did
    over_window: list[bool]  # the model saw only the start of the text (token window)
    embed: Callable[[list[str]], Any] | None = None  # the model's text embedding (for the answer library), if any


@dataclass(frozen=True)
class Prepared:
    request: TriageRequest
    text: str  # normalised, not cut: what is stored
    model_text: str  # normalised and cut to max_text_chars: what the model sees
    cut: bool
    received_at: datetime


@dataclass(frozen=True)
class Decision:
    """One triaged message: what was asked, what the model said, and the answer."""

    item: Prepared
    prediction: TextPrediction
    response: TriageResponse


@dataclass(frozen=True)
class TriagePolicy:
    """Everything the triage step decides with besides the model: SLA policy, reply templates, review rules
    and the text limit. ``TriagePolicy.load()`` takes them from the settings (``TRIAGE_*``)."""

    sla: SlaPolicy
    replies: ReplyTemplateLibrary
    review: ReviewRules
    max_text_chars: int
    decisions: DecisionPolicy
    answers: AnswerLibrary
    subcase_min_probability: float = 0.3

    @classmethod
    def load(cls, settings: Settings | None = None, model_dir: str | Path | None = None) -> "TriagePolicy":
        """``model_dir``: the folder of the model that serves, whose own ``decision_policy.toml`` is used when it has
        one and the ``decision_policy`` setting is unset."""
        settings = settings or Settings()
        return cls.from_files(settings.sla_policy, settings.reply_templates, settings.review_threshold,
                              settings.review_margin, settings.max_text_chars,
                              DecisionPolicy.for_model(model_dir or settings.model_dir, settings.decision_policy),
                              settings.answer_library, settings.subcase_min_probability)

    @classmethod
    def from_files(cls, sla_policy: str | Path | None, reply_templates: str | Path | None, review_threshold: float,
                   review_margin: float, max_text_chars: int, decisions: DecisionPolicy | None = None,
                   answer_library: str | Path | None = None, subcase_min_probability: float = 0.3) -> "TriagePolicy":
        replies = ReplyTemplateLibrary.load(reply_templates)
        return cls(SlaPolicy.load(sla_policy), replies,
                   ReviewRules(review_threshold, review_margin, KeywordRules.load().critical_cue), max_text_chars,
                   decisions or DecisionPolicy.load(), AnswerLibrary.load(answer_library, replies.check_reply_text),
                   subcase_min_probability)

    def prepare(self, request: TriageRequest, now: datetime, field_prefix: str = "") -> Prepared:
        """Normalise and check one message (InvalidInput names the field: ``items.3.text``)."""
        full = normalize_text(request.text, max_chars=None).text
        if not full:
            raise InvalidInput("empty_text", "text is empty after normalisation (only whitespace or control characters)",
                               f"{field_prefix}text")
        cut = normalize_text(full, max_chars=self.max_text_chars)
        return Prepared(request, full, cut.text, cut.truncated, _received_at(request, now, field_prefix))

    def decide(self, item: Prepared, decided: Decisions, result: Classification, over_window: bool,
               prediction: TextPrediction | None = None, answer_index: AnswerIndex | None = None) -> TriageResponse:
        """The answer for one message from its decided labels (:meth:`DecisionPolicy.decide` over the batch);
        ``prediction`` (the model's own, with the sub-case distribution and the embedding) and ``answer_index``
        choose the reply."""
        labels = decided.labels()
        category = labels["category"]
        reasons = self.review.reasons(decided.as_prediction(), result.degraded_reason, item.model_text)
        reasons += [f"routing: {head} {d.label} is for review (p={d.probability:.2f})"
                    for head, d in decided.heads.items() if d.routing == "review" and head != "sentiment"]
        sla = self.sla.deadlines(category, labels["severity"], item.received_at)
        stated = stated_deadline(item.model_text, item.received_at.astimezone(self.sla.calendar.timezone))
        if stated is not None:
            capped = sla.capped_at(stated)
            if capped is not sla:
                reasons.append(f"customer deadline {_chinese_time(stated)} is earlier than the SLA")
            sla = capped
        request = item.request
        scores = prediction.subcases if prediction is not None else None
        subcase = self.replies.taxonomy.choose(category, item.model_text, scores, self.subcase_min_probability)
        answers = []
        if answer_index is not None and prediction is not None and labels["sentiment"] != "positive":
            answers = answer_index.matches(prediction.embedding, item.model_text, category, scores)
        reply = self.replies.suggest(
            category, labels["severity"], labels["sentiment"], item.model_text, subcase,
            ranked_subcases=self.replies.taxonomy.ranked(category, scores), answers=answers,
            answer_floor=self.answers.min_similarity,
            slots={
                "customer_name": request.customer_name,
                "order_id": request.order_id,
                "first_response_due": _chinese_time(sla.first_response_due),
                "resolution_due": _chinese_time(sla.resolution_due),
            },
        )
        similarity = next((m.similarity for m in answers if m.entry.source == reply.best.source), None)
        return TriageResponse(
            id=request.id or uuid.uuid4().hex,
            model_version=result.model_version,
            **{head: _head_result(head, decided.heads[head]) for head in HEADS},
            needs_human_review=bool(reasons),
            review_reasons=reasons,
            sla=SlaResult(**{k: v for k, v in sla.to_dict().items() if k in SlaResult.model_fields},
                          customer_deadline=stated.isoformat() if stated is not None else None),
            queue=LABELS.queue_for(category, labels["severity"]),
            reply=ReplyResult(
                template_id=reply.best.source, source=reply.best.source, text=reply.best.text,
                subcase=SubcaseResult(code=reply.best.subcase, name=self.replies.taxonomy.get(reply.best.subcase).name,
                                      probability=_rounded(dict(self.replies.taxonomy.ranked(category, scores)).get(reply.best.subcase)),
                                      decided_by=subcase.decided_by if reply.best.subcase == subcase.key else "model"),
                answer_similarity=similarity,
                alternatives=[ReplyOptionResult(source=o.source, subcase=o.subcase, text=o.text) for o in reply.alternatives]),
            truncated=item.cut or over_window,
            degraded=result.degraded_reason is not None,
        )


def classify_with(model: Classifier) -> Callable[[list[str]], Classification]:
    """The plain model call: ``model.predict`` on the texts, with the token-window flag where the model has one."""

    def classify(texts: list[str]) -> Classification:
        predictions = model.predict(texts) if texts else []
        return Classification(predictions, model.version, None, over_window(model, texts), getattr(model, "embed", None))

    return classify


def over_window(model: Classifier, texts: Sequence[str]) -> list[bool]:
    """Whether each text runs past the model's token window (False for a model without one, e.g. the rules)."""
    count = getattr(model, "token_count", None)
    window = getattr(getattr(model, "config", None), "max_length", None)
    if not callable(count) or not isinstance(window, int):
        return [False] * len(texts)
    return [count(text) > window for text in texts]


def decide(requests: Sequence[TriageRequest], classify: Callable[[list[str]], Classification], policy: TriagePolicy,
           now: datetime | None = None, field_prefix: str = "items.{index}.") -> list[Decision]:
    """Triage in order with one ``classify`` call. Every item is checked first, so an invalid one
    (InvalidInput) leaves nothing classified."""
    now = now or datetime.now(UTC)
    prepared = [policy.prepare(request, now, field_prefix.format(index=i)) for i, request in enumerate(requests)]
    result = classify([p.model_text for p in prepared])
    if len(result.predictions) != len(prepared):
        raise RuntimeError(f"the model returned {len(result.predictions)} predictions for {len(prepared)} texts")
    decided = policy.decisions.decide(result.predictions, [p.model_text for p in prepared], result.model_version,
                                      degraded=result.degraded_reason is not None)
    index = policy.answers.index(result.model_version, result.embed) if result.degraded_reason is None else None
    return [Decision(p, prediction, policy.decide(p, d, result, over, prediction, index))
            for p, prediction, d, over in zip(prepared, result.predictions, decided, result.over_window)]


def triage(messages: Sequence[str | TriageRequest], received_at: str | None = None, *, model: Classifier,
           policy: TriagePolicy | None = None, now: datetime | None = None) -> list[TriageResponse]:
    """What ``POST /v1/triage`` answers for each message (a text, or a :class:`TriageRequest` with id, order id …),
    without storing anything. ``received_at`` (ISO-8601 with offset) applies to plain texts; default now."""
    requests = [m if isinstance(m, TriageRequest) else TriageRequest(text=m, received_at=received_at) for m in messages]
    policy = policy or TriagePolicy.load(model_dir=getattr(model, "folder", None))
    return [d.response for d in decide(requests, classify_with(model), policy, now)]


def _received_at(request: TriageRequest, now: datetime, field_prefix: str) -> datetime:
    if request.received_at is None:
        return now
    field = f"{field_prefix}received_at"
    try:
        received_at = parse_timestamp(request.received_at)
    except ValueError as exc:
        raise InvalidInput("invalid_timestamp", str(exc), field) from exc
    if not EARLIEST_RECEIVED_AT <= received_at < LATEST_RECEIVED_AT:
        raise InvalidInput("invalid_timestamp", "received_at must lie between 1970 and 2200", field)
    return received_at


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _chinese_time(moment: datetime) -> str:
    return f"{moment.month}月{moment.day}日{moment:%H:%M}"


def _head_result(head: str, decision: HeadDecision) -> HeadResult:
    return HeadResult(
        label=decision.label,
        name=LABELS.get(head, decision.label).name_zh,
        confidence=round(decision.probability, 4),
        scores={k: round(v, 4) for k, v in decision.scores.items()},
        decided_by=decision.rule,
        routing=decision.routing,
        most_probable=decision.argmax_label,
    )
