"""Prometheus metrics of one app, in a registry of its own (several apps may live in one process).

With several worker processes (``triage serve --workers N``) each worker counts in files under
``PROMETHEUS_MULTIPROC_DIR`` (the Prometheus client's multiprocess mode, set up by ``triage serve``
before the workers start), and a scrape of any worker sums the files of all of them: one scrape gives
the totals, never one worker's share that would look like a counter reset.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"

from helpdesk_triage.api.schemas import TriageResponse
from helpdesk_triage.policy.labels import HEADS

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class TriageMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("triage_requests", "HTTP requests by route template and status.", ["route", "status"], registry=r)
        self.latency = Histogram("triage_request_seconds", "HTTP request latency by route template.", ["route"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.predictions = Counter("triage_predictions", "Labels given, per head.", ["head", "label"], registry=r)
        self.decisions = Counter("triage_decisions", "Decided labels per head by what decided them (threshold, cue, cost, "
                                 "argmax) and routing (auto, review): the decision policy at work.",
                                 ["head", "decided_by", "routing"], registry=r)
        self.replies = Counter("triage_replies", "Suggested replies by kind (answer: the answer library, emergency: a "
                               "safety script, template) and how the sub-case was chosen (model, cue, fallback): the "
                               "answer library's hit rate is replies{kind=answer} / triaged.", ["kind", "subcase_by"],
                               registry=r)
        self.triaged = Counter("triage_triaged", "Messages triaged (single and batch items).", registry=r)
        self.review = Counter("triage_review", "Triaged messages flagged needs_human_review "
                              "(review rate = triage_review_total / triage_triaged_total).", registry=r)
        self.degraded = Counter("triage_degraded", "Answers from the keyword rules instead of the model, by reason "
                                "(timeout, model_error, no_model).", ["reason"], registry=r)
        self.model_batch = Histogram("triage_model_batch_texts", "Texts per model call (micro-batching gathers "
                                     "concurrent requests into one call).", buckets=BATCH_BUCKETS, registry=r)
        self.model_batch_requests = Histogram("triage_model_batch_requests", "Requests answered by one model call.",
                                              buckets=BATCH_BUCKETS, registry=r)
        self.rejected = Counter("triage_rejected", "Requests refused before any work, by reason "
                                "(overloaded, queue_timeout, too_large, body_timeout, too_many_items, unauthorized, not_ready).", ["reason"],
                                registry=r)

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        self.requests.labels(route=route, status=str(status)).inc()
        self.latency.labels(route=route).observe(seconds)

    def observe_decisions(self, responses: Iterable[TriageResponse]) -> None:
        for response in responses:
            self.triaged.inc()
            if response.needs_human_review:
                self.review.inc()
            for head in HEADS:
                result = getattr(response, head)
                self.predictions.labels(head=head, label=result.label).inc()
                self.decisions.labels(head=head, decided_by=result.decided_by, routing=result.routing).inc()
            source = response.reply.source
            kind = "answer" if source.startswith("answer:") else "emergency" if source.startswith("any.") else "template"
            self.replies.labels(kind=kind, subcase_by=response.reply.subcase.decided_by).inc()

    def observe_degraded(self, reason: str, count: int = 1) -> None:
        self.degraded.labels(reason=reason).inc(count)

    def observe_model_batch(self, texts: int, requests: int) -> None:
        self.model_batch.observe(texts)
        self.model_batch_requests.observe(requests)

    def observe_rejected(self, reason: str) -> None:
        self.rejected.labels(reason=reason).inc()

    def render(self) -> bytes:
        if os.environ.get(MULTIPROCESS_ENV):
            totals = CollectorRegistry()
            multiprocess.MultiProcessCollector(totals)
            return generate_latest(totals)
        return generate_latest(self.registry)
