"""Character n-gram TF-IDF + logistic regression per head, and its blend with the transformer.

The n-gram model sees surface cues (a product name, 差评, a tracking-number shape) that a small
transformer fine-tuned on a few thousand rows can miss, and the transformer sees paraphrase the
n-grams cannot: on the held-out dev half their blend beats either alone on every head
(evaluation/experiments.md, run 8). A model folder may hold one beside the transformer:

* ``char_ngram.json``: format, settings, per-head classes and blend weight, blend temperatures, the
  n-gram vocabulary in feature order;
* ``char_ngram.npz``: idf vector and per-head coefficients / intercepts (float32, no pickle).

Blend, per head: ``z = (1 - w) * transformer_logits / T_transformer + w * log p_ngram`` and the
probabilities are ``softmax(z / T_blend)``; ``T_blend`` is fitted on the validation rows. The blend
never makes a *protected* label (the escalation labels: category D, severity critical) less likely
than the transformer alone says: a missed escalation is the costliest error, and the n-gram model
has seen critical only in team-written text (on the 459 corpus cases the plain blend lost a quarter
of the transformer's critical catches).
Texts are expected normalised (:func:`data.text_normalization.normalize`), as everywhere in ``model/``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from data.label_schema import LABELS

JSON_NAME = "char_ngram.json"
ARRAYS_NAME = "char_ngram.npz"
FORMAT = 1
# Probability floor of the n-gram side inside the blend: a label it never saw must not veto the transformer.
BLEND_FLOOR = 1e-6


@dataclass(frozen=True)
class NgramSettings:
    analyzer: str = "char_wb"
    ngram_min: int = 1
    ngram_max: int = 3
    C: float = 10.0
    max_iter: int = 5000
    random_state: int = 0


class CharNgramModel:
    """``fit(texts, labels)`` then ``probabilities(texts)``; ``save(folder)`` / ``load(folder)``.

    ``labels`` maps a head to one label (or None: row not used for that head) per text. Logistic
    regression with ``class_weight="balanced"``; a head whose rows hold one class predicts it with
    probability 1; a schema label never seen in training gets probability 0. Deterministic.
    """

    def __init__(self, settings: NgramSettings | None = None) -> None:
        self.settings = settings or NgramSettings()
        self.vectorizer = None
        # head -> (classes in coefficient-row order, coef [classes × features] or None, intercept or None)
        self.heads: dict[str, tuple[tuple[str, ...], np.ndarray | None, np.ndarray | None]] = {}
        self.n_train: dict[str, int] = {}

    def _new_vectorizer(self, vocabulary: dict[str, int] | None = None):
        from sklearn.feature_extraction.text import TfidfVectorizer

        s = self.settings
        return TfidfVectorizer(analyzer=s.analyzer, ngram_range=(s.ngram_min, s.ngram_max), sublinear_tf=True,
                               lowercase=True, dtype=np.float32, vocabulary=vocabulary)

    def fit(self, texts: Sequence[str], labels: Mapping[str, Sequence[str | None]],
            sample_weight: Sequence[float] | None = None) -> "CharNgramModel":
        from sklearn.linear_model import LogisticRegression

        texts = list(texts)
        weights = np.ones(len(texts)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        self.vectorizer = self._new_vectorizer()
        features = self.vectorizer.fit_transform(texts)
        self.heads, self.n_train = {}, {}
        for head, column in labels.items():
            keep = [i for i, v in enumerate(column) if v is not None]
            if not keep:
                raise ValueError(f"no row has a {head} label: cannot train the {head} head")
            y = [column[i] for i in keep]
            classes = tuple(sorted(set(y), key=LABELS.codes(head).index))
            self.n_train[head] = len(keep)
            if len(classes) == 1:
                self.heads[head] = (classes, None, None)
                continue
            s = self.settings
            regression = LogisticRegression(C=s.C, class_weight="balanced", max_iter=s.max_iter, random_state=s.random_state)
            regression.fit(features[keep], y, sample_weight=weights[keep])
            coef, intercept = regression.coef_.astype(np.float32), regression.intercept_.astype(np.float32)
            if len(classes) == 2:  # sklearn keeps one row for two classes: the second class's logit
                coef, intercept = np.vstack([np.zeros_like(coef), coef]), np.concatenate([[0.0], intercept]).astype(np.float32)
            self.heads[head] = (tuple(str(c) for c in regression.classes_), coef, intercept)
        return self

    def probabilities(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Per head an n × schema-labels array of probabilities, in schema order."""
        if self.vectorizer is None:
            raise RuntimeError("CharNgramModel used before fit() or load()")
        features = self.vectorizer.transform(list(texts)) if texts else None
        out = {}
        for head, (classes, coef, intercept) in self.heads.items():
            codes = LABELS.codes(head)
            probs = np.zeros((len(texts), len(codes)))
            columns = [codes.index(c) for c in classes]
            if coef is None:
                probs[:, columns[0]] = 1.0
            elif texts:
                z = np.asarray(features @ coef.T, dtype=np.float64) + intercept
                z = np.exp(z - z.max(axis=1, keepdims=True))
                probs[:, columns] = z / z.sum(axis=1, keepdims=True)
            out[head] = probs
        return out

    # -- files ---------------------------------------------------------------------------------------

    def save(self, folder: Path, blend: Mapping | None = None) -> None:
        """Write the two files; ``blend`` (weights, temperatures) is stored with them."""
        if self.vectorizer is None:
            raise RuntimeError("CharNgramModel.save called before fit()")
        vocabulary = sorted(self.vectorizer.vocabulary_, key=self.vectorizer.vocabulary_.get)
        arrays = {"idf": self.vectorizer.idf_.astype(np.float32)}
        heads = {}
        for head, (classes, coef, intercept) in self.heads.items():
            heads[head] = {"classes": list(classes), "n_train": self.n_train[head]}
            if coef is not None:
                arrays[f"{head}.coef"], arrays[f"{head}.intercept"] = coef, intercept
        meta = {"format": FORMAT, "settings": self.settings.__dict__, "heads": heads, "blend": dict(blend or {}),
                "vocabulary": vocabulary}
        folder.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(folder / ARRAYS_NAME, **arrays)
        (folder / JSON_NAME).write_text(json.dumps(meta, ensure_ascii=False) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> tuple["CharNgramModel", dict]:
        """The model and its stored blend settings. Raises ValueError on a damaged or foreign file."""
        try:
            meta = json.loads((folder / JSON_NAME).read_text(encoding="utf-8"))
            with np.load(folder / ARRAYS_NAME, allow_pickle=False) as stored:
                arrays = {k: stored[k] for k in stored.files}
        except (OSError, ValueError) as exc:
            raise ValueError(f"{folder}: unreadable n-gram model ({exc})") from exc
        if meta.get("format") != FORMAT:
            raise ValueError(f"{folder / JSON_NAME}: format {meta.get('format')!r}, this code reads {FORMAT}")
        model = cls(NgramSettings(**meta["settings"]))
        vocabulary = meta["vocabulary"]
        if len(vocabulary) != len(arrays["idf"]):
            raise ValueError(f"{folder}: {len(vocabulary)} n-grams but {len(arrays['idf'])} idf values")
        model.vectorizer = model._new_vectorizer({gram: i for i, gram in enumerate(vocabulary)})
        model.vectorizer.idf_ = arrays["idf"].astype(np.float64)
        for head, info in meta["heads"].items():
            classes = tuple(info["classes"])
            if any(not LABELS.is_valid(head, c) for c in classes):
                raise ValueError(f"{folder}: n-gram head {head} has classes {classes} outside the label schema")
            coef, intercept = arrays.get(f"{head}.coef"), arrays.get(f"{head}.intercept")
            if coef is not None and coef.shape != (len(classes), len(vocabulary)):
                raise ValueError(f"{folder}: n-gram {head} coefficients have shape {coef.shape}")
            model.heads[head] = (classes, coef, intercept)
            model.n_train[head] = int(info.get("n_train", 0))
        return model, meta.get("blend", {})


@dataclass
class NgramBlend:
    """The n-gram model of a folder with its blend weights (n-gram share per head) and temperatures."""

    model: CharNgramModel
    weights: dict[str, float]
    temperatures: dict[str, float]
    protected: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def load(cls, folder: str | Path) -> "NgramBlend | None":
        """The folder's blend, or None when the folder has no n-gram model."""
        folder = Path(folder)
        if not (folder / JSON_NAME).is_file():
            return None
        model, blend = CharNgramModel.load(folder)
        protected = {h: list(codes) for h, codes in blend.get("protected", {}).items()}
        for head, codes in protected.items():
            if any(not LABELS.is_valid(head, c) for c in codes):
                raise ValueError(f"{folder / JSON_NAME}: protected {head} labels {codes} outside the label schema")
        return cls(model, {h: float(w) for h, w in blend.get("weights", {}).items()},
                   {h: float(t) for h, t in blend.get("temperatures", {}).items()}, protected)

    def save(self, folder: Path) -> None:
        self.model.save(folder, {"weights": self.weights, "temperatures": self.temperatures, "protected": self.protected})

    def blended_logits(self, scaled_logits: Mapping[str, np.ndarray], normalized_texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Blend the temperature-scaled transformer logits with the n-gram log-probabilities (before the blend temperature)."""
        ngram = self.model.probabilities(normalized_texts)
        out = {}
        for head, z in scaled_logits.items():
            w = self.weights.get(head, 0.0)
            if w <= 0.0 or head not in ngram:
                out[head] = np.asarray(z, dtype=np.float64)
                continue
            out[head] = (1.0 - w) * np.asarray(z, dtype=np.float64) + w * np.log(np.maximum(ngram[head], BLEND_FLOOR))
        return out


    def probabilities(self, scaled_logits: Mapping[str, np.ndarray], normalized_texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Blended probabilities per head from the temperature-scaled transformer logits."""
        out = {}
        for head, z in self.blended_logits(scaled_logits, normalized_texts).items():
            probs = softmax(z / self.temperatures.get(head, 1.0))
            protected = [LABELS.codes(head).index(c) for c in self.protected.get(head, ())]
            if protected and self.weights.get(head, 0.0) > 0.0:
                probs = _at_least(probs, softmax(scaled_logits[head]), protected)
            out[head] = probs
        return out


def _at_least(probs: np.ndarray, floor: np.ndarray, columns: list[int]) -> np.ndarray:
    """``probs`` with each of ``columns`` raised to at least ``floor``'s value, the other columns scaled down to sum to one."""
    out = probs.copy()
    out[:, columns] = np.maximum(probs[:, columns], floor[:, columns])
    others = [c for c in range(probs.shape[1]) if c not in columns]
    room = np.clip(1.0 - out[:, columns].sum(axis=1), 0.0, 1.0)
    mass = out[:, others].sum(axis=1)
    out[:, others] *= np.divide(room, mass, out=np.zeros_like(room), where=mass > 0)[:, None]
    return out


def head_probabilities(logits: Mapping[str, np.ndarray], temperatures: Mapping[str, float],
                       blend: NgramBlend | None, normalized_texts: Sequence[str]) -> dict[str, np.ndarray]:
    """Calibrated probabilities per head from raw transformer logits (and the n-gram blend when there is one)."""
    scaled = {h: np.asarray(v, dtype=np.float64) / temperatures[h] for h, v in logits.items()}
    if blend is not None:
        return blend.probabilities(scaled, normalized_texts)
    return {h: softmax(z) for h, z in scaled.items()}


def softmax(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)
