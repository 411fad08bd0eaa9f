"""The naive reference of ``triage bench``: the same fine-tuned model in plain transformers fp32 (``TriageModel``
with the torch backend), one request at a time, in a minimal FastAPI app. A yardstick, not a service: no storage,
no SLA, no replies, no limits.

    python -m helpdesk_triage.api.naive_server --port 8001 [--model DIR]

``GET /healthz`` answers 200 once the model is loaded and has answered one message (the port only opens
then); ``POST /v1/triage`` with ``{"text": ...}`` answers the three labels and their probabilities.
"""

from __future__ import annotations

import argparse
import threading
from pathlib import Path

from helpdesk_triage.model.folder import DEFAULT_MODEL_DIR
from helpdesk_triage.policy.labels import HEADS


def create_naive_app(model_dir: Path = DEFAULT_MODEL_DIR):
    from fastapi import Body, FastAPI

    from helpdesk_triage.model.triage_model import TriageModel

    triager = TriageModel.load(model_dir, runtime="torch")
    triager.predict(["您好，我的快递到哪了？"])  # warm-up, as the real service does before it is ready
    lock = threading.Lock()  # one request at a time
    app = FastAPI(title="naive triage reference")

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok", "model_version": triager.version}

    @app.post("/v1/triage")
    def triage(text: str = Body(..., embed=True)) -> dict:
        with lock:
            prediction = triager.predict([text])[0]
        return {head: {"label": prediction.head(head).label, "confidence": prediction.head(head).confidence,
                       "scores": prediction.head(head).scores} for head in HEADS}

    return app


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m helpdesk_triage.api.naive_server", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR)
    args = parser.parse_args(argv)
    uvicorn.run(create_naive_app(args.model), host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
