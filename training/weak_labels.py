"""Weak labels for the unlabelled public corpora: read them, label them with rules, measure the rules.

The corpora folder (``--corpus DIR``) holds JD.com chats (``jddc/``), Taobao chats (``taobao_ecd/``) and
product / food-delivery reviews with a noisy 1/0 sentiment (``online_shopping_10_cats/``,
``waimai_10k/``); any of them may be absent. Only customer words are used: the first and last segment
of each JDDC window, the even-indexed turns of each Taobao session, the reviews.

Labelling functions (:data:`LABELLING_FUNCTIONS`) each label one head or abstain; per head the first
function in order that fires wins, so a corpus text becomes a row with only the heads some function
labelled (the trainer masks the others). Their cues come from ``data/keyword_rules.toml`` and
``data/weak_label_rules.toml``. ``python -m helpdesk_triage.training.weak_labels --corpus DIR --measure FILE`` prints
each function's coverage and precision on hand-labelled messages from the same corpora.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import tomllib
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from helpdesk_triage.policy.labels import HEADS
from helpdesk_triage.policy.text_normalization import normalize
from helpdesk_triage.policy.keyword_rules import KeywordRules
from helpdesk_triage.policy.data_files import data_file

DEFAULT_RULES_PATH = data_file("weak_label_rules.toml")
REVIEW_SOURCES = ("shop", "waimai")
CHAT_SOURCES = ("jddc", "ecd")
NEGATIONS = ("不", "没", "别")
NEGATION_WINDOW = 3
# Held-out texts shorter than this are not used for containment checks (they would match everywhere).
MIN_CONTAINED_CHARS = 6


class CorpusError(ValueError):
    """The corpus folder cannot be used (missing, or none of the known corpora in it)."""


@dataclass(frozen=True)
class CorpusText:
    text: str                 # normalised, cut to the rules' max_chars
    source: str               # jddc | ecd | shop:<category> | waimai
    corpus_label: int | None  # the reviews' own 1/0 sentiment, None for chats

    @property
    def is_review(self) -> bool:
        return self.source.split(":")[0] in REVIEW_SOURCES


@dataclass(frozen=True)
class WeakRules:
    keywords: KeywordRules
    question_cues: tuple[str, ...]
    own_order_cues: tuple[str, ...]
    product_info_cues: tuple[str, ...]
    order_state_cues: tuple[str, ...]
    ambiguous_fault_cues: tuple[str, ...]
    strong_negative_cues: tuple[str, ...]
    filler_max_chars: int
    max_chars: int
    disabled: frozenset[str]

    @classmethod
    def load(cls, path: str | Path | None = None, keywords: KeywordRules | None = None) -> "WeakRules":
        with Path(path or DEFAULT_RULES_PATH).open("rb") as f:
            raw = tomllib.load(f)
        unknown = set(raw.get("disabled", ())) - {lf.name for lf in LABELLING_FUNCTIONS}
        if unknown:
            raise ValueError(f"{path or DEFAULT_RULES_PATH}: disabled names unknown labelling functions {sorted(unknown)}")
        return cls(
            keywords=keywords or KeywordRules.load(),
            question_cues=tuple(raw["question_cues"]),
            own_order_cues=tuple(raw["own_order_cues"]),
            product_info_cues=tuple(raw["product_info_cues"]),
            order_state_cues=tuple(raw["order_state_cues"]),
            ambiguous_fault_cues=tuple(raw["ambiguous_fault_cues"]),
            strong_negative_cues=tuple(raw["strong_negative_cues"]),
            filler_max_chars=int(raw["filler_max_chars"]),
            max_chars=int(raw["max_chars"]),
            disabled=frozenset(raw.get("disabled", ())),
        )

    def has(self, text: str, cues: Iterable[str]) -> bool:
        return any(cue in text for cue in cues)

    def category_cue(self, text: str) -> str | None:
        """The keyword rules' category cue (precedence D > C > B), or None."""
        for code in ("D", "C", "B"):
            if self.has(text, self.keywords.category_cues.get(code, ())):
                return code
        return None

    def clear_fault(self, item: "CorpusText") -> bool:
        """A product-fault cue that is not one of the ambiguous ones, or an ambiguous one in a complaint."""
        cues = self.keywords.category_cues.get("C", ())
        if self.has(item.text, [c for c in cues if c not in self.ambiguous_fault_cues]):
            return True
        return self.has(item.text, self.ambiguous_fault_cues) and (item.corpus_label == 0 or self.strongly_negative(item.text))

    def strongly_negative(self, text: str) -> bool:
        return self.has(text, self.strong_negative_cues)

    def negative(self, text: str) -> bool:
        return self.has(text, self.keywords.negative_cues)

    def positive(self, text: str) -> bool:
        """A praise cue not negated just before it (不好吃, 不是很好, 没有推荐 do not count)."""
        for cue in self.keywords.positive_cues:
            start = text.find(cue)
            while start != -1:
                if not any(n in text[max(0, start - NEGATION_WINDOW):start] for n in NEGATIONS):
                    return True
                start = text.find(cue, start + 1)
        return False


