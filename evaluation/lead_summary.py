"""The support lead's first screen of the evaluation report: plain sentences and the errors grouped by kind.

From the predictions and figures the report already has (``evaluation.evaluate`` passes them in its context):

* **verdict**: which model to use. With ``--compare``: the better one on category macro-F1 when the paired tests
  find a real difference, else the one whose errors cost fewer SLA hours (saying that the macro-F1 difference cannot
  be told apart from chance). Without: whether the model beats the baselines.
* **what it gets wrong most**: the largest cells of the category confusion matrix and the missed emergencies, as
  counts with label names and queues ("3 of 25 complaints (D 投诉不满) went to the orders queue (B 订单问题)").
* **what the errors cost in SLA hours**: per wrong row, how much later the deadlines of the predicted labels fall
  than those of the true labels (:func:`extra_wait`, the SLA policy's deadline hours), summed per kind of error.
  Over-escalations cost agent time, which the SLA policy does not state: they are counted, not priced.
* **what to do**: the review threshold (the report's coverage target) with what it catches, and the labels to add
  examples of (lowest recall; training rows per label when ``--train`` is given).
* **errors by kind** (:func:`error_kind`): missed emergencies, missed complaints, over-escalations, the confused
  category pairs of ``data/report_terms.toml`` (A↔B), other category errors; each with its count, its SLA hours and
  up to :data:`EXAMPLES_PER_KIND` PII-masked, shortened example messages.

Label names and queues come from ``data/labels.toml``, deadlines from ``data/sla_policy.toml``, the report's nouns
and term explanations from ``data/report_terms.toml``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from helpdesk_triage.evaluation.predictions import Predictions
from helpdesk_triage.evaluation.routing_impact import ESCALATION_LABELS
from helpdesk_triage.policy.data_files import data_file, read_toml
from helpdesk_triage.policy.labels import LABELS
from helpdesk_triage.policy.pii_masking import mask_pii
from helpdesk_triage.policy.sla import SlaPolicy, SlaRule

__all__ = [
    "EXAMPLES_PER_KIND",
    "ErrorGroup",
    "ExtraWait",
    "LeadSummary",
    "ReportWords",
    "error_kind",
    "extra_wait",
    "label_name",
    "lead_summary",
]

DEFAULT_WORDS_PATH = data_file("report_terms.toml")
EXAMPLES_PER_KIND = 3
EXAMPLE_CHARS = 80
TOP_CONFUSIONS = 3

COMPLAINT = ESCALATION_LABELS["category"]
EMERGENCY = ESCALATION_LABELS["severity"]

MISSED_EMERGENCY = "missed_emergency"
MISSED_COMPLAINT = "missed_complaint"
OVER_ESCALATION = "over_escalation"
CONFUSED_PAIR = "confused_pair"
OTHER_CATEGORY = "other_category"
KIND_ORDER = (MISSED_EMERGENCY, MISSED_COMPLAINT, OVER_ESCALATION, CONFUSED_PAIR, OTHER_CATEGORY)
# An over-escalation is handled at once by a senior agent: its looser escalation deadline is not a customer waiting,
# and the agent time it costs is not in the SLA policy. So it is counted, not priced in SLA hours.
PRICED_KINDS = frozenset(KIND_ORDER) - {OVER_ESCALATION}
ESCALATION_KINDS = frozenset({MISSED_EMERGENCY, MISSED_COMPLAINT})


# --------------------------------------------------------------------------------------------
# Words: label names, nouns, terms
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Term:
    name: str
    pattern: re.Pattern
    means: str


@dataclass(frozen=True)
class ReportWords:
    """``data/report_terms.toml``: the terms explained beside their first use, the nouns for a label's messages, the
    category pairs counted as one kind of error."""

    terms: tuple[Term, ...]
    nouns: Mapping[str, Mapping[str, str]]
    confused_pairs: tuple[frozenset[str], ...]

    @classmethod
    def load(cls, path: str | Path | None = None) -> "ReportWords":
        raw = read_toml(Path(path) if path is not None else DEFAULT_WORDS_PATH, "report terms")
        terms = tuple(Term(t["name"], re.compile(t["pattern"], re.IGNORECASE), t["means"]) for t in raw.get("term", []))
        pairs = tuple(frozenset(pair) for pair in raw.get("error_groups", {}).get("confused_pairs", []))
        for pair in pairs:
            if len(pair) != 2 or not all(LABELS.is_valid("category", c) for c in pair):
                raise ValueError(f"report terms: confused_pairs entry {sorted(pair)} is not two category codes")
        return cls(terms, raw.get("nouns", {}), pairs)

    def noun(self, head: str, code: str) -> str:
        """How the report names the messages of a label: "complaints"; "<code> messages" when the file has none."""
        return self.nouns.get(head, {}).get(code, f"{code} messages")


def label_name(head: str, code: str) -> str:
    """The code with its Chinese name from ``data/labels.toml``: "D 投诉不满"."""
    return f"{code} {LABELS.get(head, code).name_zh}"


def _queue(category: str) -> str:
    """The routing queue of a category, as words: "after sales"."""
    return (LABELS.get("category", category).queue or category).replace("_", " ")


def _counted(count: int, total: int, noun: str) -> str:
    return f"{count} of {total} {noun}"


def hours_text(hours: float) -> str:
    """"45 min", "11 h", "1.5 h"."""
    if 0 < hours < 1:
        return f"{round(hours * 60)} min"
    return f"{hours:.0f} h" if float(hours).is_integer() else f"{hours:.1f} h"


def _share(part: int, whole: int) -> str:
    return f"{part / whole:.0%}" if whole else "–"


# --------------------------------------------------------------------------------------------
# SLA hours
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExtraWait:
    """How much later a customer's deadlines fall because of wrong labels, in the SLA policy's deadline hours."""

    first_response_hours: float = 0.0
    resolution_hours: float = 0.0

    def __add__(self, other: "ExtraWait") -> "ExtraWait":
        return ExtraWait(self.first_response_hours + other.first_response_hours,
                         self.resolution_hours + other.resolution_hours)

    @property
    def total_hours(self) -> float:
        return self.first_response_hours + self.resolution_hours


def _sla_rule(sla: SlaPolicy, category: str | None, severity: str | None) -> SlaRule | None:
    """The rule that sets a ticket's deadlines; None when the labels do not tell (no category, not an emergency)."""
    if severity == sla.emergency_severity:
        return sla.emergency_rule
    return sla.category_rules.get(category) if category is not None else None


