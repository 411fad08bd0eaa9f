"""Critical cases found in the real corpora: references to them, resolved only where the corpora are.

``data/critical_cases.jsonl`` lists customer texts of the public corpora (``../shared/data/corpora``)
that were hand-labelled per ``LABELING.md`` because a critical-severity keyword occurs in them: the
critical cases (harm suffered, fire/smoke/shock, legal action, regulator or media) and hard negatives
(the same keywords in texts that are not critical). The corpus licences forbid copying the texts into
the repository, so each row holds only a reference and the SHA-256 of the customer text::

    {"ref": {"corpus": "jddc", "file": "jddc/train_enc.txt", "line": 12, "segment": -1},
     "sha256": "…", "category": "D", "severity": "critical", "sentiment": "negative", "why": "…"}

``line`` is 1-based (for the CSV files the header is line 1; no record there spans lines). ``segment``
says which customer words of the line, indexed as :mod:`training.weak_labels` reads them: for JDDC the
index into the line's non-empty comma-separated segments, ``0`` (first) or ``-1`` (last); for Taobao
ECD the index into the tab-separated fields (1, 3, 5, …: the customer turns); ``null`` for the reviews.
The text is the customer text exactly as the weak-label readers yield it (before normalisation).

These texts are an evaluation set: they must never be trained on. :func:`critical_texts` gives them
to training's held-out filter (``training.pipeline``'s ``corpus_exclude``, ``weak_rows(held_out_texts=…)``).

``python -m evaluation.critical_cases --corpus ../shared/data/corpora --out FILE.jsonl`` writes the
resolved rows (``text`` + labels + ``source``) for ``triage evaluate --data FILE.jsonl``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Iterator

from data.label_schema import HEADS, LabelSchema
from training.weak_labels import CORPORA, CorpusTurn, corpus_turns, file_turns

DEFAULT_CASES_PATH = Path(__file__).resolve().parent.parent / "data" / "critical_cases.jsonl"
REQUIRED_FIELDS = ("ref", "sha256", *HEADS, "why")


class CriticalCaseError(ValueError):
    """A committed case cannot be used: malformed row, reference that no longer resolves, or changed text."""


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def iter_customer_texts(corpus_dir: str | Path) -> Iterator[tuple[dict, str, str]]:
    """(ref, text, source) for every customer text of the corpora present in ``corpus_dir``: the texts
    training.weak_labels reads, with where they stand. Not de-duplicated."""
    for turn in corpus_turns(corpus_dir):
        yield _ref(turn), turn.text, turn.source


def _ref(turn: CorpusTurn) -> dict:
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


# --- the committed cases -----------------------------------------------------------------------

def read_cases(path: str | Path = DEFAULT_CASES_PATH) -> list[dict]:
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
            raise CriticalCaseError(f"{where}: not JSON ({exc})") from None
        missing = [k for k in REQUIRED_FIELDS if k not in row]
        if missing:
            raise CriticalCaseError(f"{where}: missing {missing}")
        if "text" in row:
            raise CriticalCaseError(f"{where}: holds a text; only references may be committed")
        for head in HEADS:
            if row[head] not in schema.codes(head):
                raise CriticalCaseError(f"{where}: {head} {row[head]!r} is not one of {list(schema.codes(head))}")
        rows.append({**row, "_row": n})
    return rows


def load_critical_cases(corpus_dir: str | Path, cases_path: str | Path = DEFAULT_CASES_PATH) -> list[dict]:
    """The committed cases with their texts: ``text``, ``category``, ``severity``, ``sentiment``, ``source``,
    ``ref``, ``why``. Raises :class:`CriticalCaseError` naming the row when a reference does not resolve
    in ``corpus_dir`` or the text there no longer has the committed SHA-256."""
    if not Path(corpus_dir).is_dir():
        raise CriticalCaseError(f"{corpus_dir}: no such corpus folder")
    resolver = _Resolver(corpus_dir)
    resolved = []
    for row in read_cases(cases_path):
        where = f"{Path(cases_path).name} row {row['_row']} ({json.dumps(row['ref'], ensure_ascii=False)})"
        try:
            text, source = resolver.resolve(row["ref"])
        except KeyError as exc:
            raise CriticalCaseError(f"{where}: reference does not resolve: {exc.args[0]}") from None
        if sha256_text(text) != row["sha256"]:
            raise CriticalCaseError(f"{where}: the text at this reference changed (sha256 differs)")
        resolved.append({
            "text": text,
            **{head: row[head] for head in HEADS},
            "source": f"critical_cases:{source}",
            "ref": row["ref"],
            "why": row["why"],
        })
    return resolved


def critical_texts(corpus_dir: str | Path, cases_path: str | Path = DEFAULT_CASES_PATH) -> set[str]:
    """The texts of all committed cases (critical and hard negatives), to be kept out of training.

    Raw corpus texts; training's held-out filter (``training.weak_labels.HeldOut``) normalises them and
    also drops corpus texts containing or contained in one of them.
    """
    return {row["text"] for row in load_critical_cases(corpus_dir, cases_path)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Resolve data/critical_cases.jsonl against the corpora and write labelled rows for `triage evaluate`.")
    parser.add_argument("--corpus", type=Path, required=True, help="folder with jddc/, taobao_ecd/, online_shopping_10_cats/, waimai_10k/")
    parser.add_argument("--out", type=Path, required=True, help="labelled JSONL to write (text + category/severity/sentiment)")
    parser.add_argument("--cases", type=Path, default=DEFAULT_CASES_PATH, help="references file (default: data/critical_cases.jsonl)")
    parser.add_argument("--only", choices=("all", "critical", "negatives"), default="all",
                        help="all rows, only the critical ones, or only the hard negatives")
    args = parser.parse_args(argv)
    try:
        rows = load_critical_cases(args.corpus, args.cases)
        if args.only != "all":
            rows = [r for r in rows if (r["severity"] == "critical") == (args.only == "critical")]
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with args.out.open("w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    except (CriticalCaseError, OSError) as exc:
        print(f"critical_cases: error: {exc}", file=sys.stderr)
        return 2
    critical = sum(r["severity"] == "critical" for r in rows)
    print(f"wrote {len(rows)} rows ({critical} critical, {len(rows) - critical} not) to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