@dataclass(frozen=True)
class LabellingFunction:
    name: str
    head: str
    vote: Callable[[WeakRules, CorpusText], str | None]
    doc: str


def _lf(name: str, head: str, doc: str):
    def register(vote):
        LABELLING_FUNCTIONS.append(LabellingFunction(name, head, vote, doc))
        return vote
    return register


LABELLING_FUNCTIONS: list[LabellingFunction] = []


@_lf("cat_D_cue", "category", "a complaint cue (投诉, 差评, 假货, 骗子, 过敏 …) → D")
def _cat_d(r: WeakRules, t: CorpusText) -> str | None:
    return "D" if r.category_cue(t.text) == "D" else None


@_lf("cat_C_cue", "category", "a clear product-fault cue (坏了, 发错, 少发 …; 质量/退货 only in a complaint), no complaint cue, not a review rated 1 → C")
def _cat_c(r: WeakRules, t: CorpusText) -> str | None:
    return "C" if t.corpus_label != 1 and r.category_cue(t.text) != "D" and r.clear_fault(t) else None


@_lf("cat_B_cue", "category", "an order cue with one's own order or an order state (还没, 到哪, 退款 …), no fault or complaint → B")
def _cat_b(r: WeakRules, t: CorpusText) -> str | None:
    if r.category_cue(t.text) != "B" or t.corpus_label == 1:
        return None
    return "B" if r.has(t.text, r.own_order_cues) or r.has(t.text, r.order_state_cues) else None


@_lf("cat_A_question", "category", "a question about the product or policy (有货, 尺码, 支持 …) with no order, problem or negative cue → A")
def _cat_a_question(r: WeakRules, t: CorpusText) -> str | None:
    text = t.text
    if r.category_cue(text) or r.negative(text) or r.has(text, r.own_order_cues) or r.has(text, r.order_state_cues):
        return None
    return "A" if r.has(text, r.question_cues) and r.has(text, r.product_info_cues) else None


@_lf("cat_A_praise", "category", "a review rated 1 with a praise cue, no negative, complaint or clear fault cue (质量不错 is praise) → A")
def _cat_a_praise(r: WeakRules, t: CorpusText) -> str | None:
    if t.corpus_label != 1 or not r.positive(t.text) or r.negative(t.text):
        return None
    return None if r.category_cue(t.text) == "D" or r.clear_fault(t) else "A"


@_lf("sev_critical_cue", "severity", "a harm, regulator, legal or media cue (过敏, 住院, 起火, 12315, 律师 …) → critical")
def _sev_critical(r: WeakRules, t: CorpusText) -> str | None:
    return "critical" if r.has(t.text, r.keywords.critical_cues) else None


@_lf("sev_high_complaint", "severity", "a complaint cue together with an anger cue (投诉, 差评, 垃圾, 赔偿 …) → high")
def _sev_high(r: WeakRules, t: CorpusText) -> str | None:
    return "high" if r.category_cue(t.text) == "D" and r.has(t.text, r.keywords.high_cues) else None


