"""The service around the triage step: the model's lifecycle, the one guarded model call, and storage.

The decision itself — labels → SLA → queue → reply → review reasons — is ``policy.triage.decide``, the same
code a Python user calls without a store. Every model call goes through :meth:`TriageService.classify` (one
call per request, batches included): it hands the texts to the micro-batcher (``api.micro_batcher``), which
runs concurrent requests together in one model call, waits for its answer under the per-request time budget,
and answers from the keyword rules (``degraded``) when the model is missing, fails or runs out of time.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import replace
from datetime import UTC, datetime

from helpdesk_triage.api.admission import Admission, Overloaded
from helpdesk_triage.api.decision_store import (
    DecisionRecord,
    DecisionStore,
    FeedbackRecord,
    UnknownDecision,
)
from helpdesk_triage.api.metrics import TriageMetrics
from helpdesk_triage.api.micro_batcher import MicroBatcher
from helpdesk_triage.api.schemas import FeedbackRequest, FeedbackResponse, TriageRequest, TriageResponse
from helpdesk_triage.policy.decision_policy import DecisionPolicy
from helpdesk_triage.policy.settings import Settings
from helpdesk_triage.policy.labels import HEADS
from helpdesk_triage.policy.pii_masking import mask_pii
from helpdesk_triage.policy.keyword_rules import KeywordClassifier
from helpdesk_triage.policy.prediction import Classifier, TextPrediction
from helpdesk_triage.policy.triage import Classification, Decision, InvalidInput, TriagePolicy, decide, over_window

log = logging.getLogger("triage.service")

WARM_UP_TEXT = "您好，我的快递到哪了？"
# /readyz trusts a store write or ping this recent instead of pinging again (a probe must not queue behind writes).
STORAGE_FRESH_S = 2.0
STORAGE_PING_TIMEOUT_S = 0.5


class StorageUnavailable(RuntimeError):
    """The store did not confirm a write; the client must not take the answer as recorded (503)."""


class TriageService:
    def __init__(
        self,
        settings: Settings,
        store: DecisionStore,
        metrics: TriageMetrics | None = None,
        classifier: Classifier | None = None,
        policy: TriagePolicy | None = None,
        admission: Admission | None = None,
    ) -> None:
        """``classifier`` given: serve it at once (tests, embedding). Otherwise call :meth:`load_model`."""
        self.settings = settings
        self.store = store
        self.metrics = metrics or TriageMetrics()
        self._policy_given = policy is not None
        self.policy = policy or TriagePolicy.load(settings)
        self.fallback = KeywordClassifier()
        self.admission = admission or admission_for(settings)
        self._batcher = MicroBatcher(_predict_batch, max_batch=settings.max_model_batch,
                                     max_wait_s=settings.batch_wait_ms / 1000, on_batch=self.metrics.observe_model_batch,
                                     on_done=self.admission.observe_model_call)
        self._model: Classifier | None = None
        self._unavailable_reason: str | None = None
        self._ready = threading.Event()
        # Request threads doing Python work (checks, decisions) at the same time. The GIL runs one at a time
        # anyway; a burst of dozens woken together by one model batch would only starve the event loop, and
        # with it the health probes and the admission of the next requests.
        self._python_turns = threading.BoundedSemaphore(settings.max_concurrent_requests)
        self._storage_ok_at: float | None = None
        # Probes ping the store on a thread of their own, never behind triage work in the request threads.
        self._probe_pool = ThreadPoolExecutor(1, thread_name_prefix="triage-probe")
        if classifier is not None:
            self._serve(classifier, "keyword rules configured instead of a model" if isinstance(classifier, KeywordClassifier) else None)

    # -- model lifecycle ---------------------------------------------------------------------

    def load_model(self) -> None:
        """Load and warm the configured model (slow: run it off the event loop). Never raises: a model
        that cannot be loaded leaves the keyword rules serving, degraded, with the reason."""
        try:
            classifier, degraded = load_classifier(self.settings.model_dir, self.settings.runtime, self.settings.cache_dir)
            if degraded:
                self._serve(classifier, "no model found")
                return
            classifier.predict([WARM_UP_TEXT])
            # the answer library's questions, embedded by this model once, before the first request
            self.policy.answers.index(classifier.version, getattr(classifier, "embed", None))
        except Exception as exc:  # any load failure means: serve the rules, say why
            log.exception("model_load_failed", extra={"fields": {"error": type(exc).__name__}})
            self._serve(self.fallback, f"the model failed to load ({type(exc).__name__})")
            return
        self._serve(classifier, None)
        log.info("model_ready", extra={"fields": {"model_version": classifier.version}})

    def _serve(self, classifier: Classifier, unavailable_reason: str | None) -> None:
        if isinstance(classifier, KeywordClassifier):
            self.fallback = classifier  # rules given by the caller answer the degraded requests too
        if not self._policy_given and getattr(classifier, "folder", None) is not None:
            # the decision policy tuned for this model, when its folder holds one (policy/decision_policy.py)
            self.policy = replace(self.policy, decisions=DecisionPolicy.for_model(classifier.folder, self.settings.decision_policy))
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
        self._probe_pool.shutdown(wait=False, cancel_futures=True)

    # -- the one model call --------------------------------------------------------------------

    def classify(self, texts: list[str]) -> Classification:
        """Classify normalised texts with one model call; never raises for a model failure.

        Raises Overloaded (503) when the model's queue has no room for the texts, or when they were still
        waiting in it when the time budget ran out: the client can retry on the model, which answers from
        the keyword rules could not give it. A model call already running gets the budget once more.
        Degraded answers are for a model that is missing, failing or hung.
        """
        model = self._model
        if model is None or self._unavailable_reason is not None:
            return self._fallback(texts, "no_model", self._unavailable_reason or "the model is not loaded")
        if not texts:
            return Classification([], model.version, None, [])
        budget_ms = self.settings.request_timeout_ms
        self.admission.admit_texts(len(texts))
        try:
            future = self._batcher.submit(model, texts)
            try:
                results = future.result(timeout=budget_ms / 1000)
            except FutureTimeout:
                if future.cancel():  # still queued: it never runs
                    self.metrics.observe_rejected("queue_timeout")
                    raise Overloaded(f"worker {self.admission.pid}: the model did not reach these texts within "
                                     f"{budget_ms} ms; retry later", self.admission.retry_after()) from None
                # Running: the model is at work on them (a busy machine slows it), so it gets as long again;
                # only a call still running after that (a hung model) is answered by the keyword rules.
                results = future.result(timeout=budget_ms / 1000)
        except FutureTimeout:
            return self._fallback(texts, "timeout", f"the model did not answer within {2 * budget_ms} ms")
        except Overloaded:
            raise
        except Exception as exc:  # a model failure must not become a 500
            log.exception("model_failed", extra={"fields": {"error": type(exc).__name__}})
            return self._fallback(texts, "model_error", f"the model failed ({type(exc).__name__})")
        finally:
            self.admission.release_texts(len(texts))
        return Classification([p for p, _ in results], model.version, None, [over for _, over in results],
                              getattr(model, "embed", None))

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
        given_now = now
        now = now or datetime.now(UTC)
        with self._python_turns:  # released while the model works, taken back for the decisions
            decisions = decide(requests, self._classify_off_turn, self.policy, now, field_prefix)
            records = self._records(decisions, decided_at=given_now or datetime.now(UTC))
        self._write(lambda: self.store.record_decisions(records), "record_decisions")
        responses = [d.response for d in decisions]
        self.metrics.observe_decisions(responses)
        return responses

    def _classify_off_turn(self, texts: list[str]) -> Classification:
        self._python_turns.release()
        try:
            return self.classify(texts)
        finally:
            self._python_turns.acquire()

    def _records(self, decisions: list[Decision], decided_at: datetime) -> list[DecisionRecord]:
        """``decided_at``: the time given to triage_many (a replay, the demo), else when the model answered."""
        return [
            DecisionRecord(
                id=d.response.id,
                masked_text=mask_pii(d.item.text),
                raw_text=d.item.text if self.settings.store_raw_text else None,
                labels=d.prediction.labels(),
                scores={head: dict(d.prediction.head(head).scores) for head in HEADS},
                model_version=d.response.model_version,
                degraded=d.response.degraded,
                received_at=d.item.received_at.isoformat(),
                decided_at=decided_at.isoformat(),
                replica=self.settings.replica_name,
                answer=stored_answer(d.response),
            )
            for d in decisions
        ]

    # -- feedback ------------------------------------------------------------------------------

    def record_feedback(self, request: FeedbackRequest) -> FeedbackResponse:
        """Store an agent's correction. Raises InvalidInput (nothing to correct), UnknownDecision, StorageUnavailable."""
        corrections = request.corrections()
        if not corrections:
            raise InvalidInput("no_correction", f"give at least one of {', '.join(HEADS)}")
        feedback_id = self._append_feedback(request.id, corrections, request.agent, request.note, "correction",
                                            "record_feedback")
        return FeedbackResponse(feedback_id=feedback_id, id=request.id, applied=corrections)

    def record_review(self, id: str, labels: dict[str, str], agent: str | None) -> int:
        """Store an agent's review from the review page: every head as they settled it (equal to the service's
        labels: a confirmation). Raises InvalidInput for a missing head, UnknownDecision, StorageUnavailable.
        Returns the feedback row id."""
        missing = [head for head in HEADS if head not in labels]
        if missing:
            raise InvalidInput("incomplete_review", f"a review gives every head; missing {', '.join(missing)}")
        return self._append_feedback(id, {head: labels[head] for head in HEADS}, agent, None, "review", "record_review")

    def _append_feedback(self, id: str, corrections: dict[str, str], agent: str | None, note: str | None,
                         kind: str, operation: str) -> int:
        """One feedback row (agent and note stored as ``_stored_free_text``); its row id."""
        record = FeedbackRecord(id=id, corrections=corrections, agent=self._stored_free_text(agent),
                                note=self._stored_free_text(note), created_at=datetime.now(UTC).isoformat(),
                                replica=self.settings.replica_name, kind=kind)
        return self._write(lambda: self.store.record_feedback(record), operation)

    def _stored_free_text(self, value: str | None) -> str | None:
        """A feedback field as stored: PII-masked like the message text, unless raw text is to be stored."""
        if value is None or self.settings.store_raw_text:
            return value
        return mask_pii(value)

    def storage_ok(self) -> bool:
        try:
            ok = bool(self.store.ping())
        except Exception:  # noqa: BLE001
            ok = False
        self._storage_ok_at = time.monotonic() if ok else None
        return ok

    async def storage_ready(self) -> bool:
        """For /readyz: True when a write or ping succeeded within STORAGE_FRESH_S, else a ping on the probe
        thread that must answer within STORAGE_PING_TIMEOUT_S."""
        ok_at = self._storage_ok_at
        if ok_at is not None and time.monotonic() - ok_at < STORAGE_FRESH_S:
            return True
        try:
            return await asyncio.wait_for(asyncio.wrap_future(self._probe_pool.submit(self.storage_ok)),
                                          STORAGE_PING_TIMEOUT_S)
        except (TimeoutError, RuntimeError):  # RuntimeError: the pool is shut down
            return False

    def _write(self, work: Callable, what: str):
        try:
            result = work()
        except UnknownDecision:
            raise
        except Exception as exc:  # any store failure: the write is not confirmed
            self._storage_ok_at = None
            log.error("storage_write_failed", extra={"fields": {"operation": what, "error": type(exc).__name__}})
            raise StorageUnavailable(what) from exc
        self._storage_ok_at = time.monotonic()
        return result


