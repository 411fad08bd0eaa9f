"""Durable storage of triage decisions and agent feedback (SQLite or PostgreSQL).

Usage::

    store = open_store("sqlite:///var/triage/decisions.db")   # or "postgresql://user:pass@host:5432/db"
    store.record_decision(DecisionRecord(...))
    store.record_feedback(FeedbackRecord(id="t-1", corrections={"category": "D"}, ...))
    for example in store.corrected_examples(): ...

Every method commits before it returns, so a write acknowledged to a client survives a crash or a
power loss.

The schema is versioned: ``MIGRATIONS`` is an ordered list, applied once at open under a lock (SQLite's
write lock, PostgreSQL's advisory lock), each in the opener's one transaction and recorded in
``schema_migrations``. Each migration says the oldest code (``SCHEMA_VERSION``) that can still use the
database after it (``compatible_from``): a replica whose code knows fewer migrations than the database
has starts when every newer one is compatible with it, else it refuses to start with one line saying
why. That is what lets replicas of two versions roll over one database.

Both backends share the SQL below (written with ``?`` placeholders; the PostgreSQL
backend turns them into ``%s``); they differ in connection handling and in the DDL.

Decisions:

* An upsert (a second decision for an id) replaces every field but keeps ``created_at`` and the
  feedback already given for that id (``ON CONFLICT DO UPDATE`` updates the row in place, where
  ``INSERT OR REPLACE`` would delete it first).
* Timestamps are stored as the ISO-8601 text given, so a round trip returns them unchanged;
  ``created_at`` is the store's UTC clock.
* "Latest" and "first" feedback mean the order in which feedback was recorded (the feedback row
  id), never a comparison of ``created_at`` strings, whose offsets may differ.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol, TypeVar

import psycopg

from helpdesk_triage.policy.labels import HEADS

__all__ = [
    "SCHEMA_VERSION",
    "DecisionRecord",
    "DecisionStore",
    "FeedbackRecord",
    "MIGRATIONS",
    "Migration",
    "PostgresDecisionStore",
    "SchemaTooNew",
    "SqliteDecisionStore",
    "UnknownDecision",
    "open_store",
]

BUSY_TIMEOUT_MS = 30_000

T = TypeVar("T")


@dataclass(frozen=True)
class DecisionRecord:
    """One triage decision. ``id`` is the unique key: recording it again replaces the decision."""

    id: str
    masked_text: str
    raw_text: str | None
    labels: dict[str, str]
    scores: dict[str, dict[str, float]]
    model_version: str
    degraded: bool
    received_at: str
    decided_at: str
    replica: str | None = None  # which replica decided it (schema version 2)
    # What the service answered beyond the labels (schema version 3): decided labels and confidences, queue,
    # needs_human_review, review reasons, SLA deadlines, the reply (masked). The review page reads it.
    answer: dict[str, Any] | None = None

    @property
    def needs_review(self) -> bool | None:
        """Whether a person should look at it: the answer's needs_human_review, critical, or degraded."""
        if self.answer is None:
            return None
        return bool(self.answer.get("needs_human_review") or self.degraded
                    or self.answer.get("labels", {}).get("severity") == "critical")

    @property
    def due_at(self) -> str | None:
        """The first-response deadline in UTC (ISO text that sorts in time order), when the answer has one."""
        due = (self.answer or {}).get("sla", {}).get("first_response_due")
        if not due:
            return None
        return datetime.fromisoformat(due).astimezone(timezone.utc).isoformat(timespec="seconds")


FEEDBACK_KINDS = ("correction", "review")


@dataclass(frozen=True)
class FeedbackRecord:
    """An agent's corrections of a decision: head -> label code (validated by the caller)."""

    id: str
    corrections: dict[str, str]
    agent: str | None
    note: str | None
    created_at: str
    replica: str | None = None  # which replica recorded it (schema version 2)
    # "correction": /v1/feedback, the heads an agent changed; "review": the review page, every head as the
    # agent settled it (a confirmation when they equal the service's labels). Schema version 3.
    kind: str = "correction"


