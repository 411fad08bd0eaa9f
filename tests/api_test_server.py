"""Real uvicorn servers for the API tests: in a thread of the test process, or as a subprocess.

As a script it serves ``create_app(Settings(), classifier=...)`` on an inherited listening socket
with ``api.server.run_server``, as ``triage serve`` does (JSON logs, graceful shutdown), with a test classifier: the
keyword rules (fast start) or a slow one that makes a request stay in flight::

    python -m tests.api_test_server --fd 3 [--classifier keyword|slow] [--delay-ms 1500] [--started-file F]

Settings come from the environment (TRIAGE_DATABASE_URL ...), as in production.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import uvicorn

from helpdesk_triage.policy.keyword_rules import KeywordClassifier
from helpdesk_triage.policy.prediction import TextPrediction

ROOT = Path(__file__).resolve().parent.parent


class SlowClassifier:
    """The keyword rules after a delay; touches ``started_file`` (if any) when a prediction begins."""

    version = "slow-test-1"

    def __init__(self, delay_s: float, started_file: Path | None = None) -> None:
        self.delay_s = delay_s
        self.started_file = started_file
        self.rules = KeywordClassifier()

    def predict(self, texts: list[str]) -> list[TextPrediction]:
        if self.started_file is not None:
            self.started_file.touch()
        time.sleep(self.delay_s)
        return self.rules.predict(texts)


def listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


@contextlib.contextmanager
def serve_in_thread(app, timeout_graceful_shutdown: float | None = None, http: str = "auto") -> Iterator[str]:
    """Serve ``app`` over a real socket from a thread; yields the base URL. Lifespan runs as in production.
    ``http``: uvicorn's HTTP parser ("auto": httptools when installed, as ``triage serve``; or "h11")."""
    sock = listening_socket()
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on", http=http,
                            timeout_graceful_shutdown=timeout_graceful_shutdown)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


class ServerProcess:
    """``python -m tests.api_test_server`` on a socket bound here (no port race), with its stderr kept."""

    def __init__(self, tmp_path: Path, env: dict[str, str], *args: str) -> None:
        with listening_socket() as sock:
            port = sock.getsockname()[1]
            self.url = f"http://127.0.0.1:{port}"
            self.log_path = tmp_path / f"server-{port}-{time.monotonic_ns()}.log"
            self._log = self.log_path.open("wb")
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.api_test_server", "--fd", str(sock.fileno()), *args],
                cwd=ROOT, env={**_environ_without_api_keys(), "HF_HUB_OFFLINE": "1", **env}, pass_fds=[sock.fileno()],
                stdout=self._log, stderr=subprocess.STDOUT,
            )
        # Only the server holds the socket now: once it dies, connections are refused, not left hanging.

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"server not ready after {timeout} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(30)
        self._log.close()


def _environ_without_api_keys() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "TRIAGE_API_KEYS"}


def main(argv: list[str] | None = None) -> None:
    from helpdesk_triage.api.app import create_app
    from helpdesk_triage.api.server import run_server
    from helpdesk_triage.policy.settings import Settings

    parser = argparse.ArgumentParser()
    parser.add_argument("--fd", type=int, required=True, help="an inherited listening socket")
    parser.add_argument("--classifier", choices=("keyword", "slow"), default="keyword")
    parser.add_argument("--delay-ms", type=int, default=1500)
    parser.add_argument("--started-file", type=Path, default=None)
    args = parser.parse_args(argv)
    settings = Settings()
    classifier = (SlowClassifier(args.delay_ms / 1000, args.started_file) if args.classifier == "slow"
                  else KeywordClassifier())
    run_server(create_app(settings, classifier=classifier), settings, fd=args.fd)


if __name__ == "__main__":
    main()
