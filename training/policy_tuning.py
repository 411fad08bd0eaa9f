"""Fit a decision policy for one model on labelled validation rows: ``triage tune-policy``.

1. **Stacker** per routed head (category, severity): ``z_k = scale · log p_k + bias_k + evidence_k · cue_k``
   (policy/decision_policy.py), fitted by maximum likelihood with a small pull towards the model's own
   probabilities (scale 1, no bias, no evidence), so a label with few rows barely moves. Evidence is only fitted for
   labels that have a keyword cue.
2. **Thresholds** for a target recall (``critical=0.95``): the highest probability at which the decided labels still
   find that share of the true rows; none when expected cost alone already reaches it.
3. **Automation levels**: for every label at level ``automate`` in the base policy, the lowest ``min_probability``
   at which the rows decided that label are right at least ``target_accuracy`` of the time (none reaches it: the
   label goes to ``review``). Labels at ``review`` stay there.

The figures the policy reaches on the rows, and 2-fold cross-fitted ones (fit on one half, measured on the other:
what to expect on new rows), are written into the file's ``[fit]`` table and printed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from helpdesk_triage.evaluation.evaluate import metrics_from_predictions
from helpdesk_triage.evaluation.policy_decisions import automation_figures, decided_predictions
from helpdesk_triage.evaluation.predictions import Predictions
from helpdesk_triage.policy.decision_policy import DECIDED_HEADS, Automation, DecisionPolicy, Stacker
from helpdesk_triage.policy.labels import LABELS

__all__ = ["TuneTargets", "parse_targets", "policy_toml", "summary", "tune"]

# Pull towards the model's own probabilities (L2 on the departure from scale 1, bias 0, evidence 0), per row.
SHRINK = 1.0


@dataclass(frozen=True)
class TuneTargets:
    recall: dict[str, dict[str, float]]  # head → label → target recall
    accuracy: float  # auto-routed decisions of each label are right at least this often


def parse_targets(items: Sequence[str]) -> dict[str, dict[str, float]]:
    """``["critical=0.95", "D=0.95"]`` → ``{"severity": {"critical": 0.95}, "category": {"D": 0.95}}``;
    ValueError names the item at fault."""
    out: dict[str, dict[str, float]] = {}
    for item in items:
        label, _, value = item.partition("=")
        heads = [h for h in DECIDED_HEADS if label.strip() in LABELS.codes(h)]
        try:
            target = float(value)
        except ValueError:
            target = math.nan
        if not heads or not 0 < target <= 1:
            codes = [c for h in DECIDED_HEADS for c in LABELS.codes(h)]
            raise ValueError(f"--target-recall {item!r}: expected LABEL=RECALL with a label of {codes} and 0 < RECALL <= 1")
        out.setdefault(heads[0], {})[label.strip()] = target
    return out


def tune(predictions: Predictions, texts: Sequence[str], base: DecisionPolicy, targets: TuneTargets) -> DecisionPolicy:
    """A policy for ``predictions.version`` fitted on these rows (``texts`` normalised)."""
    policy = replace(base, model_version=predictions.version, stackers={}, thresholds={}, fit={})
    stackers = {}
    for head in DECIDED_HEADS:
        out = predictions.head(head)
        keep = out.labelled
        if keep.size:
            truth = np.array([out.labels.index(out.true[i]) for i in keep])
            cues = policy.cues(head, [texts[i] for i in keep])
            stackers[head] = _fit_stacker(out.probs[keep], cues, truth, out.labels)
    policy = replace(policy, stackers=stackers)
    thresholds = {}
    for head, wanted in targets.recall.items():
        out = predictions.head(head)
        keep = out.labelled
        stacked = policy.probabilities(head, out.probs[keep], [texts[i] for i in keep], predictions.version)
        chosen, _ = policy.choose(head, stacked)
        for label, recall in wanted.items():
            j = out.labels.index(label)
            is_true = np.array([out.true[i] == label for i in keep])
            if not is_true.any() or np.mean(chosen[is_true] == j) >= recall:
                continue
            ranked = np.sort(stacked[is_true, j])[::-1]
            needed = math.ceil(recall * len(ranked))
            thresholds.setdefault(head, {})[label] = float(np.nextafter(ranked[needed - 1], 0))
    policy = replace(policy, thresholds=thresholds)
    automation = {head: dict(levels) for head, levels in base.automation.items()}
    for head in DECIDED_HEADS:
        out = predictions.head(head)
        keep = out.labelled
        decisions = policy.decide_head(head, out.probs[keep], [texts[i] for i in keep], predictions.version)
        decided = np.array([d.label for d in decisions])
        prob = np.array([d.probability for d in decisions])
        right = decided == np.array([out.true[i] for i in keep])
        for label in out.labels:
            level = automation.setdefault(head, {}).get(label, Automation("automate"))
            if level.level != "automate":
                continue
            automation[head][label] = _min_probability(prob[decided == label], right[decided == label], targets.accuracy)
    return replace(policy, automation=automation)


def summary(predictions: Predictions, texts: Sequence[str], policy: DecisionPolicy) -> dict:
    """Argmax and policy figures on these rows: the target table's columns plus auto-routed share and accuracy."""
    decided, auto = decided_predictions(predictions, texts, policy)
    return {"argmax": _figures(predictions, {}, policy), "policy": _figures(decided, auto, policy)}


