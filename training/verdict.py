"""The end of every training run: is the new model better than the model in service and than TF-IDF?

The new model, the model in service and a TF-IDF + logistic-regression baseline fitted on the run's own
training rows are evaluated on the run's evaluation rows. Per figure (macro-F1 of each head, recall of the
complaints D) a paired bootstrap and, for macro-F1, the permutation test say better, not distinguishable
or worse. The run is **worse** — a loud warning and a non-zero exit unless ``--accept-worse`` — when:

* against the model in service: a figure is significantly worse, or category macro-F1 is more than
  :data:`SERVICE_TOLERANCE` below it (a drop a small evaluation set cannot yet call significant);
* against the baseline: a figure is significantly worse, or category macro-F1 or D recall is below it at
  all (a fine-tuned transformer that does not clear the floor of its own rows is not worth serving).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import numpy as np

from helpdesk_triage.evaluation.metrics import FIGURE_LABELS, figure_name
from helpdesk_triage.evaluation.predictions import Predictions, predict_rows
from helpdesk_triage.evaluation.significance import ALPHA, bootstrap_indices, compare_head
from helpdesk_triage.model.trained_texts import trained_fingerprints, trained_on
from helpdesk_triage.policy.labels import HEADS, LABELS

SERVICE_TOLERANCE = 0.03
# Fewer evaluation rows new to both models than this: no verdict (it would be a coin toss), and the run says so.
MIN_FAIR_ROWS = 20
# Fewer rows of a label than this: its recall is shown, never called better or worse (a bootstrap of 3 rows is no test).
MIN_RECALL_ROWS = 10
ESCALATION = ("category", "D")
N_RESAMPLES = 1000
SEED = 0


@dataclass
class FigureComparison:
    figure: str  # "category macro-F1", "D recall" …
    new: float
    other: float
    low: float  # 95% paired-bootstrap interval of new − other
    high: float
    significant: bool
    n: int

    @property
    def difference(self) -> float:
        return self.new - self.other

    @property
    def word(self) -> str:
        if not self.significant:
            return "not distinguishable"
        return "better" if self.difference > 0 else "worse"

    def text(self) -> str:
        return (f"{self.figure} {self.new:.3f} vs {self.other:.3f} ({self.difference:+.3f}, 95% CI {self.low:+.3f} to "
                f"{self.high:+.3f}, {self.n} rows): {self.word}")


@dataclass
class Verdict:
    new_version: str
    n_rows: int
    against: dict[str, list[FigureComparison]]  # "the model in service" / "the TF-IDF baseline" -> figures
    names: dict[str, str]  # the same keys -> version
    worse_than: list[str] = field(default_factory=list)  # keys the new model is worse than, with the reason
    notes: list[str] = field(default_factory=list)
    unmeasured: str | None = None  # why nothing could be compared

    @property
    def worse(self) -> bool:
        return bool(self.worse_than)

    def sentence(self) -> str:
        if self.unmeasured:
            return f"Verdict: not measured for {self.new_version}: {self.unmeasured}."
        parts = []
        for key, figures in self.against.items():
            words = {f.word for f in figures}
            overall = "worse" if any(key in w for w in self.worse_than) else (
                "better" if words == {"better"} or ("better" in words and "worse" not in words) else "not distinguishable")
            parts.append(f"{overall} than {key} ({self.names[key]})" if overall != "not distinguishable"
                         else f"not distinguishable from {key} ({self.names[key]})")
        return f"Verdict: the new model {self.new_version} is " + " and ".join(parts) + f", on {self.n_rows} evaluation rows."

    def lines(self) -> list[str]:
        out = [self.sentence()]
        for key, figures in self.against.items():
            out.append(f"  against {key} ({self.names[key]}):")
            out += [f"    {f.text()}" for f in figures]
        out += [f"  WORSE: {reason}" for reason in self.worse_than]
        out += [f"  note: {note}" for note in self.notes]
        return out

    def as_dict(self) -> dict:
        return {"sentence": self.sentence(), "new_version": self.new_version, "n_rows": self.n_rows, "names": self.names,
                "unmeasured": self.unmeasured,
                "against": {k: [{**asdict(f), "verdict": f.word} for f in v] for k, v in self.against.items()},
                "worse_than": self.worse_than, "notes": self.notes}


def recall_comparison(truth: Sequence[str | None], pred_new: Sequence[str], pred_other: Sequence[str], label: str,
                      figure: str) -> FigureComparison | None:
    """Recall of ``label``, new vs other, with a paired-bootstrap interval over the rows truly ``label``."""
    rows = [i for i, t in enumerate(truth) if t == label]
    if not rows:
        return None
    hit_new = np.array([pred_new[i] == label for i in rows], dtype=float)
    hit_other = np.array([pred_other[i] == label for i in rows], dtype=float)
    diffs = np.concatenate([hit_new[idx].mean(axis=-1) - hit_other[idx].mean(axis=-1)
                            for idx in bootstrap_indices(len(rows), N_RESAMPLES, SEED)])
    low, high = (float(x) for x in np.percentile(diffs, [2.5, 97.5]))
    return FigureComparison(figure, float(hit_new.mean()), float(hit_other.mean()), low, high,
                            bool(len(rows) >= MIN_RECALL_ROWS and (low > 0 or high < 0)), len(rows))


def compare(new: Predictions, other: Predictions) -> list[FigureComparison]:
    figures = []
    for head in HEADS:
        a, b = new.head(head), other.head(head)
        if a.labelled.size == 0:
            continue
        result = compare_head(a.true_labelled(), a.pred_labelled(), b.pred_labelled(), a.labels,
                              n_resamples=N_RESAMPLES, seed=SEED, alpha=ALPHA, averaged=FIGURE_LABELS.get(head))
        figures.append(FigureComparison(figure_name(head), result["macro_f1_a"], result["macro_f1_b"], result["ci_low"],
                                        result["ci_high"], result["significant"], result["n"]))
    head, label = ESCALATION
    recall = recall_comparison(new.head(head).true, new.head(head).pred, other.head(head).pred, label,
                               f"{label} ({LABELS.get(head, label).name_zh}) recall")
    if recall is not None:
        figures.append(recall)
    return figures


def worse_reasons(key: str, figures: list[FigureComparison], tolerance: float | None) -> list[str]:
    """Why the new model counts as worse than ``key`` (see the module doc); ``tolerance`` None = the baseline rule."""
    reasons = [f"{f.figure} significantly worse than {key} ({f.new:.3f} vs {f.other:.3f})" for f in figures if f.word == "worse"]
    for f in figures:
        if f.word == "worse":
            continue
        if tolerance is not None and f.figure == "category macro-F1" and f.difference < -tolerance:
            reasons.append(f"category macro-F1 {f.new:.3f} is more than {tolerance} below {key}'s {f.other:.3f}")
        if tolerance is None and (f.figure == "category macro-F1" or f.figure.endswith(" recall")) and f.difference < 0:
            reasons.append(f"{f.figure} {f.new:.3f} is below {key}'s {f.other:.3f}")
    return reasons


def run_verdict(new_model, service_model, service_folder, baseline_rows, eval_ds,
                say: Callable[[str], None] = print, reference: Callable[[], tuple] | None = None) -> Verdict:
    """``eval_ds``: the run's evaluation rows (``load_labelled``); ``baseline_rows``: the rows the baseline is fitted on
    (the run's own training rows, without the replay). Only rows that neither the new model (with what it inherited
    from the model it continued from) nor the model in service trained on are fair: the others are left out, and with
    fewer than :data:`MIN_FAIR_ROWS` left, the rows that measured the model in service (``reference()``: a dataset
    or None, and their name) are used instead when they can be read; else nothing is compared and the verdict says
    why."""
    texts = list(eval_ds["raw_text"])
    fair = _fair_rows(texts, service_folder, new_model.folder)
    verdict = Verdict(new_model.version, len(fair), {}, {})
    if len(fair) < len(texts):
        verdict.notes.append(f"{len(texts) - len(fair)} of the {len(texts)} evaluation rows were left out: "
                             + _seen_text(texts, service_folder, new_model.folder) + " (figures on them would flatter it)")
    if len(fair) < MIN_FAIR_ROWS and reference is not None:
        rows, name = reference()
        if rows is not None:
            kept = _fair_rows(list(rows["raw_text"]), service_folder, new_model.folder)
            if len(kept) >= MIN_FAIR_ROWS:
                verdict.notes.append(f"compared on {len(kept)} rows that measured the model in service instead ({name}; "
                                     f"{len(rows) - len(kept)} left out as trained on)")
                eval_ds, fair, verdict.n_rows = rows, kept, len(kept)
    if len(fair) < MIN_FAIR_ROWS:
        verdict.unmeasured = (f"only {len(fair)} of the {len(texts)} evaluation rows are new to both models, too few to "
                              f"compare them (at least {MIN_FAIR_ROWS}); give --eval rows neither was trained on, or "
                              "--replay-corpus to compare on the rows that measured the model in service, or compare "
                              "afterwards with triage evaluate --data FRESH_ROWS --model NEW --compare default")
        say(f"verdict: {verdict.unmeasured}")
        return verdict
    rows = eval_ds.select(fair)
    _compare_all(verdict, new_model, service_model, baseline_rows, rows, say)
    if len(fair) < 500:
        verdict.notes.append(f"{len(fair)} rows can only tell large differences apart; give --eval rows of your own "
                             "(a few hundred per label) for a sharper verdict")
    return verdict


def _seen_by(texts: list[str], service_folder, new_folder) -> dict[str, list[bool]]:
    return {name: trained_on(texts, trained_fingerprints(folder))
            for name, folder in (("the model in service", service_folder), ("the new model", new_folder))}


def _fair_rows(texts: list[str], service_folder, new_folder) -> list[int]:
    seen_by = _seen_by(texts, service_folder, new_folder)
    return [i for i in range(len(texts)) if not any(flags[i] for flags in seen_by.values())]


def _seen_text(texts: list[str], service_folder, new_folder) -> str:
    return ", ".join(f"{name} was trained on {sum(flags)}" for name, flags in _seen_by(texts, service_folder, new_folder).items()
                     if any(flags))


def _compare_all(verdict: Verdict, new_model, service_model, baseline_rows, rows, say: Callable[[str], None]) -> None:
    from helpdesk_triage.evaluation.baselines import TfidfLogRegBaseline

    texts = list(rows["raw_text"])
    truth = {head: list(rows[head]) for head in HEADS}
    say(f"verdict: evaluating the new model, the model in service and TF-IDF on {len(texts)} evaluation rows")
    new = predict_rows(new_model, texts, truth, progress=False)
    service_key, baseline_key = "the model in service", "the TF-IDF baseline"
    verdict.against[service_key] = compare(new, predict_rows(service_model, texts, truth, progress=False))
    verdict.names[service_key] = service_model.version
    verdict.worse_than += worse_reasons(service_key, verdict.against[service_key], SERVICE_TOLERANCE)
    try:
        baseline_model = TfidfLogRegBaseline().fit(baseline_rows)
    except ValueError as error:  # e.g. the team's rows label only some heads
        verdict.notes.append(f"no TF-IDF baseline: {error}")
        return
    verdict.against[baseline_key] = compare(new, predict_rows(baseline_model, texts, truth, progress=False))
    verdict.names[baseline_key] = f"{baseline_model.version}, fitted on this run's {len(baseline_rows)} training rows"
    verdict.worse_than += worse_reasons(baseline_key, verdict.against[baseline_key], None)
