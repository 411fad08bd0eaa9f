"""The evaluation report: one list of blocks rendered twice, as Markdown and as self-contained HTML.

:func:`build_blocks` turns the evaluation results (see ``evaluation.evaluate``) into headings,
paragraphs, lists, tables and images, the support lead's summary (``evaluation.lead_summary``) first;
:func:`to_markdown` writes them with images referenced as ``plots/<name>.png`` beside the report;
:func:`to_html` writes one file with inline CSS, every image embedded as a ``data:image/png;base64,…``
URI, the page's characters of the shipped Chinese font embedded as an ``@font-face`` (``evaluation.report_font``),
every piece of text HTML-escaped.

A term of ``data/report_terms.toml`` (macro-F1, recall, ECE …) gets its one-line explanation right after the
first block that uses it. Severity has one figure everywhere, :data:`SEVERITY_FIGURE` (the mean F1 of low,
medium and high, as the README's accuracy table and the CI summary name it); critical is reported as its recall.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field


from helpdesk_triage.evaluation.lead_summary import (
    ExtraWait,
    LeadSummary,
    ReportWords,
    hours_text,
    label_name,
    lead_summary,
)
from helpdesk_triage.evaluation.metrics import figure_name
from helpdesk_triage.evaluation.report_font import FONT_FAMILY, font_face_css
from helpdesk_triage.policy.labels import HEADS

__all__ = [
    "HEADLINE_COLUMNS",
    "SEVERITY_FIGURE",
    "Bullets",
    "Heading",
    "Image",
    "Paragraph",
    "Table",
    "Terms",
    "build_blocks",
    "headline_rows",
    "to_html",
    "to_markdown",
]

SEVERITY_FIGURE = figure_name("severity")


def _head_value(head: str, key: str) -> Callable[[dict], float | None]:
    return lambda m: None if m[head] is None else m[head][key]  # None: no row has this head's label


def _routing_value(key: str) -> Callable[[dict], float | None]:
    # D / critical recall is None when no true D / critical row exists (a 0.0 would look like a failure)
    support = {"D_recall": "D_support", "critical_recall": "critical_support"}.get(key)
    return lambda m: None if support and not m["routing"][support] else m["routing"][key]


def severity_figure(m: dict) -> float | None:
    """The one severity figure of a classifier's metrics (None when no row has a severity label)."""
    return m["routing"]["severity_f1_low_medium_high"]


HEADLINE_COLUMNS: tuple[tuple[str, Callable[[dict], float | None]], ...] = (
    ("category macro-F1", _head_value("category", "macro_f1")),
    ("D recall", _routing_value("D_recall")),
    ("D precision", _routing_value("D_precision")),
    (SEVERITY_FIGURE, severity_figure),
    ("critical recall", _routing_value("critical_recall")),
    ("sentiment macro-F1", _head_value("sentiment", "macro_f1")),
    ("category ECE", _head_value("category", "ece")),
)

PLOTS_DIR = "plots"
LEAD_ANCHOR = "lead"


# --------------------------------------------------------------------------------------------
# Blocks
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2
    anchor: str | None = None


@dataclass(frozen=True)
class Paragraph:
    text: str
    note: bool = False  # a caveat, shown muted
    verdict: bool = False  # the lead's verdict, shown prominently


@dataclass(frozen=True)
class Bullets:
    items: Sequence[str]


@dataclass(frozen=True)
class Terms:
    """One-line explanations of the terms a block above uses for the first time: ``(term, meaning)``."""

    entries: Sequence[tuple[str, str]]


@dataclass(frozen=True)
class Table:
    header: Sequence[str]
    rows: Sequence[Sequence[str]]
    flagged: Sequence[bool] = field(default_factory=tuple)  # rows shown muted (e.g. small slices)
    wide_columns: Sequence[int] = field(default_factory=tuple)  # columns holding free text


@dataclass(frozen=True)
class Image:
    name: str  # file name under plots/
    alt: str


Block = Heading | Paragraph | Bullets | Terms | Table | Image


def fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"


def headline_rows(results: Mapping[str, dict]) -> list[list[str]]:
    return [[name] + [fmt(getter(m)) for _, getter in HEADLINE_COLUMNS] for name, m in results.items()]


