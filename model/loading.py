"""Which classifier serves: the model folder asked for, else the embedded default, else the keyword rules."""

from __future__ import annotations

import logging
from pathlib import Path

from model.keyword_rules import KeywordClassifier
from model.prediction import Classifier
from model.triager import CONFIG_NAME, Triager

DEFAULT_MODEL_DIR = Path(__file__).resolve().with_name("default")
log = logging.getLogger(__name__)


def load_classifier(model_dir: Path | None = None) -> tuple[Classifier, bool]:
    """Return (classifier, degraded). An explicit ``model_dir`` must load; the default may be absent."""
    if model_dir is not None:
        if not (Path(model_dir) / CONFIG_NAME).is_file():
            raise FileNotFoundError(f"{model_dir} is not a triage model folder (no {CONFIG_NAME})")
        return Triager.load(model_dir), False
    if (DEFAULT_MODEL_DIR / CONFIG_NAME).is_file():
        return Triager.load(DEFAULT_MODEL_DIR), False
    log.warning("no embedded model at %s: answering with keyword rules (degraded)", DEFAULT_MODEL_DIR)
    return KeywordClassifier(), True
