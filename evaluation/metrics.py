"""Classification metrics for one head (category, severity or sentiment): pure functions, numpy only.

Conventions (the same as scikit-learn's with ``zero_division=0``; ``tests/test_metrics.py``
cross-checks them):

* ``labels`` fixes the order of ``per_label``, of the confusion matrix rows (true label) and
  columns (predicted label) and of the columns of ``probs``. Every value of ``y_true`` / ``y_pred``
  must be one of ``labels``; filter rows whose label is missing (None) before calling.
* precision of a label that is never predicted = 0.0; recall of a label absent from ``y_true``
  = 0.0; F1 = 2·TP / (2·TP + FP + FN), 0.0 when that is 0/0.
* **macro F1** is the unweighted mean of the per-label F1 over the labels that occur in ``y_true``
  OR in ``y_pred`` (what ``sklearn.metrics.f1_score(average="macro")`` does without ``labels=``).
  A label absent from both is still listed in ``per_label`` (support 0, all scores 0.0) but is
  left out of the macro average: a label nobody used says nothing about the classifier, while a
  label that is predicted but never true (pure false positives) does count, with F1 = 0.
* **weighted F1** weights each label's F1 by its support (its count in ``y_true``).
* **Cohen's kappa** = (p_o − p_e) / (1 − p_e), p_o the observed agreement (accuracy), p_e the
  agreement expected from the row and column marginals of the confusion matrix. It is undefined
  (0/0) when every true and every predicted label is one and the same label; it is then ``None``.
* **ECE** (expected calibration error, Guo et al. 2017, "On Calibration of Modern Neural
  Networks"): each sample's confidence is its top-class probability ``max(probs[i])`` and its
  prediction the argmax of ``probs[i]`` (ties: the first in ``labels`` order), which is what the
  probabilities are calibrated for — ``y_pred`` is not used. Samples fall in ``n_bins`` equal-width
  bins over [0, 1], right-closed: (lower, upper], the first bin also holding confidence 0.
  ECE = Σ_b (n_b / n) · |accuracy_b − mean confidence_b|.

All returned numbers are plain Python ``int`` / ``float`` (JSON-serialisable).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "binary_recall_precision",
    "confusion_matrix",
    "expected_calibration_error",
    "head_metrics",
    "label_indices",
    "macro_f1_rows",
    "reliability_bins",
]

# Rows of ``probs`` must sum to 1 within this tolerance (fp16/fp32 softmax outputs pass easily).
PROB_SUM_TOLERANCE = 1e-3


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


# The one figure per head that every table and comparison shows: macro-F1, except severity's, which is the mean F1 of
# low / medium / high (critical has a handful of rows in most sets: its recall is shown on its own).
FIGURE_LABELS = {"severity": ("low", "medium", "high")}


def figure_name(head: str) -> str:
    return f"{head} F1 ({'/'.join(l[:3] if l == 'medium' else l for l in FIGURE_LABELS[head])})" if head in FIGURE_LABELS \
        else f"{head} macro-F1"


def _as_list(values: Sequence, name: str) -> list:
    if isinstance(values, (str, bytes)):
        raise ValueError(f"{name} must be a sequence of labels, not a single string")
    try:
        return list(values)
    except TypeError:
        raise ValueError(f"{name} must be a sequence of labels, got {type(values).__name__}") from None


def _check_labels(labels: Sequence[str]) -> list[str]:
    labels = _as_list(labels, "labels")
    if not labels:
        raise ValueError("labels is empty")
    dupes = sorted({str(x) for x in labels if labels.count(x) > 1})
    if dupes:
        raise ValueError(f"labels repeats {dupes}")
    return labels


def _paired_lists(y_true: Sequence[str], y_pred: Sequence[str]) -> tuple[list, list]:
    y_true = _as_list(y_true, "y_true")
    y_pred = _as_list(y_pred, "y_pred")
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true and y_pred differ in length: {len(y_true)} vs {len(y_pred)}")
    if not y_true:
        raise ValueError("no samples: y_true and y_pred are empty")
    return y_true, y_pred


def _check_pair(y_true: Sequence[str], y_pred: Sequence[str], labels: list[str]) -> tuple[list, list]:
    y_true, y_pred = _paired_lists(y_true, y_pred)
    known = set(labels)
    for name, values in (("y_true", y_true), ("y_pred", y_pred)):
        unknown = {v for v in values if v not in known}
        if unknown:
            shown = sorted(map(repr, unknown))[:10]
            hint = " (filter out rows with a missing label first)" if None in unknown else ""
            raise ValueError(f"{name} holds values not in labels {labels}: {', '.join(shown)}{hint}")
    return y_true, y_pred


def _check_probs(probs: Sequence[Sequence[float]], n: int, labels: list[str]) -> np.ndarray:
    try:
        p = np.asarray(probs, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"probs must be a 2-D array of numbers (n_samples x n_labels): {exc}") from None
    if p.ndim != 2 or p.shape != (n, len(labels)):
        raise ValueError(
            f"probs has shape {p.shape}, expected ({n}, {len(labels)}): one row per sample,"
            f" one column per label in the order {labels}"
        )
    if not np.all(np.isfinite(p)):
        raise ValueError("probs holds NaN or infinite values")
    if np.any(p < 0) or np.any(p > 1):
        raise ValueError(f"probs must lie in [0, 1]; found min {p.min():.6g}, max {p.max():.6g}")
    sums = p.sum(axis=1)
    bad = np.flatnonzero(np.abs(sums - 1.0) > PROB_SUM_TOLERANCE)
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"each row of probs must sum to 1 (±{PROB_SUM_TOLERANCE}); {bad.size} row(s) do not,"
            f" e.g. row {i} sums to {sums[i]:.6g}"
        )
    return p


def _check_n_bins(n_bins: int) -> int:
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    return int(n_bins)


def _indices(values: list, labels: list[str]) -> np.ndarray:
    index = {label: i for i, label in enumerate(labels)}
    return np.fromiter((index[v] for v in values), dtype=np.int64, count=len(values))


# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------


def confusion_matrix(y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str]) -> list[list[int]]:
    """Counts, rows = true label, columns = predicted label, both in ``labels`` order."""
    labels = _check_labels(labels)
    y_true, y_pred = _check_pair(y_true, y_pred, labels)
    return _confusion(_indices(y_true, labels), _indices(y_pred, labels), len(labels)).tolist()


def _confusion(t: np.ndarray, p: np.ndarray, k: int) -> np.ndarray:
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (t, p), 1)
    return cm


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den elementwise, 0.0 where den == 0 (zero_division=0)."""
    num = np.asarray(num, dtype=float)
    den = np.asarray(den, dtype=float)
    out = np.zeros_like(num)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _kappa(cm: np.ndarray) -> float | None:
    n = cm.sum()
    p_o = np.trace(cm) / n
    p_e = float(cm.sum(axis=1) @ cm.sum(axis=0)) / (n * n)
    if np.isclose(p_e, 1.0, rtol=0, atol=1e-12):
        return None  # one label used by both sides: chance agreement is total, kappa is 0/0
    return float((p_o - p_e) / (1.0 - p_e))