def block_text(block: Block) -> str:
    """Every piece of text a block shows (for the term explanations and the embedded font's characters)."""
    if isinstance(block, Heading):
        return block.text
    if isinstance(block, Paragraph):
        return block.text
    if isinstance(block, Bullets):
        return "\n".join(block.items)
    if isinstance(block, Terms):
        return "\n".join(f"{term}: {means}" for term, means in block.entries)
    if isinstance(block, Table):
        return "\n".join(" ".join(map(str, row)) for row in (block.header, *block.rows))
    return block.alt


# --------------------------------------------------------------------------------------------
# Content
# --------------------------------------------------------------------------------------------


def build_blocks(ctx: Mapping, words: ReportWords | None = None) -> list[Block]:
    """The report's content from the evaluation context assembled by ``evaluation.evaluate``: the lead's summary
    first (when the context carries the predictions), then the data, the tables and figures."""
    words = words or ReportWords.load()
    results: Mapping[str, dict] = ctx["results"]
    main = ctx["main"]
    blocks: list[Block] = [Heading(f"Routing evaluation: {results_version(ctx, main)} on {ctx['n']} messages", 1)]
    if ctx.get("predictions"):
        blocks += _lead_section(lead_summary(ctx, words=words))
    blocks += [Heading("Data and model", 2, "data"), *_summary(ctx)]
    blocks += [
        Heading("Headline", 2, "headline"),
        Table(["classifier"] + [name for name, _ in HEADLINE_COLUMNS], headline_rows(results)),
        Paragraph("ECE over 10 confidence bins.", note=True),
    ]
    if ctx.get("comparison"):
        blocks += _comparison_section(ctx)
    blocks += _routing_section(ctx)
    blocks += _automation_section(results)
    if results[main]["coverage"] is not None:
        blocks += _coverage_section(ctx)
    blocks += _heads_section(main, results[main], ctx)
    if ctx.get("slices"):
        blocks += _slices_section(ctx["slices"], main)
    if ctx.get("robustness"):
        blocks += _robustness_section(ctx["robustness"], main)
    if ctx.get("subcases") or ctx.get("reply_fit"):
        blocks += _replies_section(ctx.get("subcases"), ctx.get("reply_fit"), main)
    blocks += _worst_errors_section(ctx["worst_errors"], main)
    blocks += _other_classifiers_section(main, results)
    return explain_terms(blocks, words)


def explain_terms(blocks: Sequence[Block], words: ReportWords) -> list[Block]:
    """``blocks`` with a :class:`Terms` line after the first paragraph, list or table that uses each term."""
    explained: set[str] = set()
    out: list[Block] = []
    for block in blocks:
        out.append(block)
        if not isinstance(block, (Paragraph, Bullets, Table)):
            continue
        text = block_text(block)
        new = [t for t in words.terms if t.name not in explained and t.pattern.search(text)]
        if new:
            explained.update(t.name for t in new)
            out.append(Terms([(t.name, t.means) for t in new]))
    return out


# --------------------------------------------------------------------------------------------
# The support lead's summary
# --------------------------------------------------------------------------------------------


def _lead_section(summary: LeadSummary) -> list[Block]:
    blocks: list[Block] = [Heading("Verdict for the support lead", 2, LEAD_ANCHOR)]
    blocks += [Paragraph(summary.verdict[0], verdict=True), Bullets(summary.verdict[1:])]
    if summary.wrong_most:
        blocks += [Heading("What it gets wrong most", 3, "lead-wrong"), Bullets(summary.wrong_most)]
    blocks += [Heading("What the errors cost", 3, "lead-cost"), Paragraph(summary.cost[0])]
    blocks += [Paragraph(line, note=True) for line in summary.cost[1:]]
    if summary.to_do:
        blocks += [Heading("What to do", 3, "lead-todo"), Bullets(summary.to_do)]
    if summary.groups:
        blocks += [Heading("Errors by kind", 3, "lead-errors"), _error_kinds_table(summary)]
        blocks += _error_examples(summary)
    return blocks


