"""The decision policy's labels as a classifier's outputs: what the service answers, scored like the model's argmax.

``decided_predictions(model_predictions, texts, policy)`` re-decides every row with
:class:`policy.decision_policy.DecisionPolicy` (stacked probabilities, expected cost, thresholds) and keeps which
rows it would route without a person, so ``triage evaluate`` and ``triage tune-policy`` put argmax and policy side
by side with the same metrics.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from helpdesk_triage.evaluation.predictions import HeadOutputs, Predictions
from helpdesk_triage.policy.decision_policy import DECIDED_HEADS, DecisionPolicy

__all__ = ["automation_figures", "decided_predictions"]


def decided_predictions(predictions: Predictions, texts: Sequence[str], policy: DecisionPolicy,
                        ) -> tuple[Predictions, dict[str, np.ndarray]]:
    """(the policy's outputs, per decided head a bool array: routed automatically). ``texts`` normalised."""
    heads, auto = {}, {}
    for head, out in predictions.heads.items():
        decisions = policy.decide_head(head, out.probs, texts, predictions.version)
        heads[head] = replace(
            out,
            pred=tuple(d.label for d in decisions),
            probs=np.array([[d.scores[c] for c in out.labels] for d in decisions]).reshape(len(decisions), len(out.labels)),
            confidence=np.array([d.probability for d in decisions]),
        )
        if head in DECIDED_HEADS:
            auto[head] = np.array([d.routing == "auto" for d in decisions], dtype=bool)
    return Predictions(version=f"policy for {predictions.version}", heads=heads), auto


def automation_figures(outputs: HeadOutputs, auto: np.ndarray) -> dict:
    """Share of the labelled rows routed automatically and the accuracy of those."""
    keep = outputs.labelled
    if keep.size == 0:
        return {"auto_share": None, "auto_accuracy": None, "auto_rows": 0}
    routed = auto[keep]
    correct = outputs.correct()
    return {
        "auto_share": float(routed.mean()),
        "auto_accuracy": float(correct[routed].mean()) if routed.any() else None,
        "auto_rows": int(routed.sum()),
    }
