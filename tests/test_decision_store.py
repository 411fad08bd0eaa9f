"""api/decision_store.py on SQLite always, and on PostgreSQL when TRIAGE_TEST_POSTGRES_URL is set
(``bash scripts/start_test_postgres.sh`` starts a throwaway server and prints it). Each PostgreSQL
test runs in a fresh schema of its own."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
import types
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from datetime import datetime
from pathlib import Path
from urllib.parse import urlencode

import psycopg
import pytest

from helpdesk_triage.api.decision_store import (
    MIGRATIONS,
    SCHEMA_VERSION,
    DecisionRecord,
    FeedbackRecord,
    Migration,
    SchemaTooNew,
    UnknownDecision,
    open_store,
)

REPO = Path(__file__).resolve().parents[1]
PG_URL = os.environ.get("TRIAGE_TEST_POSTGRES_URL")
PG_SKIP = "TRIAGE_TEST_POSTGRES_URL not set: no PostgreSQL server (bash scripts/start_test_postgres.sh starts one)"
BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.skipif(not PG_URL, reason=PG_SKIP)),
]
INTEGRITY_ERRORS = (sqlite3.IntegrityError, psycopg.IntegrityError)


def decision(id: str, category: str = "B", *, raw_text: str | None = None, degraded: bool = False,
             replica: str | None = None) -> DecisionRecord:
    return DecisionRecord(
        id=id,
        masked_text=f"快递还没到，手机号[手机号]（{id}）",
        raw_text=raw_text,
        labels={"category": category, "severity": "low", "sentiment": "neutral"},
        scores={
            "category": {"A": 0.05, "B": 0.8, "C": 0.1, "D": 0.05},
            "severity": {"low": 0.7, "medium": 0.2, "high": 0.075, "critical": 0.025},
            "sentiment": {"negative": 0.3, "neutral": 0.6, "positive": 0.1},
        },
        model_version="triage-e5s-default-1",
        degraded=degraded,
        received_at="2026-03-10T20:30:00+08:00",
        decided_at="2026-03-10T12:30:00.123456+00:00",
        replica=replica,
    )


def feedback(
    id: str, agent: str = "agent-1", note: str | None = None, at: str = "2026-03-11T01:00:00+00:00",
    replica: str | None = None, **corrections
) -> FeedbackRecord:
    return FeedbackRecord(id=id, corrections=corrections, agent=agent, note=note, created_at=at, replica=replica)


def _with_params(url: str, **params: str) -> str:
    return url + ("&" if "?" in url else "?") + urlencode(params)


def _fresh_pg_schema():
    schema = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(PG_URL, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    try:
        # application_name lets a test find (and kill) the store's server process.
        yield _with_params(PG_URL, options=f"-csearch_path={schema}", application_name=schema)
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=BACKENDS)
def store_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store' / 'decisions.db'}"
    else:
        yield from _fresh_pg_schema()


@pytest.fixture
def store(store_url):
    s = open_store(store_url)
    yield s
    s.close()


def raw_sql(url: str, sql: str, params: tuple = ()) -> list[tuple]:
    """Run one statement on a connection of its own, not the store's; ``?`` placeholders."""
    if url.startswith("sqlite:///"):
        with closing(sqlite3.connect(url[len("sqlite:///"):])) as conn, conn:
            return conn.execute(sql, params).fetchall()
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(sql.replace("?", "%s"), params)
        return cur.fetchall() if cur.description else []


# --------------------------------------------------------------------------------------------
# Decisions
# --------------------------------------------------------------------------------------------


def test_decision_round_trip(store):
    plain = decision("t-1")
    with_raw = decision("t-2", "D", raw_text="快递还没到，手机号13812345678", degraded=True, replica="replica-a")
    store.record_decision(plain)
    store.record_decision(with_raw)
    assert store.get_decision("t-1") == plain
    assert store.get_decision("t-2") == with_raw
    assert store.get_decision("t-2").degraded is True
    assert store.get_decision("never") is None
    assert store.counts() == {"decisions": 2, "feedback": 0}


def test_upsert_replaces_the_decision_but_keeps_created_at_and_feedback(store, store_url):
    store.record_decision(decision("t-1", "B"))
    (created_at,) = raw_sql(store_url, "SELECT created_at FROM decisions WHERE id = ?", ("t-1",))[0]
    assert datetime.fromisoformat(created_at).utcoffset().total_seconds() == 0
    raw_sql(store_url, "UPDATE decisions SET created_at = ? WHERE id = ?", ("2000-01-01T00:00:00+00:00", "t-1"))
    store.record_feedback(feedback("t-1", severity="high"))

    replacement = decision("t-1", "C", raw_text="原文")
    store.record_decision(replacement)

    assert store.get_decision("t-1") == replacement
    assert raw_sql(store_url, "SELECT created_at FROM decisions WHERE id = ?", ("t-1",)) == [("2000-01-01T00:00:00+00:00",)]
    assert store.counts() == {"decisions": 1, "feedback": 1}
    (example,) = store.corrected_examples()
    assert example["model_labels"]["category"] == "C"
    assert example["labels"] == {"category": "C", "severity": "high", "sentiment": "neutral"}


def test_record_decisions_is_one_transaction(store):
    store.record_decision(decision("keep", "A"))
    invalid = decision(None)  # type: ignore[arg-type]  # NOT NULL violation on the last record
    with pytest.raises(INTEGRITY_ERRORS):
        store.record_decisions([decision("new-1"), decision("keep", "D"), decision("new-2"), invalid])
    assert store.counts() == {"decisions": 1, "feedback": 0}
    assert store.get_decision("keep").labels["category"] == "A"
    assert store.get_decision("new-1") is None

    store.record_decisions([decision("new-1"), decision("keep", "D"), decision("new-2")])
    assert store.counts() == {"decisions": 3, "feedback": 0}
    assert store.get_decision("keep").labels["category"] == "D"


# --------------------------------------------------------------------------------------------
# Feedback
# --------------------------------------------------------------------------------------------


def test_feedback_for_an_unknown_id_raises(store):
    store.record_decision(decision("t-1"))
    with pytest.raises(UnknownDecision) as info:
        store.record_feedback(feedback("t-404", category="D"))
    assert isinstance(info.value, KeyError)
    assert "t-404" in str(info.value)
    assert store.counts() == {"decisions": 1, "feedback": 0}


def test_feedback_for_an_unknown_head_raises(store):
    store.record_decision(decision("t-1"))
    with pytest.raises(ValueError, match="Category"):
        store.record_feedback(feedback("t-1", Category="D"))
    assert store.counts()["feedback"] == 0


def test_corrections_merge_with_the_latest_per_head_winning(store):
    store.record_decision(decision("t-1", "B"))
    first = store.record_feedback(feedback("t-1", agent="a1", at="2026-03-11T01:00:00+00:00", category="C", severity="high"))
    second = store.record_feedback(feedback("t-1", agent="a2", note="客户威胁投诉", at="2026-03-11T02:00:00+00:00", category="D"))
    third = store.record_feedback(feedback("t-1", agent="a3", at="2026-03-11T03:00:00+00:00", sentiment="negative"))
    assert first < second < third

    (example,) = store.corrected_examples()
    assert example["model_labels"] == {"category": "B", "severity": "low", "sentiment": "neutral"}
    assert example["labels"] == {"category": "D", "severity": "high", "sentiment": "negative"}
    assert example["corrected_heads"] == ["category", "severity", "sentiment"]
    assert (example["agent"], example["note"], example["feedback_at"]) == ("a3", None, "2026-03-11T03:00:00+00:00")
    assert example["masked_text"] == decision("t-1").masked_text
    assert example["raw_text"] is None
    assert example["model_version"] == "triage-e5s-default-1"
    assert example["received_at"] == "2026-03-10T20:30:00+08:00"
    assert store.counts() == {"decisions": 1, "feedback": 3}


def test_corrected_examples_are_ordered_by_first_feedback(store):
    for id in ("d1", "d2", "d3", "d4"):
        store.record_decision(decision(id))
    store.record_feedback(feedback("d3", category="C"))
    store.record_feedback(feedback("d1", category="A"))
    store.record_feedback(feedback("d3", category="D"))
    store.record_feedback(feedback("d2", severity="high"))
    examples = list(store.corrected_examples())
    assert [e["id"] for e in examples] == ["d3", "d1", "d2"]
    assert examples[0]["labels"]["category"] == "D"
    assert [e["corrected_heads"] for e in examples] == [["category"], ["category"], ["severity"]]


# --------------------------------------------------------------------------------------------
# Concurrency
# --------------------------------------------------------------------------------------------


def test_concurrent_writes_from_threads(store):
    threads, per_thread = 8, 50
    start = threading.Barrier(threads)

    def write(t: int) -> None:
        start.wait()
        for i in range(per_thread):
            store.record_decision(decision(f"t{t}-{i}"))
            store.record_feedback(feedback(f"t{t}-{i}", category="D"))

    with ThreadPoolExecutor(threads) as pool:
        for future in [pool.submit(write, t) for t in range(threads)]:
            future.result()
    n = threads * per_thread
    assert store.counts() == {"decisions": n, "feedback": n}
    assert all(store.get_decision(f"t{t}-{i}") is not None for t in range(threads) for i in range(per_thread))
    assert len(list(store.corrected_examples())) == n


_WRITER = """
import sys
from helpdesk_triage.api.decision_store import DecisionRecord, open_store
url, prefix, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
print("ready", flush=True)
sys.stdin.readline()
store = open_store(url)
for i in range(n):
    store.record_decision(DecisionRecord(f"{prefix}-{i}", "text", None, {"category": "A"}, {}, "v", False, "t", "t"))
store.close()
"""


def test_several_processes_create_and_write_the_same_database(store_url):
    """Three writer processes and this one open a new database at once (concurrent schema creation,
    like ``uvicorn --workers 4``) and write together; every row is there."""
    per_process = 100
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, store_url, f"p{k}", str(per_process)],
            cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for k in range(3)
    ]
    for w in writers:
        assert w.stdout.readline().strip() == "ready", w.stderr.read()
    for w in writers:
        w.stdin.write("go\n")
        w.stdin.flush()
    store = open_store(store_url)
    try:
        for i in range(per_process):
            store.record_decision(decision(f"main-{i}"))
        for w in writers:
            _, err = w.communicate(timeout=120)
            assert w.returncode == 0, err
        assert store.counts()["decisions"] == 4 * per_process
    finally:
        store.close()
    ids = {row[0] for row in raw_sql(store_url, "SELECT id FROM decisions")}
    assert ids == {f"{p}-{i}" for p in ("main", "p0", "p1", "p2") for i in range(per_process)}
    assert applied_versions(store_url) == list(range(1, SCHEMA_VERSION + 1))


# --------------------------------------------------------------------------------------------
# Durability, reopening, schema
# --------------------------------------------------------------------------------------------


def test_sqlite_uses_wal_and_full_sync(tmp_path):
    path = tmp_path / "d.db"
    store = open_store(f"sqlite:///{path}")
    try:
        pragmas = store.pragmas()
    finally:
        store.close()
    assert pragmas["journal_mode"] == "wal"
    assert pragmas["synchronous"] == 2  # FULL
    assert pragmas["busy_timeout"] >= 5000
    assert pragmas["foreign_keys"] == 1
    with closing(sqlite3.connect(path)) as conn:  # WAL is a property of the file, not just the connection
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_reopening_keeps_the_data(store_url):
    store = open_store(store_url)
    store.record_decision(decision("t-1", raw_text="原文"))
    store.record_feedback(feedback("t-1", category="D"))
    store.close()

    reopened = open_store(store_url)
    try:
        assert reopened.get_decision("t-1") == decision("t-1", raw_text="原文")
        assert reopened.counts() == {"decisions": 1, "feedback": 1}
        assert [e["labels"]["category"] for e in reopened.corrected_examples()] == ["D"]
    finally:
        reopened.close()


def applied_versions(url: str) -> list[int]:
    return [row[0] for row in raw_sql(url, "SELECT version FROM schema_migrations ORDER BY version")]


def test_schema_creation_is_idempotent(store_url):
    first, second = open_store(store_url), open_store(store_url)
    try:
        first.record_decision(decision("t-1"))
        assert second.get_decision("t-1") == decision("t-1")
        assert applied_versions(store_url) == list(range(1, SCHEMA_VERSION + 1))
        # the oldest code that may use this database: every migration so far is additive
        assert raw_sql(store_url, "SELECT version FROM schema_version") == [(1,)]
    finally:
        first.close()
        second.close()


def test_concurrent_openers_apply_each_migration_once(store_url):
    """Replicas starting together on a new database: each migration runs once (a second ALTER TABLE ADD
    COLUMN would fail its opener), the others wait for it and find it applied."""
    openers = 4
    barrier = threading.Barrier(openers)

    def open_at_once():
        barrier.wait(10)
        return open_store(store_url)

    with ThreadPoolExecutor(openers) as pool:
        stores = list(pool.map(lambda _: open_at_once(), range(openers)))
    try:
        stores[0].record_decision(decision("t-1"))
        assert all(s.get_decision("t-1") == decision("t-1") for s in stores)
    finally:
        for s in stores:
            s.close()
    assert applied_versions(store_url) == list(range(1, SCHEMA_VERSION + 1))


def test_a_database_from_before_migrations_is_adopted(store_url):
    open_store(store_url, migrations=MIGRATIONS[:1]).close()
    raw_sql(store_url, "DROP TABLE schema_migrations")  # now exactly what the code before migrations created
    raw_sql(store_url, "INSERT INTO decisions (id, masked_text, raw_text, labels, scores, model_version, degraded,"
            " received_at, decided_at, created_at) VALUES ('old-1', 'x', NULL, '{\"category\": \"B\"}', '{}', 'v1', ?, 't', 't', 't')",
            (False,))
    store = open_store(store_url)
    try:
        old = store.get_decision("old-1")
        assert old is not None and old.labels == {"category": "B"} and old.replica is None
        store.record_decision(decision("new-1", replica="replica-a"))
        assert store.get_decision("new-1").replica == "replica-a"
    finally:
        store.close()
    assert applied_versions(store_url) == list(range(1, SCHEMA_VERSION + 1))


ADDITIVE = Migration(SCHEMA_VERSION + 1, 1, "an additive change", ("CREATE TABLE IF NOT EXISTS extra (x INTEGER)",))
BREAKING = Migration(SCHEMA_VERSION + 2, SCHEMA_VERSION + 2, "a breaking change", ("DROP TABLE extra",))


def test_older_code_starts_on_a_newer_compatible_database(store_url):
    open_store(store_url, migrations=(*MIGRATIONS, ADDITIVE)).close()  # a newer release migrated the database
    store = open_store(store_url)  # this release still starts, reads and writes
    try:
        store.record_decision(decision("t-1"))
        store.record_feedback(feedback("t-1", category="D", replica="replica-b"))
        assert store.get_decision("t-1") == decision("t-1")
    finally:
        store.close()
    assert raw_sql(store_url, "SELECT replica FROM feedback") == [("replica-b",)]
    assert applied_versions(store_url) == [*range(1, SCHEMA_VERSION + 1), ADDITIVE.version]


def test_older_code_refuses_an_incompatible_database(store_url):
    open_store(store_url, migrations=(*MIGRATIONS, ADDITIVE, BREAKING)).close()
    with pytest.raises(SchemaTooNew) as refused:
        open_store(store_url)
    assert str(refused.value) == (
        f"the database has schema version {BREAKING.version}, which needs code of schema version {BREAKING.version}"
        f" or later; this code knows version {SCHEMA_VERSION}: upgrade the service")
    assert "\n" not in str(refused.value)
    # nothing was changed by the refused opener
    assert applied_versions(store_url) == [*range(1, SCHEMA_VERSION + 1), ADDITIVE.version, BREAKING.version]


RELEASE_BEFORE_MIGRATIONS = "3c648f4"  # the last commit whose decision store had no migrations