def _error_kinds_table(summary: LeadSummary) -> Table:
    rows = [[g.title, g.means, str(g.count), *_wait_cells(g.wait)] for g in summary.groups]
    return Table(["kind", "what happened", "messages", "extra first-response wait", "extra resolution wait"], rows,
                 wide_columns=(1,))


def _wait_cells(wait: ExtraWait | None) -> list[str]:
    if wait is None:
        return ["not priced", "not priced"]
    return [hours_text(wait.first_response_hours), hours_text(wait.resolution_hours)]


def _error_examples(summary: LeadSummary) -> list[Block]:
    blocks: list[Block] = []
    for g in summary.groups:
        shown = len(g.examples)
        heading = f"{g.title}: {shown} of {g.count}, most confident first" if shown < g.count else g.title
        blocks += [
            Heading(heading, 4),
            Table(["message (masked)", "true", "predicted", "confidence", "file:row"],
                  [[e.text, e.true, e.predicted, fmt(e.confidence, 2), e.where] for e in g.examples],
                  wide_columns=(0,)),
        ]
    return blocks


def _fit_row(name: str, fit: Mapping) -> list[str]:
    lo, hi = fit["good_interval"]
    share = lambda key: fmt(fit[key]) if fit[key] is not None else "—"  # noqa: E731
    return [name, str(fit["n"]), str(fit["good"]), str(fit["partial"]), str(fit["wrong"]), share("good_share"),
            f"{fmt(lo)}–{fmt(hi)}" if fit["n"] else "—", share("wrong_share")]


def _replies_section(subcases: Mapping | None, fit: Mapping | None, main: str) -> list[Block]:
    blocks: list[Block] = [Heading("Sub-cases and replies", 2, "replies")]
    if subcases:
        g, e = subcases["given_category"], subcases["end_to_end"]
        blocks.append(Paragraph(
            f"{main} on the {subcases['n']} rows with a labelled sub-case ({subcases['subcases_present']} sub-cases"
            f" present): given the labelled category, accuracy {fmt(g['accuracy'])}, macro-F1 {fmt(g['macro_f1'])};"
            f" end to end (the model's category, the sub-case the reply uses, keyword cues under p"
            f" {e['min_probability']}), accuracy {fmt(e['accuracy'])}, macro-F1 {fmt(e['macro_f1'])}."))
    if fit:
        columns = ["", "judged", "good", "partial", "wrong", "good share", "95% interval", "wrong share"]
        rows = [_fit_row("all judged", fit["overall"]), _fit_row("still the same reply", fit["current"])]
        rows += [_fit_row(f"category {c}", f) for c, f in fit["by_category"].items()]
        blocks.append(Paragraph(
            f"Judged replies (data/reply_judging/rubric.md): {fit['stale']} of {fit['overall']['n']} rows get a"
            " different reply from this service now, so their verdict is about an older reply."))
        blocks.append(Table(columns, rows))
        sub_rows = [_fit_row(s, f) for s, f in fit["by_subcase"].items()]
        if sub_rows:
            blocks.append(Table(["sub-case", *columns[1:]], sub_rows))
    return blocks


def _summary(ctx: Mapping) -> list[Block]:
    files = ", ".join(ctx["data_files"])
    lines = [
        Paragraph(
            f"Data: {files}: {ctx['n']} rows evaluated ({ctx['unusable_skipped']} marked unusable skipped,"
            f" {ctx['duplicates_dropped']} duplicates dropped). A row without a label for a head is left out"
            " of that head's figures only."
        ),
        Paragraph(f"Model: {results_version(ctx, ctx['main'])} (row \"{ctx['main']}\" in the tables)."),
    ]
    if ctx.get("compare"):
        lines.append(Paragraph(f"Compared with: {results_version(ctx, ctx['compare'])} from --compare"
                               f" (row \"{ctx['compare']}\")."))
    if ctx.get("train_files"):
        lines.append(
            Paragraph(
                f"TF-IDF baseline fitted on {', '.join(ctx['train_files'])} ({ctx['train_rows']} rows after"
                f" removing {ctx['train_overlap']} whose text is among the evaluated rows)."
            )
        )
    else:
        lines.append(Paragraph("No --train data: the TF-IDF + logistic-regression baseline was not fitted.", note=True))
    return lines


