"""Text perturbations the way real customers write, each keeping every label of the row: used by training
(augmentation) and by the robustness report of the evaluation.

Each perturbation is a deterministic function of (text, seed, the row's labels) that keeps every
label of the row as it is (a reader would label the perturbed text the same):

==================  ==========================================================================
name                what it does
==================  ==========================================================================
``greeting``        prepends an opener: 你好，/ 在吗？/ 亲~ / 客服你好，…
``emoji``           inserts 1-2 emoji (at the end or after a clause), chosen by the row's
                    sentiment: neutral ones on every row, sad ones only on negative rows, angry
                    ones only on negative complaints (D), happy ones only on positive rows
``punctuation``     repeats ? ！ 。 ~ … marks (？ -> ？？？), or appends 。。。/ ... / …… when
                    the text has none
``masked_ids``      adds a masked identifier: 订单号[ORDERID_4821] / 单号[数字x] on rows about
                    an order or product (B, C, D), 手机号138****1234 on any row
``homophone``       1-2 homophone typos (的→得, 在→再, 订单→定单, 投诉→投述 …)
``pinyin``          one word typed in pinyin (货→huo, 退款→tuikuan, 客服→kf …)
``fullwidth``       swaps character width: ASCII letters, digits, punctuation and spaces to their
                    full-width forms (ＡＢＣ１２３？), full-width ones to ASCII
``traditional``     Simplified → Traditional characters (OpenCC ``s2t``)
``traditional_tw``  Simplified → Traditional with Taiwan vocabulary (OpenCC ``s2twp``:
                    联系→聯絡, 打印机→印表機, 在线→線上)
==================  ==========================================================================

The word tables (typos, pinyin, greetings, emoji, id templates) live in
``data/robustness_perturbations.toml``. No perturbation edits a masked placeholder already in the
text (``[数字x]``, ``[ORDERID_123]``, ``138****1234``).

**What the normaliser undoes.** The model normalises every text first (``policy/text_normalization``:
NFKC, OpenCC t2s), so ``fullwidth`` and ``traditional`` reach the model as the original text: these
two test the normaliser, not the model (the report counts the rows whose perturbed text normalises
to the original's, ``n_same_after_normalisation``). ``traditional_tw`` is only partly undone: t2s
restores the characters but keeps the Taiwan words (联络, 印表机, 线上).

**Determinism.** The random choices of a perturbation come from ``random.Random`` seeded with the
seed, the perturbation's name and the text, so a text gets the same variant whatever the row order,
on every platform and Python run (string seeds are hashed with SHA-512, not ``hash()``).
"""

from __future__ import annotations

import functools
import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from helpdesk_triage.policy.data_files import data_file, read_toml

__all__ = ["DEFAULT_SEED", "DEFAULT_TABLES_PATH", "PERTURBATIONS", "Perturbation", "PerturbationTables", "load_tables",
           "perturb"]

DEFAULT_TABLES_PATH = data_file("robustness_perturbations.toml")
DEFAULT_SEED = 20240601

# Never edited: masked placeholders ([数字x], [ORDERID_123], [姓名x]) and starred numbers (138****1234).
PROTECTED_RE = re.compile(r"\[[^\[\]\s]{1,40}\]|[0-9]+\*{2,}[0-9]+")
# Marks a customer repeats for emphasis (？ -> ？？？); "." and "," are left alone (decimals, thousands).
REPEATABLE_MARKS = frozenset("?？!！。~～…")
# Clause boundaries: an emoji may go right after one of these.
CLAUSE_MARKS = frozenset("，。！？,!?~～；;…、")
TRAILING_DOTS = ("。。。", "...", "……")
ORDER_CATEGORIES = frozenset("BCD")  # rows about a specific order or product: an order id fits them


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PerturbationTables:
    homophones: dict[str, tuple[str, ...]]
    pinyin: dict[str, tuple[str, ...]]
    greetings: tuple[str, ...]
    emoji: dict[str, tuple[str, ...]]  # neutral, negative, negative_complaint, positive
    order_ids: tuple[str, ...]
    contact_ids: tuple[str, ...]
    source: str

    @functools.cached_property
    def homophone_re(self) -> re.Pattern:
        return _alternation(self.homophones)

    @functools.cached_property
    def pinyin_re(self) -> re.Pattern:
        return _alternation(self.pinyin)


def _alternation(table: Mapping[str, Sequence[str]]) -> re.Pattern:
    # Longest keys first: at each position the regex takes the first alternative that matches.
    return re.compile("|".join(re.escape(k) for k in sorted(table, key=lambda k: (-len(k), k))))