def _figures(preds: Predictions, auto: Mapping[str, np.ndarray], policy: DecisionPolicy) -> dict:
    m = metrics_from_predictions(preds, policy.costs)
    out = {
        "category_macro_f1": m["category"]["macro_f1"] if m["category"] else None,
        "D_recall": m["routing"]["D_recall"], "D_precision": m["routing"]["D_precision"],
        "severity_f1_lmh": m["routing"]["severity_f1_low_medium_high"],
        "critical_recall": m["routing"]["critical_recall"], "critical_precision": m["routing"]["critical_precision"],
        "sentiment_macro_f1": m["sentiment"]["macro_f1"] if m["sentiment"] else None,
        "category_ece": m["category"]["ece"] if m["category"] else None,
        "severity_ece": m["severity"]["ece"] if m["severity"] else None,
        "cost_per_row": m["routing_impact"]["cost_per_row"],
    }
    for head, routed in auto.items():
        figures = automation_figures(preds.head(head), routed)
        out[f"{head}_auto_share"] = figures["auto_share"]
        out[f"{head}_auto_accuracy"] = figures["auto_accuracy"]
    return out


def cross_fitted(predictions: Predictions, texts: Sequence[str], base: DecisionPolicy, targets: TuneTargets) -> dict:
    """Policy figures measured out of fold: rows split in two by position parity, each half decided by the policy
    fitted on the other, then all rows scored together."""
    folds = [np.arange(0, predictions.n, 2), np.arange(1, predictions.n, 2)]
    parts = []
    for fit_rows, measure_rows in (folds, folds[::-1]):
        fitted = tune(_rows(predictions, fit_rows), [texts[i] for i in fit_rows], base, targets)
        decided, auto = decided_predictions(_rows(predictions, measure_rows), [texts[i] for i in measure_rows], fitted)
        parts.append((measure_rows, decided, auto))
    decided, auto = _merge(predictions, parts)
    return _figures(decided, auto, base)


def policy_toml(policy: DecisionPolicy, fit: Mapping[str, Mapping[str, float | None]], data_files: Sequence[str]) -> str:
    """The policy as a decision_policy.toml (policy/decision_policy.py reads it back)."""
    lines = [
        f"# Written by `triage tune-policy` for model {policy.model_version} on {', '.join(data_files)}.",
        "# Edit the automation levels freely; refit the stacker and thresholds for another model.",
        f"model_version = {_q(policy.model_version)}",
        "",
    ]
    for head, stacker in policy.stackers.items():
        lines += [f"[stacker.{head}]", f"scale = {stacker.scale:.6g}",
                  f"bias = {_inline(stacker.bias)}", f"evidence = {_inline(stacker.evidence)}", ""]
    for head, table in policy.thresholds.items():
        lines += [f"[thresholds.{head}]", *[f"{label} = {value:.6g}" for label, value in table.items()], ""]
    for head, table in policy.automation.items():
        lines.append(f"[automation.{head}]")
        for label, level in table.items():
            lines.append(f"{label} = {{ level = {_q(level.level)}"
                         + (f", min_probability = {level.min_probability:.4g} }}" if level.level == "automate" else " }"))
        lines.append("")
    for name, figures in fit.items():
        lines.append(f"[fit.{name}]")
        lines += [f"{key} = {value:.4f}" for key, value in figures.items() if isinstance(value, (int, float))]
        lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------


