"""Offline routing evaluation: a classifier and its baselines on the same labelled rows.

Writes ``metrics.json`` (the model; shape fixed for analysts' tooling), ``baselines.json`` and
``report.md`` with the headline table.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from data.label_schema import HEADS, LABELS
from evaluation.metrics import binary_recall_precision, head_metrics
from model.prediction import Classifier

HEADLINE_COLUMNS = (
    ("category macro-F1", lambda m: m["category"]["macro_f1"]),
    ("D recall", lambda m: m["routing"]["D_recall"]),
    ("D precision", lambda m: m["routing"]["D_precision"]),
    ("severity F1 (low/med/high)", lambda m: m["routing"]["severity_f1_low_medium_high"]),
    ("critical recall", lambda m: m["routing"]["critical_recall"]),
    ("sentiment macro-F1", lambda m: m["sentiment"]["macro_f1"]),
    ("category ECE", lambda m: m["category"]["ece"]),
)


def evaluate_classifier(classifier: Classifier, ds) -> dict:
    """Metrics per head over the rows that carry that head's label (``ds`` from ``load_labelled``)."""
    predictions = classifier.predict(list(ds["text"]))
    result: dict = {"n": len(ds), "model_version": classifier.version}
    for head in HEADS:
        keep = [i for i, label in enumerate(ds[head]) if label is not None]
        codes = LABELS.codes(head)
        result[head] = head_metrics(
            [ds[head][i] for i in keep],
            [predictions[i].head(head).label for i in keep],
            codes,
            probs=[[predictions[i].head(head).scores[c] for c in codes] for i in keep],
        )
    result["routing"] = _routing_figures(ds, predictions, result)
    return result


def _routing_figures(ds, predictions, result: dict) -> dict:
    figures = {}
    for head, positive, name in (("category", "D", "D"), ("severity", "critical", "critical")):
        keep = [i for i, label in enumerate(ds[head]) if label is not None]
        recall, precision, support = binary_recall_precision(
            [ds[head][i] for i in keep], [predictions[i].head(head).label for i in keep], positive
        )
        figures.update({f"{name}_recall": recall, f"{name}_precision": precision, f"{name}_support": support})
    per_label = result["severity"]["per_label"]
    figures["severity_f1_low_medium_high"] = float(np.mean([per_label[k]["f1"] for k in ("low", "medium", "high")]))
    return figures


def headline_table(results: dict[str, dict]) -> str:
    header = "| model | " + " | ".join(name for name, _ in HEADLINE_COLUMNS) + " |"
    lines = [header, "|---" * (len(HEADLINE_COLUMNS) + 1) + "|"]
    for name, metrics in results.items():
        cells = []
        for _, getter in HEADLINE_COLUMNS:
            value = getter(metrics)
            cells.append("–" if value is None else f"{value:.3f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_evaluation(
    classifier: Classifier,
    data_paths: Sequence[str | Path],
    out_dir: str | Path,
    train_paths: Sequence[str | Path] = (),
    log: Callable[[str], None] = print,
) -> dict[str, dict]:
    from evaluation.baselines import KeywordBaseline, TfidfLogRegBaseline
    from training.dataset_io import load_labelled, without_texts_of

    ds, report = load_labelled([str(p) for p in data_paths])
    log(f"evaluating on {len(ds)} rows ({report.unusable_skipped} unusable skipped)")
    results = {f"model {classifier.version}": evaluate_classifier(classifier, ds)}
    results["keyword rules"] = evaluate_classifier(KeywordBaseline(), ds)
    if train_paths:
        train_ds, _ = load_labelled([str(p) for p in train_paths])
        train_ds, _ = without_texts_of(train_ds, ds)
        log(f"fitting the TF-IDF baseline on {len(train_ds)} rows")
        results["tf-idf + logreg"] = evaluate_classifier(TfidfLogRegBaseline().fit(train_ds), ds)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model_metrics = next(iter(results.values()))
    (out / "metrics.json").write_text(json.dumps(model_metrics, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    baselines = {k: v for k, v in results.items() if not k.startswith("model ")}
    (out / "baselines.json").write_text(json.dumps(baselines, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    table = headline_table(results)
    (out / "report.md").write_text(_report(data_paths, len(ds), results, table), encoding="utf-8")
    log(table)
    return results


def _report(data_paths, n: int, results: dict[str, dict], table: str) -> str:
    lines = [
        "# Routing evaluation",
        "",
        f"Data: {', '.join(f'`{p}`' for p in data_paths)} ({n} rows).",
        "",
        table,
        "",
    ]
    for name, metrics in results.items():
        lines += [f"## {name}", ""]
        for head in HEADS:
            m = metrics[head]
            lines.append(f"**{head}** — accuracy {m['accuracy']:.3f}, macro-F1 {m['macro_f1']:.3f}, weighted-F1 {m['weighted_f1']:.3f}")
            lines.append("")
            lines.append("| label | precision | recall | F1 | support |")
            lines.append("|---|---|---|---|---|")
            for label, row in m["per_label"].items():
                lines.append(f"| {label} | {row['precision']:.3f} | {row['recall']:.3f} | {row['f1']:.3f} | {row['support']} |")
            lines.append("")
    return "\n".join(lines) + "\n"