@_lf("sev_low_question", "severity", "the cat_A_question or cat_A_praise situation → low")
def _sev_low(r: WeakRules, t: CorpusText) -> str | None:
    return "low" if _cat_a_question(r, t) or _cat_a_praise(r, t) else None


@_lf("sent_negative_review", "sentiment", "a review rated 0 with a negative cue → negative")
def _sent_neg_review(r: WeakRules, t: CorpusText) -> str | None:
    return "negative" if t.corpus_label == 0 and r.negative(t.text) else None


@_lf("sent_positive_review", "sentiment", "a review rated 1 with a praise cue and no negative cue → positive")
def _sent_pos_review(r: WeakRules, t: CorpusText) -> str | None:
    return "positive" if t.corpus_label == 1 and r.positive(t.text) and not r.negative(t.text) else None


@_lf("sent_negative_chat", "sentiment", "a chat message with a strong negative cue (垃圾, 怎么还, 太慢, 坏了 …) → negative")
def _sent_neg_chat(r: WeakRules, t: CorpusText) -> str | None:
    return "negative" if not t.is_review and r.strongly_negative(t.text) else None


@_lf("sent_neutral_chat", "sentiment", "a chat question, or a short acknowledgement, with no negative or praise cue → neutral")
def _sent_neutral_chat(r: WeakRules, t: CorpusText) -> str | None:
    text = t.text
    if t.is_review or r.strongly_negative(text) or r.positive(text) or r.category_cue(text) == "D":
        return None
    if r.has(text, r.question_cues) or len(text) <= r.filler_max_chars:
        return "neutral"
    return None


def weak_label(rules: WeakRules, item: CorpusText) -> dict[str, str | None]:
    """Per head the first enabled labelling function's vote (None where all abstain)."""
    labels: dict[str, str | None] = {head: None for head in HEADS}
    for lf in LABELLING_FUNCTIONS:
        if lf.name in rules.disabled or labels[lf.head] is not None:
            continue
        labels[lf.head] = lf.vote(rules, item)
    return labels


# --- reading the corpora -------------------------------------------------------------------------

CORPORA = ("jddc", "taobao_ecd", "online_shopping_10_cats", "waimai_10k")
REVIEW_CORPORA = ("online_shopping_10_cats", "waimai_10k")


@dataclass(frozen=True)
class CorpusTurn:
    """One customer text as it stands in a corpus file, with where it stands."""

    corpus: str               # one of CORPORA
    file: str                 # path relative to the corpora folder, e.g. "jddc/train_enc.txt"
    line: int                 # 1-based line of the file (for CSV: the line where the record ends)
    segment: int | None       # JDDC: 0 (first) or -1 (last) segment; ECD: tab field index; reviews: None
    text: str                 # raw, as in the file
    source: str               # jddc | ecd | shop:<category> | waimai
    corpus_label: int | None  # the reviews' own 1/0 sentiment, None for chats


def read_corpora(corpus_dir: str | Path, max_chars: int = 160) -> Iterator[CorpusText]:
    """Every usable customer text of the corpora in ``corpus_dir`` (normalised, de-duplicated)."""
    root = Path(corpus_dir)
    if not root.is_dir():
        raise CorpusError(f"{root}: no such folder")
    if not any((root / name).is_dir() for name in CORPORA):
        raise CorpusError(f"{root}: none of the known corpora ({', '.join(CORPORA)}) is in this folder")
    seen: set[str] = set()
    for turn in corpus_turns(root):
        text = normalize(turn.text)[:max_chars].strip()
        if len(text) < 2 or text in seen:
            continue
        seen.add(text)
        yield CorpusText(text, turn.source, turn.corpus_label)


def corpus_turns(corpus_dir: str | Path) -> Iterator[CorpusTurn]:
    """Every customer text of the corpora present in ``corpus_dir``, raw and not de-duplicated (a JDDC
    segment recurs in the overlapping windows), in a fixed order."""
    root = Path(corpus_dir)
    for corpus in CORPORA:
        for path in corpus_files(root, corpus):
            yield from file_turns(root, corpus, path)


