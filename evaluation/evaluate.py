"""Offline routing evaluation: a classifier, its baselines and optionally a second model on the same rows.

``run_evaluation`` (behind ``triage evaluate``) writes to the output folder:

* ``metrics.json`` — the model: ``n``, ``model_version``, per head ``accuracy``, ``macro_f1``,
  ``weighted_f1``, ``labels``, ``per_label``, ``confusion``, ``ece``, ``ece_if_calibrated``, ``kappa``, ``reliability``;
  ``routing`` (D / critical recall and precision), ``routing_impact`` (under/over-triage, cost),
  ``coverage`` (review threshold vs accuracy), ``slices`` (with ``--slice-by``), ``data``,
  ``robustness`` (with ``robustness=True``: flip rates and F1 drops under perturbations); ``subcases`` (rows with a
  ``subcase``: the sub-case head's accuracy and macro-F1) and ``reply_fit`` (rows with a ``reply_verdict``: the
  judged reply fit per category and sub-case), see ``evaluation.reply_fit``;
* ``baselines.json`` — the same for the keyword rules and (with training data) TF-IDF + LogReg;
* ``comparison.json`` — with a second model: its metrics and the paired statistics per head;
* ``report.md`` + ``plots/*.png`` and ``report.html`` (the same report, images embedded).

Each step lives in its own module: ``predictions`` (run a classifier in chunks), ``metrics``,
``routing_impact``, ``significance``, ``slices``, ``worst_errors``, ``plots``, ``report``.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from helpdesk_triage.policy.labels import HEADS
from helpdesk_triage.evaluation import plots
from helpdesk_triage.evaluation.metrics import FIGURE_LABELS, binary_recall_precision, head_metrics, reliability_bins
from helpdesk_triage.evaluation.reply_fit import REPLY_COLUMNS, SUBCASE_COLUMNS, reply_fit_report, subcase_report
from helpdesk_triage.evaluation.policy_decisions import automation_figures, decided_predictions
from helpdesk_triage.evaluation.predictions import Predictions, predict_rows
from helpdesk_triage.evaluation.report import HEADLINE_COLUMNS, Paragraph, build_blocks, fmt, headline_rows, to_html, to_markdown
from helpdesk_triage.evaluation.routing_impact import COVERAGE_TARGET, RoutingCosts, coverage_report, routing_impact
from helpdesk_triage.evaluation.significance import ALPHA, DEFAULT_RESAMPLES, DEFAULT_SEED, compare_head, verdict
from helpdesk_triage.evaluation.trained_rows import TrainedRows, TrainedRowsError, find_trained_rows
from helpdesk_triage.evaluation.slices import SMALL_SLICE, check_slice_column, check_slice_name, slice_metrics
from helpdesk_triage.evaluation.worst_errors import worst_errors
from helpdesk_triage.policy.decision_policy import DECIDED_HEADS, DecisionPolicy
from helpdesk_triage.policy.prediction import Classifier

__all__ = [
    "HEADLINE_COLUMNS",
    "OUTPUT_FILES",
    "evaluate_classifier",
    "headline_table",
    "metrics_from_predictions",
    "routing_table",
    "run_evaluation",
]

OUTPUT_FILES = ("metrics.json", "baselines.json", "comparison.json", "report.md", "report.html")


# --------------------------------------------------------------------------------------------
# Metrics of one classifier
# --------------------------------------------------------------------------------------------


class TrainOverlapError(ValueError):
    """The ``--train`` rows are all among the evaluated rows."""


def _truth(ds) -> dict[str, list[str | None]]:
    return {head: list(ds[head]) for head in HEADS}


def metrics_from_predictions(
    predictions: Predictions,
    costs: RoutingCosts,
    slice_values: Sequence[str | None] | None = None,
    slice_column: str | None = None,
) -> dict:
    """Every figure of one classifier (see the module docstring for the keys)."""
    result: dict = {"n": predictions.n, "model_version": predictions.version}
    for head in HEADS:
        out = predictions.head(head)
        keep = out.labelled
        if keep.size == 0:
            result[head] = None  # no row carries this head's label
            continue
        true = out.true_labelled()
        probs = out.probs[keep]
        result[head] = head_metrics(true, out.pred_labelled(), out.labels, probs=probs)
        result[head]["reliability"] = reliability_bins(true, probs, out.labels)
    result["routing"] = _routing_figures(predictions, result)
    truth = {head: predictions.head(head).true for head in HEADS}
    predicted = {head: predictions.head(head).pred for head in HEADS}
    result["routing_impact"] = routing_impact(truth, predicted, costs)
    category = predictions.head("category")
    result["coverage"] = (
        coverage_report(category.confidence[category.labelled], category.correct(), COVERAGE_TARGET)
        if category.labelled.size
        else None
    )
    if slice_values is not None:
        result["slices"] = {"column": slice_column, "min_n": SMALL_SLICE, "rows": slice_metrics(slice_values, predictions)}
    return result


def _routing_figures(predictions: Predictions, result: dict) -> dict:
    figures: dict = {}
    for head, positive in (("category", "D"), ("severity", "critical")):
        out = predictions.head(head)
        if out.labelled.size == 0:
            figures.update({f"{positive}_recall": None, f"{positive}_precision": None, f"{positive}_support": 0})
            continue
        recall, precision, support = binary_recall_precision(out.true_labelled(), out.pred_labelled(), positive)
        figures.update({f"{positive}_recall": recall, f"{positive}_precision": precision, f"{positive}_support": support})
    severity = result.get("severity")
    figures["severity_f1_low_medium_high"] = (
        float(np.mean([severity["per_label"][k]["f1"] for k in FIGURE_LABELS["severity"]])) if severity else None
    )
    return figures


def evaluate_classifier(classifier: Classifier, ds, costs: RoutingCosts | None = None, progress: bool | None = None) -> dict:
    """Metrics per head over the rows that carry that head's label (``ds`` from ``load_labelled``)."""
    predictions = predict_rows(classifier, list(ds["text"]), _truth(ds), progress=progress)
    return metrics_from_predictions(predictions, costs or RoutingCosts.load())


