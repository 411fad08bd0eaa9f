"""Labelled references into the public corpora: the texts stay in ``../shared/data/corpora``, the repository
holds only where each text stands and its SHA-256 (the corpus licences forbid copying the texts).

A row::

    {"ref": {"corpus": "jddc", "file": "jddc/train_enc.txt", "line": 12, "segment": -1},
     "sha256": "…", "category": "D", "severity": "critical", "sentiment": "negative", …}

``line`` is 1-based (for the CSV files the header is line 1; no record there spans lines). ``segment``
says which customer words of the line, indexed as :mod:`training.weak_labels` reads them: for JDDC the
index into the line's non-empty comma-separated segments, ``0`` (first) or ``-1`` (last); for Taobao
ECD the index into the tab-separated fields (1, 3, 5, …: the customer turns); ``null`` for the reviews.
The text is the customer text exactly as the weak-label readers yield it (before normalisation).

Used by ``evaluation.critical_cases`` (an evaluation set) and ``training.default_recipe`` (real corpus
messages labelled per LABELING.md, ``data/labeled_corpus.jsonl``). As a command it writes a references file
out as labelled rows for ``triage evaluate``:
``python -m helpdesk_triage.training.corpus_refs --corpus ../shared/data/corpora --refs data/labeled_corpus.jsonl --out labelled.jsonl``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Iterator, Sequence

from helpdesk_triage.policy.data_files import data_file
from helpdesk_triage.policy.labels import HEADS, LabelSchema
from helpdesk_triage.training.weak_labels import CORPORA, CorpusTurn, corpus_turns, file_turns


class CorpusRefError(ValueError):
    """A committed row cannot be used: malformed row, reference that no longer resolves, or changed text."""


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


HALVES = ("fit", "measure")


def half_of(text: str) -> str:
    """The half a text falls in by its hash: a split that never moves when rows are added or reordered."""
    return HALVES[int(sha256_text(text)[:8], 16) % 2]


def iter_customer_texts(corpus_dir: str | Path) -> Iterator[tuple[dict, str, str]]:
    """(ref, text, source) for every customer text of the corpora present in ``corpus_dir``: the texts
    training.weak_labels reads, with where they stand. Not de-duplicated."""
    for turn in corpus_turns(corpus_dir):
        yield ref_of(turn), turn.text, turn.source


def ref_of(turn: CorpusTurn) -> dict:
    return {"corpus": turn.corpus, "file": turn.file, "line": turn.line, "segment": turn.segment}


class _Resolver:
    """Reads each corpus file once and answers refs into it."""

    def __init__(self, corpus_dir: str | Path) -> None:
        self.root = Path(corpus_dir)
        self.files: dict[str, dict[int, dict[int | None, CorpusTurn]]] = {}  # file -> line -> segment -> turn

    def resolve(self, ref: dict) -> tuple[str, str]:
        """(text, source) of ``ref``; raises KeyError with the reason when it does not resolve."""
        corpus, file = ref.get("corpus"), ref.get("file")
        if corpus not in CORPORA:
            raise KeyError(f"unknown corpus {corpus!r} (expected one of {list(CORPORA)})")
        if not isinstance(file, str) or not file.startswith(f"{corpus}/") or ".." in Path(file).parts:
            raise KeyError(f"file {file!r} is not inside the {corpus}/ folder")
        lines = self.files.get(file)
        if lines is None:
            path = self.root / file
            if not path.is_file():
                raise KeyError(f"{path}: no such file")
            lines = self.files[file] = {}
            for turn in file_turns(self.root, corpus, path):
                lines.setdefault(turn.line, {})[turn.segment] = turn
        line, segment = ref.get("line"), ref.get("segment")
        if line not in lines:
            raise KeyError(f"{file} has no usable line {line!r}")
        if segment not in lines[line]:
            raise KeyError(f"{file} line {line} has no customer segment {segment!r} (it has {sorted(lines[line], key=str)})")
        turn = lines[line][segment]
        return turn.text, turn.source


def read_refs(path: str | Path, required: Sequence[str] = ("ref", "sha256", *HEADS)) -> list[dict]:
    """The committed rows (references, hashes and labels; no texts), checked for shape and label codes."""
    path = Path(path)
    schema = LabelSchema.load()
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path.name} row {n}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CorpusRefError(f"{where}: not JSON ({exc})") from None
        missing = [k for k in required if k not in row]
        if missing:
            raise CorpusRefError(f"{where}: missing {missing}")
        if "text" in row:
            raise CorpusRefError(f"{where}: holds a text; only references may be committed")
        for head in HEADS:
            if row[head] not in schema.codes(head):
                raise CorpusRefError(f"{where}: {head} {row[head]!r} is not one of {list(schema.codes(head))}")
        rows.append({**row, "_row": n})
    return rows


def resolve_refs(corpus_dir: str | Path, path: str | Path, required: Sequence[str] = ("ref", "sha256", *HEADS),
                 source_prefix: str = "", skip_missing: bool = False) -> list[dict]:
    """The committed rows with their texts: ``text``, the labels, ``source`` (``source_prefix`` + the corpus
    source), ``ref`` and any other field of the row. Raises :class:`CorpusRefError` naming the row when a
    reference does not resolve in ``corpus_dir`` or the text there no longer has the committed SHA-256;
    ``skip_missing`` leaves such rows out instead (a folder holding other corpora, or only some of them)."""
    if not Path(corpus_dir).is_dir():
        raise CorpusRefError(f"{corpus_dir}: no such corpus folder")
    resolver = _Resolver(corpus_dir)
    resolved = []
    for row in read_refs(path, required):
        where = f"{Path(path).name} row {row['_row']} ({json.dumps(row['ref'], ensure_ascii=False)})"
        try:
            text, source = resolver.resolve(row["ref"])
        except KeyError as exc:
            if skip_missing:
                continue
            raise CorpusRefError(f"{where}: reference does not resolve: {exc.args[0]}") from None
        if sha256_text(text) != row["sha256"]:
            if skip_missing:
                continue
            raise CorpusRefError(f"{where}: the text at this reference changed (sha256 differs)")
        extra = {k: v for k, v in row.items() if k not in ("sha256", "_row", *HEADS)}
        resolved.append({"text": text, **{head: row[head] for head in HEADS}, "source": source_prefix + source, **extra})
    return resolved


def measuring_texts(corpus_dir: str | Path) -> list[str]:
    """The corpus texts that measure the model and must never be trained on: the cases of
    ``data/critical_cases.jsonl`` and the validation split of ``data/annotated_corpus.jsonl`` that stand in
    ``corpus_dir`` (the public corpora; a folder of other texts holds none of them where they were found)."""
    if not Path(corpus_dir).is_dir():
        return []  # the caller's own check of the folder says what is wrong with it
    texts = [row["text"] for row in resolve_refs(corpus_dir, data_file("critical_cases.jsonl"), skip_missing=True)]
    texts += [row["text"] for row in resolve_refs(corpus_dir, data_file("annotated_corpus.jsonl"), skip_missing=True)
              if row.get("split") == "validation"]
    return texts


def write_rows(rows: Sequence[dict], out: Path) -> None:
    """Rows as JSON Lines (UTF-8, one object per line), as ``triage train --data`` and ``triage evaluate --data`` read them."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Resolve a references file against the corpora; write labelled JSONL rows.")
    parser.add_argument("--corpus", type=Path, required=True, help="folder with jddc/, taobao_ecd/, online_shopping_10_cats/, waimai_10k/")
    parser.add_argument("--refs", type=Path, required=True, help="references file, e.g. data/labeled_corpus.jsonl")
    parser.add_argument("--out", type=Path, required=True, help="labelled JSONL to write (text, labels, source, ref)")
    parser.add_argument("--split", default=None, metavar="NAME",
                        help="only the rows whose `split` is NAME (e.g. validation in data/annotated_corpus.jsonl)")
    parser.add_argument("--half", choices=HALVES, default=None,
                        help="only one half of the rows, by text hash: 'fit' (may be trained on, e.g. by the sub-case "
                             "head) or 'measure' (kept for measuring: the sub-case F1 and the judged reply set)")
    args = parser.parse_args(argv)
    try:
        rows = resolve_refs(args.corpus, args.refs)
        if args.split is not None:
            rows = [row for row in rows if row.get("split") == args.split]
            if not rows:
                raise CorpusRefError(f"{args.refs}: no row has split {args.split!r}")
        if args.half is not None:
            rows = [row for row in rows if half_of(row["text"]) == args.half]
        write_rows(rows, args.out)
    except (CorpusRefError, OSError) as exc:
        print(f"corpus_refs: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {len(rows)} rows to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