def head_metrics(
    y_true: Sequence[str],
    y_pred: Sequence[str],
    labels: Sequence[str],
    probs: Sequence[Sequence[float]] | None = None,
    n_bins: int = 10,
) -> dict:
    """Accuracy, macro/weighted F1, per-label precision/recall/F1/support, confusion, ECE, kappa.

    ``probs`` (optional): one row per sample, one column per label in ``labels`` order, rows
    summing to 1; gives ``ece`` (None without ``probs``). See the module docstring for every
    convention. Raises ValueError for empty input, unequal lengths, a value not in ``labels``, a
    malformed ``probs`` or a bad ``n_bins``.

    Returns ``{"n", "accuracy", "macro_f1", "weighted_f1", "labels", "per_label", "confusion",
    "ece", "ece_if_calibrated", "kappa"}``; ``ece_if_calibrated`` (None without ``probs``) is
    :func:`calibrated_ece_reference` of the same probabilities.
    """
    labels = _check_labels(labels)
    y_true, y_pred = _check_pair(y_true, y_pred, labels)
    n_bins = _check_n_bins(n_bins)
    p = _check_probs(probs, len(y_true), labels) if probs is not None else None

    t = _indices(y_true, labels)
    cm = _confusion(t, _indices(y_pred, labels), len(labels))
    n = int(cm.sum())
    tp = np.diag(cm).astype(float)
    support = cm.sum(axis=1)  # true count per label
    predicted = cm.sum(axis=0)  # predicted count per label
    precision = _safe_div(tp, predicted)
    recall = _safe_div(tp, support)
    f1 = _safe_div(2 * tp, support + predicted)  # 2TP / (2TP + FP + FN)
    present = (support + predicted) > 0

    return {
        "n": n,
        "accuracy": float(tp.sum() / n),
        "macro_f1": float(f1[present].mean()),  # at least one label is present since n > 0
        "weighted_f1": float((f1 * support).sum() / n),
        "labels": list(labels),
        "per_label": {
            label: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, label in enumerate(labels)
        },
        "confusion": cm.tolist(),
        "ece": None if p is None else _ece(_bins(t, p, n_bins), n),
        "ece_if_calibrated": None if p is None else calibrated_ece_reference(p, n_bins),
        "kappa": _kappa(cm),
    }


