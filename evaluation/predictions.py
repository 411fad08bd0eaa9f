"""Run a classifier over the evaluation rows in chunks (with a progress bar) and keep, per head, what
every later step needs: the true labels, the predicted labels, the probabilities and confidences.

Every metric, routing-impact figure, coverage curve, slice and significance test is computed from a
:class:`Predictions`, so a classifier is run once per evaluation, whatever the report holds.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from helpdesk_triage.policy.labels import HEADS, LABELS
from helpdesk_triage.policy.prediction import Classifier

__all__ = ["CHUNK_SIZE", "HeadOutputs", "Predictions", "predict_rows"]

CHUNK_SIZE = 64  # texts per classifier call: one progress-bar step


@dataclass(frozen=True)
class HeadOutputs:
    """One head over all rows: ``true[i]`` is None where row i has no label for this head."""

    labels: tuple[str, ...]
    true: tuple[str | None, ...]
    pred: tuple[str, ...]
    probs: np.ndarray  # (n_rows, len(labels)), columns in ``labels`` order
    confidence: np.ndarray  # (n_rows,), the classifier's reported probability of ``pred``

    @property
    def labelled(self) -> np.ndarray:
        """Indices of the rows that carry a label for this head."""
        return np.array([i for i, t in enumerate(self.true) if t is not None], dtype=np.int64)

    def true_labelled(self) -> list[str]:
        return [self.true[i] for i in self.labelled]

    def pred_labelled(self) -> list[str]:
        return [self.pred[i] for i in self.labelled]

    def correct(self) -> np.ndarray:
        """Per labelled row (in ``labelled`` order): was the predicted label the true one?"""
        return np.array([self.pred[i] == self.true[i] for i in self.labelled], dtype=bool)


@dataclass(frozen=True)
class Predictions:
    """A classifier's outputs on the evaluation rows."""

    version: str
    heads: dict[str, HeadOutputs]

    @property
    def n(self) -> int:
        return len(next(iter(self.heads.values())).pred)

    def head(self, name: str) -> HeadOutputs:
        return self.heads[name]


def predict_rows(
    classifier: Classifier,
    texts: Sequence[str],
    truth: Mapping[str, Sequence[str | None]],
    *,
    desc: str | None = None,
    progress: bool | None = None,
    chunk_size: int = CHUNK_SIZE,
) -> Predictions:
    """Predict ``texts`` in chunks of ``chunk_size``; ``truth[head]`` holds the true label (or None) per text.

    ``progress``: True shows a tqdm bar on stderr, False hides it, None (default) shows it only when
    stderr is a terminal (so tests and CI logs stay quiet).
    """
    texts = list(texts)
    for head in HEADS:
        if len(truth[head]) != len(texts):
            raise ValueError(f"truth[{head!r}] has {len(truth[head])} labels for {len(texts)} texts")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    outputs = []
    bar = _progress_bar(len(texts), desc or f"predicting ({classifier.version})", progress)
    try:
        for start in range(0, len(texts), chunk_size):
            chunk = texts[start : start + chunk_size]
            predicted = classifier.predict(chunk)
            if len(predicted) != len(chunk):
                raise ValueError(f"{classifier.version}: predict returned {len(predicted)} results for {len(chunk)} texts")
            outputs.extend(predicted)
            bar.update(len(chunk))
    finally:
        bar.close()
    heads = {}
    for head in HEADS:
        codes = LABELS.codes(head)
        per_row = [p.head(head) for p in outputs]
        heads[head] = HeadOutputs(
            labels=codes,
            true=tuple(truth[head]),
            pred=tuple(h.label for h in per_row),
            probs=np.array([[h.scores.get(c, 0.0) for c in codes] for h in per_row], dtype=float).reshape(len(per_row), len(codes)),
            confidence=np.array([h.confidence for h in per_row], dtype=float),
        )
    return Predictions(version=classifier.version, heads=heads)


def _progress_bar(total: int, desc: str, progress: bool | None):
    from tqdm import tqdm

    disable = None if progress is None else not progress  # None: tqdm disables itself off a terminal
    return tqdm(total=total, desc=desc, unit="msg", file=sys.stderr, disable=disable, leave=False)
