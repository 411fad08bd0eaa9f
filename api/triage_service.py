"""Triage decisions: normalise, classify, derive SLA deadlines, queue, review flag and reply, and store them.

Every model call goes through :meth:`TriageService.classify` (one call per request, batches included):
it hands the texts to the micro-batcher (``api.micro_batcher``), which runs concurrent requests together
in one model call, waits for its answer under the per-request time budget, and answers from the keyword
rules (``degraded``) when the model is missing, fails or runs out of time.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import UTC, datetime

from api.decision_store import (
    DecisionRecord,
    DecisionStore,
    FeedbackRecord,
    UnknownDecision,
)
from api.metrics import TriageMetrics
from api.micro_batcher import MicroBatcher
from api.reply_templates import ReplyTemplateLibrary
from api.schemas import (
    FeedbackRequest,
    FeedbackResponse,
    HeadResult,
    ReplyResult,
    SlaResult,
    TriageRequest,
    TriageResponse,
)
from api.settings import Settings
from api.sla_policy import SlaPolicy, parse_timestamp
from data.label_schema import HEADS, LABELS
from data.pii_masking import mask_pii
from data.text_normalization import normalize_text
from model.keyword_rules import KeywordClassifier
from model.prediction import Classifier, TextPrediction

log = logging.getLogger("triage.service")

REVIEWED_HEADS = ("category", "severity")
# SLA arithmetic works in business days; far-off years only overflow datetime.
EARLIEST_RECEIVED_AT = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_RECEIVED_AT = datetime(2200, 1, 1, tzinfo=UTC)
WARM_UP_TEXT = "您好，我的快递到哪了？"


class InvalidInput(ValueError):
    """A request that is well-formed JSON but cannot be triaged; becomes a 422."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


class StorageUnavailable(RuntimeError):
    """The store did not confirm a write; the client must not take the answer as recorded (503)."""


@dataclass(frozen=True)
class Classification:
    """What one :meth:`TriageService.classify` call produced, for texts in input order."""

    predictions: list[TextPrediction]
    model_version: str
    degraded_reason: str | None  # None when the model answered
    over_window: list[bool]  # the model saw only the start of the text (token window)


@dataclass(frozen=True)
class _Prepared:
    request: TriageRequest
    text: str  # normalised, not cut: what is stored
    model_text: str  # normalised and cut to max_text_chars: what the model sees
    cut: bool
    received_at: datetime