# --------------------------------------------------------------------------------------------
# Tables for the console
# --------------------------------------------------------------------------------------------


def headline_table(results: dict[str, dict]) -> str:
    header = "| model | " + " | ".join(name for name, _ in HEADLINE_COLUMNS) + " |"
    lines = [header, "|---" * (len(HEADLINE_COLUMNS) + 1) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in headline_rows(results)]
    return "\n".join(lines)


def automation_line(name: str, figures: dict) -> str:
    parts = [f"{head}: {fmt(f['auto_share'])} auto-routed at accuracy {fmt(f['auto_accuracy'])}"
             for head, f in figures.items() if head in DECIDED_HEADS]
    return f"{name} ({figures['policy_file']}): " + "; ".join(parts)


def routing_table(results: dict[str, dict]) -> str:
    lines = [
        "| model | D under-triage | D over-triage | critical under-triage | critical over-triage | cost / row"
        f" | threshold for {COVERAGE_TARGET:.0%} coverage | accuracy there |",
        "|---" * 8 + "|",
    ]
    for name, m in results.items():
        r, cov = m["routing_impact"], m["coverage"]
        at = cov["at_target"] if cov else None
        lines.append(
            f"| {name} | {r['category']['under_triage']} of {r['category']['true_escalations']}"
            f" | {r['category']['over_triage']} | {r['severity']['under_triage']} of {r['severity']['true_escalations']}"
            f" | {r['severity']['over_triage']} | {r['cost_per_row']:.3f}"
            + (f" | {at['threshold']:.3f} | {at['accuracy']:.3f} |" if at else " | – | – |")
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# The whole run
# --------------------------------------------------------------------------------------------


def run_evaluation(
    classifier: Classifier,
    data_paths: Sequence[str | Path],
    out_dir: str | Path,
    train_paths: Sequence[str | Path] = (),
    log: Callable[[str], None] = print,
    *,
    compare: Classifier | None = None,
    slice_by: str | None = None,
    costs_path: str | Path | None = None,
    n_bootstrap: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    progress: bool | None = None,
    robustness: bool = False,
    decision_policy: DecisionPolicy | None = None,
    allow_trained_rows: bool = False,
) -> dict[str, dict]:
    """Evaluate ``classifier`` (and ``compare``, and the baselines) on ``data_paths``; write the report.

    With ``robustness`` the model is also run on perturbed copies of the rows (``training.perturbations``, ``evaluation.robustness``:
    greetings, emoji, typos, pinyin, full-width, Traditional characters …): the figures go to
    ``metrics.json`` under ``"robustness"`` and to a section of the report.

    Raises ``DataValidationError`` (bad data files), ``CostMatrixError`` (bad ``costs_path``), ``SliceColumnError``
    (no row has the ``slice_by`` field), ``TrainOverlapError`` (every training row is evaluated) or ``TrainedRowsError``
    (the model or ``compare`` trained on every evaluated row) before anything is written.
    Rows the model or ``compare`` trained on (``evaluation.trained_rows``) are left out, with a notice on ``log`` and at
    the top of the report; ``allow_trained_rows`` keeps them, with the same notice.
    With ``decision_policy`` the model's decided labels (``policy.decision_policy``: expected cost, the rules' evidence,
    thresholds, automation levels) are scored as a second row beside its most probable labels, with the share of rows
    routed automatically and their accuracy.

    Returns ``{name: metrics}``: the model first, then its policy decisions, the comparison model, the baselines.
    """
    from helpdesk_triage.evaluation.baselines import KeywordBaseline, TfidfLogRegBaseline
    from helpdesk_triage.training.dataset_io import load_labelled, without_texts_of

    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, int) or n_bootstrap < 1:
        raise ValueError(f"n_bootstrap must be a positive integer, got {n_bootstrap!r}")
    costs = RoutingCosts.load(costs_path)
    if slice_by is not None:
        check_slice_name(slice_by)
    data_files = [str(p) for p in data_paths]
    extra = [c for c in (*SUBCASE_COLUMNS, *REPLY_COLUMNS) if c != slice_by]
    ds, load_report = load_labelled(data_files, keep_columns=([slice_by] if slice_by else []) + extra)
    ds, trained_rows = _without_trained_rows(ds, [m for m in (classifier, compare) if m is not None], allow_trained_rows,
                                             data_files)
    if trained_rows.notice():
        log(f"NOTE: {trained_rows.notice()}")
    slice_values = list(ds[slice_by]) if slice_by else None
    if slice_by:
        check_slice_column(slice_by, slice_values, data_files)
    train_ds = None
    train_overlap = 0
    if train_paths:
        train_ds, _ = load_labelled([str(p) for p in train_paths])
        train_ds, train_overlap = without_texts_of(train_ds, ds)
        if len(train_ds) == 0:
            raise TrainOverlapError(f"--train {', '.join(map(str, train_paths))}: every row's text is among the evaluated "
                                    "rows (--data), so the TF-IDF baseline has nothing to learn from; give training "
                                    "rows that are not evaluated")
        if train_overlap:
            log(f"note: {train_overlap} --train rows left out of the TF-IDF baseline: their text is among the evaluated rows")
    log(f"evaluating on {len(ds)} rows ({load_report.unusable_skipped} unusable skipped)")

    texts, truth = list(ds["text"]), _truth(ds)
    main = f"model {classifier.version}"
    runs: dict[str, Predictions] = {main: predict_rows(classifier, texts, truth, progress=progress, desc=main)}
    automation = {}
    if decision_policy is not None:
        policy_name = f"policy {classifier.version}"
        runs[policy_name], auto = decided_predictions(runs[main], texts, decision_policy)
        automation[policy_name] = {head: automation_figures(runs[policy_name].head(head), routed)
                                   for head, routed in auto.items()}
        automation[policy_name]["policy_file"] = decision_policy.source
    compare_name = None
    if compare is not None:
        compare_name = f"compare {compare.version}"
        runs[compare_name] = predict_rows(compare, texts, truth, progress=progress, desc=compare_name)
    runs["keyword rules"] = predict_rows(KeywordBaseline(), texts, truth, progress=False)
    if train_ds is not None:
        log(f"fitting the TF-IDF baseline on {len(train_ds)} rows")
        runs["tf-idf + logreg"] = predict_rows(TfidfLogRegBaseline().fit(train_ds), texts, truth, progress=False)
    results = {name: metrics_from_predictions(p, costs, slice_values, slice_by) for name, p in runs.items()}
    results[main]["trained_rows"] = {"found": trained_rows.count, "kept": trained_rows.kept, "seen_by": trained_rows.seen_by,
                                     "unknown": trained_rows.unknown, "notice": trained_rows.notice()}
    for name, figures in automation.items():
        results[name]["automation"] = figures
    robustness_result = None
    if robustness:
        from helpdesk_triage.evaluation.robustness import robustness_report

        log("robustness: predicting perturbed copies of the rows")
        rows = [{"text": raw, **{head: truth[head][i] for head in HEADS}} for i, raw in enumerate(ds["raw_text"])]
        robustness_result = robustness_report(classifier, rows, progress=progress)
        results[main]["robustness"] = robustness_result
    subcases, replies = _subcase_and_reply_figures(classifier, ds, decision_policy, log)
    if subcases is not None:
        results[main]["subcases"] = subcases
    if replies is not None:
        results[main]["reply_fit"] = replies
    data_info = {"files": data_files, "unusable_skipped": load_report.unusable_skipped,
                 "duplicates_dropped": load_report.duplicates_dropped}
    for metrics in results.values():
        metrics["data"] = data_info

    comparison = None
    if compare_name is not None:
        comparison = _compare(runs[main], runs[compare_name], main, compare_name, n_bootstrap, seed)
        comparison["compare_metrics"] = results[compare_name]

    where = [f"{Path(f).name}:{r}" for f, r in zip(ds["source_file"], ds["source_row"])]
    raw_texts = list(ds["raw_text"])
    worst = {head: worst_errors(raw_texts, runs[main], head, where=where) for head in ("category", "severity")}

    images = _plots(main, results)
    ctx = {
        "data_files": data_files,
        "n": len(ds),
        "unusable_skipped": load_report.unusable_skipped,
        "duplicates_dropped": load_report.duplicates_dropped,
        "main": main,
        "compare": compare_name,
        "results": results,
        "train_files": [str(p) for p in train_paths],
        "train_rows": len(train_ds) if train_ds is not None else None,
        "train_overlap": train_overlap,
        "costs": costs,
        "comparison": comparison,
        "slices": results[main].get("slices"),
        "worst_errors": worst,
        "robustness": robustness_result,
        "subcases": subcases,
        "reply_fit": replies,
        # for the support lead's summary (evaluation.lead_summary) and the severity figure's paired comparison
        "predictions": runs,
        "texts": raw_texts,
        "where": where,
        "trained_rows": trained_rows,
        "train_labels": {head: list(train_ds[head]) for head in HEADS} if train_ds is not None else None,
    }
    title, *rest = build_blocks(ctx)
    blocks = [title, *trained_rows_blocks(trained_rows), *rest]  # the notice right under the title
    _write(Path(out_dir), results, main, compare_name, comparison, to_markdown(blocks), to_html(blocks, images), images)

    log(headline_table(results))
    log("")
    log(routing_table(results))
    for name, figures in automation.items():
        log(automation_line(name, figures))
    if robustness_result is not None:
        from helpdesk_triage.evaluation.robustness import robustness_table

        log("")
        log(robustness_table(robustness_result))
    if comparison:
        for sentence in comparison["sentences"]:
            log(sentence)
    log(f"report: {Path(out_dir) / 'report.html'}")
    return results


