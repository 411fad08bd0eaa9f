"""Fit a model folder's sub-case head (``model.subcase_head``) on rows labelled with a category and a sub-case.

    triage fit-subcases --model DIR --data rows.jsonl [--data more.jsonl] [--out DIR]

Rows are JSON lines with ``text``, ``category`` and ``subcase`` (a code of ``data/subcases.toml``), e.g. the
output of ``training.corpus_refs`` on ``data/annotated_corpus.jsonl``. A fifth of the rows (by text hash) is held
out first to choose the n-gram blend weight and the temperature; then both regressions are refitted on all rows.
The head goes into ``--out`` (default: the model folder itself).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from helpdesk_triage.model.char_ngram import CharNgramModel, softmax
from helpdesk_triage.model.subcase_head import SubcaseHead, unit_rows
from helpdesk_triage.policy.subcases import SubcaseTaxonomy

EMBEDDING_C = 16.0
NGRAM_C = 10.0
BLEND_WEIGHTS = (0.3, 0.4, 0.5, 0.6, 0.7)
HOLDOUT_SHARE = 0.2
MIN_ROWS_PER_NGRAM = 2


def read_rows(paths: Sequence[Path]) -> tuple[list[str], list[str]]:
    """(texts, sub-case keys) of the labelled rows; ValueError naming the file and line of a bad row."""
    taxonomy = SubcaseTaxonomy.load()
    known = set(taxonomy.keys)
    texts, keys = [], []
    for path in paths:
        with Path(path).open(encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
                if not isinstance(row, dict) or not isinstance(row.get("text"), str) or not row["text"].strip():
                    raise ValueError(f"{path}:{number}: a row needs a non-empty text")
                key = f"{row.get('category')}.{row.get('subcase')}"
                if row.get("subcase") is None:
                    continue  # a row without a sub-case label teaches nothing here
                if key not in known:
                    raise ValueError(f"{path}:{number}: sub-case {key!r} is not in data/subcases.toml")
                texts.append(row["text"])
                keys.append(key)
    if len(set(keys)) < 2:
        raise ValueError("the rows hold fewer than two sub-cases: nothing to learn")
    return texts, keys


def _ngram_matrix(ngram: CharNgramModel, texts: Sequence[str]):
    from scipy.sparse import csr_matrix

    rows = [ngram.features(t) for t in texts]
    indptr = np.cumsum([0] + [len(r[0]) for r in rows])
    indices = np.concatenate([r[0] for r in rows]) if rows else np.zeros(0, dtype=np.int64)
    values = np.concatenate([r[1] for r in rows]) if rows else np.zeros(0)
    return csr_matrix((values, indices, indptr), shape=(len(rows), len(ngram.vocabulary)))


def _fit(embeddings: np.ndarray, features, keys: Sequence[str], classes: tuple[str, ...]):
    from sklearn.linear_model import LogisticRegression

    emb = LogisticRegression(C=EMBEDDING_C, max_iter=3000).fit(unit_rows(embeddings), keys)
    coef = np.zeros((len(classes), embeddings.shape[1]))
    intercept = np.full(len(classes), -30.0)  # a sub-case never seen in training: (almost) never predicted
    for row, c in enumerate(emb.classes_):
        coef[classes.index(c)], intercept[classes.index(c)] = emb.coef_[row], emb.intercept_[row]
    ngram_coef = ngram_intercept = columns = None
    if features is not None:
        # Only the n-grams in at least MIN_ROWS_PER_NGRAM of these rows get a weight (the rest would get 0 or
        # fit one row): a small file.
        columns = np.flatnonzero(np.asarray((features != 0).sum(axis=0)).ravel() >= MIN_ROWS_PER_NGRAM)
        ng = LogisticRegression(C=NGRAM_C, max_iter=3000, class_weight="balanced").fit(features[:, columns], keys)
        ngram_coef = np.zeros((len(classes), len(columns)), dtype=np.float16)
        ngram_intercept = np.full(len(classes), -30.0)
        for row, c in enumerate(ng.classes_):
            ngram_coef[classes.index(c)], ngram_intercept[classes.index(c)] = ng.coef_[row], ng.intercept_[row]
    return coef, intercept, ngram_coef, ngram_intercept, columns


def _nll(probs: np.ndarray, y: np.ndarray) -> float:
    return float(-np.mean(np.log(np.maximum(probs[np.arange(len(y)), y], 1e-12))))


def fit_subcase_head(model, texts: Sequence[str], keys: Sequence[str], say=print) -> SubcaseHead:
    """The head for ``model`` (a loaded TriageModel) from labelled texts (raw; normalised here)."""
    from helpdesk_triage.model.inference import EMBEDDING_OUTPUT, batched_outputs
    from helpdesk_triage.policy.text_normalization import normalize

    classes = SubcaseTaxonomy.load().keys
    normalized = [normalize(t) for t in texts]
    started = time.perf_counter()
    embeddings = batched_outputs(model.backend, normalized, model.config.labels)[EMBEDDING_OUTPUT]
    if embeddings.shape[1] == 0:
        raise ValueError(f"the {model.runtime} backend gives no text embedding")
    say(f"embedded {len(texts)} texts in {time.perf_counter() - started:.0f} s")
    ngram = model.ngram.model if model.ngram is not None else None
    features = _ngram_matrix(ngram, normalized) if ngram is not None else None
    y = np.array([classes.index(k) for k in keys])
    held = np.array([int(hashlib.sha256(t.encode("utf-8")).hexdigest()[:8], 16) % 100 < HOLDOUT_SHARE * 100
                     for t in normalized])
    rest = ~held
    weight, temperature = 0.0, 1.0
    if held.sum() >= 20 and len({keys[i] for i in np.flatnonzero(rest)}) >= 2:
        parts = _fit(embeddings[rest], features[rest] if features is not None else None,
                     [keys[i] for i in np.flatnonzero(rest)], classes)
        trial = SubcaseHead(classes, *parts)
        rows = [ngram.features(normalized[i]) for i in np.flatnonzero(held)] if ngram is not None else None
        best = None
        for w in (BLEND_WEIGHTS if ngram is not None else (0.0,)):
            trial.ngram_weight = w
            z = trial.logits(embeddings[held], rows)
            for t in np.exp(np.linspace(np.log(0.3), np.log(3.0), 41)):
                loss = _nll(softmax(z / t), y[held])
                if best is None or loss < best[0]:
                    best = (loss, w, float(t))
        _, weight, temperature = best
        say(f"held-out {int(held.sum())} rows: n-gram weight {weight}, temperature {temperature:.3f}")
    parts = _fit(embeddings, features, list(keys), classes)
    counts = {c: int((y == i).sum()) for i, c in enumerate(classes)}
    facts = {"model_version": model.version, "n_train": len(texts), "rows_per_subcase": counts,
             "embedding_C": EMBEDDING_C, "ngram_C": NGRAM_C}
    return SubcaseHead(classes, *parts, ngram_weight=weight, temperature=temperature, facts=facts)


CARD_HEADING = "## Sub-case head"


def write_card_section(folder: Path, head: SubcaseHead) -> None:
    """Put (or replace) the sub-case head's section in the folder's model card (README.md)."""
    card = folder / "README.md"
    text = card.read_text(encoding="utf-8") if card.is_file() else ""
    if CARD_HEADING in text:
        start = text.index(CARD_HEADING)
        following = text.find("\n## ", start + len(CARD_HEADING))
        text = text[:start] + (text[following + 1 :] if following >= 0 else "")
    facts = head.facts
    rows = "\n".join(f"| {key} | {count} |" for key, count in facts.get("rows_per_subcase", {}).items())
    section = (f"{CARD_HEADING}\n\n`subcase_head.json` / `.npz` (model.subcase_head): which of the {len(head.classes)} "
               "sub-cases of data/subcases.toml a message is about, a logistic regression on the pooled embedding "
               f"blended with one on the character n-grams (n-gram weight {head.ngram_weight}), temperature "
               f"{head.temperature:.3f}; fitted on {facts.get('n_train')} rows by `triage fit-subcases`.\n\n"
               f"| sub-case | training rows |\n|---|---|\n{rows}\n")
    card.write_text(text.rstrip("\n") + "\n\n" + section, encoding="utf-8")


def fit_on_annotated_corpus(corpus: Path, folder: Path, say=print) -> int:
    """Fit and save the sub-case head of the model in ``folder`` on the annotated corpus' train split and the
    validation split's fit half (the measure half measures it: ``corpus_refs --half measure``); the rows used."""
    from helpdesk_triage.model import TriageModel
    from helpdesk_triage.policy.data_files import data_file
    from helpdesk_triage.training.corpus_refs import half_of, resolve_refs

    rows = [row for row in resolve_refs(corpus, data_file("annotated_corpus.jsonl"), skip_missing=True) if row.get("subcase")
            and (row.get("split") == "train" or (row.get("split") == "validation" and half_of(row["text"]) == "fit"))]
    if not rows:
        return 0
    head = fit_subcase_head(TriageModel.load(folder), [r["text"] for r in rows],
                            [f"{r['category']}.{r['subcase']}" for r in rows], say=say)
    head.save(folder)
    write_card_section(folder, head)
    return len(rows)
