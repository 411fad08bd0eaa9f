"""Suggested replies: the answer-library entry or the sub-case's template for a triaged message, rendered,
with the next best options as alternatives.

The templates and forbidden phrasings live in ``data/reply_templates.toml`` (its header documents the slots,
optional segments, cue variants and selection rules); the sub-cases in ``data/subcases.toml``; the answers in
``data/answer_library.toml``.
"""

from __future__ import annotations

import functools
import re
import tomllib
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from helpdesk_triage.policy.answer_library import AnswerMatch
from helpdesk_triage.policy.data_files import data_file
from helpdesk_triage.policy.labels import LABELS
from helpdesk_triage.policy.text_normalization import code_point_ranges
from helpdesk_triage.policy.subcases import OTHER, SubcaseChoice, SubcaseTaxonomy

DEFAULT_TEMPLATES_PATH = data_file("reply_templates.toml")
SLOTS = ("customer_name", "order_id", "agent_name", "first_response_due", "resolution_due")
DEFAULT_VARIANT = "default"
MAX_SLOT_CHARS = 64

_TEMPLATE_ID = re.compile(r"^([A-Za-z0-9]+)\.([a-z][a-z0-9_]*)\.([a-z][a-z0-9_]*)$")
_MARKUP = re.compile(r"\[\[|\]\]|\|\||\{([^{}]*)\}|[{}]")
_PUNCT = "，。！？、；：,.!?;:"
_BAD_PUNCTUATION = re.compile(rf"[{_PUNCT}]{{2,}}|^[{_PUNCT}]|（）|\(\)")
_SAMPLE_SLOTS = {
    "customer_name": "张女士",
    "order_id": "202405180001",
    "agent_name": "小李",
    "first_response_due": "3月10日11:00",
    "resolution_due": "3月10日14:00",
}
# A slot value goes into the reply an agent sends as it is: nothing invisible (a bidi override turns the reply
# around, a zero-width space hides in it) and no line breaks in a name or an order number. Code points this
# Python's Unicode tables do not know yet (Cn) are let through: a newer emoji in a name is not an attack.
_REFUSED_SLOT_CHARACTERS = {
    "Cc": "a control character",
    "Cf": "an invisible format character",
    "Cs": "an unpaired surrogate",
    "Co": "a private-use character",
    "Zl": "a line separator",
    "Zp": "a paragraph separator",
}
# Markup: what a chat widget or an e-mail client may render as HTML (< >) and the characters of the templates'
# own markup ({slot}, [[ ]], ||), refused one by one so that the contract can state the rule as a character class.
SLOT_MARKUP_CHARACTERS = "<>{}[]|"

_TOP_KEYS = {"forbidden_phrases", "template"}
_TEMPLATE_KEYS = {"id", "text", "severities", "sentiments", "cues"}
ANY = "any"


@dataclass(frozen=True)
class ReplyOption:
    source: str  # a template id or "answer:<entry id>"
    subcase: str  # "<category>.<code>"
    text: str


@dataclass(frozen=True)
class SuggestedReply:
    """The best reply and the next ones an agent may pick instead."""

    best: ReplyOption
    alternatives: tuple[ReplyOption, ...]

    @property
    def template_id(self) -> str:
        return self.best.source

    @property
    def subcase(self) -> str:
        return self.best.subcase

    @property
    def text(self) -> str:
        return self.best.text


@dataclass(frozen=True)
class ReplyTemplate:
    id: str
    category: str  # a category code or "any"
    subcase: str  # a sub-case code or "any"
    variant: str
    severities: tuple[str, ...]
    sentiments: tuple[str, ...]
    cues: tuple[str, ...]
    text: str

    def applies_to(self, severity: str, sentiment: str) -> bool:
        return (not self.severities or severity in self.severities) and (
            not self.sentiments or sentiment in self.sentiments
        )

    def cue_in(self, haystack: str) -> bool:
        return any(c in haystack for c in self.cues)

    @property
    def specificity(self) -> tuple[bool, bool]:
        return bool(self.severities), bool(self.sentiments)


@dataclass(frozen=True)
class _Slot:
    name: str


@dataclass(frozen=True)
class _Segment:
    body: tuple[str | _Slot, ...]
    fallback: str

    @property
    def slot_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.body if isinstance(p, _Slot))


_Part = str | _Slot | _Segment