def _hours_later(predicted: timedelta, true: timedelta) -> float:
    return max(0.0, (predicted - true).total_seconds() / 3600)


def extra_wait(sla: SlaPolicy, true: tuple[str | None, str | None], predicted: tuple[str, str]) -> ExtraWait:
    """Deadline hours of the predicted (category, severity) minus those of the true one, for the first response and
    the resolution, each at least 0 (an earlier deadline costs the customer no waiting). A row whose true labels do
    not fix a rule (no category label and not an emergency) costs nothing."""
    true_rule, predicted_rule = _sla_rule(sla, *true), _sla_rule(sla, *predicted)
    if true_rule is None or predicted_rule is None:
        return ExtraWait()
    return ExtraWait(_hours_later(predicted_rule.first_response, true_rule.first_response),
                     _hours_later(predicted_rule.resolution, true_rule.resolution))


def _row_labels(predictions: Predictions, i: int) -> tuple[tuple[str | None, str | None], tuple[str, str]]:
    category, severity = predictions.head("category"), predictions.head("severity")
    return (category.true[i], severity.true[i]), (category.pred[i], severity.pred[i])


def total_extra_wait(predictions: Predictions, sla: SlaPolicy, words: ReportWords,
                     rows: Sequence[int] | None = None, kinds: frozenset[str] | None = None) -> ExtraWait:
    """The extra waiting of ``rows`` (all by default) whose kind of error is one of ``kinds`` (default
    :data:`PRICED_KINDS`)."""
    rows = range(predictions.n) if rows is None else rows
    kinds = PRICED_KINDS if kinds is None else kinds
    priced = (i for i in rows if error_kind(*_row_labels(predictions, i), words.confused_pairs) in kinds)
    return sum((extra_wait(sla, *_row_labels(predictions, i)) for i in priced), ExtraWait())


@dataclass(frozen=True)
class MissedEscalations:
    """True complaints sent to another queue and true emergencies rated lower: how many, how late."""

    count: int
    wait: ExtraWait