def trained_rows_blocks(found: TrainedRows) -> list:
    notice = found.notice()
    return [Paragraph(f"⚠ {notice}")] if notice else []


def _without_trained_rows(ds, models, allow: bool, data_files: Sequence[str]):
    found = find_trained_rows(list(ds["raw_text"]), models)
    found.kept = allow
    if not found.count or allow:
        return ds, found
    if found.count == len(ds):
        raise TrainedRowsError(f"--data {', '.join(data_files)}: all {len(ds)} rows were trained on ("
                               + ", ".join(f"{v}: {n}" for v, n in found.seen_by.items() if n)
                               + "); evaluate on rows the model never saw, or give --allow-trained-rows")
    return ds.select([i for i, seen in enumerate(found.flagged) if not seen]), found


def _subcase_and_reply_figures(classifier: Classifier, ds, decision_policy: DecisionPolicy | None,
                               log: Callable[[str], None]) -> tuple[dict | None, dict | None]:
    """The sub-case head's figures (rows with ``subcase``) and the judged reply fit (rows with ``reply_verdict``)."""
    from helpdesk_triage.policy.settings import Settings
    from helpdesk_triage.policy.triage import TriagePolicy, TriageRequest, triage

    labelled = [i for i, v in enumerate(ds["subcase"]) if v]
    judged = [i for i, v in enumerate(ds["reply_verdict"]) if v]
    if not labelled and not judged:
        return None, None
    settings = Settings()
    subcases = None
    if labelled:
        log(f"sub-cases: {len(labelled)} rows carry one")
        predictions = classifier.predict([ds["text"][i] for i in labelled])
        subcases = subcase_report(predictions, [ds["text"][i] for i in labelled],
                                  [ds["category"][i] for i in labelled], [ds["subcase"][i] for i in labelled],
                                  settings.subcase_min_probability)
    replies = None
    if judged:
        log(f"replies: {len(judged)} rows carry a judged reply")
        policy = TriagePolicy.load(settings, model_dir=getattr(classifier, "folder", None))
        if decision_policy is not None:
            policy = replace(policy, decisions=decision_policy)
        rows, current = [], []
        for i in judged:
            rows.append({k: ds[k][i] for k in ("category", "subcase", "reply_verdict", "judged_reply")})
            try:
                request = TriageRequest(text=ds["raw_text"][i], received_at=ds["received_at"][i])
                current.append(triage([request], model=classifier, policy=policy)[0].reply.text)
            except ValueError:
                current.append(None)
        replies = reply_fit_report(rows, current)
    return subcases, replies


