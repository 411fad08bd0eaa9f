"""The sub-case head: which of ``data/subcases.toml``'s sub-cases a message is about, as a calibrated distribution.

A classifier over what the model already computes, so it costs no second encoder pass and no retraining of the
transformer: a logistic regression on the text's pooled embedding (L2-normalised) and one on the folder's
character n-gram features, blended ``z = (1 - w) · log p_embedding + w · log p_ngram`` and calibrated with one
temperature, ``softmax(z / T)``. A model folder may hold one beside its weights:

* ``subcase_head.json``: format, classes (``"B.invoice"`` …), blend weight, temperature, training facts;
* ``subcase_head.npz``: embedding coefficients and intercept, n-gram coefficients (float16) and intercept.

Fitting uses scikit-learn (``training.subcase_training``); predicting only numpy.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from helpdesk_triage.model.char_ngram import BLEND_FLOOR, CharNgramModel, softmax

JSON_NAME = "subcase_head.json"
ARRAYS_NAME = "subcase_head.npz"
FORMAT = 1


def unit_rows(embeddings: np.ndarray) -> np.ndarray:
    embeddings = np.asarray(embeddings, dtype=np.float64)
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    return embeddings / np.where(norms > 0, norms, 1.0)


@dataclass
class SubcaseHead:
    classes: tuple[str, ...]
    embedding_coef: np.ndarray  # classes × embedding size
    embedding_intercept: np.ndarray
    ngram_coef: np.ndarray | None  # classes × len(ngram_columns), or None: no n-gram side
    ngram_intercept: np.ndarray | None
    ngram_columns: np.ndarray | None  # the n-gram features (indices in the folder's n-gram vocabulary) it weighs
    ngram_weight: float = 0.5
    temperature: float = 1.0
    facts: dict = field(default_factory=dict)  # what it was trained and measured on

    def logits(self, embeddings: np.ndarray, ngram_rows: Sequence[tuple[np.ndarray, np.ndarray]] | None) -> np.ndarray:
        """The blended log-probabilities before the temperature (n texts × classes)."""
        z = unit_rows(embeddings) @ self.embedding_coef.T.astype(np.float64) + self.embedding_intercept
        log_p = np.log(np.maximum(softmax(z), BLEND_FLOOR))
        if self.ngram_coef is None or ngram_rows is None or self.ngram_weight <= 0.0:
            return log_p
        position = self._positions()
        zn = np.empty((len(ngram_rows), len(self.classes)))
        for i, (idx, val) in enumerate(ngram_rows):
            pos = np.full(len(idx), -1, dtype=np.int64)
            inside = idx < len(position)
            pos[inside] = position[idx[inside]]
            keep = pos >= 0
            zn[i] = self.ngram_coef[:, pos[keep]].astype(np.float64) @ val[keep]
        zn += self.ngram_intercept
        return (1.0 - self.ngram_weight) * log_p + self.ngram_weight * np.log(np.maximum(softmax(zn), BLEND_FLOOR))

    def _positions(self) -> np.ndarray:
        """Vocabulary index -> column of ``ngram_coef`` (-1: not weighed), built once."""
        if getattr(self, "_position_table", None) is None:
            table = np.full(int(self.ngram_columns.max()) + 1 if len(self.ngram_columns) else 0, -1, dtype=np.int64)
            table[self.ngram_columns] = np.arange(len(self.ngram_columns))
            self._position_table = table
        return self._position_table

    def probabilities(self, embeddings: np.ndarray, normalized_texts: Sequence[str],
                      ngram: CharNgramModel | None) -> np.ndarray:
        """Calibrated probabilities, n texts × classes. ``ngram``: the folder's n-gram model (its features)."""
        if len(normalized_texts) == 0:
            return np.zeros((0, len(self.classes)))
        rows = [ngram.features(t) for t in normalized_texts] if ngram is not None and self.ngram_coef is not None else None
        return softmax(self.logits(embeddings, rows) / self.temperature)

    # -- files ---------------------------------------------------------------------------------------

    def save(self, folder: Path) -> None:
        arrays = {"embedding.coef": self.embedding_coef.astype(np.float32),
                  "embedding.intercept": self.embedding_intercept.astype(np.float32)}
        if self.ngram_coef is not None:
            arrays["ngram.coef"] = self.ngram_coef.astype(np.float16)
            arrays["ngram.intercept"] = self.ngram_intercept.astype(np.float32)
            arrays["ngram.columns"] = self.ngram_columns.astype(np.int64)
        meta = {"format": FORMAT, "classes": list(self.classes), "ngram_weight": self.ngram_weight,
                "temperature": self.temperature, "facts": self.facts}
        folder.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(folder / ARRAYS_NAME, **arrays)
        (folder / JSON_NAME).write_text(json.dumps(meta, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, folder: str | Path) -> "SubcaseHead | None":
        """The folder's head, None when it has none; ValueError naming the file when it is damaged."""
        folder = Path(folder)
        if not (folder / JSON_NAME).is_file():
            return None
        try:
            meta = json.loads((folder / JSON_NAME).read_text(encoding="utf-8"))
            with np.load(folder / ARRAYS_NAME, allow_pickle=False) as stored:
                arrays = {k: stored[k] for k in stored.files}
            if meta.get("format") != FORMAT:
                raise ValueError(f"format {meta.get('format')!r}, this code reads {FORMAT}")
            classes = tuple(meta["classes"])
            coef, intercept = arrays["embedding.coef"], arrays["embedding.intercept"]
            ngram_coef, ngram_intercept = arrays.get("ngram.coef"), arrays.get("ngram.intercept")
            columns = arrays.get("ngram.columns")
            if coef.shape[0] != len(classes) or intercept.shape != (len(classes),):
                raise ValueError(f"{len(classes)} classes, embedding coefficients {coef.shape}")
            if ngram_coef is not None and (columns is None or ngram_coef.shape != (len(classes), len(columns))):
                raise ValueError(f"{len(classes)} classes, n-gram coefficients {ngram_coef.shape}")
            return cls(classes, coef, intercept, ngram_coef, ngram_intercept, columns, float(meta["ngram_weight"]),
                       float(meta["temperature"]), dict(meta.get("facts", {})))
        except (OSError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{folder / JSON_NAME}: damaged sub-case head ({type(exc).__name__}: {exc})") from exc