class UnknownDecision(KeyError):
    """Feedback for an id that was never triaged."""


class DecisionStore(Protocol):
    """What the service needs from a store; every method is thread-safe and commits before returning."""

    def record_decision(self, record: DecisionRecord) -> None: ...

    def record_decisions(self, records: Sequence[DecisionRecord]) -> None: ...

    def record_feedback(self, record: FeedbackRecord) -> int: ...

    def get_decision(self, id: str) -> DecisionRecord | None: ...

    def corrected_examples(self) -> Iterator[dict]: ...

    def open_reviews(self, limit: int) -> list[DecisionRecord]: ...

    def window(self, start: str, end: str) -> list[dict]: ...

    def review_backlog(self, now: str) -> dict[str, int]: ...

    def first_decided_at(self) -> str | None: ...

    def counts(self) -> dict[str, int]: ...

    def ping(self) -> bool: ...

    def close(self) -> None: ...


# --------------------------------------------------------------------------------------------
# SQL shared by both backends
# --------------------------------------------------------------------------------------------

_DECISION_COLUMNS = (
    "id", "masked_text", "raw_text", "labels", "scores", "model_version", "degraded", "received_at", "decided_at",
    "replica", "answer", "needs_review", "due_at",
)
_UPSERT_DECISION = (
    f"INSERT INTO decisions ({', '.join(_DECISION_COLUMNS)}, created_at)"
    f" VALUES ({', '.join('?' for _ in _DECISION_COLUMNS)}, ?)"
    " ON CONFLICT (id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _DECISION_COLUMNS[1:])
)
# What a DecisionRecord is read from: every column but needs_review and due_at, which are derived from its answer.
_RECORD_COLUMNS = ", ".join(c for c in _DECISION_COLUMNS if c not in ("needs_review", "due_at"))
_SELECT_DECISION = f"SELECT {_RECORD_COLUMNS} FROM decisions WHERE id = ?"
# Open reviews: a person should look at it and nobody has (no feedback of any kind), soonest due first.
_OPEN_REVIEWS = (
    f"SELECT {_RECORD_COLUMNS} FROM decisions d"
    " WHERE d.needs_review AND NOT EXISTS (SELECT 1 FROM feedback f WHERE f.decision_id = d.id)"
    " ORDER BY d.due_at, d.id LIMIT ?"
)
# Decisions of a window with their feedback (if any), in feedback order: what the monitor counts.
_WINDOW_WITH_FEEDBACK = (
    "SELECT d.id, d.labels, d.scores, d.degraded, d.decided_at, d.answer, d.needs_review,"
    f" {', '.join('f.' + h for h in HEADS)}, f.kind"
    " FROM decisions d LEFT JOIN feedback f ON f.decision_id = d.id"
    " WHERE d.decided_at >= ? AND d.decided_at < ? ORDER BY d.decided_at, d.id, f.id"
)
_DECISION_EXISTS = "SELECT 1 FROM decisions WHERE id = ?"
_INSERT_FEEDBACK = (
    f"INSERT INTO feedback (decision_id, {', '.join(HEADS)}, agent, note, created_at, replica, kind)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id"
)
_FEEDBACK_WITH_DECISIONS = (
    "SELECT d.id, d.masked_text, d.raw_text, d.labels, d.model_version, d.received_at,"
    f" {', '.join('f.' + h for h in HEADS)}, f.agent, f.note, f.created_at"
    " FROM feedback f JOIN decisions d ON d.id = f.decision_id ORDER BY f.id"
)
_FIRST_DECIDED_AT = "SELECT MIN(decided_at) FROM decisions"
_COUNTS = "SELECT (SELECT COUNT(*) FROM decisions), (SELECT COUNT(*) FROM feedback)"
_REVIEW_BACKLOG = (
    "SELECT COUNT(*), COALESCE(SUM(CASE WHEN d.due_at < ? THEN 1 ELSE 0 END), 0) FROM decisions d"
    " WHERE d.needs_review AND NOT EXISTS (SELECT 1 FROM feedback f WHERE f.decision_id = d.id)"
)