def _compare(a: Predictions, b: Predictions, name_a: str, name_b: str, n_resamples: int, seed: int) -> dict:
    heads, sentences = {}, []
    for head in HEADS:
        out_a, out_b = a.head(head), b.head(head)
        keep = out_a.labelled
        if keep.size == 0:
            continue
        result = compare_head(
            out_a.true_labelled(), out_a.pred_labelled(), out_b.pred_labelled(), out_a.labels,
            n_resamples=n_resamples, seed=seed, alpha=ALPHA, averaged=FIGURE_LABELS.get(head),
        )
        heads[head] = result
        sentences.append(verdict(head, result, name_a, name_b))
    return {"model": name_a, "compare": name_b, "heads": heads, "sentences": sentences}


def _plots(main: str, results: dict[str, dict]) -> dict[str, bytes]:
    m = results[main]
    images: dict[str, bytes] = {}
    for head in HEADS:
        h = m[head]
        if h is None:
            continue
        images[f"confusion_{head}.png"] = plots.confusion_png(h["confusion"], h["labels"], f"{main}: {head}")
        images[f"reliability_{head}.png"] = plots.reliability_png(h["reliability"], f"{main}: {head}", h["ece"])
    curves = {name: r["coverage"] for name, r in results.items() if r["coverage"]}
    if main in curves:
        images["coverage.png"] = plots.coverage_png(curves, main)
    return images


def _dump(path: Path, value) -> None:
    path.write_text(json.dumps(value, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def _write(out: Path, results, main, compare_name, comparison, markdown: str, page: str, images: dict[str, bytes]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    plot_dir = out / "plots"
    plot_dir.mkdir(exist_ok=True)
    for old in plot_dir.glob("*.png"):  # a previous run's figures (e.g. a head this data lacks)
        old.unlink()
    for name, data in images.items():
        (plot_dir / name).write_bytes(data)
    policy_names = [k for k, v in results.items() if "automation" in v]
    _dump(out / "metrics.json", results[main])
    if policy_names:
        _dump(out / "policy_metrics.json", results[policy_names[0]])
    elif (out / "policy_metrics.json").exists():
        (out / "policy_metrics.json").unlink()
    _dump(out / "baselines.json", {k: v for k, v in results.items() if k not in (main, compare_name, *policy_names)})
    if comparison is not None:
        _dump(out / "comparison.json", comparison)
    elif (out / "comparison.json").exists():
        (out / "comparison.json").unlink()  # from a previous run with --compare: it would mislead
    (out / "report.md").write_text(markdown, encoding="utf-8")
    (out / "report.html").write_text(page, encoding="utf-8")
