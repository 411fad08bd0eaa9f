"""Is model A better than model B on the same rows? Paired statistics on one head's labels.

* **Paired bootstrap CI** of the macro-F1 difference A − B: draw ``n_resamples`` samples of the rows
  with replacement (the same rows for both models: that is the pairing), compute macro-F1 of each
  model on each sample, and take the percentiles (2.5, 97.5 for 95%; numpy's linear interpolation)
  of the differences. Fixed seed: the same inputs give the same interval.
* **Paired approximate-randomisation (permutation) test** on the macro-F1 difference (Noreen 1989;
  the usual test for F1 in NLP, e.g. Yeh 2000): under the null hypothesis the two models are
  exchangeable, so each row's pair of predictions is swapped with probability ½;
  p = (1 + #{|d*| ≥ |d|}) / (1 + R) over R random swaps (two-sided, never 0).
* **McNemar's exact test** on per-row correctness: b = rows A gets right and B wrong, c = the
  reverse; under the null each discordant row is a fair coin, so
  p = min(1, 2 · P(Binomial(b + c, ½) ≤ min(b, c))), and p = 1 when b + c = 0.

Macro-F1 follows :func:`evaluation.metrics.head_metrics` (mean over labels occurring in the truth or
the predictions of the sample in question). With ``averaged`` (a subset of the labels, e.g. severity's
low / medium / high: the one severity figure of every report) the figure is instead the mean F1 of exactly
those labels, an absent one counting 0, as the headline computes it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np

from helpdesk_triage.evaluation.metrics import figure_name, label_indices, macro_f1_rows

__all__ = [
    "ALPHA",
    "DEFAULT_RESAMPLES",
    "DEFAULT_SEED",
    "compare_head",
    "mcnemar_exact",
    "paired_bootstrap",
    "permutation_test",
    "verdict",
]

DEFAULT_RESAMPLES = 1000
DEFAULT_SEED = 0
ALPHA = 0.05
# Elements drawn per chunk of resamples, so that memory stays bounded on large evaluation sets.
_CHUNK_ELEMENTS = 2_000_000
# |d*| >= |d| compared with this slack: the same F1 reached by different float sums must count as equal.
_TIE_EPS = 1e-12


def _prepare(y_true: Sequence[str], pred_a: Sequence[str], pred_b: Sequence[str], labels: Sequence[str]):
    t = label_indices(y_true, labels, "y_true")
    a = label_indices(pred_a, labels, "pred_a")
    b = label_indices(pred_b, labels, "pred_b")
    if not (t.size == a.size == b.size):
        raise ValueError(f"y_true, pred_a and pred_b differ in length: {t.size}, {a.size}, {b.size}")
    if t.size == 0:
        raise ValueError("no samples: y_true is empty")
    return t, a, b, len(labels)


def _check_count(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _chunks(total: int, n: int) -> Iterator[int]:
    step = max(1, _CHUNK_ELEMENTS // max(n, 1))
    for start in range(0, total, step):
        yield min(step, total - start)


def _observed(t: np.ndarray, a: np.ndarray, b: np.ndarray, k: int, figure=macro_f1_rows) -> tuple[float, float]:
    f1 = figure(np.stack([t, t]), np.stack([a, b]), k)
    return float(f1[0]), float(f1[1])


def mean_label_f1_rows(t: np.ndarray, p: np.ndarray, k: int, averaged: Sequence[int]) -> np.ndarray:
    """Per row of the (resamples × rows) label-index arrays: the mean F1 of the labels ``averaged`` (indices; a label
    absent from truth and predictions counts 0)."""
    r = t.shape[0]
    offsets = (np.arange(r, dtype=np.int64) * k * k)[:, None]
    cm = np.bincount((offsets + t * k + p).ravel(), minlength=r * k * k).reshape(r, k, k)
    tp = np.diagonal(cm, axis1=1, axis2=2).astype(float)
    denominator = (cm.sum(axis=2) + cm.sum(axis=1)).astype(float)
    f1 = np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)
    return f1[:, list(averaged)].mean(axis=1)


def _figure(labels: Sequence[str], averaged: Sequence[str] | None):
    """The per-resample figure: macro-F1, or the mean F1 of the ``averaged`` labels."""
    if averaged is None:
        return macro_f1_rows
    unknown = [label for label in averaged if label not in labels]
    if unknown:
        raise ValueError(f"averaged labels {unknown} are not among {list(labels)}")
    idx = [list(labels).index(label) for label in averaged]
    return lambda t, p, k: mean_label_f1_rows(t, p, k, idx)


def bootstrap_indices(n: int, n_resamples: int, seed: int) -> Iterator[np.ndarray]:
    """The resampled row indices, chunk by chunk (each chunk an array of shape (m, n))."""
    rng = np.random.default_rng(seed)
    for m in _chunks(n_resamples, n):
        yield rng.integers(0, n, size=(m, n))


def paired_bootstrap(
    y_true: Sequence[str],
    pred_a: Sequence[str],
    pred_b: Sequence[str],
    labels: Sequence[str],
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    confidence: float = 0.95,
    averaged: Sequence[str] | None = None,
) -> dict:
    """Macro-F1 (or the mean F1 of ``averaged``) of A and B, their difference A − B and its paired-bootstrap CI."""
    t, a, b, k = _prepare(y_true, pred_a, pred_b, labels)
    n_resamples = _check_count("n_resamples", n_resamples)
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    figure = _figure(labels, averaged)
    f1_a, f1_b = _observed(t, a, b, k, figure)
    diffs = []
    for idx in bootstrap_indices(t.size, n_resamples, seed):
        diffs.append(figure(t[idx], a[idx], k) - figure(t[idx], b[idx], k))
    d = np.concatenate(diffs)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(d, [tail, 100 - tail])
    return {
        "macro_f1_a": f1_a,
        "macro_f1_b": f1_b,
        "difference": f1_a - f1_b,
        "ci_low": float(low),
        "ci_high": float(high),
        "confidence": confidence,
        "n_resamples": n_resamples,
        "seed": seed,
    }


def permutation_test(
    y_true: Sequence[str],
    pred_a: Sequence[str],
    pred_b: Sequence[str],
    labels: Sequence[str],
    n_permutations: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    averaged: Sequence[str] | None = None,
) -> dict:
    """Two-sided paired approximate-randomisation test of the macro-F1 (or mean F1 of ``averaged``) difference."""
    t, a, b, k = _prepare(y_true, pred_a, pred_b, labels)
    n_permutations = _check_count("n_permutations", n_permutations)
    figure = _figure(labels, averaged)
    f1_a, f1_b = _observed(t, a, b, k, figure)
    observed = abs(f1_a - f1_b)
    rng = np.random.default_rng(seed)
    at_least = 0
    for m in _chunks(n_permutations, t.size):
        swap = rng.random((m, t.size)) < 0.5
        a_star = np.where(swap, b, a)
        b_star = np.where(swap, a, b)
        tt = np.broadcast_to(t, swap.shape)
        d_star = np.abs(figure(tt, a_star, k) - figure(tt, b_star, k))
        at_least += int(np.sum(d_star >= observed - _TIE_EPS))
    return {
        "difference": f1_a - f1_b,
        "p_value": (1 + at_least) / (1 + n_permutations),
        "n_permutations": n_permutations,
        "seed": seed,
    }


def mcnemar_exact(correct_a: Sequence[bool], correct_b: Sequence[bool]) -> dict:
    """McNemar's exact (binomial) test on paired per-row correctness."""
    ca = np.asarray(correct_a, dtype=bool).reshape(-1)
    cb = np.asarray(correct_b, dtype=bool).reshape(-1)
    if ca.shape != cb.shape:
        raise ValueError(f"correct_a and correct_b differ in length: {ca.size} vs {cb.size}")
    b = int(np.sum(ca & ~cb))
    c = int(np.sum(~ca & cb))
    n = b + c
    if n == 0:
        p = 1.0
    else:
        tail = sum(math.comb(n, i) for i in range(min(b, c) + 1))
        p = min(1.0, 2 * tail / 2**n)  # exact integer arithmetic, one rounding at the end
    return {"a_right_b_wrong": b, "a_wrong_b_right": c, "p_value": float(p)}


