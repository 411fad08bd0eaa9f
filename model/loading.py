"""Which classifier serves: the model folder asked for, else the embedded default, else the keyword rules;
and in which runtime: the optimised ONNX int8 model (default) or the torch model.

The runtime is the ``runtime`` argument, else ``TRIAGE_RUNTIME``, else ``onnx-int8``. When the ONNX
model cannot be built or loaded, the torch model serves instead (a warning says why): a faster
runtime is never a reason not to answer.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from model.keyword_rules import KeywordClassifier
from model.prediction import Classifier

DEFAULT_MODEL_DIR = Path(__file__).resolve().with_name("default")
# The files of a trained model folder. They are named here, in a module that does not import torch
# (seconds), so that model.triager, model.onnx_runtime and the CLI share one definition.
CONFIG_NAME = "triager_config.json"
WEIGHTS_NAME = "trained_weights.safetensors"
RUNTIME_ENV_VAR = "TRIAGE_RUNTIME"
RUNTIMES = ("onnx-int8", "torch")
DEFAULT_RUNTIME = "onnx-int8"
log = logging.getLogger(__name__)


def configured_runtime() -> str:
    """The runtime ``TRIAGE_RUNTIME`` asks for (default ``onnx-int8``)."""
    return os.environ.get(RUNTIME_ENV_VAR, "").strip().lower() or DEFAULT_RUNTIME


def is_model_folder(folder: str | Path) -> bool:
    """Whether ``folder`` holds a trained model (its config file)."""
    return (Path(folder) / CONFIG_NAME).is_file()


def load_classifier(model_dir: Path | None = None, runtime: str | None = None) -> tuple[Classifier, bool]:
    """Return (classifier, degraded). An explicit ``model_dir`` must load; the default may be absent."""
    runtime = (runtime or configured_runtime()).lower()
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; use one of {', '.join(RUNTIMES)} ({RUNTIME_ENV_VAR})")
    if model_dir is not None:
        if not is_model_folder(model_dir):
            raise FileNotFoundError(f"{model_dir} is not a triage model folder (no {CONFIG_NAME})")
        return load_model_folder(Path(model_dir), runtime), False
    if is_model_folder(DEFAULT_MODEL_DIR):
        return load_model_folder(DEFAULT_MODEL_DIR, runtime), False
    log.warning("no embedded model at %s: answering with keyword rules (degraded)", DEFAULT_MODEL_DIR)
    return KeywordClassifier(), True


def load_model_folder(folder: Path, runtime: str = DEFAULT_RUNTIME) -> Classifier:
    """The model of ``folder`` in ``runtime``; the torch model when the ONNX one fails."""
    if runtime == "onnx-int8":
        try:
            from model.onnx_runtime import load_onnx_classifier

            return load_onnx_classifier(folder)
        except Exception as exc:  # noqa: BLE001 - any failure of the fast path: serve the reference model
            log.warning("the optimised ONNX model of %s is unavailable (%s: %s); serving the torch model instead",
                        folder, type(exc).__name__, " ".join(str(exc).split())[:300])
    from model.triager import Triager

    return Triager.load(folder)
