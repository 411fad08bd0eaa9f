"""A small decision store for the monitor's tests: decisions with stored answers and agents' feedback."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from helpdesk_triage.api.decision_store import DecisionRecord, FeedbackRecord

SCORES = {
    "category": {"A": 0.7, "B": 0.1, "C": 0.1, "D": 0.1},
    "severity": {"low": 0.6, "medium": 0.2, "high": 0.15, "critical": 0.05},
    "sentiment": {"negative": 0.2, "neutral": 0.7, "positive": 0.1},
}


def decision(id: str, decided_at: str, category: str = "A", severity: str = "low", sentiment: str = "neutral", *,
             degraded: bool = False, review: bool = False) -> DecisionRecord:
    labels = {"category": category, "severity": severity, "sentiment": sentiment}
    # The stored labels are the model's argmax (A, low, neutral); the answer holds the decided ones, which count.
    return DecisionRecord(
        id=id, masked_text=f"工单 {id}", raw_text=None,
        labels={"category": "A", "severity": "low", "sentiment": "neutral"}, scores=SCORES,
        model_version="triage-test-1", degraded=degraded, received_at=decided_at, decided_at=decided_at,
        answer={"labels": labels, "needs_human_review": review, "queue": "general"},
    )


def review(id: str, at: str, **labels: str) -> FeedbackRecord:
    return FeedbackRecord(id=id, corrections=labels, agent="小王", note=None, created_at=at, kind="review")


def correction(id: str, at: str, **labels: str) -> FeedbackRecord:
    return FeedbackRecord(id=id, corrections=labels, agent="小李", note=None, created_at=at, kind="correction")


def fill_example(store) -> None:
    """Reference week 2026-10-26..11-01 (Shanghai), then weeks 45 (11-02..08) and 46 (11-09..15), where category D grows."""
    reference = [("A", 6), ("B", 2), ("C", 1), ("D", 1)]
    week45 = [("A", 5), ("B", 1), ("C", 1), ("D", 1)]
    week46 = [("A", 2), ("B", 1), ("C", 1), ("D", 4)]
    records = []
    for prefix, day, mix in (("r", "2026-10-27", reference), ("w45", "2026-11-03", week45), ("w46", "2026-11-10", week46)):
        n = 0
        for category, count in mix:
            for _ in range(count):
                records.append(decision(f"{prefix}-{n}", f"{day}T0{n % 10}:15:00+00:00", category,
                                        "critical" if category == "D" else "low", review=n % 3 == 0, degraded=n == 7))
                n += 1
    # 16:30 UTC on Sunday 11-08 is 00:30 on Monday 11-09 in Shanghai: week 46, not 45.
    records.append(decision("midnight", "2026-11-08T16:30:00+00:00", "B"))
    store.record_decisions(records)
    at = "2026-11-12T02:00:00+00:00"
    store.record_feedback(review("w45-0", at, category="A", severity="low", sentiment="neutral"))     # all right
    store.record_feedback(review("w45-1", at, category="A", severity="medium", sentiment="neutral"))  # severity wrong
    store.record_feedback(correction("w45-2", at, category="B"))      # category wrong; no verdict on the rest
    store.record_feedback(correction("w46-0", at, category="C"))      # corrected, then reviewed: the review wins
    store.record_feedback(review("w46-0", at, category="A", severity="low", sentiment="positive"))
    store.record_feedback(correction("midnight", at, sentiment="negative"))


def fill_today(store, count: int = 5) -> None:
    """``count`` decisions decided just now, two of them reviewed, one corrected."""
    now = datetime.now(timezone.utc)
    stamps = [(now - timedelta(seconds=i)).isoformat() for i in range(count)]
    store.record_decisions([decision(f"now-{i}", stamp, "ABCD"[i % 4], review=i % 2 == 0, degraded=i == 1)
                            for i, stamp in enumerate(stamps)])
    store.record_feedback(review("now-0", stamps[0], category="A", severity="low", sentiment="neutral"))
    store.record_feedback(review("now-1", stamps[0], category="C", severity="low", sentiment="neutral"))
    store.record_feedback(correction("now-2", stamps[0], severity="high"))