def results_version(ctx: Mapping, name: str) -> str:
    return ctx["results"][name]["model_version"]


def _routing_section(ctx: Mapping) -> list[Block]:
    results = ctx["results"]
    costs = ctx["costs"]
    rows = []
    for name, m in results.items():
        r = m["routing_impact"]
        c, s = r["category"], r["severity"]
        rows.append([
            name,
            f"{c['under_triage']} of {c['true_escalations']}",
            str(c["over_triage"]),
            f"{s['under_triage']} of {s['true_escalations']}",
            str(s["over_triage"]),
            fmt(c["cost"], 1),
            fmt(s["cost"], 1),
            fmt(r["total_cost"], 1),
            fmt(r["cost_per_row"], 3),
        ])
    blocks: list[Block] = [
        Heading("Routing impact", 2, "routing"),
        Paragraph(
            "Under-triage: a true D (complaint) routed to A/B/C, or a true critical ticket given a lower"
            " severity: the escalation is missed. Over-triage: D or critical predicted for a ticket that is"
            " not. Cost: the SLA-weighted cost of every wrong label from the cost matrix below (1 = one"
            " re-route), summed over category and severity; cost / row divides by all evaluated rows."
        ),
        Table(
            ["classifier", "D under-triage", "D over-triage", "critical under-triage", "critical over-triage",
             "category cost", "severity cost", "total cost", "cost / row"],
            rows,
        ),
        Paragraph(f"Cost matrix: {costs.source} (rows: true label, columns: predicted label)."),
    ]
    for head in ("category", "severity"):
        labels = list(costs.matrices[head])
        blocks.append(
            Table(
                [f"{head}: true \\ predicted"] + [label_name(head, p) for p in labels],
                [[label_name(head, t)] + [f"{costs.matrices[head][t][p]:g}" for p in labels] for t in labels],
            )
        )
    return blocks


def _automation_section(results: Mapping[str, dict]) -> list[Block]:
    rows = [[name, figures["policy_file"]]
            + [x for head in ("category", "severity")
               for x in (pct(figures[head]["auto_share"]), fmt(figures[head]["auto_accuracy"]))]
            for name, m in results.items() if (figures := m.get("automation"))]
    if not rows:
        return []
    return [
        Heading("Decision policy", 2, "policy"),
        Paragraph(
            "The \"policy\" row scores the labels the service answers: the label of least expected cost under the cost"
            " matrix, with the keyword rules' evidence stacked in and any fitted threshold (policy/decision_policy.py),"
            " beside the model's most probable labels. Auto-routed: rows whose decided label's automation level and"
            " probability let it through without a person; accuracy is over those rows."
        ),
        Table(["decisions", "policy file", "category auto-routed", "accuracy there", "severity auto-routed",
               "accuracy there"], rows),
    ]


def _coverage_section(ctx: Mapping) -> list[Block]:
    results = ctx["results"]
    main = ctx["main"]
    target = results[main]["coverage"]["at_target"]["target"]
    at = results[main]["coverage"]["at_target"]
    rows = []
    for name, m in results.items():
        cov = m["coverage"]
        if cov is None:
            continue
        a = cov["at_target"]
        rows.append([name, fmt(a["threshold"]), f"{pct(a['coverage'])} ({a['n_covered']} of {cov['n']})",
                     pct(a["accuracy"]), pct(cov["accuracy_all"])])
    curve_rows = [
        [f"{p['threshold']:.2f}", str(p["n_covered"]), pct(p["coverage"]), pct(p["accuracy"])]
        for p in results[main]["coverage"]["curve"]
    ]
    return [
        Heading("Human review threshold: coverage vs accuracy", 2, "coverage"),
        Paragraph(
            "A ticket is routed automatically when its category confidence (top probability) is at least the"
            " threshold, otherwise it goes to human review. Coverage: the share routed automatically;"
            " accuracy: category accuracy on those tickets."
        ),
        Paragraph(
            f"{main}: to auto-route {target:.0%} of tickets, set the threshold to {at['threshold']:.3f}; that"
            f" routes {pct(at['coverage'])} automatically with {pct(at['accuracy'])} category accuracy"
            f" (all tickets: {pct(results[main]['coverage']['accuracy_all'])})."
        ),
        Table(["classifier", f"threshold for {target:.0%} coverage", "coverage there", "accuracy there",
               "accuracy, no review"], rows),
        Image("coverage.png", "coverage and accuracy against the review threshold"),
        Table(["threshold", "auto-routed", "coverage", "accuracy"], curve_rows),
        Paragraph("The keyword rules report a fixed confidence of 0.5, so a threshold sends all or none of"
                  " their answers to review.", note=True),
    ]


