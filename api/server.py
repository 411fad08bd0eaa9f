"""How uvicorn runs the app: JSON logs, our access line instead of uvicorn's, graceful shutdown."""

from __future__ import annotations

import os
import signal
from typing import Any

import uvicorn

from helpdesk_triage.api.request_log import log_config
from helpdesk_triage.policy.settings import Settings


def run_server(app: Any, settings: Settings, *, host: str | None = None, port: int | None = None,
               fd: int | None = None, workers: int = 1) -> None:
    """Serve ``app`` (an ASGI app, or "module:attribute" for several workers) until SIGTERM or Ctrl+C.

    On SIGTERM uvicorn stops accepting connections, lets requests in flight finish for up to
    ``graceful_shutdown_s`` seconds, runs the app's shutdown, and then re-raises the signal; the
    handler installed here turns that into exit code 0, since SIGTERM is how a service is stopped.
    """
    # The model loader's progress bars are not JSON log lines.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    signal.signal(signal.SIGTERM, _exit_0)
    where: dict[str, Any] = {"fd": fd} if fd is not None else {"host": host or settings.host, "port": port or settings.port}
    uvicorn.run(
        app,
        **where,
        workers=workers,
        log_config=log_config(settings.log_level, settings.replica_name),
        access_log=False,  # the app writes its own access line, with the request id
        timeout_graceful_shutdown=settings.graceful_shutdown_s,
    )


def _exit_0(signum: int, frame: object) -> None:
    raise SystemExit(0)