def corpus_files(root: Path, corpus: str) -> list[Path]:
    folder = root / corpus
    if corpus == "jddc":
        return [folder / "train_enc.txt"] if (folder / "train_enc.txt").is_file() else []
    return sorted(folder.glob("*.txt" if corpus == "taobao_ecd" else "*.csv"))


def file_turns(root: Path, corpus: str, path: Path) -> Iterator[CorpusTurn]:
    """The customer texts of one corpus file."""
    file = path.relative_to(root).as_posix()
    if corpus in REVIEW_CORPORA:
        with path.open(encoding="utf-8-sig", errors="replace", newline="") as f:
            reader = csv.DictReader(f)
            for row in reader:
                if row.get("review") and row.get("label") in ("0", "1"):
                    source = f"shop:{row.get('cat', '')}" if corpus == "online_shopping_10_cats" else "waimai"
                    yield CorpusTurn(corpus, file, reader.line_num, None, row["review"], source, int(row["label"]))
        return
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        if corpus == "jddc":
            segments = [s.strip() for s in line.split(",") if s.strip()]
            # Speaker boundaries are lost inside the window; only its first and last segment are surely the customer's.
            turns = {0: segments[0], -1: segments[-1]} if segments else {}
            source = "jddc"
        else:
            fields = line.split("\t")
            # After the match label: customer, agent, customer, …; the last field is the candidate reply.
            turns = {i: fields[i] for i in range(1, len(fields) - 1, 2)}
            source = "ecd"
        for segment, text in turns.items():
            yield CorpusTurn(corpus, file, number, segment, text, source, None)


# --- building training rows ----------------------------------------------------------------------

class HeldOut:
    """Texts that must not reach training: exact matches and containment either way."""

    def __init__(self, texts: Iterable[str]) -> None:
        self.exact = {normalize(t) for t in texts}
        self.long = [t for t in self.exact if len(t) >= MIN_CONTAINED_CHARS]
        # Any containment of texts >= MIN_CONTAINED_CHARS long shares a MIN_CONTAINED_CHARS-gram: a cheap pre-filter.
        self.grams = {g for t in self.long for g in _grams(t)}

    def __contains__(self, text: str) -> bool:
        if text in self.exact:
            return True
        if len(text) < MIN_CONTAINED_CHARS or self.grams.isdisjoint(_grams(text)):
            return False
        return any(h in text or text in h for h in self.long)


def _grams(text: str) -> set[str]:
    return {text[i:i + MIN_CONTAINED_CHARS] for i in range(len(text) - MIN_CONTAINED_CHARS + 1)}


def weak_rows(
    corpus_dir: str | Path,
    max_rows: int,
    held_out_texts: Iterable[str] = (),
    rules: WeakRules | None = None,
    seed: int = 13,
) -> tuple[list[dict], dict]:
    """Weak-labelled training rows from the corpora, balanced over the category vote, and a summary.

    Rows whose text is (or contains, or is contained in) a held-out text are dropped.
    """
    rules = rules or WeakRules.load()
    held_out = HeldOut(held_out_texts)
    by_group: dict[str, list[dict]] = defaultdict(list)
    dropped = read = 0
    for item in read_corpora(corpus_dir, rules.max_chars):
        read += 1
        labels = weak_label(rules, item)
        if all(v is None for v in labels.values()):
            continue
        if item.text in held_out:
            dropped += 1
            continue
        by_group[labels["category"] or "none"].append({"text": item.text, "source": f"weak:{item.source}", **labels})
    rng = random.Random(seed)
    for rows in by_group.values():
        rng.shuffle(rows)
    chosen = _balanced(by_group, max_rows)
    summary = {
        "corpus_texts": read,
        "held_out_dropped": dropped,
        "labelled_available": {g: len(r) for g, r in sorted(by_group.items())},
        "rows": len(chosen),
        "label_counts": {head: dict(Counter(r[head] for r in chosen if r[head])) for head in HEADS},
    }
    return chosen, summary


