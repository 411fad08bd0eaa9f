"""The two baselines every model is compared against: the keyword rules and char-n-gram TF-IDF + LogReg.

Both satisfy the :class:`model.prediction.Classifier` protocol (``.version``,
``.predict(list[str]) -> list[TextPrediction]``) and normalise their input with
:func:`data.text_normalization.normalize`, as training data is normalised by ``load_labelled``
(normalising twice changes nothing), so raw and dataset texts can be passed alike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from helpdesk_triage.policy.labels import HEADS, LABELS
from helpdesk_triage.policy.text_normalization import normalize
from helpdesk_triage.model.char_ngram import CharNgramModel, NgramSettings
from helpdesk_triage.policy.keyword_rules import KeywordClassifier
from helpdesk_triage.policy.prediction import TextPrediction, predictions_from_probabilities

if TYPE_CHECKING:
    import datasets

__all__ = ["KeywordBaseline", "TfidfLogRegBaseline"]


# The keyword rules (``policy.keyword_rules``) are the baseline as they are: they normalise their input.
KeywordBaseline = KeywordClassifier


class TfidfLogRegBaseline:
    """Char 1-3-gram TF-IDF + multinomial logistic regression: :class:`model.char_ngram.CharNgramModel`
    (the n-gram half of the served blend) on its own, as a classifier.

    * ``fit(ds)`` takes a ``datasets.Dataset`` (or anything indexable by column name) with a
      ``text`` column and one column per head in :data:`policy.labels.HEADS`; a row whose
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

    def __init__(self, **settings) -> None:
        self.settings = NgramSettings(**settings)
        self.model_: CharNgramModel | None = None

    @property
    def n_train_(self) -> dict[str, int]:
        return dict(self.model_.n_train) if self.model_ else {}

    @property
    def classes_(self) -> dict[str, tuple[str, ...]]:
        """Per head the labels seen in training, in schema order."""
        if not self.model_:
            return {}
        return {head: tuple(sorted(classes, key=LABELS.codes(head).index)) for head, (classes, _, _) in self.model_.heads.items()}

    def fit(self, ds: "datasets.Dataset") -> "TfidfLogRegBaseline":
        columns = getattr(ds, "column_names", None) or list(getattr(ds, "keys", lambda: [])())
        missing = [c for c in ("text", *HEADS) if c not in columns]
        if missing:
            raise ValueError(f"dataset lacks column(s) {missing}; expected the output of training.dataset_io.load_labelled()")
        texts = [normalize(t) for t in _check_texts(list(ds["text"]))]
        labels = {}
        for head in HEADS:
            labels[head] = list(ds[head])
            bad = sorted({repr(v) for v in labels[head] if v is not None and not LABELS.is_valid(head, v)})
            if bad:
                raise ValueError(f"{head} column holds values that are not {head} labels: {', '.join(bad)}")
        self.model_ = CharNgramModel(self.settings).fit(texts, labels)
        return self

    def predict(self, texts: list[str]) -> list[TextPrediction]:
        if self.model_ is None:
            raise RuntimeError("TfidfLogRegBaseline.predict called before fit()")
        texts = [normalize(t) for t in _check_texts(texts)]
        if not texts:
            return []
        probs = self.model_.probabilities(texts)
        return predictions_from_probabilities(probs, {h: LABELS.codes(h) for h in HEADS}, len(texts))


def _check_texts(texts: list[str]) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("predict takes a list of texts, not a single string")
    texts = list(texts)
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise TypeError(f"texts must be strings; item {bad[0]} is {type(texts[bad[0]]).__name__}")
    return texts