def calibrated_ece_reference(probs: np.ndarray, n_bins: int = 10, n_draws: int = 1000, seed: int = 0) -> dict:
    """What ECE a perfectly calibrated model with these probabilities would show on this many rows.

    Draws each row's true label from its own predicted distribution (so the model is calibrated by
    construction) ``n_draws`` times and returns ``{"mean", "p90"}`` of the resulting ECEs: an ECE
    measured on few rows lies above zero by chance alone, and below ``p90`` it is not evidence of
    miscalibration. Deterministic (fixed ``seed``).
    """
    p = np.asarray(probs, dtype=float)
    n = len(p)
    rng = np.random.default_rng(seed)
    confidence, predicted = p.max(axis=1), p.argmax(axis=1)
    edges = np.arange(n_bins + 1) / n_bins
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    members = np.eye(n_bins)[which]                      # n x bins
    counts = members.sum(axis=0)
    mean_confidence = np.divide(confidence @ members, counts, out=np.zeros(n_bins), where=counts > 0)
    cumulative = np.cumsum(p / p.sum(axis=1, keepdims=True), axis=1)
    draws = rng.random((n_draws, n, 1))
    labels = np.minimum((draws > cumulative[None]).sum(axis=2), p.shape[1] - 1)   # n_draws x n
    correct = (labels == predicted[None]).astype(float)
    accuracy = np.divide(correct @ members, counts, out=np.zeros((n_draws, n_bins)), where=counts > 0)
    eces = (np.abs(accuracy - mean_confidence) * counts).sum(axis=1) / n
    return {"mean": float(eces.mean()), "p90": float(np.percentile(eces, 90))}


def binary_recall_precision(y_true: Sequence[str], y_pred: Sequence[str], positive: str) -> tuple[float, float, int]:
    """(recall, precision, support) of ``positive`` against everything else ("D recall", ...).

    recall = TP / support, precision = TP / (times ``positive`` was predicted), each 0.0 when its
    denominator is 0 (zero_division=0; check ``support`` before reading a 0.0 recall).
    """
    y_true, y_pred = _paired_lists(y_true, y_pred)
    t = np.fromiter((v == positive for v in y_true), dtype=bool, count=len(y_true))
    p = np.fromiter((v == positive for v in y_pred), dtype=bool, count=len(y_pred))
    tp = int(np.sum(t & p))
    support = int(t.sum())
    recall = tp / support if support else 0.0
    precision = tp / int(p.sum()) if p.any() else 0.0
    return float(recall), float(precision), support


