"""Suggested replies: choose a template for a triaged message and render it.

The templates, keyword cues and forbidden phrasings live in ``data/reply_templates.toml``;
its header documents the slot and optional-segment syntax and the selection rules.
"""

from __future__ import annotations

import functools
import re
import tomllib
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from helpdesk_triage.policy.labels import LABELS
from helpdesk_triage.policy.data_files import data_file

DEFAULT_TEMPLATES_PATH = data_file("reply_templates.toml")
SLOTS = ("customer_name", "order_id", "agent_name", "first_response_due")
GENERAL = "general"
DEFAULT_VARIANT = "default"

_TEMPLATE_ID = re.compile(r"^([A-Za-z0-9]+)\.([a-z][a-z0-9_]*)\.([a-z][a-z0-9_]*)$")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_MARKUP = re.compile(r"\[\[|\]\]|\|\||\{([^{}]*)\}|[{}]")
_PUNCT = "，。！？、；：,.!?;:"
_BAD_PUNCTUATION = re.compile(rf"[{_PUNCT}]{{2,}}|^[{_PUNCT}]|（）|\(\)")
_SAMPLE_SLOTS = {
    "customer_name": "张女士",
    "order_id": "202405180001",
    "agent_name": "小李",
    "first_response_due": "今天18:00",
}
_TOP_KEYS = {"forbidden_phrases", "subcase", "template"}
_SUBCASE_KEYS = {"category", "name", "label", "priority", "keywords"}
_TEMPLATE_KEYS = {"id", "text", "severities", "sentiments"}


@dataclass(frozen=True)
class SuggestedReply:
    template_id: str
    subcase: str
    text: str


@dataclass(frozen=True)
class Subcase:
    category: str
    name: str
    label: str
    priority: int
    keywords: tuple[str, ...]


@dataclass(frozen=True)
class ReplyTemplate:
    id: str
    category: str
    subcase: str
    variant: str
    severities: tuple[str, ...]
    sentiments: tuple[str, ...]
    text: str

    def applies_to(self, severity: str, sentiment: str) -> bool:
        return (not self.severities or severity in self.severities) and (
            not self.sentiments or sentiment in self.sentiments
        )

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


def _parse_subcase(entry: object) -> Subcase:
    if not isinstance(entry, dict):
        raise ValueError(f"[[subcase]] entry is not a table: {entry!r}")
    where = f"subcase {entry.get('category')}.{entry.get('name')}"
    extra = set(entry) - _SUBCASE_KEYS
    if extra:
        raise ValueError(f"{where}: unknown keys {sorted(extra)}")
    category, name, label = entry.get("category"), entry.get("name"), entry.get("label")
    if not LABELS.is_valid("category", category):
        raise ValueError(f"{where}: unknown category {category!r}")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"{where}: name must match {_NAME.pattern}")
    if not isinstance(label, str) or not label.strip():
        raise ValueError(f"{where}: label is missing")
    priority = entry.get("priority", 0)
    if not isinstance(priority, int) or isinstance(priority, bool):
        raise ValueError(f"{where}: priority must be an integer")
    keywords = _string_list(entry.get("keywords", []), f"{where}: keywords")
    return Subcase(category, name, label.strip(), priority, tuple(k.casefold() for k in keywords))


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
    category, subcase, variant = m.groups()
    return ReplyTemplate(template_id, category, subcase, variant, severities, sentiments, text.strip())


