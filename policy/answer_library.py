"""The help desk's answer library (``data/answer_library.toml``): answers to the questions customers ask,
found by the model's text embedding.

Each entry has question variants; :meth:`AnswerLibrary.index` embeds them once per model version (the
embedding depends on the model) and :meth:`AnswerIndex.matches` returns the entries of the decided category
whose closest variant has cosine similarity at least ``min_similarity`` with the message, best first, among
the entries whose sub-case the sub-case head finds likely enough (``min_subcase_probability``). The score
blends the embedding cosine with a character n-gram cosine (``lexical_weight``): the classifier's embedding
alone ranks questions by topic poorly (evaluation/experiments.md, run 16). A match over ``min_similarity``
becomes the reply; one over ``min_alternative_similarity`` is offered among the alternatives.
"""

from __future__ import annotations

import math
import re
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from helpdesk_triage.policy.data_files import data_file, read_toml
from helpdesk_triage.policy.labels import LABELS
from helpdesk_triage.policy.subcases import SubcaseTaxonomy

DEFAULT_LIBRARY_PATH = data_file("answer_library.toml")
_ID = re.compile(r"^[a-z][a-z0-9_]*$")
_ENTRY_KEYS = {"id", "category", "subcase", "questions", "answer"}
_TOP_KEYS = {"min_similarity", "min_alternative_similarity", "lexical_weight", "min_subcase_probability", "answer"}

Embed = Callable[[list[str]], np.ndarray]  # texts -> unit-length embeddings, one row per text


@dataclass(frozen=True)
class AnswerEntry:
    id: str
    category: str
    subcase: str  # "<category>.<code>"
    questions: tuple[str, ...]
    answer: str

    @property
    def source(self) -> str:
        return f"answer:{self.id}"


@dataclass(frozen=True)
class AnswerMatch:
    entry: AnswerEntry
    similarity: float
    question: str  # the variant it matched


def _grams(text: str) -> Counter:
    """Character 1- to 3-grams of the text without spaces and punctuation (the lexical side of the score)."""
    chars = "".join(ch for ch in text.casefold() if ch.isalnum())
    return Counter(chars[i : i + n] for n in (1, 2, 3) for i in range(len(chars) - n + 1))


class _Lexical:
    """Sublinear TF-IDF cosine over character n-grams, idf from the library's own question variants."""

    def __init__(self, variants: Sequence[str]) -> None:
        documents = [_grams(v) for v in variants]
        df = Counter(g for d in documents for g in d)
        n = len(documents)
        self.idf = {g: math.log((1 + n) / (1 + c)) + 1.0 for g, c in df.items()}
        self.unseen_idf = math.log(1 + n) + 1.0
        self.rows = [self.vector(d) for d in documents]

    def vector(self, grams: Counter) -> dict[str, float]:
        weights = {g: (1.0 + math.log(c)) * self.idf.get(g, self.unseen_idf) for g, c in grams.items()}
        norm = math.sqrt(sum(w * w for w in weights.values())) or 1.0
        return {g: w / norm for g, w in weights.items()}

    def similarities(self, text: str) -> np.ndarray:
        query = self.vector(_grams(text))
        return np.array([sum(w * row.get(g, 0.0) for g, w in query.items()) for row in self.rows])


class AnswerIndex:
    def __init__(self, library: "AnswerLibrary", vectors: np.ndarray, owners: list[int], variants: list[str]) -> None:
        self.library = library
        self.vectors = vectors
        self.owners = np.asarray(owners, dtype=np.int64)
        self.variants = variants
        self.lexical = _Lexical(variants)

    def scores(self, embedding: np.ndarray, text: str) -> np.ndarray:
        """Per question variant: ``(1 - w) · embedding cosine + w · character n-gram cosine``."""
        w = self.library.lexical_weight
        return (1.0 - w) * (self.vectors @ np.asarray(embedding, dtype=np.float32)) + w * self.lexical.similarities(text)

    def matches(self, embedding: np.ndarray | None, text: str, category: str, subcases: Mapping[str, float] | None,
                limit: int = 3, min_similarity: float | None = None) -> list[AnswerMatch]:
        """Entries of ``category`` at least ``min_similarity`` (default: the file's ``min_alternative_similarity``)
        close, best first, among those
        whose sub-case the model gives at least ``min_subcase_probability`` within the category (``subcases``: the
        sub-case distribution; without one, nothing matches: the embedding alone is no reliable retriever)."""
        if embedding is None or not subcases or len(self.variants) == 0:
            return []
        floor = self.library.min_alternative_similarity if min_similarity is None else min_similarity
        keys = [k for k in subcases if k.startswith(f"{category}.")]
        mass = sum(subcases[k] for k in keys) or 1.0
        allowed = {k for k in keys if subcases[k] / mass >= self.library.min_subcase_probability}
        similarity = self.scores(embedding, text)
        best: dict[int, tuple[float, int]] = {}
        for row in np.argsort(-similarity):
            value = float(similarity[row])
            if value < floor:
                break
            owner = int(self.owners[row])
            entry = self.library.entries[owner]
            if entry.category != category or entry.subcase not in allowed or owner in best:
                continue
            best[owner] = (value, int(row))
            if len(best) == limit:
                break
        return [AnswerMatch(self.library.entries[o], round(v, 4), self.variants[r]) for o, (v, r) in best.items()]