def label_indices(values: Sequence[str], labels: Sequence[str], name: str = "labels") -> np.ndarray:
    """``values`` as indices into ``labels`` (int64 array); ValueError for a value not in ``labels``."""
    labels = _check_labels(labels)
    values = _as_list(values, name)
    unknown = sorted({repr(v) for v in values if v not in set(labels)})
    if unknown:
        raise ValueError(f"{name} holds values not in labels {labels}: {', '.join(unknown[:10])}")
    return _indices(values, labels)


def macro_f1_rows(t: np.ndarray, p: np.ndarray, k: int) -> np.ndarray:
    """Macro F1 of each row of two equal-shape 2-D index arrays (many resamples at once).

    ``t[r]`` / ``p[r]`` are the true / predicted label indices (0..k-1) of resample ``r``. Same
    convention as :func:`head_metrics` (average over the labels occurring in the row's truth or
    predictions, zero_division=0), computed from one bincount instead of a loop over resamples.
    """
    t = np.asarray(t, dtype=np.int64)
    p = np.asarray(p, dtype=np.int64)
    if t.ndim != 2 or t.shape != p.shape:
        raise ValueError(f"t and p must be 2-D arrays of one shape, got {t.shape} and {p.shape}")
    if t.shape[1] == 0:
        raise ValueError("no samples: the rows are empty")
    if t.size and (min(t.min(), p.min()) < 0 or max(t.max(), p.max()) >= k):
        raise ValueError(f"label indices must lie in 0..{k - 1}")
    r = t.shape[0]
    offsets = (np.arange(r, dtype=np.int64) * k * k)[:, None]
    cm = np.bincount((offsets + t * k + p).ravel(), minlength=r * k * k).reshape(r, k, k)
    tp = np.diagonal(cm, axis1=1, axis2=2).astype(float)
    support_plus_predicted = cm.sum(axis=2) + cm.sum(axis=1)
    f1 = _safe_div(2 * tp, support_plus_predicted)
    present = support_plus_predicted > 0
    return (f1 * present).sum(axis=1) / present.sum(axis=1)


# --------------------------------------------------------------------------------------------
# Calibration
# --------------------------------------------------------------------------------------------


def _bins(t: np.ndarray, p: np.ndarray, n_bins: int) -> list[dict]:
    confidence = p.max(axis=1)
    correct = p.argmax(axis=1) == t
    # i / n_bins is the correctly rounded edge, so a confidence written as 0.3 sits exactly on it
    edges = np.arange(n_bins + 1) / n_bins
    # Right-closed bins (edges[b], edges[b+1]]; confidence 0 goes to the first bin.
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    out = []
    for b in range(n_bins):
        mask = which == b
        count = int(mask.sum())
        out.append(
            {
                "lower": float(edges[b]),
                "upper": float(edges[b + 1]),
                "count": count,
                "accuracy": float(correct[mask].mean()) if count else None,
                "confidence": float(confidence[mask].mean()) if count else None,
            }
        )
    return out


def _ece(bins: list[dict], n: int) -> float:
    return float(sum(b["count"] / n * abs(b["accuracy"] - b["confidence"]) for b in bins if b["count"]))


def reliability_bins(
    y_true: Sequence[str], probs: Sequence[Sequence[float]], labels: Sequence[str], n_bins: int = 10
) -> list[dict]:
    """The ``n_bins`` equal-width confidence bins behind the ECE, for a reliability diagram.

    One dict per bin, lowest first: ``{"lower", "upper", "count", "accuracy", "confidence"}``
    (bin (lower, upper]; accuracy of the argmax prediction and mean top-class probability of the
    samples in it, both None for an empty bin).
    """
    labels = _check_labels(labels)
    y_true, _ = _check_pair(y_true, y_true, labels)
    n_bins = _check_n_bins(n_bins)
    p = _check_probs(probs, len(y_true), labels)
    return _bins(_indices(y_true, labels), p, n_bins)


def expected_calibration_error(
    y_true: Sequence[str], probs: Sequence[Sequence[float]], labels: Sequence[str], n_bins: int = 10
) -> float:
    """ECE alone (the ``ece`` of :func:`head_metrics`)."""
    bins = reliability_bins(y_true, probs, labels, n_bins)
    return _ece(bins, sum(b["count"] for b in bins))