def _fit_stacker(probs: np.ndarray, cues: np.ndarray, truth: np.ndarray, codes: Sequence[str]) -> Stacker:
    from scipy.optimize import minimize

    k = len(codes)
    log_p = np.log(np.clip(probs, 1e-9, 1.0))
    with_cue = cues.any(axis=0)  # evidence only for labels that have a cue in these rows
    n = len(truth)
    onehot = np.eye(k)[truth]

    def unpack(theta):
        evidence = np.zeros(k)
        evidence[with_cue] = theta[1 + k:]
        return theta[0], theta[1:1 + k], evidence

    def loss(theta):
        scale, bias, evidence = unpack(theta)
        z = scale * log_p + bias + evidence * cues
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        nll = -np.sum(onehot * np.log(np.clip(p, 1e-12, 1.0))) / n
        prior = SHRINK / n * ((theta[0] - 1) ** 2 + np.sum(theta[1:] ** 2))
        g = (p - onehot) / n  # d nll / d z
        grad = np.concatenate([[np.sum(g * log_p)], g.sum(axis=0), (g * cues).sum(axis=0)[with_cue]])
        grad += 2 * SHRINK / n * np.concatenate([[theta[0] - 1], theta[1:]])
        return nll + prior, grad

    theta0 = np.concatenate([[1.0], np.zeros(k), np.zeros(int(with_cue.sum()))])
    fitted = minimize(loss, theta0, jac=True, method="L-BFGS-B", bounds=[(0.05, 20)] + [(None, None)] * (len(theta0) - 1))
    scale, bias, evidence = unpack(fitted.x)
    bias = bias - bias.mean()  # softmax is shift-invariant: keep the file readable
    return Stacker(float(scale), {c: float(b) for c, b in zip(codes, bias)},
                   {c: float(e) for c, e, on in zip(codes, evidence, with_cue) if on})


def _min_probability(prob: np.ndarray, right: np.ndarray, target: float) -> Automation:
    """The lowest probability cut at which the decisions at or above it are right >= target of the time."""
    if prob.size == 0:
        return Automation("automate", 1.0)
    order = np.argsort(-prob)
    running = np.cumsum(right[order]) / np.arange(1, prob.size + 1)
    ok = np.nonzero(running >= target)[0]
    if ok.size == 0:
        return Automation("review")
    return Automation("automate", float(prob[order][ok[-1]]))


def _rows(predictions: Predictions, rows: np.ndarray) -> Predictions:
    heads = {head: replace(out, true=tuple(out.true[i] for i in rows), pred=tuple(out.pred[i] for i in rows),
                           probs=out.probs[rows], confidence=out.confidence[rows])
             for head, out in predictions.heads.items()}
    return Predictions(predictions.version, heads)


def _merge(predictions: Predictions, parts: list) -> tuple[Predictions, dict[str, np.ndarray]]:
    n = predictions.n
    heads, auto = {}, {}
    for head, out in predictions.heads.items():
        pred, probs, conf = [None] * n, np.zeros_like(out.probs), np.zeros(n)
        routed = np.zeros(n, dtype=bool)
        for rows, decided, part_auto in parts:
            d = decided.head(head)
            for j, i in enumerate(rows):
                pred[i] = d.pred[j]
            probs[rows], conf[rows] = d.probs, d.confidence
            if head in part_auto:
                routed[rows] = part_auto[head]
        heads[head] = replace(out, pred=tuple(pred), probs=probs, confidence=conf)
        if head in DECIDED_HEADS:
            auto[head] = routed
    return Predictions(f"policy for {predictions.version}", heads), auto


def _q(text: str | None) -> str:
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _inline(values: Mapping[str, float]) -> str:
    return "{ " + ", ".join(f"{k} = {v:.6g}" for k, v in values.items()) + " }"
