"""Replicated serving on loopback: two ``triage serve`` replicas on one PostgreSQL behind Debian's nginx,
started by deploy/run-local.sh exactly as on a machine without containers.

Triage goes through the balancer, feedback for the same ids straight to the replica that did not answer,
and ``triage export-feedback`` sees every row. Then a stream of triage writes through the balancer, with
one replica SIGKILLed in the middle: every acknowledged decision is in the database, and the balancer
routes around the dead replica. Needs TRIAGE_TEST_POSTGRES_URL (scripts/start_test_postgres.sh) and nginx
(.ci/run installs Debian's); skipped otherwise. The replicas answer with the keyword rules (an empty
model folder), which start in seconds.

Also here, without either: the replica's name in /readyz, the X-Triage-Replica header and the log lines.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient

from helpdesk_triage.api.app import create_app
from helpdesk_triage.api.cli import main as triage
from helpdesk_triage.api.decision_store import MIGRATIONS, SCHEMA_VERSION, Migration, open_store
from helpdesk_triage.api.request_log import JsonFormatter
from helpdesk_triage.policy.keyword_rules import KeywordClassifier
from helpdesk_triage.policy.settings import Settings

REPO = Path(__file__).resolve().parents[1]
PG_URL = os.environ.get("TRIAGE_TEST_POSTGRES_URL")
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
TRIAGE_BIN = Path(sys.executable).with_name("triage")

N_TRIAGED = 40           # phase 1: triaged through the balancer, feedback through the other replica
STREAM_IDS = 600         # phase 2: at most this many writes ...
STREAM_SECONDS = 60      # ... for at most this long
KILL_AFTER_ACKS = 80     # SIGKILL replica-1 once this many stream writes were acknowledged
WRITERS = 4
AFTER_KILL_PROBES = 20


# --------------------------------------------------------------------------------------------
# Replica identity (no PostgreSQL, no nginx)
# --------------------------------------------------------------------------------------------


def test_readyz_header_and_log_lines_name_the_replica(tmp_path):
    settings = Settings(database_url=f"sqlite:///{tmp_path}/t.db", replica_name="replica-x")
    with TestClient(create_app(settings, classifier=KeywordClassifier())) as http:
        ready = http.get("/readyz")
        assert ready.json()["replica"] == "replica-x" and ready.json()["worker_pid"] == os.getpid()
        r = http.post("/v1/triage", json={"text": "快递到哪了", "id": "who-1"}, headers={"X-Request-ID": "req-1"})
        assert r.status_code == 200
        assert r.headers["x-triage-replica"] == "replica-x" and r.headers["x-request-id"] == "req-1"
        assert http.get("/nowhere").headers["x-triage-replica"] == "replica-x"  # errors too
        assert http.app.state.service.store.get_decision("who-1").replica == "replica-x"
    line = json.loads(JsonFormatter(replica="replica-x").format(logging.LogRecord("t", logging.INFO, "", 0, "e", None, None)))
    assert line["replica"] == "replica-x"


def test_replica_name_defaults_to_the_host_name_and_is_checked(monkeypatch):
    monkeypatch.delenv("TRIAGE_REPLICA_NAME", raising=False)
    assert Settings().replica_name == socket.gethostname()
    monkeypatch.setenv("TRIAGE_REPLICA_NAME", "has space")
    with pytest.raises(ValueError, match="replica_name"):
        Settings()


def test_serve_refuses_a_database_newer_than_its_code_in_one_line(monkeypatch, capsys, tmp_path):
    url = f"sqlite:///{tmp_path}/t.db"
    breaking = Migration(SCHEMA_VERSION + 1, SCHEMA_VERSION + 1, "a breaking change", ("CREATE TABLE x (y INTEGER)",))
    open_store(url, migrations=(*MIGRATIONS, breaking)).close()  # a newer release migrated the database
    monkeypatch.setenv("TRIAGE_DATABASE_URL", url)
    assert triage(["serve", "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert (f"needs code of schema version {SCHEMA_VERSION + 1} or later; this code knows version {SCHEMA_VERSION}:"
            " upgrade the service") in err
    assert len(err.strip().splitlines()) == 1


# --------------------------------------------------------------------------------------------
# Two replicas behind nginx
# --------------------------------------------------------------------------------------------


def _free_port(consecutive: int = 1) -> int:
    """A loopback port that is free, with the next ``consecutive - 1`` ports (run-local.sh numbers the replicas)."""
    for _ in range(50):
        socks = [socket.socket()]
        try:
            socks[0].bind(("127.0.0.1", 0))
            first = socks[0].getsockname()[1]
            for port in range(first + 1, first + consecutive):
                socks.append(socket.socket())
                socks[-1].bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free loopback ports")


@contextlib.contextmanager
def _fresh_database():
    """A fresh schema of the test server for this test; the URL selects it."""
    schema = f"rep_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_URL, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    try:
        yield PG_URL + ("&" if "?" in PG_URL else "?") + f"options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


def _wait_ready(url: str, deadline: float, why) -> dict:
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            r = httpx.get(f"{url}/readyz", timeout=2)
            if r.status_code == 200:
                return r.json()
        time.sleep(0.2)
    raise AssertionError(f"{url} not ready: {why()}")


@pytest.mark.skipif(not PG_URL, reason="TRIAGE_TEST_POSTGRES_URL is not set (scripts/start_test_postgres.sh starts a server)")
@pytest.mark.skipif(NGINX is None, reason="no nginx (.ci/run installs Debian's nginx package)")
def test_two_replicas_behind_nginx(tmp_path, capsys):
    lb_port, first_replica_port = _free_port(), _free_port(2)
    replica_ports = [first_replica_port, first_replica_port + 1]
    state = tmp_path / "state"
    run = uuid.uuid4().hex[:8]
    with _fresh_database() as db_url:
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("TRIAGE_")},
               "TRIAGE_DATABASE_URL": db_url, "TRIAGE_MODEL_DIR": str(tmp_path / "no-model"),
               "TRIAGE_MAX_QUEUED_REQUESTS": "64", "TRIAGE_BIN": str(TRIAGE_BIN), "NGINX_BIN": NGINX,
               "HF_HUB_OFFLINE": "1"}
        (tmp_path / "no-model").mkdir()  # an empty model folder: the keyword rules answer (degraded), at once
        stack = subprocess.Popen(
            ["bash", str(REPO / "deploy" / "run-local.sh"), "--replicas", "2", "--port", str(lb_port),
             "--first-replica-port", str(replica_ports[0]), "--state", str(state)],
            env=env, stdout=subprocess.DEVNULL, stderr=(tmp_path / "run-local.log").open("wb"))

        def logs() -> str:
            return "\n".join(f"== {p.name}\n" + p.read_text(errors="replace")[-3000:]
                             for p in sorted([tmp_path / "run-local.log", *state.glob("*.log")]) if p.exists())

        try:
            lb = f"http://127.0.0.1:{lb_port}"
            direct = {}
            deadline = time.monotonic() + 120
            for port in replica_ports:  # /readyz of each replica names it
                url = f"http://127.0.0.1:{port}"
                ready = _wait_ready(url, deadline, logs)
                assert ready["degraded"] is True
                direct[ready["replica"]] = url
            assert sorted(direct) == ["replica-1", "replica-2"]
            _wait_ready(lb, deadline, logs)

            # Phase 1: triage through the balancer, feedback for each id through the other replica.
            ids = [f"rep-{run}-{i}" for i in range(N_TRIAGED)]
            answered_by = {}
            with httpx.Client(base_url=lb, timeout=30) as http:
                for i in ids:
                    r = http.post("/v1/triage", json={"text": "我要投诉，快递三天没动了", "id": i}, headers={"X-Request-ID": f"rq-{i}"})
                    assert r.status_code == 200, r.text
                    assert r.headers["x-request-id"] == f"rq-{i}"  # nginx passes the client's id through
                    answered_by[i] = r.headers["x-triage-replica"]
            per_replica = {name: list(answered_by.values()).count(name) for name in direct}
            assert all(per_replica.values()), f"the balancer used one replica only: {per_replica}"
            other = {"replica-1": "replica-2", "replica-2": "replica-1"}
            for i in ids:
                r = httpx.post(f"{direct[other[answered_by[i]]]}/v1/feedback", json={"id": i, "category": "D", "agent": "a"}, timeout=30)
                assert r.status_code == 201, r.text
                assert r.headers["x-triage-replica"] == other[answered_by[i]]
            out = tmp_path / "feedback.jsonl"
            assert triage(["export-feedback", "--out", str(out), "--database-url", db_url]) == 0
            exported = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
            assert sorted(row["id"] for row in exported) == sorted(ids)
            assert all(row["category"] == "D" for row in exported)
            with psycopg.connect(db_url) as conn:
                crossed = conn.execute("SELECT COUNT(*) FROM decisions d JOIN feedback f ON f.decision_id = d.id"
                                       " WHERE d.replica <> f.replica AND d.id LIKE %s", (f"rep-{run}-%",)).fetchone()[0]
            assert crossed == N_TRIAGED  # every decision by one replica, its feedback by the other

            # Phase 2: a stream of writes through the balancer; SIGKILL replica-1 in the middle.
            victim_pid = int((state / "replica-1.pid").read_text())
            stream_ids = iter(f"kill-{run}-{i}" for i in range(STREAM_IDS))
            acknowledged: dict[str, str] = {}
            failed: list[str] = []
            lock, enough = threading.Lock(), threading.Event()
            killed_at: list[float] = []
            acks_after_kill = 0
            stop_at = time.monotonic() + STREAM_SECONDS

            def writer() -> None:
                nonlocal acks_after_kill
                with httpx.Client(base_url=lb, timeout=30) as http:
                    while time.monotonic() < stop_at:
                        with lock:
                            decision_id = next(stream_ids, None)
                        if decision_id is None:
                            return
                        try:
                            r = http.post("/v1/triage", json={"text": "订单退款还没到账", "id": decision_id})
                        except httpx.TransportError as exc:
                            with lock:
                                failed.append(f"{decision_id}: {type(exc).__name__}")
                            continue
                        with lock:
                            if r.status_code == 200:
                                acknowledged[decision_id] = r.headers["x-triage-replica"]
                                if killed_at:
                                    acks_after_kill += 1
                                if len(acknowledged) >= KILL_AFTER_ACKS:
                                    enough.set()
                            else:
                                failed.append(f"{decision_id}: {r.status_code}")

            writers = [threading.Thread(target=writer) for _ in range(WRITERS)]
            for t in writers:
                t.start()
            assert enough.wait(STREAM_SECONDS), f"only {len(acknowledged)} acknowledged:\n{logs()}"
            os.kill(victim_pid, signal.SIGKILL)  # mid-stream: the writers are still sending
            killed_at.append(time.monotonic())
            for t in writers:
                t.join(STREAM_SECONDS + 30)
            assert not any(t.is_alive() for t in writers)
            acks_before_kill = len(acknowledged) - acks_after_kill
            assert acks_after_kill > 0, "no write was acknowledged after the kill"

            # Routed around: every request through the balancer now succeeds, answered by replica-2.
            with httpx.Client(base_url=lb, timeout=30) as http:
                probes = [http.post("/v1/triage", json={"text": "还在吗", "id": f"after-{run}-{i}"}) for i in range(AFTER_KILL_PROBES)]
                assert [r.status_code for r in probes] == [200] * AFTER_KILL_PROBES
                assert {r.headers["x-triage-replica"] for r in probes} == {"replica-2"}
                assert http.get("/readyz").json()["replica"] == "replica-2"
            with pytest.raises(httpx.TransportError):
                httpx.get(f"{direct['replica-1']}/readyz", timeout=2)
            assert httpx.get(f"{direct['replica-2']}/readyz", timeout=5).json()["replica"] == "replica-2"

            with psycopg.connect(db_url) as conn:
                stored = {row[0] for row in conn.execute("SELECT id FROM decisions WHERE id LIKE %s", (f"kill-{run}-%",))}
            lost = sorted(set(acknowledged) - stored)
            assert not lost, f"{len(lost)} acknowledged decisions lost: {lost[:5]}"
            by_replica = {name: list(acknowledged.values()).count(name) for name in direct}
            # nginx's access log: requests it sent to a second replica after the first failed ("a, b")
            resent = sum(", " in line.split("upstream=", 1)[1].split(" upstream_status=", 1)[0]
                         for line in (state / "nginx-access.log").read_text().splitlines() if "upstream=" in line)
            with capsys.disabled():
                print(f"\ntwo replicas behind nginx: phase 1: {N_TRIAGED} triaged through nginx {per_replica},"
                      f" {N_TRIAGED} feedback through the other replica, {len(exported)} rows exported,"
                      f" {crossed} decision/feedback pairs written by different replicas;"
                      f" phase 2: {len(acknowledged)} writes acknowledged ({acks_before_kill} before the SIGKILL of"
                      f" replica-1, {acks_after_kill} after; by replica {by_replica}), {len(failed)} not acknowledged"
                      f" {failed[:5]}, {len(stored)} stored, {len(lost)} acknowledged lost, {resent} re-sent by nginx"
                      " to the other replica;"
                      f" after the kill {AFTER_KILL_PROBES}/{AFTER_KILL_PROBES} through nginx answered by replica-2")
        finally:
            stack.send_signal(signal.SIGTERM)
            try:
                stack.wait(45)
            except subprocess.TimeoutExpired:
                stack.kill()
                stack.wait(10)
                for pid_file in [*state.glob("replica-*.pid"), state / "nginx.pid"]:  # what it could not stop
                    with contextlib.suppress(OSError, ValueError):
                        os.kill(int(pid_file.read_text().strip()), signal.SIGKILL)
