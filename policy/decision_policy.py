"""From calibrated probabilities to decided labels: what a mistake costs, the keyword rules' evidence, and which
decisions a person confirms.

Per head (category, severity; sentiment routes nothing and stays the most probable label):

1. **Stacker** (fitted by ``triage tune-policy`` for one model version): the model's log-probabilities and the
   keyword rules' evidence (a category cue, a critical or high-severity cue in the text) combine into calibrated
   probabilities, ``z_k = scale · log p_k + bias_k + evidence_k · cue_k``. A model of another version (or the
   keyword rules answering in degraded mode) gets no stacker.
2. **Expected cost**: the label ``j`` that minimises ``Σ_i p_i · cost[i][j]`` with the matrix of
   ``data/routing_costs.toml`` — a message with a 20% chance of being an emergency gets the emergency SLA when a
   missed emergency costs 20 and a false alarm 3.
3. **Thresholds** (fitted for a target recall): a label whose probability reaches its threshold is decided.
4. **Automation levels**: per decided label, ``automate`` (routed automatically at ``min_probability`` or more,
   else reviewed) or ``review`` (always confirmed by a person).

Each head's answer says which step decided: ``threshold``, ``cue`` (the rules' evidence changed the label),
``cost`` (expected cost chose another label than the most probable) or ``argmax``.
The file format is ``data/decision_policy.toml`` (the generic policy: no stacker, no thresholds).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from helpdesk_triage.policy.data_files import data_file, read_toml
from helpdesk_triage.policy.keyword_rules import KeywordRules
from helpdesk_triage.policy.labels import HEADS, LABELS
from helpdesk_triage.policy.prediction import HeadPrediction, TextPrediction
from helpdesk_triage.policy.routing_costs import COST_HEADS, RoutingCosts

DEFAULT_POLICY_PATH = data_file("decision_policy.toml")
POLICY_NAME = "decision_policy.toml"  # beside a model's weights: the policy tuned for that model
LEVELS = ("automate", "review")
RULES = ("threshold", "cue", "cost", "argmax")
DECIDED_HEADS = COST_HEADS  # sentiment is never re-decided


class DecisionPolicyError(ValueError):
    """The policy file is missing or invalid; the message starts with the file name."""


@dataclass(frozen=True)
class Stacker:
    """Calibrated probabilities from the model's and the rules' evidence, for one head."""

    scale: float
    bias: dict[str, float]
    evidence: dict[str, float]  # weight of "a cue for this label is in the text"

    def probabilities(self, probs: np.ndarray, cues: np.ndarray, codes: Sequence[str]) -> np.ndarray:
        """``probs`` (n × labels) and ``cues`` (n × labels, 0/1) → stacked probabilities (n × labels)."""
        bias = np.array([self.bias.get(c, 0.0) for c in codes])
        weight = np.array([self.evidence.get(c, 0.0) for c in codes])
        z = self.scale * np.log(np.clip(probs, 1e-9, 1.0)) + bias + weight * cues
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class Automation:
    level: str  # "automate" | "review"
    min_probability: float = 0.0


@dataclass(frozen=True)
class HeadDecision:
    label: str
    probability: float
    scores: dict[str, float]
    rule: str  # one of RULES
    routing: str  # "auto" | "review"
    argmax_label: str

    def as_prediction(self) -> HeadPrediction:
        return HeadPrediction(self.label, self.probability, self.scores)


@dataclass(frozen=True)
class Decisions:
    """The decided labels of one message, per head."""

    heads: dict[str, HeadDecision]

    def labels(self) -> dict[str, str]:
        return {head: d.label for head, d in self.heads.items()}

    def as_prediction(self) -> TextPrediction:
        return TextPrediction(**{head: d.as_prediction() for head, d in self.heads.items()})


@dataclass(frozen=True)
class DecisionPolicy:
    costs: RoutingCosts
    model_version: str | None = None  # the model the stacker and thresholds were fitted for (None: any model)
    stackers: dict[str, Stacker] = field(default_factory=dict)
    thresholds: dict[str, dict[str, float]] = field(default_factory=dict)
    automation: dict[str, dict[str, Automation]] = field(default_factory=dict)
    fit: dict[str, Any] = field(default_factory=dict)  # what tune-policy reached on its data (informational)
    source: str = "<policy>"
    rules: KeywordRules = field(default_factory=KeywordRules.load, repr=False)

    @classmethod
    def load(cls, path: str | Path | None = None) -> "DecisionPolicy":
        path = Path(path) if path is not None else DEFAULT_POLICY_PATH
        return cls.from_dict(read_toml(path, "decision policy", DecisionPolicyError), str(path), base=path.parent)

    @classmethod
    def for_model(cls, model_dir: str | Path | None, path: str | Path | None = None) -> "DecisionPolicy":
        """``path`` when given; else the policy tuned for the model in ``model_dir`` when it has one; else the
        generic ``data/decision_policy.toml``."""
        if path is not None:
            return cls.load(path)
        beside = Path(model_dir) / POLICY_NAME if model_dir is not None else None
        return cls.load(beside if beside is not None and beside.is_file() else None)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], source: str = "<policy>", base: Path | None = None) -> "DecisionPolicy":
        problems: list[str] = []
        unknown = sorted(set(raw) - {"model_version", "costs", "stacker", "thresholds", "automation", "fit"})
        if unknown:
            problems.append(f"unknown key(s) {unknown}")
        costs_path = raw.get("costs")
        try:
            costs = RoutingCosts.load((base / costs_path) if costs_path and base else costs_path)
        except ValueError as error:
            raise DecisionPolicyError(f"{source}: costs: {error}") from error
        model_version = raw.get("model_version")
        stackers = {}
        for head, table in _tables(raw, "stacker", problems).items():
            codes = _codes(head, problems, "stacker")
            if codes is None:
                continue
            scale = table.get("scale", 1.0)
            if not _number(scale) or scale <= 0:
                problems.append(f"[stacker.{head}] scale must be a positive number, got {scale!r}")
                continue
            parts = {name: _label_numbers(table.get(name, {}), codes, f"stacker.{head}.{name}", problems)
                     for name in ("bias", "evidence")}
            stackers[head] = Stacker(float(scale), parts["bias"], parts["evidence"])
        if model_version is not None and not isinstance(model_version, str):
            problems.append(f"model_version must be a string, got {model_version!r}")
        if stackers and not isinstance(model_version, str):
            problems.append("a [stacker] needs model_version (the model it was fitted for)")
        thresholds = {}
        for head, table in _tables(raw, "thresholds", problems).items():
            codes = _codes(head, problems, "thresholds")
            if codes is not None:
                thresholds[head] = _label_numbers(table, codes, f"thresholds.{head}", problems, unit=True)
        automation = {}
        for head, table in _tables(raw, "automation", problems).items():
            codes = _codes(head, problems, "automation")
            if codes is None:
                continue
            automation[head] = {}
            for code, entry in table.items():
                where = f"[automation.{head}] {code}"
                if code not in codes:
                    problems.append(f"{where}: unknown label; labels are {list(codes)}")
                elif not isinstance(entry, Mapping) or entry.get("level") not in LEVELS:
                    problems.append(f"{where}: needs level = one of {list(LEVELS)}")
                elif not _number(entry.get("min_probability", 0.0)) or not 0 <= entry.get("min_probability", 0.0) <= 1:
                    problems.append(f"{where}: min_probability must be a number in [0, 1]")
                elif set(entry) - {"level", "min_probability"}:
                    problems.append(f"{where}: unknown key(s) {sorted(set(entry) - {'level', 'min_probability'})}")
                else:
                    automation[head][code] = Automation(entry["level"], float(entry.get("min_probability", 0.0)))
        if problems:
            raise DecisionPolicyError(f"{source}: invalid decision policy: " + "; ".join(problems))
        return cls(costs, model_version, stackers, thresholds, automation,
                   dict(raw.get("fit", {})), source)

    # -----------------------------------------------------------------------------------------

    def cues(self, head: str, texts: Sequence[str]) -> np.ndarray:
        """0/1 per text and label: a keyword cue for that label is in the (normalised) text."""
        codes = LABELS.codes(head)
        out = np.zeros((len(texts), len(codes)))
        for i, text in enumerate(texts):
            if head == "category":
                for j, code in enumerate(codes):
                    out[i, j] = self.rules.has_category_cue(text, code)
            elif head == "severity":
                out[i, codes.index("critical")] = self.rules.critical_cue(text) is not None
                out[i, codes.index("high")] = self.rules.has_high_cue(text)
        return out

    def fitted_for(self, model_version: str) -> bool:
        """Whether the fitted parts (stacker, thresholds) apply: the file was tuned for this model, or is generic."""
        return self.model_version is None or model_version == self.model_version

    def probabilities(self, head: str, probs: np.ndarray, texts: Sequence[str], model_version: str,
                      with_cues: bool = True) -> np.ndarray:
        stacker = self.stackers.get(head)
        if stacker is None or not self.fitted_for(model_version):
            return probs
        cues = self.cues(head, texts) if with_cues else np.zeros_like(probs)
        return stacker.probabilities(probs, cues, LABELS.codes(head))

    def choose(self, head: str, probs: np.ndarray, with_thresholds: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Decided label indices and whether a threshold decided, for stacked probabilities (n × labels)."""
        codes = LABELS.codes(head)
        if head in self.costs.matrices:
            expected = probs @ self.costs.array(head, codes)  # [n, predicted]
            chosen = expected.argmin(axis=1)
        else:
            chosen = probs.argmax(axis=1)
        by_threshold = np.zeros(len(probs), dtype=bool)
        for code, t in (self.thresholds.get(head, {}) if with_thresholds else {}).items():
            j = codes.index(code)
            hit = (probs[:, j] >= t) & (chosen != j)
            chosen = np.where(hit, j, chosen)
            by_threshold |= hit
        return chosen, by_threshold

    def decide_head(self, head: str, probs: np.ndarray, texts: Sequence[str], model_version: str,
                    degraded: bool = False) -> list[HeadDecision]:
        """Decisions for one head over many texts (probs: n × labels in label order)."""
        codes = LABELS.codes(head)
        probs = np.asarray(probs, dtype=float)
        argmax = probs.argmax(axis=1)
        if degraded or head not in DECIDED_HEADS:
            stacked, chosen, by_threshold, by_cue = probs, argmax, np.zeros(len(probs), bool), np.zeros(len(probs), bool)
        else:
            fitted = self.fitted_for(model_version)
            stacked = self.probabilities(head, probs, texts, model_version)
            chosen, by_threshold = self.choose(head, stacked, with_thresholds=fitted)
            plain = self.probabilities(head, probs, texts, model_version, with_cues=False)
            by_cue = (self.choose(head, plain, with_thresholds=fitted)[0] != chosen) & ~by_threshold
        decisions = []
        for i in range(len(probs)):
            label = codes[chosen[i]]
            p = float(stacked[i, chosen[i]])
            rule = ("threshold" if by_threshold[i] else "cue" if by_cue[i]
                    else "cost" if chosen[i] != stacked[i].argmax() else "argmax")
            level = self.automation.get(head, {}).get(label, Automation("automate"))
            auto = not degraded and level.level == "automate" and p >= level.min_probability
            decisions.append(HeadDecision(label, p, {c: float(v) for c, v in zip(codes, stacked[i])}, rule,
                                          "auto" if auto else "review", codes[argmax[i]]))
        return decisions

    def decide(self, predictions: Sequence[TextPrediction], texts: Sequence[str], model_version: str,
               degraded: bool = False) -> list[Decisions]:
        """The decided labels of each message (texts normalised, as the model saw them)."""
        per_head = {}
        for head in HEADS:
            codes = LABELS.codes(head)
            probs = np.array([[p.head(head).scores.get(c, 0.0) for c in codes] for p in predictions]).reshape(-1, len(codes))
            per_head[head] = self.decide_head(head, probs, texts, model_version, degraded)
        return [Decisions({head: per_head[head][i] for head in HEADS}) for i in range(len(predictions))]


def _tables(raw: Mapping[str, Any], key: str, problems: list[str]) -> dict[str, Mapping[str, Any]]:
    table = raw.get(key, {})
    if not isinstance(table, Mapping) or any(not isinstance(v, Mapping) for v in table.values()):
        problems.append(f"[{key}] must hold one table per head")
        return {}
    return dict(table)


def _codes(head: str, problems: list[str], key: str) -> tuple[str, ...] | None:
    if head not in HEADS:
        problems.append(f"[{key}.{head}]: unknown head; heads are {list(HEADS)}")
        return None
    return LABELS.codes(head)


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _label_numbers(table: object, codes: Sequence[str], where: str, problems: list[str], unit: bool = False) -> dict[str, float]:
    if not isinstance(table, Mapping):
        problems.append(f"[{where}] must map labels to numbers")
        return {}
    out = {}
    for code, value in table.items():
        if code not in codes:
            problems.append(f"[{where}] {code}: unknown label; labels are {list(codes)}")
        elif not _number(value) or (unit and not 0 <= value <= 1):
            problems.append(f"[{where}] {code} must be a {'probability in [0, 1]' if unit else 'number'}, got {value!r}")
        else:
            out[code] = float(value)
    return out
