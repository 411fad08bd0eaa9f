"""Service settings: every limit and path in one place, read from the environment (prefix TRIAGE_)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TRIAGE_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    model_dir: Path | None = Field(None, description="Trained model folder; unset means the embedded default.")
    sla_policy: Path | None = Field(None, description="SLA policy TOML; unset means data/sla_policy.toml.")
    reply_templates: Path | None = Field(None, description="Reply template TOML; unset means data/reply_templates.toml.")

    max_text_chars: int = Field(2000, ge=1, description="Longer texts are cut to this many characters (flagged truncated).")
    max_batch_items: int = Field(64, ge=1)
    max_body_bytes: int = Field(64 * 1024, ge=1024)

    review_threshold: float = Field(0.6, ge=0.0, le=1.0, description="Top probability under this needs human review.")
    review_margin: float = Field(0.1, ge=0.0, le=1.0, description="Top two probabilities closer than this need review.")
