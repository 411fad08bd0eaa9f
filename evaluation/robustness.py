"""Robustness suite: perturb labelled rows the way real customers write (``training.perturbations``) and measure
how far the labels move.

**The report** (:func:`robustness_report`) predicts the originals and every perturbed variant (each
distinct normalised text once) and gives per perturbation, over the rows it changed (``n``):

* ``flip_rate[head]``: the share of those rows whose predicted label for ``head`` differs from the
  prediction on the original text (labels of the rows are not needed for this);
* ``macro_f1[head]``: macro-F1 on the original texts and on the perturbed ones, over the same rows
  (those that carry a label for the head), and ``drop_points`` = 100 × (original − perturbed),
  positive when the perturbation hurts;
* ``meets_targets``: every flip rate ≤ :data:`MAX_FLIP_RATE` and the category drop ≤
  :data:`MAX_CATEGORY_F1_DROP_POINTS`;

plus ``overall`` (all perturbed variants pooled: each (perturbation, row) pair is one sample; the
targets are checked on these pooled figures), ``overall_changed_inputs`` (the same without the
variants that normalise to the original text, i.e. what the model itself has to absorb) and ``worst``
(the perturbation with the highest flip rate, and the one with the largest category F1 drop).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from helpdesk_triage.evaluation.metrics import label_indices, macro_f1_rows
from helpdesk_triage.evaluation.predictions import predict_rows
from helpdesk_triage.policy.labels import HEADS, LABELS
from helpdesk_triage.policy.pii_masking import mask_pii
from helpdesk_triage.policy.prediction import Classifier
from helpdesk_triage.policy.text_normalization import normalize_text
from helpdesk_triage.training.perturbations import DEFAULT_SEED, PERTURBATIONS, PerturbationTables, load_tables, perturb

__all__ = ["MAX_CATEGORY_F1_DROP_POINTS", "MAX_FLIP_RATE", "robustness_report", "robustness_table"]

MAX_FLIP_RATE = 0.05  # per head
MAX_CATEGORY_F1_DROP_POINTS = 3.0


# --------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------


def _macro_f1(true: Sequence[str], pred: Sequence[str], labels: Sequence[str]) -> float:
    t = label_indices(true, labels, "true")
    p = label_indices(pred, labels, "predicted")
    return float(macro_f1_rows(t[None, :], p[None, :], len(labels))[0])


def _figures(
    pairs: Sequence[tuple[int, int]],
    original_key: Sequence[int],
    predicted: Mapping[str, Sequence[str]],
    truth: Mapping[str, Sequence[str | None]],
) -> dict:
    """Flip rates and macro-F1 for (row, variant) pairs; ``predicted[head][k]`` is the label of unique text k."""
    n = len(pairs)
    same = sum(original_key[i] == k for i, k in pairs)
    flips = {h: sum(predicted[h][original_key[i]] != predicted[h][k] for i, k in pairs) for h in HEADS}
    flip_rate = {h: (flips[h] / n if n else None) for h in HEADS}
    macro_f1: dict[str, dict | None] = {}
    for head in HEADS:
        labelled = [(truth[head][i], predicted[head][original_key[i]], predicted[head][k])
                    for i, k in pairs if truth[head][i] is not None]
        if not labelled:
            macro_f1[head] = None
            continue
        true, before, after = zip(*labelled)
        codes = LABELS.codes(head)
        f_before, f_after = _macro_f1(true, before, codes), _macro_f1(true, after, codes)
        macro_f1[head] = {"n": len(labelled), "original": f_before, "perturbed": f_after,
                          "drop_points": 100.0 * (f_before - f_after)}
    rates = [r for r in flip_rate.values() if r is not None]
    category = macro_f1["category"]
    drop = category["drop_points"] if category else None
    return {
        "n": n,
        "n_same_after_normalisation": same,
        "flips": flips,
        "flip_rate": flip_rate,
        "max_flip_rate": max(rates) if rates else None,
        "macro_f1": macro_f1,
        "category_f1_drop_points": drop,
        "meets_targets": (None if n == 0 else
                          max(rates) <= MAX_FLIP_RATE and (drop is None or drop <= MAX_CATEGORY_F1_DROP_POINTS)),
    }


def robustness_report(
    classifier: Classifier,
    rows: Iterable[Mapping],
    *,
    kinds: Sequence[str] | None = None,
    seed: int = DEFAULT_SEED,
    tables: PerturbationTables | None = None,
    progress: bool | None = None,
) -> dict:
    """Predict ``rows`` (mappings with ``text`` and any of ``category`` / ``severity`` /
    ``sentiment``; a missing or None label leaves the row out of that head's F1 only) and every
    perturbed variant; see the module docstring for what the returned dict holds.

    Texts that normalise to the same string are predicted once (the classifier normalises its
    input, so their predictions are the same by construction).
    """
    rows = list(rows)
    if not rows:
        raise ValueError("no rows to perturb")
    kinds = list(PERTURBATIONS) if kinds is None else list(kinds)
    unknown = [k for k in kinds if k not in PERTURBATIONS]
    if unknown:
        raise KeyError(f"unknown perturbations {unknown}; known: {', '.join(PERTURBATIONS)}")
    tables = tables or load_tables()
    texts = [row["text"] for row in rows]
    truth = {h: [row.get(h) for row in rows] for h in HEADS}

    unique: dict[str, int] = {}
    to_predict: list[str] = []

    def key(text: str) -> int:
        norm = normalize_text(text, max_chars=None).text
        if norm not in unique:
            unique[norm] = len(to_predict)
            to_predict.append(text)
        return unique[norm]

    original_key = [key(t) for t in texts]
    variants: dict[str, list[tuple[int, int]]] = {}
    examples: dict[str, dict | None] = {}
    for kind in kinds:
        pairs, example = [], None
        for i, (text, row) in enumerate(zip(texts, rows)):
            changed = perturb(text, kind, seed=seed, labels={h: row.get(h) for h in HEADS}, tables=tables)
            if changed == text:
                continue
            pairs.append((i, key(changed)))
            # shown in the report: a row without PII whose change is visible (not only in whitespace)
            if example is None and mask_pii(text) == text and "".join(changed.split()) != "".join(text.split()):
                example = {"row": i, "original": text, "perturbed": changed}
        variants[kind], examples[kind] = pairs, example

    no_truth = {h: [None] * len(to_predict) for h in HEADS}
    predictions = predict_rows(classifier, to_predict, no_truth, progress=progress,
                               desc=f"robustness ({classifier.version})")
    predicted = {h: predictions.head(h).pred for h in HEADS}

    per_kind = {}
    for kind in kinds:
        figures = _figures(variants[kind], original_key, predicted, truth)
        per_kind[kind] = {
            "description": PERTURBATIONS[kind].description,
            "normaliser_undoes": PERTURBATIONS[kind].normaliser_undoes,
            "n_not_applicable": len(rows) - figures["n"],
            **figures,
            "example": examples[kind],
        }
    pooled = [pair for kind in kinds for pair in variants[kind]]
    overall = _figures(pooled, original_key, predicted, truth)
    # the same without the variants the normaliser maps back to the original (what the model itself faces)
    overall_changed = _figures([(i, k) for i, k in pooled if original_key[i] != k], original_key, predicted, truth)

    measured = [(kind, r) for kind, r in per_kind.items() if r["n"]]
    worst: dict = {"by_flip_rate": None, "by_category_f1_drop": None}
    if measured:
        kind, r = max(measured, key=lambda kr: kr[1]["max_flip_rate"])
        head = max(HEADS, key=lambda h: r["flip_rate"][h])
        worst["by_flip_rate"] = {"perturbation": kind, "head": head, "flip_rate": r["flip_rate"][head]}
        dropped = [(k, r) for k, r in measured if r["category_f1_drop_points"] is not None]
        if dropped:
            kind, r = max(dropped, key=lambda kr: kr[1]["category_f1_drop_points"])
            worst["by_category_f1_drop"] = {"perturbation": kind, "drop_points": r["category_f1_drop_points"]}
    return {
        "model_version": classifier.version,
        "seed": seed,
        "n_rows": len(rows),
        "texts_predicted": len(to_predict),
        "tables": tables.source,
        "targets": {"max_flip_rate": MAX_FLIP_RATE, "max_category_f1_drop_points": MAX_CATEGORY_F1_DROP_POINTS},
        "perturbations": per_kind,
        "overall": overall,
        "overall_changed_inputs": overall_changed,
        "worst": worst,
    }


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"


def _points(value: float | None) -> str:
    return "–" if value is None else f"{value:+.1f}"


def robustness_rows(report: Mapping) -> list[list[str]]:
    """One table row per perturbation plus the pooled row: name, rows changed, same after
    normalisation, flip rate per head, category macro-F1 original / perturbed, drop, within targets."""
    out = []
    entries = list(report["perturbations"].items()) + [("all (pooled)", report["overall"])]
    if "overall_changed_inputs" in report:
        entries.append(("all, inputs changed after normalisation", report["overall_changed_inputs"]))
    for name, r in entries:
        f1 = r["macro_f1"]["category"]
        out.append([
            name, str(r["n"]), str(r["n_same_after_normalisation"]),
            *[_pct(r["flip_rate"][h]) for h in HEADS],
            "–" if f1 is None else f"{f1['original']:.3f}",
            "–" if f1 is None else f"{f1['perturbed']:.3f}",
            _points(r["category_f1_drop_points"]),
            {True: "yes", False: "no", None: "–"}[r["meets_targets"]],
        ])
    return out


ROBUSTNESS_COLUMNS = (
    "perturbation", "rows changed", "same after normalisation", "category flips", "severity flips",
    "sentiment flips", "category macro-F1 original", "category macro-F1 perturbed", "F1 drop (points)",
    "within targets",
)


def robustness_table(report: Mapping) -> str:
    """The per-perturbation table as Markdown, for the console."""
    lines = ["| " + " | ".join(ROBUSTNESS_COLUMNS) + " |", "|---" * len(ROBUSTNESS_COLUMNS) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in robustness_rows(report)]
    return "\n".join(lines)
