"""The two baselines every model is compared against: the keyword rules and char-n-gram TF-IDF + LogReg.

Both satisfy the :class:`model.prediction.Classifier` protocol (``.version``,
``.predict(list[str]) -> list[TextPrediction]``) and normalise their input with
:func:`data.text_normalization.normalize`, as training data is normalised by ``load_labelled``
(normalising twice changes nothing), so raw and dataset texts can be passed alike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from data.label_schema import HEADS, LABELS
from data.text_normalization import normalize
from model.keyword_rules import KeywordClassifier
from model.prediction import HeadPrediction, TextPrediction

if TYPE_CHECKING:
    import datasets
    from sklearn.pipeline import Pipeline

__all__ = ["KeywordBaseline", "TfidfLogRegBaseline"]


# The keyword rules (``model.keyword_rules``) are the baseline as they are: they normalise their input.
KeywordBaseline = KeywordClassifier


class TfidfLogRegBaseline:
    """Char 1-3-gram TF-IDF + multinomial logistic regression, one pipeline per head.

    * ``fit(ds)`` takes a ``datasets.Dataset`` (or anything indexable by column name) with a
      ``text`` column and one column per head in :data:`data.label_schema.HEADS`; a row whose
      label for a head is None is left out of that head's training only.
    * ``class_weight="balanced"`` (the heads are imbalanced: few ``critical`` / ``positive``).
    * ``predict`` gives, per head, probabilities over every schema label in schema order; a label
      never seen in training gets probability 0. The predicted label is the argmax (ties: the
      first label in schema order). A head trained on a single class always predicts it with
      probability 1. A head with no labelled rows at all is an error at ``fit``.
    * Deterministic: lbfgs, fixed ``random_state``, no sampling.

    Analyzer: ``char_wb`` (n-grams inside whitespace-separated tokens, padded with a space) was
    chosen over ``char`` by 5-fold cross-validation on the shared train split (macro F1 per head).
    """

    version = "tfidf-logreg-char1-3"

    def __init__(
        self,
        *,
        analyzer: str = "char_wb",
        ngram_range: tuple[int, int] = (1, 3),
        C: float = 10.0,
        max_iter: int = 5000,
        random_state: int = 0,
    ) -> None:
        self.analyzer = analyzer
        self.ngram_range = tuple(ngram_range)
        self.C = C
        self.max_iter = max_iter
        self.random_state = random_state
        self.models_: dict[str, Pipeline | str] | None = None
        self.n_train_: dict[str, int] = {}
        self.classes_: dict[str, tuple[str, ...]] = {}

    def _pipeline(self) -> "Pipeline":
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import Pipeline

        return Pipeline(
            [
                (
                    "tfidf",
                    TfidfVectorizer(
                        analyzer=self.analyzer, ngram_range=self.ngram_range, sublinear_tf=True, lowercase=True
                    ),
                ),
                (
                    "logreg",
                    LogisticRegression(
                        C=self.C, class_weight="balanced", max_iter=self.max_iter, random_state=self.random_state
                    ),
                ),
            ]
        )

    def fit(self, ds: "datasets.Dataset") -> "TfidfLogRegBaseline":
        columns = getattr(ds, "column_names", None) or list(getattr(ds, "keys", lambda: [])())
        missing = [c for c in ("text", *HEADS) if c not in columns]
        if missing:
            raise ValueError(f"dataset lacks column(s) {missing}; expected the output of training.dataset_io.load_labelled()")
        texts = [normalize(t) for t in _check_texts(list(ds["text"]))]
        models: dict[str, Pipeline | str] = {}
        for head in HEADS:
            labels = list(ds[head])
            bad = sorted({repr(v) for v in labels if v is not None and not LABELS.is_valid(head, v)})
            if bad:
                raise ValueError(f"{head} column holds values that are not {head} labels: {', '.join(bad)}")
            keep = [i for i, v in enumerate(labels) if v is not None]
            if not keep:
                raise ValueError(f"no row has a {head} label: cannot train the {head} head")
            y = [labels[i] for i in keep]
            classes = sorted(set(y), key=LABELS.codes(head).index)
            self.n_train_[head] = len(keep)
            self.classes_[head] = tuple(classes)
            if len(classes) == 1:
                models[head] = classes[0]
                continue
            models[head] = self._pipeline().fit([texts[i] for i in keep], y)
        self.models_ = models
        return self

    def predict(self, texts: list[str]) -> list[TextPrediction]:
        if self.models_ is None:
            raise RuntimeError("TfidfLogRegBaseline.predict called before fit()")
        texts = [normalize(t) for t in _check_texts(texts)]
        if not texts:
            return []
        per_head = {head: self._predict_head(head, texts) for head in HEADS}
        return [TextPrediction(**{head: per_head[head][i] for head in HEADS}) for i in range(len(texts))]

    def _predict_head(self, head: str, texts: list[str]) -> list[HeadPrediction]:
        codes = LABELS.codes(head)
        model = self.models_[head]
        probs = np.zeros((len(texts), len(codes)))
        if isinstance(model, str):
            probs[:, codes.index(model)] = 1.0
        else:
            columns = [codes.index(c) for c in model.classes_]
            probs[:, columns] = model.predict_proba(texts)
        out = []
        for row in probs:
            top = int(np.argmax(row))
            out.append(
                HeadPrediction(
                    label=codes[top],
                    confidence=float(row[top]),
                    scores={code: float(p) for code, p in zip(codes, row)},
                )
            )
        return out


def _check_texts(texts: list[str]) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("predict takes a list of texts, not a single string")
    texts = list(texts)
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise TypeError(f"texts must be strings; item {bad[0]} is {type(texts[bad[0]]).__name__}")
    return texts