def _per_label_table(head: str, m: dict) -> Table:
    return Table(
        ["label", "precision", "recall", "F1", "support"],
        [[label_name(head, label), fmt(r["precision"]), fmt(r["recall"]), fmt(r["f1"]), str(r["support"])]
         for label, r in m["per_label"].items()],
    )


def _head_summary(head: str, m: dict, metrics: dict) -> str:
    floor = m.get("ece_if_calibrated")
    noise = (f" (a perfectly calibrated model would show {fmt(floor['mean'])} on average on these rows,"
             f" up to {fmt(floor['p90'])} in 90% of draws)") if floor else ""
    f1 = (f"{SEVERITY_FIGURE} {fmt(severity_figure(metrics))}" if head == "severity"
          else f"macro-F1 {fmt(m['macro_f1'])}")
    return (
        f"{head} ({m['n']} labelled rows): accuracy {fmt(m['accuracy'])}, {f1},"
        f" weighted-F1 {fmt(m['weighted_f1'])}, Cohen's kappa {fmt(m['kappa'])}, ECE {fmt(m['ece'])}{noise}."
    )


def _heads_section(main: str, m: dict, ctx: Mapping) -> list[Block]:
    blocks: list[Block] = [Heading(f"Per head: {main}", 2, "heads")]
    for head in HEADS:
        h = m[head]
        if h is None:
            blocks += [Heading(head, 3, f"head-{head}"), Paragraph(f"No evaluated row has a {head} label.", note=True)]
            continue
        blocks += [
            Heading(head, 3, f"head-{head}"),
            Paragraph(_head_summary(head, h, m)),
            _per_label_table(head, h),
            Image(f"confusion_{head}.png", f"{head} confusion matrix"),
            Image(f"reliability_{head}.png", f"{head} reliability diagram"),
        ]
        small = [label for label, r in h["per_label"].items() if 0 < r["support"] < 10]
        if small:
            blocks.append(Paragraph(f"Fewer than 10 true rows for {', '.join(small)}: their figures are noisy.", note=True))
    return blocks


def _comparison_section(ctx: Mapping) -> list[Block]:
    comp = ctx["comparison"]
    figures = dict(comp["heads"])
    sentences = dict(zip(figures, comp["sentences"]))  # one sentence per head, in the same order
    rows = []
    for head, r in figures.items():
        rows.append([
            figure_name(head), str(r["n"]), fmt(r["macro_f1_a"]), fmt(r["macro_f1_b"]), f"{r['difference']:+.3f}",
            f"[{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]", fmt(r["permutation_p"]),
            f"{pct(r['accuracy_a'])} vs {pct(r['accuracy_b'])}",
            f"{r['a_right_b_wrong']} / {r['a_wrong_b_right']}", fmt(r["mcnemar_p"]),
        ])
    any_head = next(iter(figures.values()))
    return [
        Heading(f"Comparison: {comp['model']} vs {comp['compare']}", 2, "comparison"),
        *[Paragraph(sentences[head]) for head in figures],
        Table(
            ["figure", "rows", "model", "compare", "difference", "95% CI (bootstrap)",
             "permutation p", "accuracy", "only model right / only compare right", "McNemar p"],
            rows,
        ),
        Paragraph(
            f"Difference = model − compare. CI: paired bootstrap over rows, {any_head['n_resamples']} resamples,"
            f" seed {any_head['seed']}. Permutation p: paired approximate-randomisation test on the difference"
            f" ({any_head['n_resamples']} random swaps, two-sided). McNemar p: exact binomial test on"
            " the rows exactly one of the two models gets right. A difference is significant when the permutation"
            " test says so and the interval leaves out 0."
        ),
    ]


