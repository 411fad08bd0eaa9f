"""``triage serve --workers 2``: one scrape of /metrics gives the totals of both workers, and each
answer says which worker gave it."""

import os
import subprocess
import sys
import time

import httpx
import pytest

from helpdesk_triage.api.serving_bench import free_port
from tests.test_api import metric

REQUESTS = 60


@pytest.fixture
def two_workers(tmp_path):
    not_a_model = tmp_path / "no-model"
    not_a_model.mkdir()  # the workers fail to load it and serve the keyword rules: a fast start
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if k not in ("TRIAGE_API_KEYS", "PROMETHEUS_MULTIPROC_DIR")},
           "HF_HUB_OFFLINE": "1", "TRIAGE_MODEL_DIR": str(not_a_model),
           "TRIAGE_DATABASE_URL": f"sqlite:///{tmp_path / 'triage.db'}"}
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "helpdesk_triage.api.cli", "serve", "--workers", "2", "--port", str(port)],
                            env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.2)
        yield url, tmp_path / "serve.log"
    finally:
        proc.terminate()
        proc.wait(60)
        log.close()


def fresh_connection(url: str, method: str, path: str, **kwargs) -> httpx.Response:
    """A request on a connection of its own, so that the kernel may hand it to either worker."""
    with httpx.Client(base_url=url, timeout=30) as client:
        return client.request(method, path, **kwargs)


def test_one_scrape_gives_the_totals_of_both_workers(two_workers):
    url, log_path = two_workers
    pids = set()
    for i in range(REQUESTS):
        assert fresh_connection(url, "POST", "/v1/triage", json={"text": f"第{i}单快递到哪了"}).status_code == 200
    for _ in range(40):
        pids.add(fresh_connection(url, "GET", "/readyz").json()["worker_pid"])
    if len(pids) < 2:
        pytest.skip("the kernel handed every connection to one worker: nothing to add up")
    scrapes = [fresh_connection(url, "GET", "/metrics").text for _ in range(6)]
    for scrape in scrapes:  # whichever worker answers, the same totals
        assert metric(scrape, "triage_requests_total", route="/v1/triage", status="200") == REQUESTS
        assert metric(scrape, "triage_triaged_total") == REQUESTS
    log = log_path.read_text(encoding="utf-8")
    assert {str(pid) for pid in pids} <= {part.split(",")[0].strip() for part in log.split('"pid": ')[1:]}
