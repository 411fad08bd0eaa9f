"""Sub-cases: what exactly a message is about within its category (``data/subcases.toml``).

The model predicts a distribution over every sub-case (``TextPrediction.subcases``, keys ``"B.invoice"``);
:meth:`SubcaseTaxonomy.choose` picks the sub-case of the *decided* category from it, and falls back to the
file's keyword cues when the model is unsure or has no sub-case output (the keyword rules, an older model).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from helpdesk_triage.policy.data_files import data_file, read_toml
from helpdesk_triage.policy.labels import LABELS

SUBCASES_PATH = data_file("subcases.toml")
OTHER = "other"
_CODE = re.compile(r"^[a-z][a-z0-9_]*$")
_KEYS = {"category", "code", "name", "covers", "cues"}


@dataclass(frozen=True)
class Subcase:
    category: str
    code: str
    name: str
    covers: str
    cues: tuple[str, ...]

    @property
    def key(self) -> str:
        """``"<category>.<code>"``: the sub-case's name in model outputs and template ids."""
        return f"{self.category}.{self.code}"


@dataclass(frozen=True)
class SubcaseChoice:
    key: str  # "<category>.<code>"
    probability: float | None  # the model's probability within the category; None when it had no say
    decided_by: str  # "model", "cue" or "fallback"

    @property
    def code(self) -> str:
        return self.key.split(".", 1)[1]


class SubcaseTaxonomy:
    def __init__(self, subcases: tuple[Subcase, ...]) -> None:
        self.subcases = subcases
        self._by_category: dict[str, tuple[Subcase, ...]] = {c: () for c in LABELS.categories}
        for sc in subcases:
            if not LABELS.is_valid("category", sc.category):
                raise ValueError(f"sub-case {sc.key}: unknown category {sc.category!r}")
            if any(s.code == sc.code for s in self._by_category[sc.category]):
                raise ValueError(f"sub-case {sc.key} is declared twice")
            self._by_category[sc.category] += (sc,)
        for category, group in self._by_category.items():
            if not any(s.code == OTHER for s in group):
                raise ValueError(f"category {category} has no '{OTHER}' sub-case")

    @classmethod
    @functools.cache
    def load(cls, path: str | Path | None = None) -> "SubcaseTaxonomy":
        path = Path(path) if path is not None else SUBCASES_PATH
        raw = read_toml(path, "sub-case")
        entries = []
        for entry in raw.get("subcase", []):
            where = f"{path}: sub-case {entry.get('category')}.{entry.get('code')}"
            extra = set(entry) - _KEYS
            if extra:
                raise ValueError(f"{where}: unknown keys {sorted(extra)}")
            code, name = entry.get("code"), entry.get("name")
            if not isinstance(code, str) or not _CODE.match(code):
                raise ValueError(f"{where}: code must match {_CODE.pattern}")
            if not isinstance(name, str) or not name.strip():
                raise ValueError(f"{where}: name is missing")
            cues = entry.get("cues", [])
            if not isinstance(cues, list) or not all(isinstance(c, str) and c.strip() for c in cues):
                raise ValueError(f"{where}: cues must be a list of non-empty strings")
            entries.append(Subcase(entry.get("category"), code, name.strip(), str(entry.get("covers", "")),
                                   tuple(c.strip().casefold() for c in cues)))
        return cls(tuple(entries))

    @property
    def keys(self) -> tuple[str, ...]:
        """Every sub-case as ``"<category>.<code>"``, in file order (the sub-case head's classes)."""
        return tuple(sc.key for sc in self.subcases)

    def of(self, category: str) -> tuple[Subcase, ...]:
        if not LABELS.is_valid("category", category):
            raise ValueError(f"unknown category {category!r}")
        return self._by_category[category]

    def get(self, key: str) -> Subcase:
        category, _, code = key.partition(".")
        for sc in self._by_category.get(category, ()):
            if sc.code == code:
                return sc
        raise KeyError(f"unknown sub-case {key!r}")

    def by_cue(self, category: str, text: str) -> str:
        """The sub-case of ``category`` whose longest matching cue is longest (file order on ties); else other."""
        haystack = text.casefold()
        best, best_len = f"{category}.{OTHER}", 0
        for sc in self.of(category):
            length = max((len(c) for c in sc.cues if c in haystack), default=0)
            if length > best_len:
                best, best_len = sc.key, length
        return best

    def ranked(self, category: str, scores: Mapping[str, float] | None) -> list[tuple[str, float]]:
        """The category's sub-cases with their probabilities renormalised within the category, best first."""
        keys = [sc.key for sc in self.of(category)]
        if not scores:
            return []
        mass = sum(float(scores.get(k, 0.0)) for k in keys)
        if mass <= 0.0:
            return []
        return sorted(((k, float(scores.get(k, 0.0)) / mass) for k in keys), key=lambda kv: -kv[1])

    def choose(self, category: str, text: str, scores: Mapping[str, float] | None,
               min_probability: float) -> SubcaseChoice:
        """The model's sub-case when it is at least ``min_probability`` sure within the decided category; else
        the keyword cues; else the category's ``other``."""
        ranked = self.ranked(category, scores)
        if ranked and ranked[0][1] >= min_probability:
            return SubcaseChoice(ranked[0][0], round(ranked[0][1], 4), "model")
        cue = self.by_cue(category, text)
        probability = round(dict(ranked).get(cue, 0.0), 4) if ranked else None
        return SubcaseChoice(cue, probability, "fallback" if cue.endswith(f".{OTHER}") else "cue")
