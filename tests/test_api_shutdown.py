"""Graceful shutdown: on SIGTERM the server stops taking connections, finishes the requests in flight
and exits 0. The server is the real app under uvicorn in a subprocess (tests/api_test_server.py),
with a slow classifier so that a request is in flight when the signal arrives."""

import json
import signal
import threading
import time

import httpx

from tests.api_test_server import ServerProcess

DELAY_MS = 2500


def test_sigterm_drains_the_request_in_flight_and_exits_0(tmp_path):
    started = tmp_path / "prediction-started"
    server = ServerProcess(
        tmp_path,
        {"TRIAGE_DATABASE_URL": f"sqlite:///{tmp_path}/t.db", "TRIAGE_GRACEFUL_SHUTDOWN_S": "30",
         "TRIAGE_REQUEST_TIMEOUT_MS": "20000"},
        "--classifier", "slow", "--delay-ms", str(DELAY_MS), "--started-file", str(started),
    )
    try:
        server.wait_ready()
        result: dict = {}

        def slow_request() -> None:
            result["response"] = httpx.post(f"{server.url}/v1/triage", json={"text": "收到的杯子碎了", "id": "in-flight"},
                                            headers={"X-Request-ID": "drain-1"}, timeout=60)

        thread = threading.Thread(target=slow_request)
        thread.start()
        deadline = time.monotonic() + 30
        while not started.exists():  # the model call has begun: the request is in flight
            assert time.monotonic() < deadline and thread.is_alive(), server.log()
            time.sleep(0.01)
        sent_at = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)

        refused = False  # new connections are refused while the old request drains
        while not refused and time.monotonic() - sent_at < DELAY_MS / 1000 - 0.5:
            try:
                httpx.get(f"{server.url}/livez", timeout=1)
            except httpx.TransportError:
                refused = True
            time.sleep(0.02)

        thread.join(60)
        response = result["response"]
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["id"] == "in-flight" and body["degraded"] is False and body["model_version"] == "slow-test-1"
        assert response.headers["x-request-id"] == "drain-1"
        assert server.proc.wait(30) == 0, server.log()
        assert refused, "the server still took connections after SIGTERM"
    finally:
        server.close()

    entries = [json.loads(line) for line in server.log().splitlines() if line.strip()]  # every line is JSON
    access = next(e for e in entries if e.get("request_id") == "drain-1" and e["event"] == "request")
    assert access["status"] == 200 and access["route"] == "/v1/triage" and access["model_version"] == "slow-test-1"
    assert any(e["event"] == "shutdown_complete" for e in entries)
    assert "杯子" not in server.log()
