"""The label schema (categories, severities, sentiments) loaded from ``labels.toml``."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from helpdesk_triage.policy.data_files import data_file

DEFAULT_LABELS_PATH = data_file("labels.toml")
HEADS = ("category", "severity", "sentiment")


@dataclass(frozen=True)
class Label:
    code: str
    name_zh: str
    name_en: str
    description: str
    queue: str | None = None
    queue_override: str | None = None
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class LabelSchema:
    heads: dict[str, tuple[Label, ...]]

    @classmethod
    def load(cls, path: str | Path | None = None) -> "LabelSchema":
        path = Path(path) if path is not None else DEFAULT_LABELS_PATH
        with path.open("rb") as f:
            raw = tomllib.load(f)
        heads: dict[str, tuple[Label, ...]] = {}
        for head in HEADS:
            entries = raw.get(head)
            if not entries:
                raise ValueError(f"{path}: no [[{head}]] entries")
            labels = tuple(_parse_label(path, head, e) for e in entries)
            codes = [label.code for label in labels]
            if len(set(codes)) != len(codes):
                raise ValueError(f"{path}: duplicate {head} codes in {codes}")
            heads[head] = labels
        unknown = set(raw) - set(HEADS)
        if unknown:
            raise ValueError(f"{path}: unknown sections {sorted(unknown)}")
        return cls(heads)

    def codes(self, head: str) -> tuple[str, ...]:
        return tuple(label.code for label in self.labels(head))

    def labels(self, head: str) -> tuple[Label, ...]:
        if head not in self.heads:
            raise KeyError(f"unknown head {head!r}; heads are {list(self.heads)}")
        return self.heads[head]

    def get(self, head: str, code: str) -> Label:
        for label in self.labels(head):
            if label.code == code:
                return label
        raise ValueError(f"unknown {head} label {code!r}; expected one of {list(self.codes(head))}")

    def resolve(self, head: str, value: str) -> str | None:
        """The code a data file means by ``value``: the code in any case (``d``), the Chinese or English name
        (``投诉不满``, ``complaint needing escalation``) or an alias (``complaint``); None when none matches."""
        wanted = value.strip().casefold()
        for label in self.labels(head):
            names = (label.code, label.name_zh, label.name_en, *label.aliases)
            if wanted in (n.casefold() for n in names):
                return label.code
        return None

    def is_valid(self, head: str, code: object) -> bool:
        return isinstance(code, str) and code in self.codes(head)

    def queue_for(self, category: str, severity: str) -> str:
        override = self.get("severity", severity).queue_override
        if override:
            return override
        queue = self.get("category", category).queue
        if not queue:
            raise ValueError(f"category {category!r} has no queue")
        return queue

    @property
    def categories(self) -> tuple[str, ...]:
        return self.codes("category")

    @property
    def severities(self) -> tuple[str, ...]:
        return self.codes("severity")

    @property
    def sentiments(self) -> tuple[str, ...]:
        return self.codes("sentiment")


_REQUIRED = ("code", "name_zh", "name_en", "description")
_OPTIONAL = ("queue", "queue_override", "aliases")


def _parse_label(path: Path, head: str, entry: dict) -> Label:
    missing = [k for k in _REQUIRED if not isinstance(entry.get(k), str) or not entry[k].strip()]
    if missing:
        raise ValueError(f"{path}: a [[{head}]] entry lacks {missing}: {entry}")
    extra = set(entry) - set(_REQUIRED) - set(_OPTIONAL)
    if extra:
        raise ValueError(f"{path}: [[{head}]] {entry.get('code')!r} has unknown keys {sorted(extra)}")
    aliases = entry.get("aliases", [])
    if not isinstance(aliases, list) or not all(isinstance(a, str) and a.strip() for a in aliases):
        raise ValueError(f"{path}: [[{head}]] {entry.get('code')!r}: aliases must be a list of non-empty strings")
    return Label(**{**entry, "aliases": tuple(a.strip() for a in aliases)})


LABELS = LabelSchema.load()
