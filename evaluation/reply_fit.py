"""Sub-case and reply figures of an evaluation, when the rows carry them.

* Rows with a ``subcase`` (a code of ``data/subcases.toml`` within the row's ``category``): the sub-case head's
  accuracy and macro-F1, given the labelled category and end to end (the model's own category, the sub-case the
  reply uses, :meth:`SubcaseTaxonomy.choose`).
* Rows with a ``reply_verdict`` (good / partial / wrong, from ``data/reply_judging/``): the judged reply fit per
  category and sub-case. A verdict belongs to the reply that was judged (``judged_reply``, given the row's
  ``received_at``); the service is run again on the row and only rows where it still gives that same reply count
  as "current" — a changed template or model makes the rest stale, and the report says how many.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence

import numpy as np

from helpdesk_triage.policy.subcases import SubcaseTaxonomy

VERDICTS = ("good", "partial", "wrong")
SUBCASE_COLUMNS = ("subcase",)
REPLY_COLUMNS = ("reply_verdict", "judged_reply", "received_at")


def _macro_f1(gold: Sequence[str], predicted: Sequence[str]) -> tuple[float, dict[str, dict]]:
    per = {}
    for label in sorted(set(gold)):
        tp = sum(g == label and p == label for g, p in zip(gold, predicted))
        fp = sum(g != label and p == label for g, p in zip(gold, predicted))
        fn = sum(g == label and p != label for g, p in zip(gold, predicted))
        f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
        per[label] = {"f1": round(f1, 4), "support": tp + fn}
    return (float(np.mean([v["f1"] for v in per.values()])) if per else float("nan")), per


def subcase_report(predictions: Sequence, texts: Sequence[str], categories: Sequence[str | None],
                   subcases: Sequence[str | None], min_probability: float) -> dict | None:
    """The sub-case head's figures on rows with a labelled sub-case; None when no row has one or the model has no
    sub-case output. ``predictions``: the model's TextPrediction per row."""
    taxonomy = SubcaseTaxonomy.load()
    rows = [i for i, (c, s) in enumerate(zip(categories, subcases)) if c and s and f"{c}.{s}" in taxonomy.keys]
    if not rows or all(predictions[i].subcases is None for i in rows):
        return None
    gold = [f"{categories[i]}.{subcases[i]}" for i in rows]
    given = [taxonomy.choose(categories[i], texts[i], predictions[i].subcases, 0.0).key for i in rows]
    served = [taxonomy.choose(predictions[i].category.label, texts[i], predictions[i].subcases, min_probability).key
              for i in rows]
    f1_given, per_given = _macro_f1(gold, given)
    f1_served, _ = _macro_f1(gold, served)
    return {
        "n": len(rows),
        "subcases_present": len(set(gold)),
        "given_category": {"accuracy": round(float(np.mean([g == p for g, p in zip(gold, given)])), 4),
                           "macro_f1": round(f1_given, 4), "per_subcase": per_given},
        "end_to_end": {"accuracy": round(float(np.mean([g == p for g, p in zip(gold, served)])), 4),
                       "macro_f1": round(f1_served, 4), "min_probability": min_probability},
    }


def wilson(k: int, n: int, z: float = 1.96, digits: int | None = 4) -> tuple[float, float]:
    """The Wilson interval of k successes in n, rounded to ``digits`` places (None: unrounded); NaN when n = 0."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    if digits is None:
        return (centre - half, centre + half)
    return (round(centre - half, digits), round(centre + half, digits))


def _fit(verdicts: Sequence[str]) -> dict:
    counts = Counter(verdicts)
    n = len(verdicts)
    return {"n": n, **{v: counts.get(v, 0) for v in VERDICTS},
            "good_share": round(counts.get("good", 0) / n, 4) if n else None,
            "wrong_share": round(counts.get("wrong", 0) / n, 4) if n else None,
            "good_interval": wilson(counts.get("good", 0), n)}


def reply_fit_report(rows: Sequence[dict], current_replies: Sequence[str | None]) -> dict | None:
    """Judged reply fit. ``rows``: per row ``reply_verdict``, ``judged_reply``, ``category``, ``subcase``;
    ``current_replies``: what the service answers for the row now (None when it was not run)."""
    judged = [(r, now) for r, now in zip(rows, current_replies) if r.get("reply_verdict") in VERDICTS]
    if not judged:
        return None
    current = [(r, now) for r, now in judged if r.get("judged_reply") and now == r["judged_reply"]]
    by_category: dict[str, list[str]] = defaultdict(list)
    by_subcase: dict[str, list[str]] = defaultdict(list)
    for r, _ in judged:
        by_category[r.get("category") or "?"].append(r["reply_verdict"])
        if r.get("subcase"):
            by_subcase[f"{r.get('category')}.{r['subcase']}"].append(r["reply_verdict"])
    return {
        "overall": _fit([r["reply_verdict"] for r, _ in judged]),
        "current": _fit([r["reply_verdict"] for r, _ in current]),
        "stale": len(judged) - len(current),
        "by_category": {c: _fit(v) for c, v in sorted(by_category.items())},
        "by_subcase": {s: _fit(v) for s, v in sorted(by_subcase.items())},
    }