def _slices_section(slices: Mapping, main: str) -> list[Block]:
    rows, flagged = [], []
    for s in slices["rows"]:
        d = "–" if s["D_recall"] is None else f"{s['D_recall']:.3f} ({s['D_support']})"
        rows.append([
            s["value"], str(s["n"]), fmt(s["category_macro_f1"]), pct(s["category_accuracy"]), d,
            fmt(s["sentiment_macro_f1"]), fmt(s["negative_f1"]), f"small (n < {slices['min_n']})" if s["small"] else "",
        ])
        flagged.append(s["small"])
    return [
        Heading(f"Slices by {slices['column']}", 2, "slices"),
        Paragraph(f"{main} on the rows of each {slices['column']} value, largest first. D recall shows the number"
                  " of true D rows in brackets."),
        Table([slices["column"], "rows", "category macro-F1", "category accuracy", "D recall (true D)",
               "sentiment macro-F1", "negative F1", "note"], rows, flagged=flagged, wide_columns=(0,)),
    ]


def _robustness_section(report: Mapping, main: str) -> list[Block]:
    from helpdesk_triage.evaluation.robustness import ROBUSTNESS_COLUMNS, robustness_rows

    targets = report["targets"]
    overall = report["overall"]
    undone = [name for name, r in report["perturbations"].items() if r["normaliser_undoes"]]
    verdict = {True: "meets", False: "misses", None: "cannot be checked against"}[overall["meets_targets"]]
    blocks: list[Block] = [
        Heading("Robustness to perturbations", 2, "robustness"),
        Paragraph(
            f"{main} on perturbed copies of the {report['n_rows']} rows: each perturbation keeps the meaning a"
            " labeller uses (a greeting, an emoji matching the sentiment, a typo, a masked id …). A flip is a row"
            " whose predicted label changes from the prediction on the original text; the F1 columns compare"
            " the original and the perturbed texts of the same rows (those the perturbation changed). Drop in"
            " points: 100 × (original − perturbed), positive when the perturbation hurts."
        ),
        Paragraph(
            f"Targets: flip rate ≤ {targets['max_flip_rate']:.0%} for every head and category macro-F1 drop ≤"
            f" {targets['max_category_f1_drop_points']:g} points. Pooled over all perturbations ({overall['n']}"
            f" perturbed texts) the model {verdict} them: flip rates "
            + ", ".join(f"{h} {pct(overall['flip_rate'][h])}" for h in HEADS)
            + f", category macro-F1 drop {_points_or_dash(overall['category_f1_drop_points'])} points."
        ),
        Table(list(ROBUSTNESS_COLUMNS), robustness_rows(report)),
    ]
    worst = report["worst"]
    if worst["by_flip_rate"]:
        w = worst["by_flip_rate"]
        sentence = f"Most flips: {w['perturbation']} ({w['head']} {pct(w['flip_rate'])})."
        if worst["by_category_f1_drop"]:
            d = worst["by_category_f1_drop"]
            sentence += f" Largest category F1 drop: {d['perturbation']} ({_points_or_dash(d['drop_points'])} points)."
        blocks.append(Paragraph(sentence))
    if undone:
        blocks.append(Paragraph(
            f"{', '.join(undone)}: the model's text normalisation (NFKC, Traditional → Simplified) maps these"
            " variants back to the original text (column \"same after normalisation\"), so they test the"
            " normaliser rather than the model. The last row of the table leaves those variants out.", note=True))
    examples = [[name, r["description"], r["example"]["original"], r["example"]["perturbed"]]
                for name, r in report["perturbations"].items() if r.get("example")]
    if examples:
        blocks += [
            Heading("Examples", 3, "robustness-examples"),
            Table(["perturbation", "what it does", "original", "perturbed"], examples, wide_columns=(1, 2, 3)),
            Paragraph(f"Seed {report['seed']}; word tables: {report['tables']}.", note=True),
        ]
    return blocks


def _points_or_dash(value: float | None) -> str:
    return "–" if value is None else f"{value:+.1f}"


