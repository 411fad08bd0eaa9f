"""The one inference loop both backends share: token ids → sort by length → pad per batch → logits → back
in input order → calibrated (and blended) probabilities → labels.

A backend only turns texts into token ids (``token_ids``, cut at the model window; ``token_count``, not
cut; ``pad_id``) and a padded batch into raw logits per head (``run``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np

from helpdesk_triage.model.char_ngram import NgramBlend, head_probabilities
from helpdesk_triage.model.folder import ModelConfig
from helpdesk_triage.policy.prediction import TextPrediction, predictions_from_probabilities
from helpdesk_triage.policy.text_normalization import normalize



class Backend(Protocol):
    runtime: str
    pad_id: int

    def token_ids(self, normalized_texts: Sequence[str]) -> list[list[int]]: ...

    def token_count(self, normalized_text: str) -> int: ...

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> dict[str, np.ndarray]: ...


def batched_logits(backend: Backend, normalized_texts: Sequence[str], labels: Mapping[str, Sequence[str]],
                   batch_size: int = 32) -> dict[str, np.ndarray]:
    """Raw (uncalibrated) logits per head, ``len(texts) × labels`` float32 arrays in input order."""
    ids = backend.token_ids(normalized_texts)
    out = {h: np.empty((len(ids), len(codes)), dtype=np.float32) for h, codes in labels.items()}
    # Length buckets: sorted by token count, each batch padded only to its own longest text.
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        width = len(ids[chunk[-1]])
        input_ids = np.full((len(chunk), width), backend.pad_id, dtype=np.int64)
        mask = np.zeros((len(chunk), width), dtype=np.int64)
        for row, index in enumerate(chunk):
            n = len(ids[index])
            input_ids[row, :n] = ids[index]
            mask[row, :n] = 1
        for head, values in backend.run(input_ids, mask).items():
            out[head][chunk] = values
    return out



def probabilities(backend: Backend, config: ModelConfig, ngram: NgramBlend | None, normalized_texts: Sequence[str],
                  batch_size: int = 32) -> dict[str, np.ndarray]:
    """Calibrated probabilities per head (``len(texts) × labels``, in ``config.labels`` order): temperature-scaled
    logits, blended with the n-gram model when there is one."""
    logits = batched_logits(backend, normalized_texts, config.labels, batch_size)
    return head_probabilities(logits, config.temperatures, ngram, normalized_texts)


def predict(backend: Backend, config: ModelConfig, ngram: NgramBlend | None, texts: Sequence[str],
            batch_size: int = 32, normalized: bool = False) -> list[TextPrediction]:
    """Labels with probabilities for raw (or already ``normalized``) texts, in input order."""
    texts = list(texts) if normalized else [normalize(t) for t in texts]
    if not texts:
        return []
    probs = probabilities(backend, config, ngram, texts, batch_size)
    return predictions_from_probabilities(probs, config.labels, len(texts))
