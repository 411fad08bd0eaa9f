"""Rows of a trained model's own training data, replayed when a run continues from that model.

A model folder names where its training rows come from in ``training_info.json`` under ``replay_sources``:

* ``{"package": "team_written/messages_ab.jsonl"}`` — a file shipped in ``data/``;
* ``{"refs": "annotated_corpus.jsonl", "split": "train"}`` — committed references into the public corpora,
  resolved in the corpus folder given to the run (``--replay-corpus``, ``TRIAGE_CORPUS_DIR``);
* ``{"file": "/abs/path/tickets.jsonl"}`` — a file the team trained on, read again if it is still there.

A model without that key (trained by an older version) replays the ``data`` files its training info lists.
A source that cannot be read is skipped with a note, never silently: the run says how many rows it replays.
"""

from __future__ import annotations

import json
import random
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from helpdesk_triage.policy.data_files import data_file
from helpdesk_triage.policy.labels import HEADS
from helpdesk_triage.policy.text_normalization import normalize
from helpdesk_triage.training.corpus_refs import CorpusRefError, resolve_refs, write_rows
from helpdesk_triage.training.dataset_io import DataValidationError, load_labelled

REPLAY_KEY = "replay_sources"
# Rows that measured a model and that it never trained on (same kinds of source): the verdict's fallback rows.
MEASURING_KEY = "measuring_sources"
TRAINING_INFO_NAME = "training_info.json"


@dataclass
class Replay:
    sample: "object | None"  # datasets.Dataset of the sampled rows (the transformer's), None when there are none
    everything: "object | None"  # every replayable row (the n-gram model is cheap enough to see them all)
    counts: dict[str, int] = field(default_factory=dict)  # rows per source
    skipped: list[str] = field(default_factory=list)  # why a source gave no row

    def summary(self) -> str:
        n_all = 0 if self.everything is None else len(self.everything)
        n_sample = 0 if self.sample is None else len(self.sample)
        text = f"replaying {n_sample} of {n_all} rows the model was trained on"
        if self.counts:
            text += " (" + ", ".join(f"{name}: {n}" for name, n in self.counts.items()) + ")"
        return text + "".join(f"; skipped {why}" for why in self.skipped)


def replay_sources(folder: str | Path) -> list[dict]:
    """Where the rows of the model in ``folder`` came from (see the module doc); [] when it says nothing."""
    path = Path(folder) / TRAINING_INFO_NAME
    if not path.is_file():
        return []
    info = json.loads(path.read_text(encoding="utf-8"))
    if REPLAY_KEY in info:
        return list(info[REPLAY_KEY])
    return [{"file": str(p)} for p in info.get("data", [])]


def load_measuring_rows(folder: str | Path, corpus_dir: str | Path | None):
    """(rows as a dataset or None, a description) of the rows that measured the model in ``folder``."""
    path = Path(folder) / TRAINING_INFO_NAME
    sources = json.loads(path.read_text(encoding="utf-8")).get(MEASURING_KEY, []) if path.is_file() else []
    rows, names = [], []
    for source in sources:
        name, found, why = _read_source(source, corpus_dir)
        if not why:
            rows += found
            names.append(name)
    return (_as_dataset(rows), ", ".join(names)) if rows else (None, "")


def sources_of_run(data_paths: Sequence[str | Path], inherited: Sequence[dict] = ()) -> list[dict]:
    """The replay sources to record for a run on ``data_paths`` that continued from a model with ``inherited`` ones."""
    sources = [dict(s) for s in inherited]
    for path in data_paths:
        source = {"file": str(Path(path).resolve())}
        if source not in sources:
            sources.append(source)
    return sources


def load_replay(folder: str | Path, n_rows: int, seed: int, exclude_texts: Sequence[str] = (),
                corpus_dir: str | Path | None = None) -> Replay:
    """The replayable rows of the model in ``folder``, minus any whose normalised text is in ``exclude_texts``,
    and a sample of ``n_rows`` of them (seeded)."""
    excluded = {normalize(t) for t in exclude_texts}
    rows: list[dict] = []
    counts: dict[str, int] = {}
    skipped: list[str] = []
    for source in replay_sources(folder):
        name, found, why = _read_source(source, corpus_dir)
        if why:
            skipped.append(f"{name} ({why})")
            continue
        kept = [r for r in found if normalize(r["text"]) not in excluded]
        counts[name] = len(kept)
        rows += kept
    if not rows:
        return Replay(None, None, counts, skipped)
    everything = _as_dataset(rows)
    # load_labelled dropped duplicates: sample among the distinct rows.
    order = list(range(len(everything)))
    random.Random(seed).shuffle(order)
    sample = everything.select(sorted(order[:n_rows])) if n_rows > 0 else None
    return Replay(sample, everything, counts, skipped)


def _read_source(source: dict, corpus_dir: str | Path | None) -> tuple[str, list[dict], str | None]:
    """(name, rows with text and labels, why nothing could be read or None)."""
    if "package" in source:
        path = data_file(source["package"])
        return source["package"], _read_jsonl(path), None if path.is_file() else "not in this install"
    if "refs" in source:
        name = source["refs"] + (f" ({source['split']} split)" if source.get("split") else "")
        if corpus_dir is None:
            return name, [], "its texts are references into the public corpora: give --replay-corpus DIR or set TRIAGE_CORPUS_DIR"
        try:
            rows = resolve_refs(corpus_dir, data_file(source["refs"]), skip_missing=True)
        except CorpusRefError as error:
            return name, [], str(error)
        rows = [r for r in rows if source.get("split") in (None, r.get("split"))]
        return name, [{"text": r["text"], **{h: r.get(h) for h in HEADS}} for r in rows], None if rows else f"none found in {corpus_dir}"
    if "file" in source:
        path = Path(source["file"])
        if not path.is_file():
            return path.name, [], f"{path} is no longer there"
        try:
            ds, _ = load_labelled([str(path)])
        except DataValidationError as error:
            return path.name, [], f"unreadable: {str(error).splitlines()[0]}"
        return path.name, [{"text": r["raw_text"], **{h: r[h] for h in HEADS}} for r in ds], None
    return json.dumps(source, ensure_ascii=False), [], "unknown kind of source"


def _read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [{"text": r["text"], **{h: r.get(h) for h in HEADS}} for r in rows]


def _as_dataset(rows: list[dict]):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "replay.jsonl"
        write_rows([{k: v for k, v in r.items() if v is not None} for r in rows], path)
        ds, _ = load_labelled([str(path)])
    return ds.map(lambda row: {"source_file": "replay"})