def _worst_errors_section(worst: Mapping[str, list], main: str) -> list[Block]:
    blocks: list[Block] = [
        Heading("Worst errors", 2, "errors"),
        Paragraph(f"The rows {main} got wrong with the highest confidence, most confident first. Texts are"
                  " PII-masked (phone, ID-card, e-mail, bank-card and order numbers)."),
    ]
    for head, rows in worst.items():
        others = [h for h in HEADS if h != head]
        blocks.append(Heading(f"{head}: {len(rows)} most confident errors", 3, f"errors-{head}"))
        if not rows:
            blocks.append(Paragraph(f"No {head} errors."))
            continue
        blocks.append(
            Table(
                ["#", "file:row", "text (masked)", "true", "predicted", "confidence"] + [f"{h} true → pred" for h in others],
                [[str(k + 1), r["where"], r["text"], label_name(head, r["true"]), label_name(head, r["pred"]),
                  fmt(r["confidence"])] + [r["other"][h] for h in others]
                 for k, r in enumerate(rows)],
                wide_columns=(2,),
            )
        )
    return blocks


def _other_classifiers_section(main: str, results: Mapping[str, dict]) -> list[Block]:
    others = [name for name in results if name != main]
    if not others:
        return []
    blocks: list[Block] = [Heading("Other classifiers, per head", 2, "others")]
    for name in others:
        blocks.append(Heading(name, 3))
        for head in HEADS:
            if results[name][head] is not None:
                blocks += [Paragraph(_head_summary(head, results[name][head], results[name])),
                           _per_label_table(head, results[name][head])]
    return blocks


# --------------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------------

_MD_SPECIAL = re.compile(r"([\\`*_|])")


def _md_cell(text: str) -> str:
    text = " ".join(str(text).split())  # no newlines inside a table row
    text = _MD_SPECIAL.sub(r"\\\1", text)
    return text.replace("<", "&lt;").replace(">", "&gt;")


def _md_text(text: str) -> str:
    return _md_cell(text)


def to_markdown(blocks: Sequence[Block]) -> str:
    out: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            out += ["#" * block.level + " " + _md_text(block.text), ""]
        elif isinstance(block, Paragraph):
            text = _md_text(block.text)
            out += [f"> {text}" if block.note else f"**{text}**" if block.verdict else text, ""]
        elif isinstance(block, Bullets):
            out += [f"- {_md_text(item)}" for item in block.items] + [""]
        elif isinstance(block, Terms):
            out += [f"> - {_md_text(term)}: {_md_text(means)}" for term, means in block.entries] + [""]
        elif isinstance(block, Table):
            out.append("| " + " | ".join(_md_cell(h) for h in block.header) + " |")
            out.append("|" + "---|" * len(block.header))
            out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows]
            out.append("")
        elif isinstance(block, Image):
            out += [f"![{_md_cell(block.alt)}]({PLOTS_DIR}/{block.name})", ""]
        else:  # pragma: no cover - exhaustive
            raise TypeError(f"unknown block {block!r}")
    return "\n".join(out).rstrip() + "\n"


# --------------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------------

_CSS = """
body { font-family: "%(font)s", -apple-system, "Segoe UI", "Noto Sans CJK SC", "Microsoft YaHei", sans-serif;
       margin: 2em auto; max-width: 1200px; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #4c78a8; padding-bottom: .2em; font-size: 26px; }
h2 { margin-top: 2em; border-bottom: 1px solid #ccc; padding-bottom: .15em; }
h2#%(lead)s { margin-top: 1em; }
h3 { margin: 1.2em 0 .3em; font-size: 17px; }
h4 { margin: 1em 0 .2em; font-size: 15px; }
table { border-collapse: collapse; margin: .6em 0 1em; font-size: 14px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; vertical-align: top; }
th { background: #eef3f8; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.wide { max-width: 520px; }
td:first-child { white-space: nowrap; }
td.wide:first-child { white-space: normal; }
tr.flagged td { color: #888; font-style: italic; }
tr:nth-child(even) td { background: #fafafa; }
p.verdict { font-size: 18px; font-weight: 600; background: #eef6ee; border-left: 4px solid #54a24b; padding: .5em .8em; margin: .6em 0; }
p.note { color: #666; font-size: 13px; border-left: 3px solid #ddd; padding-left: .6em; }
p.terms { color: #555; font-size: 12.5px; margin: -.3em 0 1em; padding-left: .6em; border-left: 3px solid #e6dcc0; }
p.terms dfn { color: #333; font-style: normal; font-weight: 600; }
ul { margin: .3em 0 .8em; padding-left: 1.4em; }
li { margin: .15em 0; }
img { max-width: 100%%; margin: .4em 1em .4em 0; vertical-align: top; }
nav { background: #f5f7fa; padding: .5em 1em; border: 1px solid #e0e6ee; margin-top: 2em; }
nav a { margin-right: 1.2em; }
"""