def missed_escalations(predictions: Predictions, sla: SlaPolicy, words: ReportWords) -> MissedEscalations:
    rows = [i for i in range(predictions.n)
            if error_kind(*_row_labels(predictions, i), words.confused_pairs) in ESCALATION_KINDS]
    return MissedEscalations(len(rows), total_extra_wait(predictions, sla, words, rows, ESCALATION_KINDS))


def _clock_note(sla: SlaPolicy) -> str:
    """Which deadlines count working hours and which clock hours, as the policy states them."""
    open_, close = (f"{m // 60:02d}:{m % 60:02d}" for m in (sla.calendar.open_minute, sla.calendar.close_minute))
    working = [code for code, rule in sla.category_rules.items() if rule.clock == "business"]
    clock = [code for code, rule in sla.category_rules.items() if rule.resolution_clock == "calendar"]
    note = f"Hours are the SLA policy's deadline hours: first responses of {'/'.join(working)} count working hours"
    note += f" ({open_}–{close})"
    clock_part = f"resolutions of {'/'.join(clock)} and " if clock else ""
    return note + f"; {clock_part}everything for {label_name('severity', EMERGENCY)} count clock hours."


# --------------------------------------------------------------------------------------------
# Errors by kind
# --------------------------------------------------------------------------------------------


def error_kind(true: tuple[str | None, str | None], predicted: tuple[str, str],
               confused_pairs: Sequence[frozenset[str]] = ()) -> str | None:
    """The one kind a row's error counts as, the costliest first; None for a right row or a severity error among
    the non-emergency levels (those count in the severity figure only)."""
    (true_category, true_severity), (pred_category, pred_severity) = true, predicted
    if true_severity == EMERGENCY and pred_severity != EMERGENCY:
        return MISSED_EMERGENCY
    if true_category == COMPLAINT and pred_category != COMPLAINT:
        return MISSED_COMPLAINT
    if (true_category is not None and true_category != COMPLAINT and pred_category == COMPLAINT) or (
            true_severity is not None and true_severity != EMERGENCY and pred_severity == EMERGENCY):
        return OVER_ESCALATION
    if true_category is None or true_category == pred_category:
        return None
    if frozenset((true_category, pred_category)) in confused_pairs:
        return CONFUSED_PAIR
    return OTHER_CATEGORY


@dataclass(frozen=True)
class Example:
    text: str  # PII-masked, shortened
    true: str
    predicted: str
    confidence: float
    where: str


@dataclass(frozen=True)
class ErrorGroup:
    kind: str
    title: str
    means: str
    rows: tuple[int, ...]
    wait: ExtraWait | None  # None: not priced in SLA hours (see PRICED_KINDS)
    examples: tuple[Example, ...] = field(default_factory=tuple)

    @property
    def count(self) -> int:
        return len(self.rows)


def _kind_titles(words: ReportWords, sla: SlaPolicy) -> dict[str, tuple[str, str]]:
    complaint, emergency = label_name("category", COMPLAINT), label_name("severity", EMERGENCY)
    response = hours_text(sla.emergency_rule.first_response.total_seconds() / 3600)
    pairs = ", ".join("↔".join(label_name("category", c) for c in sorted(pair)) for pair in words.confused_pairs)
    return {
        MISSED_EMERGENCY: (f"Missed {words.noun('severity', EMERGENCY)}",
                           f"true {emergency}, given a lower severity: no emergency response within {response}"),
        MISSED_COMPLAINT: (f"Missed {words.noun('category', COMPLAINT)}",
                           f"true {complaint}, sent to another queue: not escalated"),
        OVER_ESCALATION: ("Over-escalations",
                          f"{complaint} or {emergency} given to a message that is neither: a senior agent's time"),
        CONFUSED_PAIR: (f"{pairs} mix-ups" if pairs else "Confused pairs", "one of the two taken for the other"),
        OTHER_CATEGORY: ("Other wrong queues", "any other wrong category"),
    }


def _example_labels(predictions: Predictions, i: int, kind: str) -> tuple[str, str, float]:
    """True and predicted labels shown beside an example, and the model's confidence in the wrong one."""
    head = "severity" if kind == MISSED_EMERGENCY else "category"
    if kind == OVER_ESCALATION and predictions.head("category").pred[i] != COMPLAINT:
        head = "severity"
    out = predictions.head(head)
    true = label_name(head, out.true[i]) if out.true[i] is not None else "?"
    return true, label_name(head, out.pred[i]), float(out.confidence[i])