def admission_for(settings: Settings) -> Admission:
    """The admission limits of one app (api.admission), from its settings."""
    return Admission(settings.max_concurrent_requests + settings.max_queued_requests, settings.max_queued_texts,
                     settings.request_timeout_ms / 1000, settings.retry_after_s)


def load_classifier(model_dir, runtime: str, cache_dir):
    """model.triage_model.load_classifier, imported on first use: the model's modules take a while to
    import, which a service given its classifier (tests, the keyword rules) never needs."""
    from helpdesk_triage.model.triage_model import load_classifier as load

    return load(model_dir, runtime=runtime, cache_dir=cache_dir)


def _predict_batch(model: Classifier, texts: list[str]) -> list[tuple[TextPrediction, bool]]:
    """One model call for the texts of a micro-batch: (prediction, over the token window) per text."""
    predictions = model.predict(texts)
    if len(predictions) != len(texts):
        raise RuntimeError(f"the model returned {len(predictions)} predictions for {len(texts)} texts")
    return list(zip(predictions, over_window(model, texts)))


def stored_answer(response: TriageResponse) -> dict:
    """What the review page shows of an answer beyond the text and scores; the reply PII-masked like the text."""
    return {
        "labels": {head: getattr(response, head).label for head in HEADS},
        "confidence": {head: getattr(response, head).confidence for head in HEADS},
        "queue": response.queue,
        "needs_human_review": response.needs_human_review,
        "review_reasons": list(response.review_reasons),
        "sla": {"first_response_due": response.sla.first_response_due, "resolution_due": response.sla.resolution_due,
                "escalate_immediately": response.sla.escalate_immediately},
        "reply": {"text": mask_pii(response.reply.text), "source": response.reply.source,
                  "subcase": response.reply.subcase.code},
    }
