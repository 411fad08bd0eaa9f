"""``TriageModel``: the one model class, with two backends — the ONNX Runtime int8 model that serves
(``onnx-int8``, default) and the torch fp32 reference that training fine-tunes (``torch``).

    model = TriageModel.load()                      # the embedded model, in the runtime the settings name
    model.predict(["快递五天了还没到"])               # [TextPrediction]: per head label, confidence, scores
    model.predict_proba(["快递五天了还没到"])         # {"category": n × 4 array, "severity": …, "sentiment": …}
    model.triage(["快递五天了还没到"], received_at="2026-03-10T20:30:00+08:00")  # what the HTTP API answers

Both backends share one inference loop (``model.inference``) and one config (``model.folder.ModelConfig``).
When the ONNX model cannot be built or loaded, the torch model serves instead and a warning says why: a
faster runtime is never a reason not to answer.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from helpdesk_triage.model.char_ngram import ARRAYS_NAME as NGRAM_ARRAYS_NAME
from helpdesk_triage.model.char_ngram import JSON_NAME as NGRAM_JSON_NAME
from helpdesk_triage.model.char_ngram import NgramBlend
from helpdesk_triage.model.inference import EMBEDDING_OUTPUT, Backend, batched_logits, batched_outputs, predict, probabilities
from helpdesk_triage.model.subcase_head import SubcaseHead, unit_rows
from helpdesk_triage.model.folder import CONFIG_NAME, DEFAULT_MODEL_DIR, RUNTIMES, ModelConfig, is_model_folder
from helpdesk_triage.policy.keyword_rules import KeywordClassifier
from helpdesk_triage.policy.prediction import Classifier, TextPrediction
from helpdesk_triage.policy.settings import Settings
from helpdesk_triage.policy.text_normalization import normalize
from helpdesk_triage.policy.triage import TriagePolicy, TriageRequest, TriageResponse, triage

log = logging.getLogger(__name__)


class TriageModel:
    """A trained model folder ready to tag texts. ``TriageModel.load(folder)``; ``.predict``; ``.save``."""

    def __init__(self, backend: Backend, config: ModelConfig, ngram: NgramBlend | None = None,
                 folder: Path | None = None, subcase_head: SubcaseHead | None = None) -> None:
        self.backend = backend
        self.config = config
        self.ngram = ngram
        self.folder = folder  # where it was loaded from: its decision_policy.toml, when there is one
        self.subcase_head = subcase_head

    @classmethod
    def load(cls, folder: str | Path | None = None, *, runtime: str | None = None, cache_dir: str | Path | None = None,
             with_ngram: bool = True, threads: int | None = None) -> "TriageModel":
        """The model of ``folder`` (default: the embedded one) in ``runtime`` (default: the ``runtime`` setting,
        ``TRIAGE_RUNTIME``, else ``onnx-int8``). ``with_ngram=False`` leaves out the n-gram blend: the transformer
        alone, as training fits it. ``threads``: ONNX Runtime's intra-op threads (default: the cores this process
        may use); a worker given fewer CPUs than the machine has (a Ray actor) sets its own."""
        folder = Path(folder) if folder is not None else DEFAULT_MODEL_DIR
        runtime = (runtime or Settings().runtime).strip().lower()
        if runtime not in RUNTIMES:
            raise ValueError(f"unknown runtime {runtime!r}; use one of {', '.join(RUNTIMES)} (TRIAGE_RUNTIME)")
        config = ModelConfig.load(folder)
        ngram = NgramBlend.load(folder) if with_ngram else None
        subcase_head = SubcaseHead.load(folder)
        if runtime == "onnx-int8":
            try:
                from helpdesk_triage.model.onnx_backend import OnnxBackend
                from helpdesk_triage.model.onnx_export import build_onnx_model

                return cls(OnnxBackend(build_onnx_model(folder, cache_dir), config, threads), config, ngram, folder, subcase_head)
            except Exception as exc:  # noqa: BLE001 - any failure of the fast path: serve the reference model
                log.warning("the optimised ONNX model of %s is unavailable (%s: %s); serving the torch model instead",
                            folder, type(exc).__name__, " ".join(str(exc).split())[:300])
        from helpdesk_triage.model.torch_backend import TorchBackend

        return cls(TorchBackend.load(folder, config, cache_dir), config, ngram, folder, subcase_head)

    def save(self, folder: str | Path) -> Path:
        """Write the model folder (torch backend: the fine-tuned weights are in its net)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_weights = getattr(self.backend, "save_weights", None)
        if save_weights is None:
            raise TypeError(f"a {self.runtime} model cannot be saved; load it with runtime='torch'")
        save_weights(folder)
        self.config.save(folder)
        if self.subcase_head is not None:
            self.subcase_head.save(folder)
        if self.ngram is not None:
            self.ngram.save(folder)
        else:  # an n-gram model left by an earlier save would be blended with these weights
            for name in (NGRAM_JSON_NAME, NGRAM_ARRAYS_NAME):
                (folder / name).unlink(missing_ok=True)
        return folder

    @property
    def version(self) -> str:
        return self.config.version

    @property
    def runtime(self) -> str:
        return self.backend.runtime

    @property
    def net(self):
        """The torch module (torch backend only): what training fine-tunes and averages."""
        return self.backend.net

    @property
    def tokenizer(self):
        return self.backend.tokenizer

    def logits(self, texts: Sequence[str], batch_size: int = 32, normalized: bool = False) -> dict[str, np.ndarray]:
        """Raw (uncalibrated) logits per head, ``len(texts) × labels`` arrays in input order."""
        texts = list(texts) if normalized else [normalize(t) for t in texts]
        return batched_logits(self.backend, texts, self.config.labels, batch_size)

    def predict_proba(self, texts: Sequence[str], batch_size: int = 32, normalized: bool = False) -> dict[str, np.ndarray]:
        """Calibrated probabilities per head, ``len(texts) × labels`` arrays, columns in ``config.labels[head]`` order."""
        texts = list(texts) if normalized else [normalize(t) for t in texts]
        return probabilities(self.backend, self.config, self.ngram, texts, batch_size)

    def predict(self, texts: Sequence[str], batch_size: int = 32, normalized: bool = False) -> list[TextPrediction]:
        """Per text and head: the most probable label, its probability and the whole distribution."""
        return predict(self.backend, self.config, self.ngram, texts, batch_size, normalized, self.subcase_head)

    def embed(self, texts: Sequence[str], batch_size: int = 32, normalized: bool = False) -> np.ndarray:
        """Unit-length text embeddings (the encoder's mean-pooled output), ``len(texts) × hidden``."""
        texts = list(texts) if normalized else [normalize(t) for t in texts]
        return unit_rows(batched_outputs(self.backend, texts, self.config.labels, batch_size)[EMBEDDING_OUTPUT])

    def token_count(self, text: str) -> int:
        """Tokens of ``text`` (normalised, with the prefix), before the cut at ``config.max_length``."""
        return self.backend.token_count(normalize(text))

    def triage(self, messages: Sequence[str | TriageRequest], received_at: str | None = None, *,
               policy: TriagePolicy | None = None) -> list[TriageResponse]:
        """What ``POST /v1/triage`` answers for each message — labels, SLA, queue, reply, review reasons — without
        a store: ``policy.triage.triage`` with this model (see there)."""
        return triage(messages, received_at, model=self, policy=policy)


def load_classifier(model_dir: str | Path | None = None, runtime: str | None = None,
                    cache_dir: str | Path | None = None, threads: int | None = None) -> tuple[Classifier, bool]:
    """What serves: (classifier, degraded). An explicit ``model_dir`` must load; without one the embedded
    model serves, or — when the package was installed without it — the keyword rules (degraded)."""
    if model_dir is not None:
        if not is_model_folder(model_dir):
            raise FileNotFoundError(f"{model_dir} is not a triage model folder (no {CONFIG_NAME})")
        return TriageModel.load(model_dir, runtime=runtime, cache_dir=cache_dir, threads=threads), False
    if is_model_folder(DEFAULT_MODEL_DIR):
        return TriageModel.load(DEFAULT_MODEL_DIR, runtime=runtime, cache_dir=cache_dir, threads=threads), False
    log.warning("no embedded model at %s: answering with keyword rules (degraded)", DEFAULT_MODEL_DIR)
    return KeywordClassifier(), True