def compare_head(
    y_true: Sequence[str],
    pred_a: Sequence[str],
    pred_b: Sequence[str],
    labels: Sequence[str],
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    alpha: float = ALPHA,
    averaged: Sequence[str] | None = None,
) -> dict:
    """Bootstrap CI, permutation test and McNemar for one head (rows with a true label only); the figure is macro-F1,
    or the mean F1 of the ``averaged`` labels (kept in the result as ``averaged``; the keys stay ``macro_f1_a/b``)."""
    boot = paired_bootstrap(y_true, pred_a, pred_b, labels, n_resamples=n_resamples, seed=seed, confidence=1 - alpha,
                            averaged=averaged)
    perm = permutation_test(y_true, pred_a, pred_b, labels, n_permutations=n_resamples, seed=seed, averaged=averaged)
    correct_a = [p == t for p, t in zip(pred_a, y_true)]
    correct_b = [p == t for p, t in zip(pred_b, y_true)]
    mcnemar = mcnemar_exact(correct_a, correct_b)
    return {
        "n": len(y_true),
        "macro_f1_a": boot["macro_f1_a"],
        "macro_f1_b": boot["macro_f1_b"],
        "difference": boot["difference"],
        "ci_low": boot["ci_low"],
        "ci_high": boot["ci_high"],
        "confidence": boot["confidence"],
        "permutation_p": perm["p_value"],
        "accuracy_a": float(np.mean(correct_a)),
        "accuracy_b": float(np.mean(correct_b)),
        "mcnemar_p": mcnemar["p_value"],
        "a_right_b_wrong": mcnemar["a_right_b_wrong"],
        "a_wrong_b_right": mcnemar["a_wrong_b_right"],
        "n_resamples": n_resamples,
        "seed": seed,
        "alpha": alpha,
        "averaged": None if averaged is None else list(averaged),
        # Significant only when both tests say so: a verdict beside an interval that holds 0 would contradict it.
        "significant": bool(perm["p_value"] < alpha and (boot["ci_low"] > 0 or boot["ci_high"] < 0)),
    }


def verdict(head: str, result: dict, name_a: str, name_b: str) -> str:
    """One plain sentence on the macro-F1 difference: significant when the permutation test is under ``alpha`` and the
    bootstrap interval excludes 0."""
    pct = f"{result['alpha'] * 100:g}%"
    # The figure is named first: "severity F1 (low/med/high): …", "category: … (macro-F1 0.78 vs …)".
    head, name = (figure_name(head), "") if result.get("averaged") else (head, "macro-F1 ")
    figures = (
        f"{name}{result['macro_f1_a']:.3f} vs {result['macro_f1_b']:.3f},"
        f" difference {result['difference']:+.3f}"
        f" ({result['confidence'] * 100:g}% CI {result['ci_low']:+.3f} to {result['ci_high']:+.3f}),"
        f" permutation p = {result['permutation_p']:.3f}, McNemar p = {result['mcnemar_p']:.3f}"
    )
    if not result["significant"]:
        return f"{head}: no significant difference at {pct} between {name_a} and {name_b} ({figures})."
    better, worse = (name_a, name_b) if result["difference"] > 0 else (name_b, name_a)
    return f"{head}: {better} is significantly better than {worse} at {pct} ({figures})."
