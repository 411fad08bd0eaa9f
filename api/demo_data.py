"""Demo data: a fresh store filled with a few hundred triaged messages, so that a newcomer sees a populated
review queue and monitor at once (``triage demo``, ``triage serve --demo``).

The messages are the team-written ones shipped in ``data/team_written`` (written for this project, labelled
by the team; never real customer text). They are triaged by the model in service at simulated times over the
last four weeks, and for older decisions a simulated agent settles the labels: the written labels, so the
agent accuracy the monitor shows is the model's agreement with the team's labels on text it may have trained
on (a demonstration, not a measurement). The last week draws more from the complaint and emergency files, so
the monitor shows drift. Decisions of the last two days are left open for the queue. Seeded: the same seed
gives the same messages, labels and verdicts; times are relative to the run.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources

from helpdesk_triage.api.decision_store import DecisionStore, FeedbackRecord
from helpdesk_triage.api.triage_service import TriageService
from helpdesk_triage.policy.labels import HEADS
from helpdesk_triage.policy.triage import TriageRequest

DEMO_DAYS = 28
DRIFT_DAYS = 7  # the last week leans to complaints and emergencies
OPEN_DAYS = 2  # decisions this recent stay unreviewed
AGENTS = ("王芳", "李强", "张敏", "陈磊")
EVERYDAY_FILES = ("messages_real_style.jsonl", "messages_ab.jsonl")
ESCALATION_FILES = ("messages_cd.jsonl", "messages_critical.jsonl")


@dataclass(frozen=True)
class DemoSummary:
    decisions: int
    reviews: int
    corrections: int
    open_reviews: int


def _messages(files: tuple[str, ...]) -> list[dict]:
    rows = []
    folder = resources.files("helpdesk_triage.data") / "team_written"
    for name in files:
        with (folder / name).open(encoding="utf-8") as handle:
            rows += [json.loads(line) for line in handle if line.strip()]
    return rows


def fill_demo_store(service: TriageService, messages: int = 300, seed: int = 7,
                    now: datetime | None = None) -> DemoSummary:
    """Triage ``messages`` demo messages into the service's store and record the simulated reviews.
    Refuses (ValueError) a store that already holds decisions: demo rows never mix with real ones."""
    store: DecisionStore = service.store
    if store.counts()["decisions"]:
        raise ValueError("the store already holds decisions: demo data goes into a fresh store only")
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    rng = random.Random(seed)
    everyday, escalation = _messages(EVERYDAY_FILES), _messages(ESCALATION_FILES)
    start = now - timedelta(days=DEMO_DAYS)
    drift_from = now - timedelta(days=DRIFT_DAYS)
    picks: list[tuple[datetime, dict]] = []
    for _ in range(messages):
        at = start + timedelta(seconds=rng.uniform(0, DEMO_DAYS * 86400))
        at = at.replace(hour=rng.choice(range(1, 13)))  # 09:00–20:00 in Beijing time: a desk's day
        if at > now:
            at -= timedelta(days=1)
        pool = escalation if at >= drift_from and rng.random() < 0.6 else everyday
        picks.append((at, pool[rng.randrange(len(pool))]))
    picks.sort(key=lambda pick: pick[0])

    reviews = corrections = 0
    for index, (at, row) in enumerate(picks):
        request = TriageRequest(text=row["text"], id=f"demo-{index + 1:04d}", received_at=at.isoformat(),
                                channel="demo")
        [response] = service.triage_many([request], now=at + timedelta(seconds=rng.randint(1, 5)))
        recent = at >= now - timedelta(days=OPEN_DAYS)
        # Agents review everything the service sent them once it is two days old, and spot-check some of the rest.
        reviewed = not recent and (response.needs_human_review or rng.random() < 0.15)
        if not reviewed:
            continue
        written = {head: row[head] for head in HEADS}
        store.record_feedback(FeedbackRecord(
            id=request.id, corrections=written, agent=rng.choice(AGENTS), note=None,
            created_at=(at + timedelta(minutes=rng.randint(5, 240))).isoformat(), replica=service.settings.replica_name,
            kind="review"))
        reviews += 1
        corrections += any(written[head] != getattr(response, head).label for head in HEADS)
    return DemoSummary(decisions=len(picks), reviews=reviews, corrections=corrections,
                       open_reviews=len(store.open_reviews(messages)))
