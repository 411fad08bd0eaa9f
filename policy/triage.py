"""The triage step, pure: a message and the model's labels → SLA deadlines, queue, suggested reply and the
reasons for human review. No store, no HTTP: the service calls this same code and then stores what it returns.

    from helpdesk_triage.model import TriageModel
    from helpdesk_triage.policy.triage import triage

    answers = triage(["快递五天了还没到"], received_at="2026-03-10T20:30:00+08:00", model=TriageModel.load())

Each answer is the :class:`TriageResponse` that ``POST /v1/triage`` returns for the same message.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, GetJsonSchemaHandler, StringConstraints
from pydantic_core import PydanticCustomError, core_schema

from helpdesk_triage.policy.answer_library import AnswerIndex, AnswerLibrary
from helpdesk_triage.policy.customer_deadline import stated_deadline
from helpdesk_triage.policy.decision_policy import DecisionPolicy, Decisions, HeadDecision
from helpdesk_triage.policy.keyword_rules import KeywordRules
from helpdesk_triage.policy.labels import HEADS, LABELS
from helpdesk_triage.policy.prediction import Classifier, TextPrediction
from helpdesk_triage.policy.replies import MAX_SLOT_CHARS, ReplyTemplateLibrary, slot_value_pattern
from helpdesk_triage.policy.review import ReviewRules
from helpdesk_triage.policy.settings import Settings
from helpdesk_triage.policy.sla import SlaPolicy, parse_timestamp
from helpdesk_triage.policy.text_normalization import normalize_text, visible_text_pattern


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


# What _no_control_characters refuses, for the contract (lone surrogates aside: no JSON Schema string holds one).
NO_CONTROL_CHARACTERS_PATTERN = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"


class JsonSchemaExtra:
    """Annotation metadata that adds keywords to a field's JSON Schema only: the contract states a rule
    that a validator (or the triage step) enforces in Python."""

    def __init__(self, **keywords: object) -> None:
        self.keywords = keywords

    def __get_pydantic_json_schema__(self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler) -> dict:
        return {**handler(schema), **self.keywords}


def clean_str(max_length: int, min_length: int | None = None) -> object:
    """A string without control characters, of at most ``max_length`` characters. The limits are checked on
    the string itself, so that pydantic's message says characters (not "items")."""
    return Annotated[str, StringConstraints(min_length=min_length, max_length=max_length),
                     AfterValidator(_no_control_characters), JsonSchemaExtra(pattern=NO_CONTROL_CHARACTERS_PATTERN)]


# received_at: a real date of 1970-2199 (SLA arithmetic works in business days; far-off years only overflow
# datetime), "T" or a space, HH:MM[:SS[.fraction]], and Z or an offset: what datetime.fromisoformat reads
# of ISO-8601, narrowed to one spelling that the contract (a JSON Schema pattern) can state exactly.
_YEAR = "(?:19[7-9][0-9]|2[01][0-9]{2})"
_LEAP_YEAR = "(?:19(?:7[26]|8[048]|9[26])|20(?:[02468][048]|[13579][26])|21(?:0[48]|[2468][048]|[13579][26]))"
_MONTH_DAY = ("(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"
              "|02-(?:0[1-9]|1[0-9]|2[0-8]))")
_TIME = "(?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:\\.[0-9]+)?)?"
_OFFSET = "(?:Z|[+-](?:[01][0-9]|2[0-3])(?::?[0-5][0-9])?)"
RECEIVED_AT_PATTERN = f"^(?:{_YEAR}-{_MONTH_DAY}|{_LEAP_YEAR}-02-29)[T ]{_TIME}{_OFFSET}$"
_RECEIVED_AT = re.compile(RECEIVED_AT_PATTERN.removesuffix("$") + "\\Z")  # "$" would allow a final newline
_ANY_DATE_TIME = re.compile(f"[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}[T ]{_TIME}{_OFFSET}?\\Z")


def _check_received_at(value: str) -> str:
    if _RECEIVED_AT.match(value):
        return value
    if _ANY_DATE_TIME.match(value):
        problem = ("has no UTC offset (add e.g. +08:00 or Z)" if not re.search(f"{_OFFSET}\\Z", value)
                   else "is not a real date and time between 1970 and 2199")
    else:
        problem = "is not an ISO-8601 date and time such as 2026-03-10T10:00:00+08:00"
    raise PydanticCustomError("invalid_timestamp", "received_at {problem}", {"problem": problem})