@dataclass(frozen=True)
class Migration:
    """One step of the schema. ``compatible_from``: the oldest code (its SCHEMA_VERSION) that can still read
    and write the database after this step; a step that only adds nullable columns or tables keeps the
    previous step's. Statements may use {id} (the backend's auto-increment primary key) and {bool}."""

    version: int
    compatible_from: int
    name: str
    statements: tuple[str, ...]


# Append only: a released migration is never edited, the next change is a new one.
MIGRATIONS: tuple[Migration, ...] = (
    # Exactly the schema before migrations existed (IF NOT EXISTS): such a database is adopted unchanged.
    Migration(1, 1, "decisions and feedback", (
        "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)",
        # NOT NULL is explicit: SQLite lets a non-INTEGER primary key be NULL.
        """CREATE TABLE IF NOT EXISTS decisions (
            id TEXT NOT NULL PRIMARY KEY,
            masked_text TEXT NOT NULL,
            raw_text TEXT,
            labels TEXT NOT NULL,
            scores TEXT NOT NULL,
            model_version TEXT NOT NULL,
            degraded {bool} NOT NULL,
            received_at TEXT NOT NULL,
            decided_at TEXT NOT NULL,
            created_at TEXT NOT NULL
        )""",
        """CREATE TABLE IF NOT EXISTS feedback (
            id {id},
            decision_id TEXT NOT NULL REFERENCES decisions (id),
            category TEXT,
            severity TEXT,
            sentiment TEXT,
            agent TEXT,
            note TEXT,
            created_at TEXT NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS feedback_decision_id ON feedback (decision_id)",
    )),
    # Nullable columns only: code of version 1 still reads and writes (its rows leave them NULL).
    Migration(2, 1, "the replica that wrote each decision and feedback row", (
        "ALTER TABLE decisions ADD COLUMN replica TEXT",
        "ALTER TABLE feedback ADD COLUMN replica TEXT",
    )),
    # Nullable columns and indexes only: code of versions 1 and 2 still reads and writes.
    Migration(3, 1, "the answer beyond the labels, for the review queue; the kind of feedback", (
        "ALTER TABLE decisions ADD COLUMN answer TEXT",
        "ALTER TABLE decisions ADD COLUMN needs_review {bool}",
        "ALTER TABLE decisions ADD COLUMN due_at TEXT",
        "ALTER TABLE feedback ADD COLUMN kind TEXT",
        "CREATE INDEX IF NOT EXISTS decisions_open_review ON decisions (needs_review, due_at)",
        "CREATE INDEX IF NOT EXISTS decisions_decided_at ON decisions (decided_at)",
    )),
)
SCHEMA_VERSION = MIGRATIONS[-1].version

_MIGRATIONS_TABLE = """CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER NOT NULL PRIMARY KEY,
    compatible_from INTEGER NOT NULL,
    name TEXT NOT NULL,
    applied_at TEXT NOT NULL
)"""


# Before migrations: one row, the schema version. Now: the oldest code version that may use the database.
_LEGACY_VERSION_TABLE = "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"


class SchemaTooNew(RuntimeError):
    """The database has a migration this code cannot work with: upgrade the service."""


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _decision_params(record: DecisionRecord, created_at: str) -> tuple:
    return (
        record.id,
        record.masked_text,
        record.raw_text,
        json.dumps(record.labels, ensure_ascii=False),
        json.dumps(record.scores, ensure_ascii=False),
        record.model_version,
        bool(record.degraded),
        record.received_at,
        record.decided_at,
        record.replica,
        None if record.answer is None else json.dumps(record.answer, ensure_ascii=False),
        record.needs_review,
        record.due_at,
        created_at,
    )


def _decision_from_row(row: Sequence[Any]) -> DecisionRecord:
    id_, masked_text, raw_text, labels, scores, model_version, degraded, received_at, decided_at, replica, answer = row
    return DecisionRecord(
        id=id_,
        masked_text=masked_text,
        raw_text=raw_text,
        labels=json.loads(labels),
        scores=json.loads(scores),
        model_version=model_version,
        degraded=bool(degraded),
        received_at=received_at,
        decided_at=decided_at,
        replica=replica,
        answer=None if answer is None else json.loads(answer),
    )


def _merge_feedback(rows: Sequence[Sequence[Any]]) -> list[dict]:
    """Group (decision, feedback) rows, in feedback order, into one example per decision."""
    examples: dict[str, dict] = {}
    for row in rows:
        id_, masked_text, raw_text, labels, model_version, received_at = row[:6]
        corrections = dict(zip(HEADS, row[6 : 6 + len(HEADS)]))
        agent, note, feedback_at = row[6 + len(HEADS) :]
        example = examples.get(id_)
        if example is None:
            model_labels = json.loads(labels)
            example = examples[id_] = {
                "id": id_,
                "masked_text": masked_text,
                "raw_text": raw_text,
                "model_labels": model_labels,
                "labels": dict(model_labels),
                "corrected_heads": [],
                "model_version": model_version,
                "received_at": received_at,
            }
        for head, code in corrections.items():
            if code is not None:
                example["labels"][head] = code
                if head not in example["corrected_heads"]:
                    example["corrected_heads"].append(head)
        # agent, note and feedback_at describe the latest feedback, the one whose labels win.
        example.update(agent=agent, note=note, feedback_at=feedback_at)
    for example in examples.values():
        example["corrected_heads"].sort(key=HEADS.index)
    return list(examples.values())


class _SqlStore(ABC):
    """The DecisionStore methods over a backend's ``_run``."""

    _placeholder = "?"

    @abstractmethod
    def _run(self, work: Callable[[Any], T], write: bool) -> T:
        """Run ``work(cursor)`` in one committed transaction (a write transaction when ``write``)
        while holding the store's lock; roll back and re-raise when it raises."""

    def _sql(self, sql: str) -> str:
        return sql.replace("?", self._placeholder)

    def record_decision(self, record: DecisionRecord) -> None:
        """Insert or replace one decision."""
        self.record_decisions([record])

    def record_decisions(self, records: Sequence[DecisionRecord]) -> None:
        """Insert or replace several decisions in one transaction: all of them are stored, or none."""
        if not records:
            return
        created_at = _utc_now()
        params = [_decision_params(r, created_at) for r in records]
        self._run(lambda cur: cur.executemany(self._sql(_UPSERT_DECISION), params), write=True)

    def record_feedback(self, record: FeedbackRecord) -> int:
        """Store an agent's corrections; returns the feedback row id.

        Raises UnknownDecision for an id never triaged, ValueError for a correction of an unknown head.
        """
        unknown = set(record.corrections) - set(HEADS)
        if unknown:
            raise ValueError(f"unknown heads {sorted(unknown)} in the corrections of {record.id!r}; heads are {list(HEADS)}")
        if record.kind not in FEEDBACK_KINDS:
            raise ValueError(f"unknown feedback kind {record.kind!r}; kinds are {list(FEEDBACK_KINDS)}")
        params = (record.id, *(record.corrections.get(h) for h in HEADS), record.agent, record.note, record.created_at,
                  record.replica, record.kind)

        def work(cur) -> int:
            cur.execute(self._sql(_DECISION_EXISTS), (record.id,))
            if cur.fetchone() is None:
                raise UnknownDecision(record.id)
            cur.execute(self._sql(_INSERT_FEEDBACK), params)
            return cur.fetchone()[0]

        return self._run(work, write=True)

    def get_decision(self, id: str) -> DecisionRecord | None:
        """The decision stored for ``id``, or None."""
        def work(cur):
            cur.execute(self._sql(_SELECT_DECISION), (id,))
            return cur.fetchone()

        row = self._run(work, write=False)
        return None if row is None else _decision_from_row(row)

    def corrected_examples(self) -> Iterator[dict]:
        """One dict per decision with feedback, in the order of their first feedback.

        Keys: ``id``, ``masked_text``, ``raw_text``, ``model_labels`` (the model's labels),
        ``labels`` (the model's labels overridden, per head, by the latest correction of that head),
        ``corrected_heads`` (heads any agent set, even to the model's label, in schema order),
        ``agent``, ``note`` and ``feedback_at`` (of the latest feedback), ``model_version``,
        ``received_at``. Read in one query, so the examples are a consistent snapshot.
        """
        def work(cur):
            cur.execute(_FEEDBACK_WITH_DECISIONS)
            return cur.fetchall()

        return iter(_merge_feedback(self._run(work, write=False)))

    def open_reviews(self, limit: int) -> list[DecisionRecord]:
        """Decisions a person should look at that nobody has given feedback on, soonest first-response
        deadline first, at most ``limit``. Decisions stored before schema version 3 have no answer and
        are not listed."""
        def work(cur):
            cur.execute(self._sql(_OPEN_REVIEWS), (limit,))
            return cur.fetchall()

        return [_decision_from_row(row) for row in self._run(work, write=False)]

    def window(self, start: str, end: str) -> list[dict]:
        """Decisions with ``start <= decided_at < end`` (UTC ISO text), in time order, each a dict: ``id``,
        ``decided_at``, ``labels`` (the labels answered: decided ones when the answer is stored),
        ``confidence`` (head -> probability of that label), ``degraded``, ``needs_review`` and ``verdicts``
        (head -> the latest label an agent gave for it; a review gives every head, a correction those it names)."""
        def work(cur):
            cur.execute(self._sql(_WINDOW_WITH_FEEDBACK), (start, end))
            return cur.fetchall()

        decisions: dict[str, dict] = {}
        for row in self._run(work, write=False):
            id_, labels, scores, degraded, decided_at, answer, needs_review = row[:7]
            verdict = dict(zip(HEADS, row[7 : 7 + len(HEADS)]))
            item = decisions.get(id_)
            if item is None:
                answered = (json.loads(answer).get("labels") if answer else None) or json.loads(labels)
                scores = json.loads(scores)
                item = decisions[id_] = {
                    "id": id_, "decided_at": decided_at, "labels": answered,
                    "confidence": {h: float(scores.get(h, {}).get(answered.get(h), 0.0)) for h in HEADS},
                    "degraded": bool(degraded), "needs_review": bool(needs_review), "verdicts": {},
                }
            item["verdicts"].update({h: code for h, code in verdict.items() if code is not None})
        return list(decisions.values())

    def first_decided_at(self) -> str | None:
        """The earliest ``decided_at`` stored (UTC ISO text), None when there is no decision: where the
        monitor's default reference window starts."""
        def work(cur):
            cur.execute(_FIRST_DECIDED_AT)
            return cur.fetchone()[0]

        return self._run(work, write=False)

    def review_backlog(self, now: str) -> dict[str, int]:
        """``{"open": n, "overdue": m}``: the decisions of ``open_reviews`` (all of them), and those whose
        first-response deadline is before ``now`` (UTC ISO text)."""
        def work(cur):
            cur.execute(self._sql(_REVIEW_BACKLOG), (now,))
            return cur.fetchone()

        open_, overdue = self._run(work, write=False)
        return {"open": int(open_), "overdue": int(overdue)}

    def counts(self) -> dict[str, int]:
        """``{"decisions": n, "feedback": m}``."""
        def work(cur):
            cur.execute(_COUNTS)
            return cur.fetchone()

        decisions, feedback = self._run(work, write=False)
        return {"decisions": decisions, "feedback": feedback}

    def ping(self) -> bool:
        """True when the database answers a trivial query."""
        def work(cur):
            cur.execute("SELECT 1")
            return cur.fetchone()

        try:
            return self._run(work, write=False) == (1,)
        except Exception:
            return False

    def _migrate(self, cur, id_type: str, bool_type: str) -> None:
        """Bring the schema up to this code's migrations, or raise SchemaTooNew. The caller holds the
        backend's schema lock for the whole transaction, so each migration is applied exactly once."""
        cur.execute(_MIGRATIONS_TABLE)
        cur.execute(_LEGACY_VERSION_TABLE)
        cur.execute("SELECT version, compatible_from FROM schema_migrations")
        applied = dict(cur.fetchall())
        cur.execute("SELECT MAX(version) FROM schema_version")
        legacy = cur.fetchone()[0] or 0
        known = {m.version for m in self._migrations}
        code_version = self._migrations[-1].version
        needed = max([legacy, *(floor for version, floor in applied.items() if version not in known)])
        if needed > code_version:
            raise SchemaTooNew(
                f"the database has schema version {max(applied, default=legacy)}, which needs code of schema version"
                f" {needed} or later; this code knows version {code_version}: upgrade the service")
        for migration in self._migrations:
            if migration.version in applied:
                continue
            for statement in migration.statements:
                cur.execute(statement.format(id=id_type, bool=bool_type))
            cur.execute(self._sql("INSERT INTO schema_migrations (version, compatible_from, name, applied_at)"
                                  " VALUES (?, ?, ?, ?)"),
                        (migration.version, migration.compatible_from, migration.name, _utc_now()))
            applied[migration.version] = migration.compatible_from
        # Code from before migrations reads schema_version's one row and refuses a value over its version 1.
        # The row holds the oldest code version that may use the database, so that code rolls over too.
        floor = max(applied.values())
        cur.execute("SELECT version FROM schema_version")
        if cur.fetchall() != [(floor,)]:
            cur.execute("DELETE FROM schema_version")
            cur.execute(self._sql("INSERT INTO schema_version (version) VALUES (?)"), (floor,))


# --------------------------------------------------------------------------------------------
# SQLite
# --------------------------------------------------------------------------------------------


class SqliteDecisionStore(_SqlStore):
    """One connection guarded by a lock. Several processes may open the same file: WAL lets readers
    run beside the one writer, and writers wait up to the busy timeout for each other."""

    def __init__(self, path: str | Path, migrations: Sequence[Migration] = MIGRATIONS):
        self.path = str(path)
        self._migrations = tuple(migrations)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # isolation_level=None: no implicit transactions; _run opens and commits each one itself.
        # timeout is SQLite's busy timeout: how long to wait for another process's write lock.
        self._conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
        self._enable_wal()
        # FULL, not NORMAL: in WAL mode NORMAL does not fsync the log at each commit, so the last
        # transactions - already acknowledged to clients - can be lost on a power failure.
        self._conn.execute("PRAGMA synchronous = FULL")
        self._conn.execute("PRAGMA foreign_keys = ON")
        try:
            # BEGIN IMMEDIATE (write=True) is the schema lock: other openers wait for the whole migration.
            self._run(lambda cur: self._migrate(cur, "INTEGER PRIMARY KEY AUTOINCREMENT", "INTEGER"), write=True)
        except BaseException:
            self._conn.close()
            raise

    def _enable_wal(self) -> None:
        # Switching a new file to WAL while other processes open it can fail with "database is locked"
        # at once: SQLite does not call the busy handler there (it could deadlock). Retry for the busy timeout.
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        delay = 0.005
        while True:
            try:
                self._conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    self._conn.close()
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 0.2)

    def _run(self, work: Callable[[Any], T], write: bool) -> T:
        with self._lock:
            cur = self._conn.cursor()
            # A write takes the write lock up front (IMMEDIATE): a deferred transaction that reads
            # first and then writes fails with SQLITE_BUSY at once, without waiting, when another
            # process wrote in between.
            cur.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                result = work(cur)
                cur.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:  # some errors (disk full, I/O) already rolled back
                    cur.execute("ROLLBACK")
                raise
            return result

    def pragmas(self) -> dict[str, Any]:
        """The durability settings of this store's connection (journal_mode, synchronous, busy_timeout, foreign_keys)."""
        with self._lock:
            return {
                name: self._conn.execute(f"PRAGMA {name}").fetchone()[0]
                for name in ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")
            }

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()


# --------------------------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------------------------


class PostgresDecisionStore(_SqlStore):
    """One psycopg 3 connection (autocommit off, explicit commit) guarded by a lock; reconnects once
    when the connection was dropped (server restart, idle timeout) and retries the operation.

    A write whose COMMIT was sent but not acknowledged before the drop is retried too: a decision
    upsert is idempotent; a feedback row may then be stored twice, which changes no merged label.
    """

    _placeholder = "%s"
    _SCHEMA_LOCK_KEY = 0x7472_6961_6765  # pg_advisory_xact_lock key ("triage"): serialises migrations

    def __init__(self, url: str, migrations: Sequence[Migration] = MIGRATIONS):
        self._url = url
        self._migrations = tuple(migrations)
        self._lock = threading.Lock()
        self._conn = self._connect()
        try:
            self._run(self._migrate_pg, write=True)
        except BaseException:
            self._conn.close()
            raise

    def _connect(self) -> psycopg.Connection:
        return psycopg.connect(self._url, autocommit=False, connect_timeout=10)

    def _migrate_pg(self, cur) -> None:
        # Held to the end of the transaction: replicas starting together take turns, and the second finds the
        # migrations applied (CREATE TABLE IF NOT EXISTS alone races with itself: duplicate key in pg_type).
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (self._SCHEMA_LOCK_KEY,))
        self._migrate(cur, "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", "BOOLEAN")

    def _run(self, work: Callable[[Any], T], write: bool) -> T:
        with self._lock:
            try:
                return self._attempt(work)
            except psycopg.OperationalError:
                if not self._conn.broken:  # a query error, or a store closed on purpose: no retry
                    raise
                fresh = self._connect()
                self._conn.close()
                self._conn = fresh
                return self._attempt(work)

    def _attempt(self, work: Callable[[Any], T]) -> T:
        try:
            with self._conn.cursor() as cur:
                result = work(cur)
            self._conn.commit()
            return result
        except BaseException:
            if not (self._conn.broken or self._conn.closed):
                self._conn.rollback()
            raise

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()