class AnswerLibrary:
    def __init__(self, entries: Sequence[AnswerEntry], min_similarity: float, min_subcase_probability: float,
                 check_answer: Callable[[str, str], None] | None = None, lexical_weight: float = 0.3,
                 min_alternative_similarity: float | None = None) -> None:
        self.entries = tuple(entries)
        self.min_similarity = min_similarity
        self.min_subcase_probability = min_subcase_probability
        self.lexical_weight = lexical_weight
        self.min_alternative_similarity = min_similarity if min_alternative_similarity is None else min_alternative_similarity
        ids = [e.id for e in self.entries]
        duplicated = sorted({i for i in ids if ids.count(i) > 1})
        if duplicated:
            raise ValueError(f"answer ids {duplicated} are used twice")
        if check_answer is not None:
            for entry in self.entries:
                check_answer(entry.source, entry.answer)
        self._indexes: dict[str, AnswerIndex] = {}
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: str | Path | None = None, check_answer: Callable[[str, str], None] | None = None) -> "AnswerLibrary":
        """The library file (default ``data/answer_library.toml``); ``check_answer(source, text)`` raises
        ValueError for an answer that is not a valid reply (the reply templates' checks)."""
        path = Path(path) if path is not None else DEFAULT_LIBRARY_PATH
        raw = read_toml(path, "answer library")
        try:
            extra = set(raw) - _TOP_KEYS
            if extra:
                raise ValueError(f"unknown top-level keys {sorted(extra)}")
            floor = _number(raw, "min_similarity", -1.0)
            gate = _number(raw, "min_subcase_probability", 0.0)
            weight = _number(raw, "lexical_weight", 0.0)
            alternative = _number(raw, "min_alternative_similarity", -1.0)
            if alternative > floor:
                raise ValueError("min_alternative_similarity must not exceed min_similarity")
            taxonomy = SubcaseTaxonomy.load()
            entries = [_parse_entry(e, taxonomy) for e in raw.get("answer", [])]
            return cls(entries, floor, gate, check_answer, weight, alternative)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None

    def index(self, model_version: str, embed: Embed | None) -> AnswerIndex | None:
        """The entries' question variants embedded by the model of ``model_version`` (computed once)."""
        if embed is None:
            return None
        with self._lock:
            index = self._indexes.get(model_version)
            if index is None:
                variants, owners = [], []
                for n, entry in enumerate(self.entries):
                    variants.extend(entry.questions)
                    owners.extend([n] * len(entry.questions))
                vectors = np.asarray(embed(variants), dtype=np.float32) if variants else np.zeros((0, 0), np.float32)
                index = AnswerIndex(self, vectors, owners, variants)
                self._indexes[model_version] = index
            return index


def _number(raw: dict, key: str, lowest: float) -> float:
    value = raw.get(key)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not lowest <= value <= 1.0:
        raise ValueError(f"{key} must be a number between {lowest:g} and 1")
    return float(value)


def _parse_entry(entry: object, taxonomy: SubcaseTaxonomy) -> AnswerEntry:
    if not isinstance(entry, dict):
        raise ValueError(f"[[answer]] entry is not a table: {entry!r}")
    where = f"answer {entry.get('id')}"
    extra = set(entry) - _ENTRY_KEYS
    if extra:
        raise ValueError(f"{where}: unknown keys {sorted(extra)}")
    answer_id, category, subcase = entry.get("id"), entry.get("category"), entry.get("subcase")
    if not isinstance(answer_id, str) or not _ID.match(answer_id):
        raise ValueError(f"{where}: id must match {_ID.pattern}")
    if not LABELS.is_valid("category", category):
        raise ValueError(f"{where}: unknown category {category!r}")
    key = f"{category}.{subcase}"
    if key not in taxonomy.keys:
        raise ValueError(f"{where}: sub-case {key!r} is not in data/subcases.toml")
    questions = entry.get("questions")
    if not isinstance(questions, list) or not questions or not all(isinstance(q, str) and q.strip() for q in questions):
        raise ValueError(f"{where}: questions must be a non-empty list of non-empty strings")
    answer = entry.get("answer")
    if not isinstance(answer, str) or not answer.strip():
        raise ValueError(f"{where}: answer is missing")
    return AnswerEntry(answer_id, category, key, tuple(q.strip() for q in questions), answer.strip())
