"""What a classifier returns for one text: per head, the label, its probability and the full distribution."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from helpdesk_triage.policy.labels import HEADS, LABELS


@dataclass(frozen=True)
class HeadPrediction:
    label: str
    confidence: float
    scores: dict[str, float]

    def margin(self) -> float:
        """Gap between the top two probabilities."""
        ranked = sorted(self.scores.values(), reverse=True)
        return ranked[0] - ranked[1] if len(ranked) > 1 else ranked[0]


@dataclass(frozen=True)
class TextPrediction:
    category: HeadPrediction
    severity: HeadPrediction
    sentiment: HeadPrediction
    # Probability of every sub-case ("B.invoice": p) when the model has a sub-case head.
    subcases: Mapping[str, float] | None = None
    # The text's unit-length embedding (numpy vector) when the model has an encoder: the answer library's key.
    embedding: Any = field(default=None, compare=False, repr=False)

    def head(self, name: str) -> HeadPrediction:
        if name not in HEADS:
            raise KeyError(f"unknown head {name!r}")
        return getattr(self, name)

    def labels(self) -> dict[str, str]:
        return {name: self.head(name).label for name in HEADS}


class Classifier(Protocol):
    """Takes raw texts and normalises them itself (normalising twice changes nothing)."""

    version: str

    def predict(self, texts: list[str]) -> list[TextPrediction]: ...


def one_label_distribution(head: str, label: str, confidence: float) -> HeadPrediction:
    """A distribution that puts ``confidence`` on ``label`` and spreads the rest evenly."""
    codes = LABELS.codes(head)
    rest = (1.0 - confidence) / (len(codes) - 1)
    scores = {code: (confidence if code == label else rest) for code in codes}
    return HeadPrediction(label=label, confidence=confidence, scores=scores)


def predictions_from_probabilities(probs: Mapping[str, Sequence[Sequence[float]]],
                                   labels: Mapping[str, Sequence[str]], n: int) -> list[TextPrediction]:
    """One TextPrediction per row of ``probs`` (per head, an n × labels array-like of probabilities
    in the order of ``labels[head]``); the label is the most probable one."""
    results = []
    for i in range(n):
        heads = {}
        for head, codes in labels.items():
            row = [float(v) for v in probs[head][i]]
            best = max(range(len(codes)), key=row.__getitem__)
            heads[head] = HeadPrediction(codes[best], row[best], dict(zip(codes, row)))
        results.append(TextPrediction(**heads))
    return results
