"""Character n-gram TF-IDF + logistic regression per head, and its blend with the transformer.

The n-gram model sees surface cues (a product name, 差评, a tracking-number shape) that a small
transformer fine-tuned on a few thousand rows can miss, and the transformer sees paraphrase the
n-grams cannot: on the held-out dev half their blend beats either alone on every head
(evaluation/experiments.md, run 8). A model folder may hold one beside the transformer:

* ``char_ngram.json``: format, settings, per-head classes, blend weights, temperatures and protected labels;
* ``char_ngram.npz``: the n-gram vocabulary in feature order (a JSON list, as UTF-8 bytes), the idf vector,
  per-head coefficients (float16: the folder stays small) and intercepts; plain arrays, no pickle.

Blend, per head: ``z = (1 - w) * transformer_logits / T_transformer + w * log p_ngram`` and the
probabilities are ``softmax(z / T_blend)``; ``T_blend`` is fitted on the validation rows. The blend
never makes a *protected* label (the escalation labels: category D, severity critical) less likely
than the transformer alone says: a missed escalation is the costliest error, and the n-gram model
has seen critical only in team-written text (on the 459 corpus cases the plain blend lost a quarter
of the transformer's critical catches).
Texts are expected normalised (:func:`policy.text_normalization.normalize`), as everywhere in ``model/``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from helpdesk_triage.policy.labels import LABELS

JSON_NAME = "char_ngram.json"
ARRAYS_NAME = "char_ngram.npz"
FORMAT = 2
# Probability floor of the n-gram side inside the blend: a label it never saw must not veto the transformer.
BLEND_FLOOR = 1e-6


@dataclass(frozen=True)
class NgramSettings:
    analyzer: str = "char_wb"
    ngram_min: int = 1
    ngram_max: int = 3
    # An n-gram must occur in this many training texts to become a feature.
    min_df: int = 1
    C: float = 10.0
    max_iter: int = 5000
    random_state: int = 0


class CharNgramModel:
    """``fit(texts, labels)`` then ``probabilities(texts)``; ``save(folder)`` / ``load(folder)``.

    ``labels`` maps a head to one label (or None: row not used for that head) per text. Logistic
    regression with ``class_weight="balanced"``; a head whose rows hold one class predicts it with
    probability 1; a schema label never seen in training gets probability 0. Deterministic.
    Fitting uses scikit-learn; predicting does not (the features are computed here, the same as
    scikit-learn's ``TfidfVectorizer(analyzer="char_wb", sublinear_tf=True)``, which a test checks),
    so serving loads neither scikit-learn nor scipy.
    """

    def __init__(self, settings: NgramSettings | None = None) -> None:
        self.settings = settings or NgramSettings()
        self.vocabulary: dict[str, int] | None = None
        self.idf: np.ndarray | None = None
        # head -> (classes in coefficient-row order, coef [classes × features] or None, intercept or None)
        self.heads: dict[str, tuple[tuple[str, ...], np.ndarray | None, np.ndarray | None]] = {}
        self.n_train: dict[str, int] = {}

    def fit(self, texts: Sequence[str], labels: Mapping[str, Sequence[str | None]],
            sample_weight: Sequence[float] | None = None) -> "CharNgramModel":
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        if self.settings.analyzer != "char_wb":
            raise ValueError(f"only the char_wb analyzer is supported, not {self.settings.analyzer!r}")
        texts = list(texts)
        weights = np.ones(len(texts)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        s = self.settings
        vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(s.ngram_min, s.ngram_max), sublinear_tf=True,
                                     lowercase=True, dtype=np.float32, min_df=s.min_df)
        features = vectorizer.fit_transform(texts)
        self.vocabulary = {gram: int(i) for gram, i in vectorizer.vocabulary_.items()}
        self.idf = vectorizer.idf_.astype(np.float32)
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
            regression = LogisticRegression(C=s.C, class_weight="balanced", max_iter=s.max_iter, random_state=s.random_state)
            regression.fit(features[keep], y, sample_weight=weights[keep])
            # Kept (and saved) in float16: half the size, and the model that predicts is the model that is saved.
            coef, intercept = regression.coef_.astype(np.float16), regression.intercept_.astype(np.float32)
            if len(classes) == 2:  # sklearn keeps one row for two classes: the second class's logit
                coef, intercept = np.vstack([np.zeros_like(coef), coef]), np.concatenate([[0.0], intercept]).astype(np.float32)
            self.heads[head] = (tuple(str(c) for c in regression.classes_), coef, intercept)
        return self

    def features(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """(feature indices, l2-normalised sublinear TF-IDF values) of one text; n-grams outside the vocabulary are dropped."""
        counts: dict[int, int] = {}
        for gram in char_wb_ngrams(text.lower(), self.settings.ngram_min, self.settings.ngram_max):
            index = self.vocabulary.get(gram)
            if index is not None:
                counts[index] = counts.get(index, 0) + 1
        if not counts:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
        indices = np.fromiter(counts, dtype=np.int64, count=len(counts))
        values = (1.0 + np.log(np.fromiter(counts.values(), dtype=np.float64, count=len(counts)))) * self.idf[indices]
        return indices, values / np.linalg.norm(values)

    def probabilities(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Per head an n × schema-labels array of probabilities, in schema order."""
        if self.vocabulary is None:
            raise RuntimeError("CharNgramModel used before fit() or load()")
        rows = [self.features(t) for t in texts]
        out = {}
        for head, (classes, coef, intercept) in self.heads.items():
            codes = LABELS.codes(head)
            probs = np.zeros((len(rows), len(codes)))
            columns = [codes.index(c) for c in classes]
            if coef is None:
                probs[:, columns[0]] = 1.0
            elif rows:
                z = np.stack([coef[:, idx].astype(np.float64) @ val for idx, val in rows]) + intercept
                probs[:, columns] = softmax(z)
            out[head] = probs
        return out

    # -- files ---------------------------------------------------------------------------------------

    def save(self, folder: Path, blend: Mapping | None = None) -> None:
        """Write the two files; ``blend`` (weights, temperatures, protected labels) is stored with them."""
        if self.vocabulary is None:
            raise RuntimeError("CharNgramModel.save called before fit()")
        vocabulary = sorted(self.vocabulary, key=self.vocabulary.get)
        arrays = {"vocabulary": np.frombuffer(json.dumps(vocabulary, ensure_ascii=False).encode("utf-8"), dtype=np.uint8),
                  "idf": self.idf.astype(np.float32)}
        heads = {}
        for head, (classes, coef, intercept) in self.heads.items():
            heads[head] = {"classes": list(classes), "n_train": self.n_train[head]}
            if coef is not None:
                arrays[f"{head}.coef"], arrays[f"{head}.intercept"] = coef, intercept
        meta = {"format": FORMAT, "settings": self.settings.__dict__, "heads": heads, "blend": dict(blend or {})}
        folder.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(folder / ARRAYS_NAME, **arrays)
        (folder / JSON_NAME).write_text(json.dumps(meta, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> tuple["CharNgramModel", dict]:
        """The model and its stored blend settings. Raises ValueError on a damaged or foreign file."""
        try:
            meta = json.loads((folder / JSON_NAME).read_text(encoding="utf-8"))
            with np.load(folder / ARRAYS_NAME, allow_pickle=False) as stored:
                arrays = {k: stored[k] for k in stored.files}
        except (OSError, ValueError) as exc:
            raise ValueError(f"{folder}: unreadable n-gram model ({exc})") from exc
        try:
            return cls._from_stored(meta, arrays)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{folder}: damaged n-gram model ({type(exc).__name__}: {exc})") from exc

    @classmethod
    def _from_stored(cls, meta: dict, arrays: dict[str, np.ndarray]) -> tuple["CharNgramModel", dict]:
        if meta.get("format") != FORMAT:
            raise ValueError(f"format {meta.get('format')!r}, this code reads {FORMAT}")
        model = cls(NgramSettings(**meta["settings"]))
        vocabulary = json.loads(arrays["vocabulary"].tobytes().decode("utf-8"))
        if not isinstance(vocabulary, list) or not all(isinstance(g, str) for g in vocabulary):
            raise ValueError("the vocabulary is not a list of strings")
        if len(vocabulary) != len(arrays["idf"]) or len(set(vocabulary)) != len(vocabulary):
            raise ValueError(f"{len(vocabulary)} n-grams (distinct: {len(set(vocabulary))}) for {len(arrays['idf'])} idf values")
        model.vocabulary = {gram: i for i, gram in enumerate(vocabulary)}
        model.idf = arrays["idf"].astype(np.float32)
        for head, info in meta["heads"].items():
            classes = tuple(info["classes"])
            if not classes or any(not LABELS.is_valid(head, c) for c in classes):
                raise ValueError(f"head {head} has classes {classes} outside the label schema")
            coef, intercept = arrays.get(f"{head}.coef"), arrays.get(f"{head}.intercept")
            if (coef is None) != (len(classes) == 1):
                raise ValueError(f"head {head}: {len(classes)} classes but {'no' if coef is None else 'a'} coefficient matrix")
            if coef is not None and (coef.shape != (len(classes), len(vocabulary)) or intercept.shape != (len(classes),)):
                raise ValueError(f"head {head}: coefficients of shape {coef.shape}, intercept {intercept.shape}")
            model.heads[head] = (classes, coef, intercept)
            model.n_train[head] = int(info.get("n_train", 0))
        return model, meta.get("blend", {})


def char_wb_ngrams(text: str, lo: int, hi: int) -> list[str]:
    """Character n-grams (lo..hi) inside each whitespace-separated word padded with one space each side.

    A padded word no longer than n gives itself once and stops the longer n-grams for that word:
    scikit-learn's ``char_wb`` analyzer counts the same grams.
    """
    grams = []
    for word in text.split():
        padded = f" {word} "
        for n in range(lo, hi + 1):
            if len(padded) <= n:
                grams.append(padded)
                break
            grams.extend(padded[i : i + n] for i in range(len(padded) - n + 1))
    return grams


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