@functools.lru_cache(maxsize=512)
def _parse(text: str) -> tuple[_Part, ...]:
    parts: list[_Part] = []
    segment: list[str | _Slot] | None = None
    fallback: list[str] | None = None
    pos = 0
    for m in _MARKUP.finditer(text):
        target = fallback if fallback is not None else segment if segment is not None else parts
        if m.start() > pos:
            target.append(text[pos : m.start()])
        pos = m.end()
        token = m.group(0)
        if token == "[[":
            if segment is not None:
                raise ValueError("optional segments cannot nest")
            segment = []
        elif token == "]]":
            if segment is None:
                raise ValueError("unbalanced ']]'")
            if not any(isinstance(p, _Slot) for p in segment):
                raise ValueError("optional segment without a slot")
            parts.append(_Segment(tuple(segment), "".join(fallback or ())))
            segment = fallback = None
        elif token == "||":
            if segment is None or fallback is not None:
                raise ValueError("'||' outside an optional segment")
            fallback = []
        elif m.group(1) is not None:
            name = m.group(1)
            if name not in SLOTS:
                raise ValueError(f"unknown slot {{{name}}}; slots are {list(SLOTS)}")
            if fallback is not None:
                raise ValueError(f"slot {{{name}}} after '||'")
            target.append(_Slot(name))
        else:
            raise ValueError(f"stray {token!r}")
    if segment is not None:
        raise ValueError("unbalanced '[['")
    if pos < len(text):
        parts.append(text[pos:])
    return tuple(parts)


def _render(parts: tuple[_Part, ...], values: Mapping[str, str]) -> str:
    out: list[str] = []
    for part in parts:
        if isinstance(part, str):
            out.append(part)
        elif isinstance(part, _Slot):
            if part.name not in values:
                raise ValueError(f"slot {{{part.name}}} is outside an optional segment and has no value")
            out.append(values[part.name])
        elif all(name in values for name in part.slot_names):
            out.extend(values[p.name] if isinstance(p, _Slot) else p for p in part.body)
        else:
            out.append(part.fallback)
    return "".join(out)


def _known_slots(slots: Mapping[str, str | None] | None) -> dict[str, str]:
    known: dict[str, str] = {}
    for name, value in (slots or {}).items():
        if name not in SLOTS:
            raise ValueError(f"unknown slot {name!r}; slots are {list(SLOTS)}")
        if value is None:
            continue
        value = str(value).strip()
        if value:
            known[name] = value
    return known


def _squash(text: str) -> str:
    return "".join(
        ch for ch in text.casefold() if not ch.isspace() and unicodedata.category(ch)[0] not in "PS"
    )


def _check_label(head: str, code: object) -> None:
    if not LABELS.is_valid(head, code):
        raise ValueError(f"unknown {head} {code!r}; expected one of {list(LABELS.codes(head))}")


