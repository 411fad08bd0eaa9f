"""Keyword rules written from the label guide: the degraded-mode fallback and the simplest baseline."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from helpdesk_triage.policy.labels import HEADS, LABELS, LabelSchema
from helpdesk_triage.policy.text_normalization import normalize
from helpdesk_triage.policy.prediction import TextPrediction, one_label_distribution
from helpdesk_triage.policy.data_files import data_file

DEFAULT_RULES_PATH = data_file("keyword_rules.toml")
RULES_VERSION = "keyword-rules-1"
# Rules give no probabilities; the label they pick is reported with this fixed confidence so that
# every rules answer falls under any sensible review threshold.
RULES_CONFIDENCE = 0.5


@dataclass(frozen=True)
class KeywordRules:
    category_cues: dict[str, tuple[str, ...]]
    critical_cues: tuple[str, ...]
    high_cues: tuple[str, ...]
    medium_order_cues: tuple[str, ...]
    default_severity: dict[str, str]
    negative_cues: tuple[str, ...]
    positive_cues: tuple[str, ...]
    version: str = RULES_VERSION

    @classmethod
    def load(cls, path: str | Path | None = None, labels: LabelSchema = LABELS) -> "KeywordRules":
        path = Path(path) if path is not None else DEFAULT_RULES_PATH
        with path.open("rb") as f:
            raw = tomllib.load(f)
        category = {code: tuple(raw["category"].get(code, ())) for code in labels.categories}
        severity = raw["severity"]
        default = dict(severity["default"])
        bad = {c: s for c, s in default.items() if not labels.is_valid("category", c) or not labels.is_valid("severity", s)}
        if bad or set(default) != set(labels.categories):
            raise ValueError(f"{path}: [severity].default must map every category to a severity, got {default}")
        return cls(
            category_cues=category,
            critical_cues=tuple(severity["critical"]),
            high_cues=tuple(severity["high"]),
            medium_order_cues=tuple(severity.get("medium_b", ())),
            default_severity=default,
            negative_cues=tuple(raw["sentiment"]["negative"]),
            positive_cues=tuple(raw["sentiment"]["positive"]),
        )

    def category(self, text: str) -> str:
        # Precedence D > C > B > A: scan from the most serious category down.
        for code in reversed(LABELS.categories):
            if self.has_category_cue(text, code):
                return code
        return LABELS.categories[0]

    def has_category_cue(self, text: str, category: str) -> bool:
        """Whether a cue of ``category`` occurs in ``text``."""
        return _contains_any(text, self.category_cues.get(category, ()))

    def has_high_cue(self, text: str) -> bool:
        return _contains_any(text, self.high_cues)

    def critical_cue(self, text: str) -> str | None:
        """The first critical cue (harm, safety, regulator, legal, media) in ``text``, or None."""
        return next((cue for cue in self.critical_cues if cue in text), None)

    def severity(self, text: str, category: str) -> str:
        if self.critical_cue(text) is not None:
            return "critical"
        if self.has_high_cue(text):
            return "high"
        if category == "B" and _contains_any(text, self.medium_order_cues):
            return "medium"
        return self.default_severity[category]

    def sentiment(self, text: str) -> str:
        if _contains_any(text, self.negative_cues):
            return "negative"
        if _contains_any(text, self.positive_cues):
            return "positive"
        return "neutral"

    def predict(self, text: str) -> dict[str, str]:
        category = self.category(text)
        return {"category": category, "severity": self.severity(text, category), "sentiment": self.sentiment(text)}


class KeywordClassifier:
    """The rules behind the same interface as the trained model; like it, takes raw texts."""

    def __init__(self, rules: KeywordRules | None = None) -> None:
        self.rules = rules or KeywordRules.load()
        self.version = self.rules.version

    def predict(self, texts: list[str]) -> list[TextPrediction]:
        if isinstance(texts, str):
            raise TypeError("predict takes a list of texts, not a single string")
        results = []
        for text in texts:
            # The cues are Simplified, half-width: match them against normalised text (idempotent).
            labels = self.rules.predict(normalize(text))
            heads = {h: one_label_distribution(h, labels[h], RULES_CONFIDENCE) for h in HEADS}
            results.append(TextPrediction(**heads))
        return results


def _contains_any(text: str, cues: tuple[str, ...]) -> bool:
    return any(cue in text for cue in cues)
