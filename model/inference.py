"""The one inference loop both backends share: token ids → sort by length → pad per batch → logits → back
in input order → calibrated (and blended) probabilities → labels.

A backend only turns texts into token ids (``token_ids``, cut at the model window; ``token_count``, not
cut; ``pad_id``) and a padded batch into raw logits per head and the pooled embedding (``run``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Protocol

import numpy as np

from helpdesk_triage.model.char_ngram import NgramBlend, head_probabilities
from helpdesk_triage.model.subcase_head import SubcaseHead, unit_rows
from helpdesk_triage.model.folder import ModelConfig
from helpdesk_triage.policy.prediction import TextPrediction, predictions_from_probabilities
from helpdesk_triage.policy.text_normalization import normalize



EMBEDDING_OUTPUT = "embedding"  # besides the logits per head, ``Backend.run`` returns the pooled text embedding


class Backend(Protocol):
    runtime: str
    pad_id: int

    def token_ids(self, normalized_texts: Sequence[str]) -> list[list[int]]: ...

    def token_count(self, normalized_text: str) -> int: ...

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> dict[str, np.ndarray]: ...


def batched_logits(backend: Backend, normalized_texts: Sequence[str], labels: Mapping[str, Sequence[str]],
                   batch_size: int = 32) -> dict[str, np.ndarray]:
    """Raw (uncalibrated) logits per head, ``len(texts) × labels`` float32 arrays in input order."""
    return batched_outputs(backend, normalized_texts, labels, batch_size, embedding=False)


def batched_outputs(backend: Backend, normalized_texts: Sequence[str], labels: Mapping[str, Sequence[str]],
                    batch_size: int = 32, embedding: bool = True) -> dict[str, np.ndarray]:
    """The logits per head and (``embedding``) the pooled embeddings under ``EMBEDDING_OUTPUT``, in input order."""
    ids = backend.token_ids(normalized_texts)
    out = {h: np.empty((len(ids), len(codes)), dtype=np.float32) for h, codes in labels.items()}
    wanted = set(out) | ({EMBEDDING_OUTPUT} if embedding else set())
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
        for name, values in backend.run(input_ids, mask).items():
            if name not in wanted:
                continue
            if name not in out:
                out[name] = np.empty((len(ids), values.shape[-1]), dtype=np.float32)
            out[name][chunk] = values
    if embedding and EMBEDDING_OUTPUT not in out:  # no texts, or a backend without embeddings
        out[EMBEDDING_OUTPUT] = np.empty((len(ids), 0), dtype=np.float32)
    return out



def probabilities(backend: Backend, config: ModelConfig, ngram: NgramBlend | None, normalized_texts: Sequence[str],
                  batch_size: int = 32) -> dict[str, np.ndarray]:
    """Calibrated probabilities per head (``len(texts) × labels``, in ``config.labels`` order): temperature-scaled
    logits, blended with the n-gram model when there is one."""
    logits = batched_logits(backend, normalized_texts, config.labels, batch_size)
    return head_probabilities(logits, config.temperatures, ngram, normalized_texts)


def predict(backend: Backend, config: ModelConfig, ngram: NgramBlend | None, texts: Sequence[str],
            batch_size: int = 32, normalized: bool = False, subcase_head: SubcaseHead | None = None) -> list[TextPrediction]:
    """Labels with probabilities for raw (or already ``normalized``) texts, in input order; each prediction also
    carries the text's unit-length embedding and, with a ``subcase_head``, the sub-case distribution."""
    texts = list(texts) if normalized else [normalize(t) for t in texts]
    if not texts:
        return []
    outputs = batched_outputs(backend, texts, config.labels, batch_size)
    embeddings = outputs.pop(EMBEDDING_OUTPUT)
    probs = head_probabilities(outputs, config.temperatures, ngram, texts)
    predictions = predictions_from_probabilities(probs, config.labels, len(texts))
    if embeddings.shape[1] == 0:
        return predictions
    subcases = None
    if subcase_head is not None:
        sub = subcase_head.probabilities(embeddings, texts, ngram.model if ngram is not None else None)
        subcases = [dict(zip(subcase_head.classes, map(float, row))) for row in sub]
    units = unit_rows(embeddings).astype(np.float32)
    return [replace(p, embedding=units[i], subcases=subcases[i] if subcases else None)
            for i, p in enumerate(predictions)]
