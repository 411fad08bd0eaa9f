"""What wrong labels cost the help desk: under/over-triage counts, the SLA-weighted routing cost, and
the coverage-vs-accuracy trade-off of the human-review threshold.

Definitions
-----------
* **Escalation labels**: category ``D`` (complaint: escalate at once) and severity ``critical``
  (emergency: 15-minute response). Both are the highest label of their head, so "routed lower"
  means "predicted any other label".
* **Under-triage**: a true escalation predicted as anything else (true D → A/B/C; true critical →
  low/medium/high). **Over-triage**: an escalation label predicted for a row whose true label is not it.
* **Routing cost**: Σ over rows of ``cost[head][true][predicted]`` for category and severity, from the
  cost matrix in ``data/routing_costs.toml`` (or ``--costs FILE``); a row without a label for a head
  costs nothing for it. ``per_row`` = total / rows counted (per head: rows with that head's label;
  combined: all evaluated rows).
* **Coverage at threshold t**: the fraction of category-labelled rows whose category confidence
  (top probability) is ≥ t, i.e. that would be routed automatically rather than sent to human
  review; **accuracy at t**: category accuracy on those rows (None when none is covered).
* **Threshold for a coverage target** (80% by default): the highest t that still covers at least
  that fraction: with the confidences sorted high to low, the ⌈target·n⌉-th one. Ties at t can make
  the coverage there higher than the target.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from helpdesk_triage.policy.routing_costs import COST_HEADS, DEFAULT_COSTS_PATH, CostMatrixError, RoutingCosts

__all__ = [
    "COST_HEADS",
    "COVERAGE_TARGET",
    "DEFAULT_COSTS_PATH",
    "DEFAULT_THRESHOLDS",
    "ESCALATION_LABELS",
    "CostMatrixError",
    "RoutingCosts",
    "coverage_curve",
    "coverage_report",
    "routing_cost",
    "routing_impact",
    "threshold_for_coverage",
    "triage_counts",
]

ESCALATION_LABELS = {"category": "D", "severity": "critical"}
COVERAGE_TARGET = 0.8
DEFAULT_THRESHOLDS = tuple(i / 20 for i in range(21))  # 0.00, 0.05, ..., 1.00 (i / 20 is correctly rounded)


# --------------------------------------------------------------------------------------------
# Under / over-triage and cost
# --------------------------------------------------------------------------------------------


def _labelled_pairs(y_true: Sequence[str | None], y_pred: Sequence[str]) -> tuple[list[str], list[str]]:
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true and y_pred differ in length: {len(y_true)} vs {len(y_pred)}")
    keep = [i for i, t in enumerate(y_true) if t is not None]
    return [y_true[i] for i in keep], [y_pred[i] for i in keep]


def triage_counts(y_true: Sequence[str | None], y_pred: Sequence[str], head: str) -> dict:
    """Under/over-triage of the head's escalation label (rows whose true label is None are skipped)."""
    positive = ESCALATION_LABELS[head]
    t, p = _labelled_pairs(y_true, y_pred)
    under = sum(1 for a, b in zip(t, p) if a == positive and b != positive)
    over = sum(1 for a, b in zip(t, p) if a != positive and b == positive)
    return {
        "escalation_label": positive,
        "n": len(t),
        "true_escalations": sum(1 for a in t if a == positive),
        "predicted_escalations": sum(1 for b in p if b == positive),
        "under_triage": under,
        "over_triage": over,
    }


def routing_cost(y_true: Sequence[str | None], y_pred: Sequence[str], head: str, costs: RoutingCosts) -> dict:
    """Total and per-row cost of one head's labels (rows whose true label is None cost nothing)."""
    t, p = _labelled_pairs(y_true, y_pred)
    matrix = costs.matrices[head]
    total = float(sum(matrix[a][b] for a, b in zip(t, p)))
    return {"n": len(t), "total": total, "per_row": total / len(t) if t else None}


def routing_impact(
    truth: Mapping[str, Sequence[str | None]], predicted: Mapping[str, Sequence[str]], costs: RoutingCosts
) -> dict:
    """Per head of :data:`COST_HEADS`: triage counts and cost; plus the combined cost over all rows."""
    out: dict[str, Any] = {"costs_file": costs.source}
    n_rows = len(predicted[COST_HEADS[0]])
    total = 0.0
    for head in COST_HEADS:
        counts = triage_counts(truth[head], predicted[head], head)
        cost = routing_cost(truth[head], predicted[head], head, costs)
        out[head] = {**counts, "cost": cost["total"], "cost_per_row": cost["per_row"]}
        total += cost["total"]
    out["n_rows"] = n_rows
    out["total_cost"] = total
    out["cost_per_row"] = total / n_rows if n_rows else None
    return out


# --------------------------------------------------------------------------------------------
# Coverage vs accuracy
# --------------------------------------------------------------------------------------------


def _check_coverage_input(confidence: Sequence[float], correct: Sequence[bool]) -> tuple[np.ndarray, np.ndarray]:
    c = np.asarray(confidence, dtype=float).reshape(-1)
    ok = np.asarray(correct, dtype=bool).reshape(-1)
    if c.shape != ok.shape:
        raise ValueError(f"confidence and correct differ in length: {c.size} vs {ok.size}")
    if c.size == 0:
        raise ValueError("no samples: confidence is empty")
    if not np.all(np.isfinite(c)):
        raise ValueError("confidence holds NaN or infinite values")
    return c, ok


def coverage_curve(
    confidence: Sequence[float], correct: Sequence[bool], thresholds: Sequence[float] = DEFAULT_THRESHOLDS
) -> list[dict]:
    """One point per threshold: ``{"threshold", "n_covered", "coverage", "accuracy"}`` (confidence ≥ threshold)."""
    c, ok = _check_coverage_input(confidence, correct)
    points = []
    for t in thresholds:
        covered = c >= t
        k = int(covered.sum())
        points.append(
            {
                "threshold": float(t),
                "n_covered": k,
                "coverage": k / c.size,
                "accuracy": float(ok[covered].mean()) if k else None,
            }
        )
    return points


def threshold_for_coverage(confidence: Sequence[float], correct: Sequence[bool], target: float = COVERAGE_TARGET) -> dict:
    """The highest threshold auto-routing at least ``target`` of the rows, its coverage and accuracy."""
    if isinstance(target, bool) or not isinstance(target, (int, float)) or not 0 < target <= 1:
        raise ValueError(f"target must be in (0, 1], got {target!r}")
    c, ok = _check_coverage_input(confidence, correct)
    k = max(1, math.ceil(target * c.size - 1e-9))  # rows that must be covered (1e-9: 0.8 * 10 is 8.000000000000002)
    threshold = float(np.sort(c)[::-1][k - 1])
    covered = c >= threshold
    n_covered = int(covered.sum())
    return {
        "target": float(target),
        "threshold": threshold,
        "n_covered": n_covered,
        "coverage": n_covered / c.size,
        "accuracy": float(ok[covered].mean()),
    }


def coverage_report(confidence: Sequence[float], correct: Sequence[bool], target: float = COVERAGE_TARGET) -> dict:
    """Curve, the point at ``target`` coverage, and the accuracy with no threshold (everything auto-routed)."""
    c, ok = _check_coverage_input(confidence, correct)
    return {
        "head": "category",
        "n": int(c.size),
        "accuracy_all": float(ok.mean()),
        "curve": coverage_curve(c, ok),
        "at_target": threshold_for_coverage(c, ok, target),
    }
