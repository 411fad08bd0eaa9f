"""A trained model folder: its file names and its one config shape, ``ModelConfig``.

No torch, no onnxruntime here (they take seconds to import), so the CLI, the ONNX backend, training and
the service share these definitions cheaply.

A folder holds ``triager_config.json`` (:class:`ModelConfig`), ``trained_weights.safetensors`` (the
fine-tuned layers and the heads, fp16), optionally the character n-gram blend (``char_ngram.json`` +
``char_ngram.npz``), ``training_info.json`` and a model card ``README.md``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from helpdesk_triage.policy.text_normalization import NORMALIZATION_VERSION
from helpdesk_triage.policy.labels import HEADS, LABELS

CONFIG_NAME = "triager_config.json"
WEIGHTS_NAME = "trained_weights.safetensors"
DEFAULT_MODEL_DIR = Path(__file__).resolve().with_name("default")
RUNTIMES = ("onnx-int8", "torch")


@dataclass
class ModelConfig:
    base_folder_name: str
    base_source_sha256: str
    num_layers: int
    trained_layers: list[int]
    max_length: int = 128
    # E5 models were trained with "query: "/"passage: " prefixes; fine-tuning starts closer to home with one.
    text_prefix: str = "query: "
    normalization_version: str = NORMALIZATION_VERSION
    labels: dict[str, list[str]] = field(default_factory=lambda: {h: list(LABELS.codes(h)) for h in HEADS})
    temperatures: dict[str, float] = field(default_factory=lambda: {h: 1.0 for h in HEADS})
    version: str = "untrained"

    def save(self, folder: Path) -> None:
        (Path(folder) / CONFIG_NAME).write_text(json.dumps(asdict(self), ensure_ascii=False, indent=2) + "\n",
                                                 encoding="utf-8")

    @classmethod
    def load(cls, folder: str | Path) -> "ModelConfig":
        path = Path(folder) / CONFIG_NAME
        if not path.is_file():
            raise FileNotFoundError(f"{folder} is not a triage model folder (no {CONFIG_NAME})")
        config = cls(**json.loads(path.read_text(encoding="utf-8")))
        if config.normalization_version != NORMALIZATION_VERSION:
            raise ValueError(f"{folder}: trained with text normalisation v{config.normalization_version}, "
                             f"this code has v{NORMALIZATION_VERSION}; retrain the model")
        return config


def is_model_folder(folder: str | Path) -> bool:
    """Whether ``folder`` holds a trained model (its config file)."""
    return (Path(folder) / CONFIG_NAME).is_file()