def _shorten(text: str) -> str:
    text = " ".join(mask_pii(text).split())
    return text if len(text) <= EXAMPLE_CHARS else text[:EXAMPLE_CHARS] + "…"


def error_groups(predictions: Predictions, texts: Sequence[str], sla: SlaPolicy, words: ReportWords,
                 where: Sequence[str] | None = None) -> list[ErrorGroup]:
    """The kinds that occur, costliest first; examples are the most confident errors of each kind."""
    by_kind: dict[str, list[int]] = {kind: [] for kind in KIND_ORDER}
    for i in range(predictions.n):
        kind = error_kind(*_row_labels(predictions, i), words.confused_pairs)
        if kind is not None:
            by_kind[kind].append(i)
    titles = _kind_titles(words, sla)
    groups = []
    for kind, rows in by_kind.items():
        if not rows:
            continue
        examples = []
        for i in rows:
            true, predicted, confidence = _example_labels(predictions, i, kind)
            examples.append(Example(_shorten(texts[i]), true, predicted, confidence, where[i] if where else str(i + 1)))
        examples.sort(key=lambda e: -e.confidence)  # stable: file order among equals
        title, means = titles[kind]
        wait = total_extra_wait(predictions, sla, words, rows) if kind in PRICED_KINDS else None
        groups.append(ErrorGroup(kind, title, means, tuple(rows), wait, tuple(examples[:EXAMPLES_PER_KIND])))
    return groups


# --------------------------------------------------------------------------------------------
# Sentences
# --------------------------------------------------------------------------------------------


def _model_name(results: Mapping[str, dict], name: str) -> str:
    return results[name].get("model_version", name) if name.startswith(("model ", "compare ")) else name


def _baselines(ctx: Mapping) -> list[str]:
    results = ctx["results"]
    return [n for n in results if n not in (ctx["main"], ctx.get("compare")) and "automation" not in results[n]]


def _policy_name(ctx: Mapping) -> str | None:
    return next((n for n, m in ctx["results"].items() if "automation" in m), None)


def _macro_f1(results: Mapping[str, dict], name: str) -> float | None:
    category = results[name]["category"]
    return None if category is None else category["macro_f1"]


def _missed_text(missed: MissedEscalations) -> str:
    return f"{missed.count} missed, {hours_text(missed.wait.total_hours)} late"


def _verdict_with_compare(ctx: Mapping, missed: Mapping[str, MissedEscalations]) -> list[str]:
    results, main, other = ctx["results"], ctx["main"], ctx["compare"]
    test = ctx["comparison"]["heads"]["category"]
    a, b = _model_name(results, main), _model_name(results, other)
    if a == b:  # the same version on both sides: the table rows' names tell them apart
        a, b = main, other
    interval = (f"95% bootstrap interval of the difference {test['ci_low']:+.3f} to {test['ci_high']:+.3f},"
                f" permutation p = {test['permutation_p']:.3f}")
    f1 = f"{a} {test['macro_f1_a']:.3f}, {b} {test['macro_f1_b']:.3f}"
    escalations = f"{a}: {_missed_text(missed[main])}; {b}: {_missed_text(missed[other])}"
    rank = {name: missed[name].count for name in (main, other)}  # hours late only describe: a few hours are noise
    if test["significant"]:
        better = a if test["difference"] > 0 else b
        return [f"Use {better}.",
                f"Better on category macro-F1 ({f1}), a real difference: {interval}.",
                f"Missed complaints and emergencies: {escalations}."]
    undecided = (f"On category macro-F1 ({f1}) the two cannot be told apart on these {test['n']} messages: the"
                 f" difference could be chance ({interval}).")
    if rank[main] == rank[other]:
        return ["Either model will do.", undecided, f"They miss as many complaints and emergencies ({escalations})."]
    safer = a if min((main, other), key=rank.__getitem__) == main else b
    return [f"Use {safer}.", undecided,
            f"It misses fewer complaints and emergencies, the errors that cost most ({escalations}); on so few the"
            " difference may be chance too."]