def _string_list(value: object, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ValueError(f"{what} must be a list of non-empty strings")
    return tuple(v.strip() for v in value)


def _parse_template(entry: object) -> ReplyTemplate:
    if not isinstance(entry, dict):
        raise ValueError(f"[[template]] entry is not a table: {entry!r}")
    template_id = entry.get("id")
    where = f"template {template_id}"
    if not isinstance(template_id, str) or not (m := _TEMPLATE_ID.match(template_id)):
        raise ValueError(f"{where}: id must look like '<category>.<subcase>.<variant>'")
    extra = set(entry) - _TEMPLATE_KEYS
    if extra:
        raise ValueError(f"{where}: unknown keys {sorted(extra)}")
    text = entry.get("text")
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{where}: text is missing")
    severities = _string_list(entry.get("severities", []), f"{where}: severities")
    sentiments = _string_list(entry.get("sentiments", []), f"{where}: sentiments")
    cues = tuple(c.casefold() for c in _string_list(entry.get("cues", []), f"{where}: cues"))
    category, subcase, variant = m.groups()
    return ReplyTemplate(template_id, category, subcase, variant, severities, sentiments, cues, text.strip())


class ReplyTemplateLibrary:
    """The templates of ``data/reply_templates.toml`` over the sub-cases of ``data/subcases.toml``."""

    def __init__(self, templates: tuple[ReplyTemplate, ...], forbidden_phrases: tuple[str, ...],
                 taxonomy: SubcaseTaxonomy | None = None) -> None:
        self.taxonomy = taxonomy or SubcaseTaxonomy.load()
        self._forbidden = tuple(forbidden_phrases)
        self._forbidden_squashed = tuple((p, _squash(p)) for p in self._forbidden)
        self._templates: dict[str, ReplyTemplate] = {}
        self._groups: dict[tuple[str, str], list[ReplyTemplate]] = {}
        for template in templates:
            self._check_template(template)
            self._templates[template.id] = template
            self._groups.setdefault((template.category, template.subcase), []).append(template)
        for sc in self.taxonomy.subcases:
            self._check_variants(sc.category, sc.code)

    @classmethod
    def load(cls, path: str | Path | None = None, subcases: str | Path | None = None) -> "ReplyTemplateLibrary":
        """``path``: the templates (default ``data/reply_templates.toml``); ``subcases``: the taxonomy
        (default ``data/subcases.toml``)."""
        path = Path(path) if path is not None else DEFAULT_TEMPLATES_PATH
        try:
            with path.open("rb") as f:
                raw = tomllib.load(f)
            extra = set(raw) - _TOP_KEYS
            if extra:
                raise ValueError(f"unknown top-level keys {sorted(extra)}")
            forbidden = _string_list(raw.get("forbidden_phrases", []), "forbidden_phrases")
            templates = tuple(_parse_template(e) for e in raw.get("template", []))
            return cls(templates, forbidden, SubcaseTaxonomy.load(subcases))
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from e

    def check_reply_text(self, where: str, text: str) -> None:
        """ValueError when ``text`` is not a valid reply: markup, a slot outside a segment, a forbidden phrase,
        stray punctuation (checked with no slot known and with every slot known)."""
        try:
            parts = _parse(text)
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
        bare = [p.name for p in parts if isinstance(p, _Slot)]
        if bare:
            raise ValueError(f"{where}: slot {{{bare[0]}}} must sit inside an optional segment [[ ]]")
        for rendered in (_render(parts, {}), _render(parts, _SAMPLE_SLOTS)):
            found = self.forbidden_in(rendered)
            if found:
                raise ValueError(f"{where}: contains the forbidden phrase {found[0]!r}")
            bad = _BAD_PUNCTUATION.search(rendered)
            if bad:
                raise ValueError(f"{where}: renders with stray punctuation {bad.group(0)!r}: {rendered}")

    def check_slot_value(self, name: str, value: str) -> None:
        """ValueError (the message names the slot) when ``value`` may not fill slot ``name`` of a reply: over
        :data:`MAX_SLOT_CHARS` characters, a character of :data:`_REFUSED_SLOT_CHARACTERS`, a markup character
        (:data:`SLOT_MARKUP_CHARACTERS`) or a forbidden phrase of the handbook. Such a value is refused,
        not cleaned: whoever sent it gets to know."""
        if name not in SLOTS:
            raise ValueError(f"unknown slot {name!r}; slots are {list(SLOTS)}")
        if len(value) > MAX_SLOT_CHARS:
            raise ValueError(f"{name} is {len(value)} characters long; at most {MAX_SLOT_CHARS} characters")
        for ch in value:
            what = _REFUSED_SLOT_CHARACTERS.get(unicodedata.category(ch))
            if what is not None:
                raise ValueError(f"{name} contains {what} (U+{ord(ch):04X})")
        markup = next((ch for ch in value if ch in SLOT_MARKUP_CHARACTERS), None)
        if markup is not None:
            raise ValueError(f"{name} contains markup {markup!r}; it would go into the reply as it is")
        found = self.forbidden_in(value)
        if found:
            raise ValueError(f"{name} contains {found[0]!r}, a phrase the reply handbook forbids")

    def _check_template(self, t: ReplyTemplate) -> None:
        where = f"template {t.id}"
        if t.id in self._templates:
            raise ValueError(f"duplicate template id {t.id}")
        if t.category == ANY:
            if t.subcase != ANY:
                raise ValueError(f"{where}: a template for every category is for every sub-case too ('any.any.…')")
        elif not LABELS.is_valid("category", t.category):
            raise ValueError(f"{where}: unknown category {t.category!r}")
        elif t.subcase != ANY and t.subcase not in {sc.code for sc in self.taxonomy.of(t.category)}:
            raise ValueError(f"{where}: sub-case {t.category}.{t.subcase} is not in data/subcases.toml")
        for severity in t.severities:
            if not LABELS.is_valid("severity", severity):
                raise ValueError(f"{where}: unknown severity {severity!r}")
        for sentiment in t.sentiments:
            if not LABELS.is_valid("sentiment", sentiment):
                raise ValueError(f"{where}: unknown sentiment {sentiment!r}")
        if (t.variant == DEFAULT_VARIANT) != (t.specificity == (False, False) and not t.cues):
            raise ValueError(f"{where}: the '{DEFAULT_VARIANT}' variant has no severities, sentiments or cues, "
                             "and every other variant has some")
        self.check_reply_text(where, t.text)

    def _check_variants(self, category: str, code: str) -> None:
        own = self._groups.get((category, code), [])
        if not any(v.variant == DEFAULT_VARIANT for v in own):
            raise ValueError(f"sub-case {category}.{code} has no '{DEFAULT_VARIANT}' template")
        for level in (own, self._groups.get((category, ANY), []), self._groups.get((ANY, ANY), [])):
            plain = [v for v in level if not v.cues]
            for severity in LABELS.severities:
                for sentiment in LABELS.sentiments:
                    matching = [v for v in plain if v.applies_to(severity, sentiment)]
                    if not matching:
                        continue
                    top = max(v.specificity for v in matching)
                    tied = [v.id for v in matching if v.specificity == top]
                    if len(tied) > 1:
                        raise ValueError(f"templates {tied} all apply to severity={severity} sentiment={sentiment}")

    @property
    def forbidden_phrases(self) -> tuple[str, ...]:
        return self._forbidden

    def forbidden_in(self, text: str) -> tuple[str, ...]:
        squashed = _squash(text)
        return tuple(phrase for phrase, key in self._forbidden_squashed if key and key in squashed)

    def all_templates(self) -> list[ReplyTemplate]:
        return list(self._templates.values())

    def template_for(self, subcase: str, severity: str, sentiment: str, text: str) -> ReplyTemplate:
        """The template for a message of ``subcase`` (``"<category>.<code>"``) with these labels (module doc)."""
        _check_label("severity", severity)
        _check_label("sentiment", sentiment)
        category, _, code = subcase.partition(".")
        self.taxonomy.get(subcase)
        levels = [self._groups.get(key, []) for key in ((category, code), (category, ANY), (ANY, ANY))]
        haystack = text.casefold()
        for level in levels:
            for t in level:
                if t.cues and t.applies_to(severity, sentiment) and t.cue_in(haystack):
                    return t
        best, best_rank = None, None
        for depth, level in enumerate(levels):
            for t in level:
                if not t.cues and t.applies_to(severity, sentiment):
                    rank = (t.specificity, -depth)
                    if best_rank is None or rank > best_rank:
                        best, best_rank = t, rank
        return best  # the sub-case's default always applies

    def suggest(self, category: str, severity: str, sentiment: str, text: str, subcase: SubcaseChoice,
                ranked_subcases: list[tuple[str, float]] | None = None, answers: list[AnswerMatch] | None = None,
                slots: Mapping[str, str | None] | None = None, count: int = 3,
                answer_floor: float = float("-inf")) -> SuggestedReply:
        """The best reply and up to ``count - 1`` alternatives: answer-library matches of at least ``answer_floor``
        first (a question answered beats a template), then the template of the chosen sub-case, then the other
        matches, then the templates of the next most probable sub-cases of the category, then the category's
        ``other``. In an emergency (severity critical) the safety script goes first."""
        _check_label("category", category)
        options: list[ReplyOption] = []
        seen: set[str] = set()

        def add(source: str, sub: str, template_text: str) -> None:
            if source not in seen and len(options) < count:
                seen.add(source)
                options.append(ReplyOption(source, sub, self.render(template_text, slots or {})))

        # An emergency's safety script goes before any answer.
        first = self.template_for(subcase.key, severity, sentiment, text)
        if severity == "critical":
            add(first.id, subcase.key, first.text)
        for match in answers or []:
            if match.similarity >= answer_floor:
                add(match.entry.source, match.entry.subcase, match.entry.answer)
        add(first.id, subcase.key, first.text)
        for match in answers or []:
            add(match.entry.source, match.entry.subcase, match.entry.answer)
        for key, _ in ranked_subcases or []:
            if key != subcase.key:
                t = self.template_for(key, severity, sentiment, text)
                add(t.id, key, t.text)
        other = f"{category}.{OTHER}"
        t = self.template_for(other, severity, sentiment, text)
        add(t.id, other, t.text)
        return SuggestedReply(options[0], tuple(options[1:]))

    def render(self, template_text: str, slots: Mapping[str, str | None]) -> str:
        return _render(_parse(template_text), _known_slots(slots))


@functools.cache
def slot_value_pattern() -> str:
    """The JSON Schema ``pattern`` of a slot value: exactly the strings without a character that
    :meth:`ReplyTemplateLibrary.check_slot_value` refuses one by one (its forbidden phrases cannot be stated).
    Surrogates are left out (a JSON string cannot hold a lone one). Computed on first use
    (about half a second: every code point's category), when the OpenAPI schema is built."""
    refused = [cp for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF
               and (unicodedata.category(chr(cp)) in _REFUSED_SLOT_CHARACTERS or chr(cp) in SLOT_MARKUP_CHARACTERS)]
    return "^[^" + code_point_ranges(refused) + "]*$"