# --------------------------------------------------------------------------------------------
# Opening a store
# --------------------------------------------------------------------------------------------

_SQLITE_PREFIX = "sqlite:///"
_POSTGRES_PREFIXES = ("postgresql://", "postgres://")


def open_store(url: str, migrations: Sequence[Migration] = MIGRATIONS) -> DecisionStore:
    """Open the store at ``url``, applying the migrations it lacks (SchemaTooNew when its schema is
    newer than this code can use; ``migrations`` is for tests that play an older release).

    ``sqlite:///relative/or/absolute/path.db`` (three slashes, then the path as given: ``sqlite:////abs``
    and ``sqlite:///rel`` both work; parent folders are created), ``sqlite:///:memory:``, or
    ``postgresql://user:pass@host:port/db`` (also ``postgres://``; query parameters such as
    ``?sslmode=require`` are passed to libpq). Anything else raises ValueError.
    """
    expected = "expected sqlite:///path.db, sqlite:///:memory: or postgresql://user:pass@host:port/db"
    if not isinstance(url, str) or "://" not in url:
        raise ValueError(f"store URL {url!r} is not a URL: {expected}")
    if url.startswith(_SQLITE_PREFIX):
        path = url[len(_SQLITE_PREFIX):]
        if not path:
            raise ValueError(f"store URL {url!r} has no file path: {expected}")
        return SqliteDecisionStore(path, migrations)
    if url.startswith(_POSTGRES_PREFIXES):
        return PostgresDecisionStore(url, migrations)
    scheme = url.split("://", 1)[0]
    if scheme == "sqlite":
        raise ValueError(f"store URL {url!r} needs three slashes before the path: sqlite:///path.db")
    # Only the scheme is shown: the rest of an unknown URL may hold a password.
    raise ValueError(f"unsupported store URL scheme {scheme!r}: {expected}")