def _verdict_against_baselines(ctx: Mapping, missed: Mapping[str, MissedEscalations]) -> list[str]:
    results, main = ctx["results"], ctx["main"]
    name, own = _model_name(results, main), _macro_f1(results, main)
    baselines = sorted((b for b in _baselines(ctx) if _macro_f1(results, b) is not None),
                       key=lambda b: -_macro_f1(results, b))
    if own is None or not baselines:
        return [f"Model {name}: no category labels or no baseline to compare it with."]
    stronger = [b for b in baselines if _macro_f1(results, b) >= own]
    safer = [b for b in baselines if missed[b].wait.total_hours < missed[main].wait.total_hours]
    scores = "; ".join(f"{b} {_macro_f1(results, b):.3f}" for b in baselines)
    on_f1 = (f"{', '.join(stronger)} scores at least as well on category macro-F1" if stronger
             else "Better than the baselines on category macro-F1")
    late = "; ".join(f"{b}: {_missed_text(missed[b])}" for b in baselines)
    on_missed = (f"{', '.join(safer)} leaves missed complaints and emergencies less late" if safer
                 else "Its missed complaints and emergencies are the least late")
    return [f"Check the baselines before using {name}." if stronger or safer else f"Use {name}.",
            f"{on_f1}: {own:.3f} (baselines: {scores}).",
            f"{on_missed}: {_missed_text(missed[main])} (baselines: {late})."]


def _policy_sentence(ctx: Mapping, missed: Mapping[str, MissedEscalations]) -> str | None:
    policy = _policy_name(ctx)
    if policy is None:
        return None
    main = ctx["main"]
    over = {name: ctx["results"][name]["routing_impact"]["category"]["over_triage"] for name in (main, policy)}
    late = {name: hours_text(missed[name].wait.total_hours) for name in (main, policy)}
    return (f"The service answers with the model's decision policy (row \"{policy}\"): it misses"
            f" {missed[policy].count} of the complaints and emergencies ({late[policy]} late) instead of {missed[main].count}"
            f" ({late[main]} late), and escalates {over[policy]} messages that are not complaints instead of"
            f" {over[main]}.")


def _verdict(ctx: Mapping, missed: Mapping[str, MissedEscalations]) -> list[str]:
    """The recommendation first, then its reasons."""
    sentences = (_verdict_with_compare(ctx, missed) if ctx.get("comparison")
                 else _verdict_against_baselines(ctx, missed))
    policy = _policy_sentence(ctx, missed)
    return sentences + ([policy] if policy else [])


def _confusion_sentence(words: ReportWords, head: str, true: str, pred: str, count: int, total: int) -> str:
    who = f"{_counted(count, total, words.noun(head, true))} ({label_name(head, true)})"
    if head == "category":
        return f"{who} went to the {_queue(pred)} queue ({label_name(head, pred)})."
    verb = "was" if count == 1 else "were"
    return f"{who} {verb} rated {label_name(head, pred)}."


def _wrong_most(predictions: Predictions, words: ReportWords) -> list[str]:
    sentences = []
    for head, only_true in (("category", None), ("severity", EMERGENCY)):
        out = predictions.head(head)
        totals = Counter(t for t in out.true if t is not None)
        cells = Counter((t, p) for t, p in zip(out.true, out.pred) if t is not None and t != p
                        and (only_true is None or t == only_true))
        ranked = sorted(cells.items(), key=lambda cell: (-cell[1], cell[0][0] != COMPLAINT, cell[0]))
        for (true, pred), count in ranked[:TOP_CONFUSIONS]:
            sentences.append(_confusion_sentence(words, head, true, pred, count, totals[true]))
    return sentences


def _cost(groups: Sequence[ErrorGroup], sla: SlaPolicy) -> list[str]:
    priced = [g for g in groups if g.wait is not None]
    total = sum((g.wait for g in priced), ExtraWait())
    missed = [g for g in priced if g.kind in (MISSED_COMPLAINT, MISSED_EMERGENCY)]
    lines = [f"Wrong labels make customers wait {hours_text(total.first_response_hours)} longer for first responses"
             f" and {hours_text(total.resolution_hours)} longer for resolutions, summed over the wrongly routed"
             " messages (the SLA deadline of the labels given minus that of the true labels)."]
    if missed:
        escalations = sum((g.wait for g in missed), ExtraWait())
        count = sum(g.count for g in missed)
        lines[0] += (f" The {count} missed escalations account for {hours_text(escalations.first_response_hours)}"
                     f" and {hours_text(escalations.resolution_hours)} of that.")
    over = next((g for g in groups if g.kind == OVER_ESCALATION), None)
    if over:
        lines.append(f"Over-escalations ({over.count}) cost a senior agent's time rather than customer waiting; the"
                     " SLA policy states no hours for that, so they are counted, not priced.")
    lines.append(_clock_note(sla))
    return lines