ReceivedAt = Annotated[str, AfterValidator(_check_received_at), JsonSchemaExtra(pattern=RECEIVED_AT_PATTERN)]
# The text is checked by the triage step (empty_text), after normalisation; the contract states the same rule.
MessageText = Annotated[str, JsonSchemaExtra(minLength=1, pattern=visible_text_pattern())]

REQUEST_SLOTS = ("customer_name", "order_id")  # the reply slots a request fills


def _slot_value_schema(schema: dict) -> None:
    schema.update(maxLength=MAX_SLOT_CHARS, pattern=slot_value_pattern())


# A reply slot value: checked by the triage step (TriagePolicy.prepare, with the configured handbook's forbidden
# phrases), so that every refusal says invalid_slot; the schema states the length and the characters.
SlotValue = Annotated[str, Field(json_schema_extra=_slot_value_schema)]


def _slot_description(slot: str, what: str) -> str:
    return (f"{what}; fills the reply's {{{slot}}} slot as given. At most {MAX_SLOT_CHARS} characters. Refused "
            "(422 invalid_slot, never dropped or cleaned) when it holds a control, invisible format (bidi override, "
            "zero-width space …), private-use character, a line separator, a markup character (< > { } [ ] |) "
            "or a phrase the reply handbook forbids (forbidden_phrases of the reply templates).")


class TriageRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: MessageText = Field(
        ..., description="The customer's message: at least one character that is not whitespace or invisible "
        "(control, format character); longer than TRIAGE_MAX_TEXT_CHARS is cut (truncated).",
        examples=["快递五天了还没到，订单号[ORDERID_1234]，麻烦查一下"])
    id: clean_str(128, min_length=1) | None = Field(None, description="Your ticket id; generated when absent.")
    received_at: ReceivedAt | None = Field(
        None, description="ISO-8601 with a UTC offset, e.g. 2026-03-10T10:00:00+08:00: a real date in 1970-2199, "
        "T or a space, HH:MM[:SS[.fraction]], Z or ±HH[:MM]; default now.")
    channel: clean_str(64) | None = None
    customer_name: SlotValue | None = Field(None, description=_slot_description(
        "customer_name", "The customer's name or form of address, e.g. 张女士"))
    order_id: SlotValue | None = Field(None, description=_slot_description("order_id", "The order number"))


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
        received_at = _received_at(request, now, field_prefix)
        self._check_slots(request, field_prefix)
        return Prepared(request, full, cut.text, cut.truncated, received_at)

    def _check_slots(self, request: TriageRequest, field_prefix: str) -> None:
        for name in REQUEST_SLOTS:
            value = getattr(request, name)
            if value is None:
                continue
            try:
                self.replies.check_slot_value(name, value)
            except ValueError as exc:
                raise InvalidInput("invalid_slot", str(exc), f"{field_prefix}{name}") from None

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
                **{name: getattr(request, name) for name in REQUEST_SLOTS},
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
    """Triage in order with one ``classify`` call. Every item is checked first (and no two may share an id),
    so an invalid one (InvalidInput) leaves nothing classified."""
    now = now or datetime.now(UTC)
    prepared = [policy.prepare(request, now, field_prefix.format(index=i)) for i, request in enumerate(requests)]
    _refuse_duplicate_ids(requests, field_prefix)
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


def _refuse_duplicate_ids(requests: Sequence[TriageRequest], field_prefix: str) -> None:
    # Two answers under one id are stored as one decision (the later overwrites the earlier), and feedback
    # on that id would correct a message other than the one the agent saw.
    first_index: dict[str, int] = {}
    for index, request in enumerate(requests):
        if request.id is None:
            continue
        if request.id in first_index:
            raise InvalidInput("duplicate_id", f"items {first_index[request.id]} and {index} have the same id "
                               f"{request.id!r}; ids must be unique within a batch", f"{field_prefix.format(index=index)}id")
        first_index[request.id] = index


def _received_at(request: TriageRequest, now: datetime, field_prefix: str) -> datetime:
    if request.received_at is None:
        return now
    try:
        return parse_timestamp(request.received_at)
    except ValueError as exc:  # only for a request built without validation (model_construct)
        raise InvalidInput("invalid_timestamp", str(exc), f"{field_prefix}received_at") from exc


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