_NUMERIC = re.compile(r"^[-+]?(\d+(\.\d+)?%?|–)( of \d+)?( \(\d+( of \d+)?\))?$|^\[[-+0-9., ]+\]$|^\d+(\.\d+)? (h|min)$")


def _td(text: str, wide: bool) -> str:
    classes = []
    if _NUMERIC.match(str(text)):
        classes.append("num")
    if wide:
        classes.append("wide")
    attr = f' class="{" ".join(classes)}"' if classes else ""
    return f"<td{attr}>{html.escape(str(text))}</td>"


def _table_html(block: Table) -> str:
    parts = ["<table>", "<thead><tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in block.header) + "</tr></thead>",
             "<tbody>"]
    for i, row in enumerate(block.rows):
        flagged = i < len(block.flagged) and block.flagged[i]
        tr = '<tr class="flagged">' if flagged else "<tr>"
        parts.append(tr + "".join(_td(c, j in block.wide_columns) for j, c in enumerate(row)) + "</tr>")
    parts.append("</tbody></table>")
    return "\n".join(parts)


def _block_html(block: Block, images: Mapping[str, bytes]) -> str:
    if isinstance(block, Heading):
        anchor = f' id="{html.escape(block.anchor)}"' if block.anchor else ""
        return f"<h{block.level}{anchor}>{html.escape(block.text)}</h{block.level}>"
    if isinstance(block, Paragraph):
        cls = ' class="note"' if block.note else ' class="verdict"' if block.verdict else ""
        return f"<p{cls}>{html.escape(block.text)}</p>"
    if isinstance(block, Bullets):
        return "<ul>" + "".join(f"<li>{html.escape(item)}</li>" for item in block.items) + "</ul>"
    if isinstance(block, Terms):
        lines = [f"<dfn>{html.escape(term)}</dfn>: {html.escape(means)}" for term, means in block.entries]
        return '<p class="terms">' + "<br>".join(lines) + "</p>"
    if isinstance(block, Table):
        return _table_html(block)
    if isinstance(block, Image):
        if block.name not in images:
            raise KeyError(f"no PNG for image {block.name!r}")
        data = base64.b64encode(images[block.name]).decode("ascii")
        return f'<img src="data:image/png;base64,{data}" alt="{html.escape(block.alt)}">'
    raise TypeError(f"unknown block {block!r}")  # pragma: no cover - exhaustive


def to_html(blocks: Sequence[Block], images: Mapping[str, bytes], title: str | None = None) -> str:
    """One self-contained HTML page; ``images`` maps each :class:`Image` name to its PNG bytes. The table of
    contents follows the lead's summary, so that the summary is the first thing on the screen."""
    title = title or next((b.text for b in blocks if isinstance(b, Heading) and b.level == 1), "Routing evaluation")
    nav = [f'<a href="#{html.escape(b.anchor)}">{html.escape(b.text)}</a>' for b in blocks
           if isinstance(b, Heading) and b.level == 2 and b.anchor]
    body: list[str] = []
    nav_placed = not nav
    for block in blocks:
        if not nav_placed and isinstance(block, Heading) and block.level == 2 and block.anchor != LEAD_ANCHOR:
            body.append("<nav>" + "".join(nav) + "</nav>")
            nav_placed = True
        body.append(_block_html(block, images))
    page_text = title + "".join(block_text(b) for b in blocks)
    css = font_face_css(page_text) + "\n" + _CSS % {"font": FONT_FAMILY, "lead": LEAD_ANCHOR}
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{html.escape(title)}</title>\n<style>{css}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )
