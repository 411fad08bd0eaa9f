"""When a decision needs a person: the review rules, applied to one prediction.

A decision goes to review when the category or severity probability is under the threshold, the top two are
within the margin, severity is critical, the answer is degraded (keyword rules answered), or the text holds a
critical cue of ``data/keyword_rules.toml`` (过敏, 住院, 12315, 起火 …) while the model says less than critical.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from helpdesk_triage.policy.prediction import TextPrediction

REVIEWED_HEADS = ("category", "severity")


@dataclass(frozen=True)
class ReviewRules:
    threshold: float  # top probability under this needs review (setting review_threshold)
    margin: float  # top two closer than this need review (setting review_margin)
    critical_cue: Callable[[str], str | None]  # the first critical cue in a text, or None

    def reasons(self, prediction: TextPrediction, degraded_reason: str | None, text: str) -> list[str]:
        """Why this decision needs a person (empty: it does not), in a fixed order."""
        reasons = [degraded_reason] if degraded_reason else []
        for head in REVIEWED_HEADS:
            result = prediction.head(head)
            if result.confidence < self.threshold:
                reasons.append(f"low_confidence: {head} {result.confidence:.2f} < {self.threshold}")
            elif result.margin() < self.margin:
                reasons.append(f"close_call: {head} top two within {self.margin}")
        if prediction.severity.label == "critical":
            reasons.append("critical_severity")
        elif (cue := self.critical_cue(text)) is not None:
            # A safety net for the costliest miss: the model is not sure enough of critical cases; a human
            # looks at every message with a critical cue it calls lower.
            reasons.append(f"critical_cue: {cue}")
        return reasons