class TriageService:
    def __init__(
        self,
        settings: Settings,
        store: DecisionStore,
        metrics: TriageMetrics | None = None,
        classifier: Classifier | None = None,
        sla_policy: SlaPolicy | None = None,
        replies: ReplyTemplateLibrary | None = None,
    ) -> None:
        """``classifier`` given: serve it at once (tests, embedding). Otherwise call :meth:`load_model`."""
        self.settings = settings
        self.store = store
        self.metrics = metrics or TriageMetrics()
        self.sla_policy = sla_policy or SlaPolicy.load(settings.sla_policy)
        self.replies = replies or ReplyTemplateLibrary.load(settings.reply_templates)
        self.fallback = KeywordClassifier()
        self.critical_cue = self.fallback.rules.critical_cue
        self._batcher = MicroBatcher(_predict_batch, max_batch=settings.max_model_batch,
                                     max_wait_s=settings.batch_wait_ms / 1000, on_batch=self.metrics.observe_model_batch)
        self._model: Classifier | None = None
        self._unavailable_reason: str | None = None
        self._ready = threading.Event()
        if classifier is not None:
            self._serve(classifier, "keyword rules configured instead of a model" if isinstance(classifier, KeywordClassifier) else None)

    # -- model lifecycle ---------------------------------------------------------------------

    def load_model(self) -> None:
        """Load and warm the configured model (slow: run it off the event loop). Never raises: a model
        that cannot be loaded leaves the keyword rules serving, degraded, with the reason."""
        try:
            # The runtime travels as an argument only when it is not the one TRIAGE_RUNTIME gives.
            runtime = {} if self.settings.runtime == configured_runtime() else {"runtime": self.settings.runtime}
            classifier, degraded = load_classifier(self.settings.model_dir, **runtime)
            if degraded:
                self._serve(classifier, "no model found")
                return
            classifier.predict([WARM_UP_TEXT])
        except Exception as exc:  # any load failure means: serve the rules, say why
            log.exception("model_load_failed", extra={"fields": {"error": type(exc).__name__}})
            self._serve(self.fallback, f"the model failed to load ({type(exc).__name__})")
            return
        self._serve(classifier, None)
        log.info("model_ready", extra={"fields": {"model_version": classifier.version}})

    def _serve(self, classifier: Classifier, unavailable_reason: str | None) -> None:
        if isinstance(classifier, KeywordClassifier):
            self.fallback = classifier  # rules given by the caller answer the degraded requests too
        self._model = classifier
        self._unavailable_reason = unavailable_reason
        self._ready.set()

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def wait_ready(self, timeout: float | None = None) -> bool:
        return self._ready.wait(timeout)

    @property
    def model_version(self) -> str:
        return self._model.version if self._model is not None else "loading"

    @property
    def degraded_reason(self) -> str | None:
        """Why every answer is degraded (no model), or None while the model serves."""
        return self._unavailable_reason

    def close(self) -> None:
        self._batcher.close()

    # -- the one model call --------------------------------------------------------------------

    def classify(self, texts: list[str]) -> Classification:
        """Classify normalised texts with one model call; never raises for a model failure."""
        model = self._model
        if model is None or self._unavailable_reason is not None:
            return self._fallback(texts, "no_model", self._unavailable_reason or "the model is not loaded")
        if not texts:
            return Classification([], model.version, None, [])
        budget_ms = self.settings.request_timeout_ms
        try:
            future = self._batcher.submit(model, texts)
            results = future.result(timeout=budget_ms / 1000)
        except FutureTimeout:
            future.cancel()  # still queued: never runs; already running: its result is dropped
            return self._fallback(texts, "timeout", f"the model did not answer within {budget_ms} ms")
        except Exception as exc:  # a model failure must not become a 500
            log.exception("model_failed", extra={"fields": {"error": type(exc).__name__}})
            return self._fallback(texts, "model_error", f"the model failed ({type(exc).__name__})")
        return Classification([p for p, _ in results], model.version, None, [over for _, over in results])

    def _fallback(self, texts: list[str], reason: str, message: str) -> Classification:
        self.metrics.observe_degraded(reason, len(texts))
        predictions = self.fallback.predict(texts)
        return Classification(predictions, self.fallback.version, f"degraded: {message}; answered by keyword rules",
                              [False] * len(texts))

    # -- triage --------------------------------------------------------------------------------

    def triage(self, request: TriageRequest, now: datetime | None = None) -> TriageResponse:
        return self.triage_many([request], now, field_prefix="")[0]

    def triage_many(self, requests: list[TriageRequest], now: datetime | None = None,
                    field_prefix: str = "items.{index}.") -> list[TriageResponse]:
        """Triage in order with one model call; all are stored in one transaction, or StorageUnavailable.

        Every item is validated first, so an invalid one (InvalidInput, field ``items.3.text``) leaves
        nothing classified or stored.
        """
        now = now or datetime.now(UTC)
        prepared = [self._prepare(request, now, field_prefix.format(index=i)) for i, request in enumerate(requests)]
        result = self.classify([p.model_text for p in prepared])
        responses = [self._decide(p, prediction, result, over)
                     for p, prediction, over in zip(prepared, result.predictions, result.over_window)]
        self._store(prepared, responses, result, now)
        self.metrics.observe_decisions(responses)
        return responses

    def _prepare(self, request: TriageRequest, now: datetime, field_prefix: str) -> _Prepared:
        full = normalize_text(request.text, max_chars=None).text
        if not full:
            raise InvalidInput("empty_text", "text is empty after normalisation (only whitespace or control characters)",
                               f"{field_prefix}text")
        cut = normalize_text(full, max_chars=self.settings.max_text_chars)
        return _Prepared(request, full, cut.text, cut.truncated, self._received_at(request, now, field_prefix))

    @staticmethod
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

    def _decide(self, item: _Prepared, prediction: TextPrediction, result: Classification, over_window: bool) -> TriageResponse:
        labels = prediction.labels()
        reasons = self._review_reasons(prediction, result.degraded_reason, item.model_text)
        sla = self.sla_policy.deadlines(labels["category"], labels["severity"], item.received_at)
        request = item.request
        reply = self.replies.suggest(
            labels["category"], labels["severity"], labels["sentiment"], item.model_text,
            slots={
                "customer_name": request.customer_name,
                "order_id": request.order_id,
                "first_response_due": _chinese_time(sla.first_response_due),
            },
        )
        return TriageResponse(
            id=request.id or uuid.uuid4().hex,
            model_version=result.model_version,
            **{head: _head_result(head, prediction) for head in HEADS},
            needs_human_review=bool(reasons),
            review_reasons=reasons,
            sla=SlaResult(**{k: v for k, v in sla.to_dict().items() if k in SlaResult.model_fields}),
            queue=LABELS.queue_for(labels["category"], labels["severity"]),
            reply=ReplyResult(template_id=reply.template_id, text=reply.text),
            truncated=item.cut or over_window,
            degraded=result.degraded_reason is not None,
        )

    def _review_reasons(self, prediction: TextPrediction, degraded_reason: str | None, text: str) -> list[str]:
        reasons = [degraded_reason] if degraded_reason else []
        for head in REVIEWED_HEADS:
            result = prediction.head(head)
            if result.confidence < self.settings.review_threshold:
                reasons.append(f"low_confidence: {head} {result.confidence:.2f} < {self.settings.review_threshold}")
            elif result.margin() < self.settings.review_margin:
                reasons.append(f"close_call: {head} top two within {self.settings.review_margin}")
        if prediction.severity.label == "critical":
            reasons.append("critical_severity")
        elif (cue := self.critical_cue(text)) is not None:
            # A safety net for the costliest miss: the model is not sure enough of critical cases (42% recall
            # on the labelled corpus cases); a human looks at every message with a critical cue it calls lower.
            reasons.append(f"critical_cue: {cue}")
        return reasons

    def _store(self, prepared: list[_Prepared], responses: list[TriageResponse], result: Classification, now: datetime) -> None:
        decided_at = datetime.now(UTC).isoformat()
        records = [
            DecisionRecord(
                id=response.id,
                masked_text=mask_pii(item.text),
                raw_text=item.text if self.settings.store_raw_text else None,
                labels=prediction.labels(),
                scores={head: dict(prediction.head(head).scores) for head in HEADS},
                model_version=response.model_version,
                degraded=response.degraded,
                received_at=item.received_at.isoformat(),
                decided_at=decided_at,
            )
            for item, response, prediction in zip(prepared, responses, result.predictions)
        ]
        _write(lambda: self.store.record_decisions(records), "record_decisions")

    # -- feedback ------------------------------------------------------------------------------

    def record_feedback(self, request: FeedbackRequest) -> FeedbackResponse:
        """Store an agent's correction. Raises InvalidInput (nothing to correct), UnknownDecision, StorageUnavailable."""
        corrections = request.corrections()
        if not corrections:
            raise InvalidInput("no_correction", f"give at least one of {', '.join(HEADS)}")
        record = FeedbackRecord(id=request.id, corrections=corrections, agent=request.agent, note=request.note,
                                created_at=datetime.now(UTC).isoformat())
        feedback_id = _write(lambda: self.store.record_feedback(record), "record_feedback")
        return FeedbackResponse(feedback_id=feedback_id, id=request.id, applied=corrections)

    def storage_ok(self) -> bool:
        try:
            return bool(self.store.ping())
        except Exception:  # noqa: BLE001
            return False