def _strings(value, where: str, problems: list[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        problems.append(f"{where}: expected a non-empty list of non-empty strings")
        return ()
    return tuple(value)


def _word_table(doc: dict, section: str, problems: list[str]) -> dict[str, tuple[str, ...]]:
    raw = doc.get(section)
    if not isinstance(raw, dict) or not raw:
        problems.append(f"[{section}]: missing or empty")
        return {}
    table = {}
    for key, values in raw.items():
        alternatives = _strings(values, f"[{section}] {key!r}", problems)
        if key in alternatives:
            problems.append(f"[{section}] {key!r}: an alternative equals the word itself")
        if PROTECTED_RE.search(key):
            problems.append(f"[{section}] {key!r}: a word may not be a masked placeholder")
        table[key] = alternatives
    return table


def load_tables(path: str | Path | None = None) -> PerturbationTables:
    """The word tables from ``path`` (default ``data/robustness_perturbations.toml``); ValueError
    listing every problem of a malformed file."""
    if path is None:
        return _default_tables()
    return _load_tables(Path(path))


@functools.lru_cache(maxsize=1)
def _default_tables() -> PerturbationTables:
    return _load_tables(DEFAULT_TABLES_PATH)


def _load_tables(path: Path) -> PerturbationTables:
    doc = read_toml(path, "perturbation table")
    problems: list[str] = []
    homophones = _word_table(doc, "homophones", problems)
    pinyin = _word_table(doc, "pinyin", problems)
    greetings = _strings(doc.get("greetings", {}).get("prefixes"), "[greetings] prefixes", problems)
    emoji_doc = doc.get("emoji", {})
    emoji = {
        mood: _strings(emoji_doc.get(mood), f"[emoji] {mood}", problems)
        for mood in ("neutral", "negative", "negative_complaint", "positive")
    }
    ids = doc.get("masked_ids", {})
    order_ids = _strings(ids.get("order"), "[masked_ids] order", problems)
    contact_ids = _strings(ids.get("contact"), "[masked_ids] contact", problems)
    if problems:
        raise ValueError(f"{path}: invalid perturbation tables: " + "; ".join(problems))
    return PerturbationTables(homophones, pinyin, greetings, emoji, order_ids, contact_ids, str(path))


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def protected_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of every masked placeholder / starred number: text no perturbation edits."""
    return [m.span() for m in PROTECTED_RE.finditer(text)]


def _is_protected(i: int, spans: Sequence[tuple[int, int]]) -> bool:
    return any(start <= i < end for start, end in spans)


def _map_unprotected(text: str, convert: Callable[[str], str]) -> str:
    """``convert`` applied to each stretch of text between protected spans."""
    out, last = [], 0
    for start, end in protected_spans(text):
        if start > last:
            out.append(convert(text[last:start]))
        out.append(text[start:end])
        last = end
    if last < len(text):
        out.append(convert(text[last:]))
    return "".join(out)


def _replace_words(text: str, rng: random.Random, pattern: re.Pattern, table: Mapping[str, Sequence[str]], count: int) -> str:
    """Replace ``count`` random table words of ``text`` (outside protected spans) by one of their alternatives."""
    spans = protected_spans(text)
    matches = [m for m in pattern.finditer(text)
               if not any(m.start() < end and start < m.end() for start, end in spans)]
    if not matches:
        return text
    chosen = sorted(rng.sample(matches, min(count, len(matches))), key=lambda m: m.start())
    out, last = [], 0
    for m in chosen:
        out += [text[last : m.start()], rng.choice(table[m.group()])]
        last = m.end()
    out.append(text[last:])
    return "".join(out)


@functools.lru_cache(maxsize=None)
def _opencc(config: str):
    import opencc

    return opencc.OpenCC(config)


# --------------------------------------------------------------------------------------------
# The perturbations: (text, rng, labels, tables) -> text
# --------------------------------------------------------------------------------------------

Labels = Mapping[str, "str | None"]


def greeting(text: str, rng: random.Random, labels: Labels, tables: PerturbationTables) -> str:
    return rng.choice(tables.greetings) + text


def emoji(text: str, rng: random.Random, labels: Labels, tables: PerturbationTables) -> str:
    pool = list(tables.emoji["neutral"])
    sentiment = labels.get("sentiment")
    if sentiment == "negative":
        pool += tables.emoji["negative"]
        if labels.get("category") == "D":
            pool += tables.emoji["negative_complaint"]
    elif sentiment == "positive":
        pool += tables.emoji["positive"]
    spans = protected_spans(text)
    positions = {len(text)} | {
        i + 1 for i, ch in enumerate(text)
        if ch in CLAUSE_MARKS and not _is_protected(i, spans) and not (i + 1 < len(text) and text[i + 1].isdigit())
    }
    chosen = rng.sample(sorted(positions), min(rng.choice((1, 1, 2)), len(positions)))
    for pos in sorted(chosen, reverse=True):
        text = text[:pos] + rng.choice(pool) * rng.choice((1, 1, 2, 3)) + text[pos:]
    return text


def punctuation(text: str, rng: random.Random, labels: Labels, tables: PerturbationTables) -> str:
    spans = protected_spans(text)
    marks = [i for i, ch in enumerate(text) if ch in REPEATABLE_MARKS and not _is_protected(i, spans)]
    if not marks:
        return text + rng.choice(TRAILING_DOTS)
    for i in sorted(rng.sample(marks, min(2, len(marks))), reverse=True):
        text = text[: i + 1] + text[i] * rng.randint(1, 3) + text[i + 1 :]
    return text


def _fill_id(template: str, rng: random.Random) -> str:
    order = str(rng.randint(1, 9)) + "".join(str(rng.randint(0, 9)) for _ in range(rng.randint(3, 7)))
    phone = f"1{rng.randint(3, 9)}{rng.randint(0, 9)}****{rng.randint(0, 9999):04d}"
    return template.replace("{order}", order).replace("{phone}", phone)


def masked_ids(text: str, rng: random.Random, labels: Labels, tables: PerturbationTables) -> str:
    pool = list(tables.contact_ids)
    if labels.get("category") in ORDER_CATEGORIES:
        pool += tables.order_ids
    masked = _fill_id(rng.choice(pool), rng)
    if rng.random() < 0.4:
        return masked + rng.choice(("，", " ")) + text
    if text and text[-1] in CLAUSE_MARKS:
        return text + masked
    return text + rng.choice(("，", " ", "，")) + masked


def homophone(text: str, rng: random.Random, labels: Labels, tables: PerturbationTables) -> str:
    return _replace_words(text, rng, tables.homophone_re, tables.homophones, 1 if len(text) < 30 else 2)


def pinyin(text: str, rng: random.Random, labels: Labels, tables: PerturbationTables) -> str:
    return _replace_words(text, rng, tables.pinyin_re, tables.pinyin, 1)


_HALF_TO_FULL = {cp: cp + 0xFEE0 for cp in range(0x21, 0x7F)} | {0x20: 0x3000}
_FULL_TO_HALF = {full: half for half, full in _HALF_TO_FULL.items()}
_WIDTH_SWAP = _HALF_TO_FULL | _FULL_TO_HALF


def fullwidth(text: str, rng: random.Random, labels: Labels, tables: PerturbationTables) -> str:
    return _map_unprotected(text, lambda s: s.translate(_WIDTH_SWAP))


def traditional(text: str, rng: random.Random, labels: Labels, tables: PerturbationTables) -> str:
    return _map_unprotected(text, _opencc("s2t").convert)


def traditional_tw(text: str, rng: random.Random, labels: Labels, tables: PerturbationTables) -> str:
    return _map_unprotected(text, _opencc("s2twp").convert)


@dataclass(frozen=True)
class Perturbation:
    name: str
    description: str
    apply: Callable[[str, random.Random, Labels, PerturbationTables], str]
    normaliser_undoes: bool = False  # the model's normaliser maps the variant back to the original


PERTURBATIONS: dict[str, Perturbation] = {
    p.name: p
    for p in (
        Perturbation("greeting", "leading greeting (你好，/ 在吗？/ 亲~ …)", greeting),
        Perturbation("emoji", "1-2 emoji matching the sentiment (neutral 🙏🤔👀🙋, sad on negative, angry only on D)", emoji),
        Perturbation("punctuation", "repeated punctuation (？？？ ！！！ 。。。)", punctuation),
        Perturbation("masked_ids", "masked id added ([ORDERID_4821] / [数字x] on B/C/D rows, 138****1234 on any)", masked_ids),
        Perturbation("homophone", "1-2 homophone typos (的→得, 在→再, 订单→定单 …)", homophone),
        Perturbation("pinyin", "one word in pinyin (货→huo, 退款→tuikuan, 客服→kf …)", pinyin),
        Perturbation("fullwidth", "half-width ↔ full-width characters (ＡＢＣ１２３？)", fullwidth, normaliser_undoes=True),
        Perturbation("traditional", "Simplified → Traditional characters (OpenCC s2t)", traditional, normaliser_undoes=True),
        Perturbation("traditional_tw", "Simplified → Traditional with Taiwan words (OpenCC s2twp)", traditional_tw),
    )
}


def perturb(
    text: str,
    kind: str,
    *,
    seed: int = DEFAULT_SEED,
    labels: Labels | None = None,
    tables: PerturbationTables | None = None,
) -> str:
    """``text`` perturbed by ``kind`` (a key of :data:`PERTURBATIONS`); the text itself when the
    perturbation does not apply (e.g. no word of the typo table occurs). ``labels`` (the row's
    ``category`` / ``sentiment``) choose label-consistent emoji and ids."""
    if kind not in PERTURBATIONS:
        raise KeyError(f"unknown perturbation {kind!r}; known: {', '.join(PERTURBATIONS)}")
    if not isinstance(text, str):
        raise TypeError(f"perturb() expects str, got {type(text).__name__}")
    rng = random.Random(f"{seed}\x1f{kind}\x1f{text}")
    return PERTURBATIONS[kind].apply(text, rng, labels or {}, tables or load_tables())