def _balanced(groups: dict[str, list[dict]], max_rows: int) -> list[dict]:
    """Round-robin over the groups so rare votes (D, C) are not swamped by the common ones."""
    chosen: list[dict] = []
    cursors = {g: 0 for g in sorted(groups)}
    while len(chosen) < max_rows and cursors:
        for group in list(cursors):
            i = cursors[group]
            if i >= len(groups[group]):
                del cursors[group]
                continue
            chosen.append(groups[group][i])
            cursors[group] = i + 1
            if len(chosen) >= max_rows:
                break
    return chosen


def write_weak_rows(rows: Sequence[dict], path: Path) -> None:
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps({k: v for k, v in row.items() if v is not None}, ensure_ascii=False) + "\n")


# --- measuring the rules -------------------------------------------------------------------------

def measure(rules: WeakRules, rows: Sequence[dict], review_labels: dict[str, int]) -> dict:
    """Coverage and precision of every labelling function and of the combined vote on labelled ``rows``.

    ``rows`` carry ``text``, ``source`` and gold labels; ``review_labels`` maps a normalised review text
    to its corpus 1/0 label (the labelling functions for reviews need it).
    """
    functions: dict[str, dict] = {}
    combined = {head: Counter() for head in HEADS}
    for lf in LABELLING_FUNCTIONS:
        functions[lf.name] = {"head": lf.head, "doc": lf.doc, "fired": 0, "correct": 0, "disabled": lf.name in rules.disabled}
    for row in rows:
        text = normalize(row["text"])[: rules.max_chars].strip()
        source = row.get("source") or "jddc"
        item = CorpusText(text, source, review_labels.get(text) if source.split(":")[0] in REVIEW_SOURCES else None)
        for lf in LABELLING_FUNCTIONS:
            vote = lf.vote(rules, item)
            if vote is not None and row.get(lf.head):
                functions[lf.name]["fired"] += 1
                functions[lf.name]["correct"] += vote == row[lf.head]
        labels = weak_label(rules, item)
        for head in HEADS:
            if row.get(head):
                combined[head]["rows"] += 1
                if labels[head] is not None:
                    combined[head]["fired"] += 1
                    combined[head]["correct"] += labels[head] == row[head]
    for stats in functions.values():
        stats["precision"] = round(stats["correct"] / stats["fired"], 3) if stats["fired"] else None
    heads = {
        head: {
            "coverage": round(c["fired"] / c["rows"], 3) if c["rows"] else None,
            "precision": round(c["correct"] / c["fired"], 3) if c["fired"] else None,
            **dict(c),
        }
        for head, c in combined.items()
    }
    return {"n": len(rows), "functions": functions, "heads": heads}


def review_label_index(corpus_dir: str | Path, max_chars: int) -> dict[str, int]:
    return {t.text: t.corpus_label for t in read_corpora(corpus_dir, max_chars) if t.corpus_label is not None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Weak labels on the public corpora: measure the rules or write rows.")
    parser.add_argument("--corpus", type=Path, required=True, help="folder with jddc/, taobao_ecd/, online_shopping_10_cats/, waimai_10k/")
    parser.add_argument("--measure", type=Path, action="append", default=[], help="hand-labelled JSONL to measure the rules on (repeatable)")
    parser.add_argument("--write", type=Path, default=None, help="write weak-labelled rows as training JSONL here")
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--exclude", type=Path, action="append", default=[], help="JSONL whose texts must not be written (held-out data)")
    args = parser.parse_args(argv)
    try:
        rules = WeakRules.load()
        if args.measure:
            index = review_label_index(args.corpus, rules.max_chars)
            for path in args.measure:
                rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
                rows = [r for r in rows if r.get("usable", True) is not False]
                print(json.dumps({"file": str(path), **measure(rules, rows, index)}, ensure_ascii=False, indent=1))
        if args.write:
            held_out = [json.loads(line)["text"] for p in args.exclude for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
            rows, summary = weak_rows(args.corpus, args.rows, held_out, rules)
            write_weak_rows(rows, args.write)
            print(json.dumps(summary, ensure_ascii=False, indent=1), file=sys.stderr)
    except (CorpusError, OSError, json.JSONDecodeError, KeyError) as exc:
        print(f"weak_labels: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
