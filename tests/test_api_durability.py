"""A write acknowledged to a client is never lost: SIGKILL the server during a stream of feedback
writes, restart it on the same database, and find every acknowledged row.

Runs on SQLite (WAL, a file in tmp) and, when TRIAGE_TEST_POSTGRES_URL is set, on PostgreSQL. The
server is the real app under uvicorn in a subprocess (tests/api_test_server.py, keyword rules for a
fast start); the rows are read back through ``triage export-feedback``.
"""

import json
import os
import signal
import threading
import uuid

import httpx
import pytest

from helpdesk_triage.api.cli import main as triage
from tests.api_test_server import ServerProcess

N_DECISIONS = 320  # more than the writers can acknowledge before the kill: every feedback has its own decision
KILL_AFTER_ACKS = 60
WRITERS = 4


BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.skipif(
        not os.environ.get("TRIAGE_TEST_POSTGRES_URL"),
        reason="TRIAGE_TEST_POSTGRES_URL is not set (scripts/start_test_postgres.sh starts a server)")),
]


@pytest.mark.parametrize("backend", BACKENDS)
def test_acknowledged_feedback_survives_sigkill(tmp_path, backend):
    url = f"sqlite:///{tmp_path}/triage.db" if backend == "sqlite" else os.environ["TRIAGE_TEST_POSTGRES_URL"]
    env = {"TRIAGE_DATABASE_URL": url, "TRIAGE_MAX_QUEUED_REQUESTS": "64"}
    run = uuid.uuid4().hex[:8]  # the PostgreSQL database outlives the test: our rows carry this prefix
    ids = [f"dur-{run}-{i}" for i in range(N_DECISIONS)]

    server = ServerProcess(tmp_path, env)
    try:
        server.wait_ready()
        with httpx.Client(base_url=server.url, timeout=30) as http:
            for start in range(0, N_DECISIONS, 64):
                r = http.post("/v1/triage/batch", json={"items": [{"text": "快递到哪了", "id": i} for i in ids[start:start + 64]]})
                assert r.status_code == 200, r.text

        acknowledged: dict[str, int] = {}
        lock, enough = threading.Lock(), threading.Event()
        next_id = iter(ids)

        def writer() -> None:
            with httpx.Client(base_url=server.url, timeout=30) as http:
                while True:
                    with lock:
                        decision_id = next(next_id, None)
                    if decision_id is None:
                        return
                    try:
                        r = http.post("/v1/feedback", json={"id": decision_id, "category": "D", "note": decision_id})
                    except httpx.TransportError:
                        return  # the server is gone: this write was never acknowledged
                    if r.status_code == 201:
                        with lock:
                            acknowledged[decision_id] = r.json()["feedback_id"]
                            if len(acknowledged) >= KILL_AFTER_ACKS:
                                enough.set()

        writers = [threading.Thread(target=writer) for _ in range(WRITERS)]
        for t in writers:
            t.start()
        assert enough.wait(60), f"only {len(acknowledged)} acknowledged:\n{server.log()}"
        os.kill(server.proc.pid, signal.SIGKILL)  # mid-stream: the writers are still sending
        for t in writers:
            t.join(60)
        assert server.proc.wait(30) == -signal.SIGKILL
        assert KILL_AFTER_ACKS <= len(acknowledged) < N_DECISIONS, "the kill did not land mid-stream"
    finally:
        server.close()

    restarted = ServerProcess(tmp_path, env)
    try:
        restarted.wait_ready()
        # The restarted server takes writes on the same database.
        r = httpx.post(f"{restarted.url}/v1/feedback", json={"id": ids[-1], "sentiment": "negative"}, timeout=30)
        assert r.status_code == 201, r.text
    finally:
        restarted.close()

    out = tmp_path / "feedback.jsonl"
    assert triage(["export-feedback", "--out", str(out), "--database-url", url]) == 0
    exported = {row["id"]: row for row in map(json.loads, out.read_text(encoding="utf-8").splitlines())}
    missing = sorted(set(acknowledged) - set(exported))
    assert not missing, f"{len(missing)} acknowledged feedback rows lost: {missing[:5]}"
    assert all(exported[i]["category"] == "D" for i in acknowledged)
    assert exported[ids[-1]]["sentiment"] == "negative"