def _release_before_migrations():
    """api/decision_store.py as it was at RELEASE_BEFORE_MIGRATIONS, as a module; None without that git history."""
    try:
        source = subprocess.run(["git", "show", f"{RELEASE_BEFORE_MIGRATIONS}:api/decision_store.py"], cwd=REPO,
                                capture_output=True, text=True, check=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    module = types.ModuleType("decision_store_before_migrations")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    try:
        exec(compile(source, "decision_store_before_migrations.py", "exec"), module.__dict__)
    finally:
        del sys.modules[module.__name__]
    return module


def test_both_releases_share_one_database_in_a_rolling_upgrade(store_url):
    """The release before migrations and this one, on one database, in the order of a rolling upgrade."""
    previous = _release_before_migrations()
    if previous is None:
        pytest.skip(f"no git history with commit {RELEASE_BEFORE_MIGRATIONS}")
    old = previous.open_store(store_url)  # the old replicas created the database
    old.record_decision(previous.DecisionRecord(**{k: v for k, v in vars(decision("t-old")).items() if k not in ("replica", "answer")}))
    new = open_store(store_url)  # a new replica starts: migrates to the current version under the lock
    new.record_decision(decision("t-new", replica="replica-new"))
    new.record_feedback(feedback("t-old", category="D", replica="replica-new"))
    old.record_feedback(previous.FeedbackRecord(id="t-new", corrections={"severity": "high"}, agent="a", note=None,
                                                created_at="2026-03-11T02:00:00+00:00"))
    assert old.get_decision("t-new").labels == decision("t-new").labels
    old.close()
    restarted_old = previous.open_store(store_url)  # an old replica restarting mid-upgrade still starts
    restarted_old.close()
    try:
        assert new.get_decision("t-old").replica is None
        assert {e["id"]: e["labels"] for e in new.corrected_examples()} == {
            "t-old": {**decision("t-old").labels, "category": "D"},
            "t-new": {**decision("t-new").labels, "severity": "high"},
        }
    finally:
        new.close()
    assert applied_versions(store_url) == list(range(1, SCHEMA_VERSION + 1))


def test_a_newer_legacy_schema_version_is_refused(store_url):
    """schema_version's one row, as code from before migrations wrote it, is honoured too."""
    open_store(store_url).close()
    raw_sql(store_url, "UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    with pytest.raises(SchemaTooNew, match="upgrade the service"):
        open_store(store_url)


def test_ping_and_close(store):
    assert store.ping() is True
    store.close()
    assert store.ping() is False


@pytest.fixture
def pg_url():
    if not PG_URL:
        pytest.skip(PG_SKIP)
    yield from _fresh_pg_schema()


def test_postgres_reconnects_once_after_the_connection_drops(pg_url):
    store = open_store(pg_url)
    try:
        store.record_decision(decision("before"))
        _kill_backends(application_name=pg_url.rsplit("application_name=", 1)[1])
        store.record_decision(decision("after"))
        assert store.get_decision("before") == decision("before")
        assert store.counts()["decisions"] == 2
    finally:
        store.close()


def _kill_backends(application_name: str) -> None:
    """Terminate the server processes serving ``application_name`` and wait until they are gone."""
    with psycopg.connect(PG_URL, autocommit=True) as admin:
        query = "SELECT pid FROM pg_stat_activity WHERE application_name = %s"
        pids = [pid for (pid,) in admin.execute(query, (application_name,))]
        assert pids, "the store's connection was not found"
        for pid in pids:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        deadline = time.monotonic() + 10
        while admin.execute(query, (application_name,)).fetchall():
            assert time.monotonic() < deadline, "the store's server process did not exit"
            time.sleep(0.01)


# --------------------------------------------------------------------------------------------
# URLs
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url, message",
    [
        ("", "is not a URL"),
        ("decisions.db", "is not a URL"),
        ("sqlite://decisions.db", "three slashes"),
        ("sqlite:///", "no file path"),
        ("mysql://triage:s3cret@db:3306/triage", "unsupported store URL scheme 'mysql'"),
        ("http://example.com/db", "unsupported store URL scheme 'http'"),
    ],
)
def test_open_store_refuses_bad_urls(url, message):
    with pytest.raises(ValueError, match=message) as info:
        open_store(url)
    assert "s3cret" not in str(info.value)


def test_sqlite_relative_path_creates_parent_folders(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store = open_store("sqlite:///var/triage/decisions.db")
    store.record_decision(decision("t-1"))
    store.close()
    assert (tmp_path / "var" / "triage" / "decisions.db").is_file()


def test_sqlite_in_memory():
    store = open_store("sqlite:///:memory:")
    store.record_decision(decision("t-1"))
    assert store.counts() == {"decisions": 1, "feedback": 0}
    store.close()


def _answered(id: str, due: str, needs_review: bool = True, severity: str = "low") -> DecisionRecord:
    from dataclasses import replace

    answer = {"labels": {"category": "B", "severity": severity, "sentiment": "neutral"}, "needs_human_review": needs_review,
              "review_reasons": [], "queue": "orders", "sla": {"first_response_due": due, "resolution_due": due}}
    return replace(decision(id), answer=answer)


def test_open_reviews_soonest_due_first_and_the_backlog_leave_out_reviewed_and_unflagged(store):
    store.record_decisions([
        _answered("late", "2026-03-10T09:00:00+08:00"),        # 01:00 UTC
        _answered("soon", "2026-03-10T02:30:00+00:00"),
        _answered("fine", "2026-03-10T12:00:00+00:00", needs_review=False),
        _answered("critical", "2026-03-10T03:00:00+00:00", needs_review=False, severity="critical"),
        _answered("done", "2026-03-10T00:00:00+00:00"),
        decision("before-schema-3"),                           # no answer stored: not listed
    ])
    store.record_feedback(FeedbackRecord(id="done", corrections={"category": "B", "severity": "low", "sentiment": "neutral"},
                                         agent="a", note=None, created_at="2026-03-10T00:05:00+00:00", kind="review"))
    assert [r.id for r in store.open_reviews(10)] == ["late", "soon", "critical"]
    assert [r.id for r in store.open_reviews(1)] == ["late"]
    assert store.review_backlog("2026-03-10T02:00:00+00:00") == {"open": 3, "overdue": 1}
    assert store.review_backlog("2026-03-10T02:45:00+00:00") == {"open": 3, "overdue": 2}
    with pytest.raises(ValueError, match="feedback kind"):
        store.record_feedback(FeedbackRecord(id="late", corrections={"category": "D"}, agent=None, note=None,
                                             created_at="2026-03-10T00:05:00+00:00", kind="guess"))