class ReplyTemplateLibrary:
    def __init__(
        self,
        subcases: tuple[Subcase, ...],
        templates: tuple[ReplyTemplate, ...],
        forbidden_phrases: tuple[str, ...],
    ) -> None:
        self._forbidden = tuple(forbidden_phrases)
        self._forbidden_squashed = tuple((p, _squash(p)) for p in self._forbidden)
        self._subcases: dict[str, tuple[Subcase, ...]] = {c: () for c in LABELS.categories}
        for sc in subcases:
            if any(s.name == sc.name for s in self._subcases[sc.category]):
                raise ValueError(f"subcase {sc.category}.{sc.name} is declared twice")
            if sc.name == GENERAL and sc.keywords:
                raise ValueError(f"subcase {sc.category}.{GENERAL} is the fallback and takes no keywords")
            self._subcases[sc.category] += (sc,)
        for category, declared in self._subcases.items():
            if not any(s.name == GENERAL for s in declared):
                raise ValueError(f"category {category} has no '{GENERAL}' subcase")

        self._templates: dict[str, ReplyTemplate] = {}
        self._variants: dict[tuple[str, str], list[ReplyTemplate]] = {
            (s.category, s.name): [] for group in self._subcases.values() for s in group
        }
        for template in templates:
            self._check_template(template)
            self._templates[template.id] = template
            self._variants[(template.category, template.subcase)].append(template)
        for (category, subcase), variants in self._variants.items():
            self._check_variants(f"{category}.{subcase}", variants)

    @classmethod
    def load(cls, path: str | Path | None = None) -> "ReplyTemplateLibrary":
        path = Path(path) if path is not None else DEFAULT_TEMPLATES_PATH
        try:
            with path.open("rb") as f:
                raw = tomllib.load(f)
            extra = set(raw) - _TOP_KEYS
            if extra:
                raise ValueError(f"unknown top-level keys {sorted(extra)}")
            forbidden = _string_list(raw.get("forbidden_phrases", []), "forbidden_phrases")
            subcases = tuple(_parse_subcase(e) for e in raw.get("subcase", []))
            templates = tuple(_parse_template(e) for e in raw.get("template", []))
            return cls(subcases, templates, forbidden)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from e

    def _check_template(self, t: ReplyTemplate) -> None:
        where = f"template {t.id}"
        if t.id in self._templates:
            raise ValueError(f"duplicate template id {t.id}")
        if not LABELS.is_valid("category", t.category):
            raise ValueError(f"{where}: unknown category {t.category!r}")
        if (t.category, t.subcase) not in self._variants:
            raise ValueError(f"{where}: subcase {t.category}.{t.subcase} is not declared")
        for severity in t.severities:
            if not LABELS.is_valid("severity", severity):
                raise ValueError(f"{where}: unknown severity {severity!r}")
        for sentiment in t.sentiments:
            if not LABELS.is_valid("sentiment", sentiment):
                raise ValueError(f"{where}: unknown sentiment {sentiment!r}")
        if (t.variant == DEFAULT_VARIANT) != (t.specificity == (False, False)):
            raise ValueError(
                f"{where}: the '{DEFAULT_VARIANT}' variant, and only it, has no severities or sentiments"
            )
        try:
            parts = _parse(t.text)
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

    @staticmethod
    def _check_variants(subcase: str, variants: list[ReplyTemplate]) -> None:
        if not any(v.variant == DEFAULT_VARIANT for v in variants):
            raise ValueError(f"subcase {subcase} has no '{DEFAULT_VARIANT}' template")
        for severity in LABELS.severities:
            for sentiment in LABELS.sentiments:
                matching = [v for v in variants if v.applies_to(severity, sentiment)]
                top = max(v.specificity for v in matching)
                tied = [v.id for v in matching if v.specificity == top]
                if len(tied) > 1:
                    raise ValueError(
                        f"templates {tied} all apply to severity={severity} sentiment={sentiment}"
                    )

    @property
    def forbidden_phrases(self) -> tuple[str, ...]:
        return self._forbidden

    def forbidden_in(self, text: str) -> tuple[str, ...]:
        squashed = _squash(text)
        return tuple(phrase for phrase, key in self._forbidden_squashed if key and key in squashed)

    def subcases(self, category: str) -> tuple[Subcase, ...]:
        _check_label("category", category)
        return self._subcases[category]

    def all_templates(self) -> list[ReplyTemplate]:
        return list(self._templates.values())

    def detect_subcase(self, category: str, text: str) -> str:
        """Highest priority, then longest matching cue, then file order; no cue -> 'general'."""
        _check_label("category", category)
        haystack = text.casefold()
        best, best_rank = GENERAL, None
        for order, sc in enumerate(self._subcases[category]):
            hits = [len(k) for k in sc.keywords if k in haystack]
            if hits:
                rank = (sc.priority, max(hits), -order)
                if best_rank is None or rank > best_rank:
                    best, best_rank = sc.name, rank
        return best

    def suggest(
        self,
        category: str,
        severity: str,
        sentiment: str,
        text: str,
        slots: Mapping[str, str | None] | None = None,
    ) -> SuggestedReply:
        _check_label("category", category)
        _check_label("severity", severity)
        _check_label("sentiment", sentiment)
        subcase = self.detect_subcase(category, text)
        matching = [v for v in self._variants[(category, subcase)] if v.applies_to(severity, sentiment)]
        template = max(matching, key=lambda v: v.specificity)
        return SuggestedReply(template.id, subcase, self.render(template.text, slots or {}))

    def render(self, template_text: str, slots: Mapping[str, str | None]) -> str:
        return _render(_parse(template_text), _known_slots(slots))