def _review_threshold(predictions: Predictions, results: Mapping[str, dict], main: str) -> str | None:
    coverage = results[main]["coverage"]
    if coverage is None:
        return None
    threshold = coverage["at_target"]["threshold"]
    category = predictions.head("category")
    labelled = [i for i in range(predictions.n) if category.true[i] is not None]
    reviewed = [i for i in labelled if category.confidence[i] < threshold]
    wrong = [i for i in labelled if category.pred[i] != category.true[i]]
    caught = [i for i in wrong if i in set(reviewed)]
    missed_complaints = [i for i in wrong if category.true[i] == COMPLAINT]
    caught_complaints = [i for i in missed_complaints if i in set(reviewed)]
    sentence = (f"Send messages whose category confidence is below {threshold:.2f} to a person:"
                f" {_share(len(reviewed), len(labelled))} of messages ({len(reviewed)} of {len(labelled)}),"
                f" catching {len(caught)} of {len(wrong)} category errors")
    if missed_complaints:
        sentence += f" and {len(caught_complaints)} of {len(missed_complaints)} missed complaints"
    return sentence + f"; the other {coverage['at_target']['target']:.0%} are routed automatically."


def _weakest_label(results: Mapping[str, dict], main: str, head: str) -> tuple[str, float] | None:
    figures = results[main][head]
    if figures is None:
        return None
    present = [(code, r["recall"]) for code, r in figures["per_label"].items() if r["support"] > 0]
    return min(present, key=lambda cr: cr[1]) if present else None


def _labels_to_add(ctx: Mapping) -> str | None:
    """The label of lowest recall per routing head, with its training rows; and the label of fewest training rows
    when that is another one."""
    results, main, train = ctx["results"], ctx["main"], ctx.get("train_labels")
    parts = []
    for head in ("category", "severity"):
        weakest = _weakest_label(results, main, head)
        if weakest is None:
            continue
        code, recall = weakest
        rows = Counter(t for t in train[head] if t is not None) if train else None
        in_training = f"; {rows[code]} of {sum(rows.values())} training rows" if rows else ""
        parts.append(f"{label_name(head, code)} (lowest {head} recall, {recall:.2f}{in_training})")
        fewest = min(LABELS.codes(head), key=lambda c: rows[c]) if rows else code
        if fewest != code:
            parts.append(f"{label_name(head, fewest)} (fewest {head} training rows, {rows[fewest]})")
    return "Label more messages of " + ", ".join(parts) + "." if parts else None


def _to_do(ctx: Mapping, predictions: Predictions) -> list[str]:
    items = [_review_threshold(predictions, ctx["results"], ctx["main"]), _labels_to_add(ctx)]
    return [item for item in items if item]


# --------------------------------------------------------------------------------------------
# The summary
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LeadSummary:
    verdict: tuple[str, ...]  # the recommendation, then its reasons
    wrong_most: tuple[str, ...]
    cost: tuple[str, ...]
    to_do: tuple[str, ...]
    groups: tuple[ErrorGroup, ...]


def lead_summary(ctx: Mapping, sla: SlaPolicy | None = None, words: ReportWords | None = None) -> LeadSummary:
    """The lead's summary from the report context: ``results``, ``main``, ``compare``, ``comparison``,
    ``predictions`` (name → :class:`Predictions`), ``texts`` (raw, unmasked), optional ``where`` and
    ``train_labels`` (head → the --train rows' labels)."""
    sla = sla or SlaPolicy.load()
    words = words or ReportWords.load()
    ctx = {**ctx, "words": words}
    predictions = ctx["predictions"][ctx["main"]]
    missed = {name: missed_escalations(p, sla, words) for name, p in ctx["predictions"].items()}
    groups = error_groups(predictions, ctx["texts"], sla, words, ctx.get("where"))
    return LeadSummary(
        verdict=tuple(_verdict(ctx, missed)),
        wrong_most=tuple(_wrong_most(predictions, words)),
        cost=tuple(_cost(groups, sla)),
        to_do=tuple(_to_do(ctx, predictions)),
        groups=tuple(groups),
    )