def load_classifier(model_dir, runtime: str | None = None):
    """model.loading.load_classifier, imported on first use: torch and transformers take seconds to
    import, which a service given its classifier (tests, the keyword rules) never needs."""
    from model.loading import load_classifier as load

    return load(model_dir, runtime=runtime)


def configured_runtime() -> str:
    """model.loading.configured_runtime, imported on first use (see load_classifier)."""
    from model.loading import configured_runtime as runtime

    return runtime()


def _predict_batch(model: Classifier, texts: list[str]) -> list[tuple[TextPrediction, bool]]:
    """One model call for the texts of a micro-batch: (prediction, over the token window) per text."""
    predictions = model.predict(texts)
    if len(predictions) != len(texts):
        raise RuntimeError(f"the model returned {len(predictions)} predictions for {len(texts)} texts")
    return list(zip(predictions, _over_window(model, texts)))


def _over_window(model: Classifier, texts: list[str]) -> list[bool]:
    # The transformer cuts at its token window (128 tokens for the embedded model); the Classifier
    # protocol has no window, so ask the models that expose one.
    count = getattr(model, "token_count", None)
    window = getattr(getattr(model, "config", None), "max_length", None)
    if not callable(count) or not isinstance(window, int):
        return [False] * len(texts)
    return [count(text) > window for text in texts]


def _write(work: Callable, what: str):
    try:
        return work()
    except UnknownDecision:
        raise
    except Exception as exc:  # any store failure: the write is not confirmed
        log.error("storage_write_failed", extra={"fields": {"operation": what, "error": type(exc).__name__}})
        raise StorageUnavailable(what) from exc


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
