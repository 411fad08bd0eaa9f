"""Evaluation rows a model was trained on: found by the fingerprints beside its weights (``model.trained_texts``).

Figures on such rows flatter the model. ``triage evaluate`` leaves them out by default and says so at the top of
the report and on stderr; with ``--allow-trained-rows`` it keeps them and marks the figures.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from helpdesk_triage.model.trained_texts import trained_fingerprints, trained_on


class TrainedRowsError(ValueError):
    """Every evaluation row was trained on: nothing fair is left to measure."""


@dataclass
class TrainedRows:
    n_rows: int
    seen_by: dict[str, int] = field(default_factory=dict)  # model version -> rows it trained on
    unknown: list[str] = field(default_factory=list)  # versions that record no training texts
    flagged: list[bool] = field(default_factory=list)  # per row: trained on by any of the models
    kept: bool = False

    @property
    def count(self) -> int:
        return sum(self.flagged)

    def notice(self) -> str | None:
        """One sentence for stderr and the top of the report; None when there is nothing to say."""
        parts = []
        if self.count:
            who = ", ".join(f"{version} on {n}" for version, n in self.seen_by.items() if n)
            action = ("kept (--allow-trained-rows): the figures below flatter the model(s) that saw them"
                      if self.kept else f"left out: the figures below are on the other {self.n_rows - self.count} rows "
                                        "(--allow-trained-rows keeps them)")
            parts.append(f"{self.count} of the {self.n_rows} evaluation rows were trained on ({who}); {action}.")
        if self.unknown:
            parts.append(f"{', '.join(self.unknown)} records no training texts: rows it trained on cannot be found.")
        return " ".join(parts) or None


def find_trained_rows(texts: Sequence[str], models: Sequence[object]) -> TrainedRows:
    """``models``: classifiers with a ``version`` and, for a model folder, a ``folder``."""
    found = TrainedRows(len(texts), flagged=[False] * len(texts))
    for model in models:
        folder = getattr(model, "folder", None)
        prints = trained_fingerprints(folder)
        if prints is None:
            if folder is not None:
                found.unknown.append(model.version)
            continue
        hits = trained_on(texts, prints)
        found.seen_by[model.version] = sum(hits)
        found.flagged = [a or b for a, b in zip(found.flagged, hits)]
    return found
