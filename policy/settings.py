"""The one settings object of the service, the CLI, the bench, the triage policy and the model loader: every
limit, path and default in one place, read from the environment (prefix TRIAGE_). Pure pydantic: importing
it pulls in neither FastAPI nor torch.

A bad value (``TRIAGE_MAX_BATCH_ITEMS=0``, ``TRIAGE_LOG_LEVEL=LOUD``) fails at start with pydantic's
message naming the setting.
"""

from __future__ import annotations

import json
import socket
from datetime import date
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
Runtime = Literal["onnx-int8", "torch"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TRIAGE_", extra="ignore", validate_default=True)

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    model_dir: Path | None = Field(None, description="Trained model folder; unset means the embedded default.")
    corpus_dir: Path | None = Field(
        None, description="Folder of the public corpora (jddc/, taobao_ecd/, ...): where `triage train` resolves the "
        "references of the rows it replays from the model it continues from; unset means none are replayed from there.")
    sla_policy: Path | None = Field(None, description="SLA policy TOML; unset means data/sla_policy.toml.")
    reply_templates: Path | None = Field(None, description="Reply template TOML; unset means data/reply_templates.toml.")
    answer_library: Path | None = Field(None, description="Answer library TOML; unset means data/answer_library.toml.")
    subcase_min_probability: float = Field(
        0.3, ge=0.0, le=1.0, description="The sub-case head's probability (within the decided category) under which "
        "the reply's sub-case comes from the keyword cues of data/subcases.toml instead.")
    decision_policy: Path | None = Field(
        None, description="Decision policy TOML (costs, stacker, thresholds, automation levels); unset means the "
        "model folder's decision_policy.toml when it has one, else data/decision_policy.toml.")

    database_url: str = Field(
        "sqlite:///triage-data/triage.db",
        min_length=1,
        description="Where decisions and feedback are stored: sqlite:///path.db (relative to the working "
        "directory) or postgresql://user:pass@host:5432/db for several replicas.",
    )
    replica_name: str = Field(
        default_factory=socket.gethostname, min_length=1, max_length=64, pattern=r"^[\x21-\x7e]+$",
        description="This replica's name (printable ASCII, no spaces): in /readyz, the X-Triage-Replica response "
        "header, every log line and the rows it stores. Default: the host name (a container's id).")
    store_raw_text: bool = Field(False, description="Also store the unmasked text (needed for export-feedback --unmasked), "
                                 "and store feedback agent and note unmasked.")

    max_text_chars: int = Field(2000, ge=1, description="Longer texts are cut to this many characters (flagged truncated).")
    max_batch_items: int = Field(64, ge=1, le=10_000, description="Items in one POST /v1/triage/batch; more is 413.")
    max_body_bytes: int = Field(64 * 1024, ge=1024, description="Request body limit of every route but the batch route.")
    max_batch_body_bytes: int = Field(1024 * 1024, ge=1024, description="Request body limit of POST /v1/triage/batch.")
    body_read_timeout_s: float = Field(
        10.0, gt=0.0, le=600.0,
        description="The whole request body must arrive within this many seconds of the first read; else 408.")

    max_concurrent_requests: int = Field(4, ge=1, le=256, description="Triage requests doing their Python work (checks, decisions) at the same time; the others wait for "
        "their turn or for the model. With the next setting: how many may be in flight.")
    max_queued_requests: int = Field(32, ge=0, le=4096, description="Model-bound requests waiting beyond those; more is 503.")
    max_queued_texts: int = Field(
        256, ge=1, le=100_000,
        description="Texts waiting for or in the model at most (a batch of 64 weighs 64); the model's measured rate "
        "lowers it to what it answers within request_timeout_ms. A request that does not fit is 503 with Retry-After, "
        "before any work, instead of an answer from the keyword rules after the budget is spent.",
    )
    request_timeout_ms: int = Field(
        5000, ge=10, le=600_000,
        description="Time budget of the model call (queue wait included); past it the keyword rules answer (degraded).",
    )
    retry_after_s: int = Field(1, ge=1, le=3600, description="Retry-After sent with 503 overloaded / not_ready.")
    overload_hold_ms: int = Field(
        500, ge=0, le=10_000,
        description="A request refused as overloaded is answered after this long (capped by its Retry-After), holding "
        "nothing but its connection: clients that retry at once without reading Retry-After cannot spin the server "
        "so fast that its health probes and admitted requests wait behind the refusals. 0 answers at once.",
    )

    runtime: Runtime = Field(
        "onnx-int8",
        description="How the model runs: onnx-int8 (ONNX Runtime, mostly int8, built once into the cache; falls "
        "back to torch with a warning when it cannot be built) or torch (the fp32 reference).",
    )
    batch_wait_ms: float = Field(
        2.0, ge=0.0, le=1000.0,
        description="Micro-batching: how long a model batch may wait for more concurrent requests once several "
        "are queued. A request that finds nothing else queued runs at once.",
    )
    max_model_batch: int = Field(32, ge=1, le=4096, description="Micro-batching: texts in one model call at most.")
    cache_dir: Path = Field(
        Path("~/.cache/helpdesk-triage"),
        description="Where the base encoder and the optimised ONNX models are built (once) and kept.",
    )

    # NoDecode: pydantic-settings would json.loads a list-typed env var; the validator accepts both forms.
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Accepted bearer keys, comma-separated or a JSON list; empty turns authentication off.",
    )

    review_threshold: float = Field(0.6, ge=0.0, le=1.0, description="Top probability under this needs human review.")
    review_margin: float = Field(0.1, ge=0.0, le=1.0, description="Top two probabilities closer than this need review.")

    ui_review_page_size: int = Field(50, ge=1, le=500, description="Review items shown on one page, soonest due first.")
    ui_review_scan_limit: int = Field(
        5000, ge=1, le=100_000,
        description="Open review items read per page view (the soonest due); filter counts cover these.")
    ui_session_hours: float = Field(12.0, gt=0, le=24 * 30, description="How long a page session lasts (API keys on).")
    monitor_reference: str = Field(
        "", description="The monitor's reference window for drift (PSI of the label mix): START/END, local dates of "
        "the SLA timezone, both included (2026-11-01/2026-11-07). Empty: the first 7 days of the store's decisions "
        "before the monitored period (the period's own first 7 days when it has none before).")
    monitor_cache_s: float = Field(
        60.0, ge=0.0, le=3600.0,
        description="The monitor gauges on /metrics are computed from the store at most once per this many seconds.")
    monitor_psi_alert: float = Field(
        0.2, gt=0.0, description="A head's PSI of the label mix against the reference above this is flagged as drift.")

    log_level: LogLevel = "INFO"
    graceful_shutdown_s: float = Field(30.0, ge=0.0, le=3600.0, description="On SIGTERM, wait this long for in-flight requests.")

    @field_validator("monitor_reference")
    @classmethod
    def _check_monitor_reference(cls, value: str) -> str:
        value = value.strip()
        if value:
            start, end = parse_date_range(value)
            value = f"{start.isoformat()}/{end.isoformat()}"
        return value

    @field_validator("runtime", mode="before")
    @classmethod
    def _lower_runtime(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_api_keys(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                value = json.loads(text)
            else:
                value = [part.strip() for part in text.split(",")]
        if isinstance(value, (list, tuple)):
            keys = [k.get_secret_value() if isinstance(k, SecretStr) else k for k in value]
            if any(not isinstance(k, str) for k in keys):
                raise ValueError("api keys must be strings")
            keys = [k.strip() for k in keys if k.strip()]
            short = [k for k in keys if len(k) < 16]
            if short:
                raise ValueError(f"{len(short)} api key(s) shorter than 16 characters; use long random keys")
            return keys
        return value


def parse_date_range(text: str) -> tuple[date, date]:
    """``START/END`` (ISO dates, both included) as two dates; ValueError saying what is wrong otherwise."""
    parts = text.strip().split("/")
    if len(parts) != 2:
        raise ValueError(f"{text!r} is not START/END (two ISO dates such as 2026-11-01/2026-11-07)")
    try:
        start, end = (date.fromisoformat(part.strip()) for part in parts)
    except ValueError as exc:
        raise ValueError(f"{text!r}: {exc}; expected START/END such as 2026-11-01/2026-11-07") from None
    if end < start:
        raise ValueError(f"{text!r}: the end is before the start")
    return start, end
