"""Critical cases found in the real corpora: references to them, resolved only where the corpora are.

``data/critical_cases.jsonl`` lists customer texts of the public corpora (``../shared/data/corpora``)
that were hand-labelled per ``LABELING.md`` because a critical-severity keyword occurs in them: the
critical cases (harm suffered, fire/smoke/shock, legal action, regulator or media) and hard negatives
(the same keywords in texts that are not critical). The corpus licences forbid copying the texts into
the repository, so each row holds only a reference, the SHA-256 of the customer text, the labels and why
(format: :mod:`training.corpus_refs`).

These texts are an evaluation set: they must never be trained on. :func:`critical_texts` gives them
to training's held-out filter (``training.pipeline``'s ``corpus_exclude``, ``weak_rows(held_out_texts=…)``).

``python -m helpdesk_triage.evaluation.critical_cases --corpus ../shared/data/corpora --out FILE.jsonl`` writes the
resolved rows (``text`` + labels + ``source``) for ``triage evaluate --data FILE.jsonl``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from helpdesk_triage.policy.labels import HEADS
from helpdesk_triage.training.corpus_refs import CorpusRefError, iter_customer_texts, read_refs, resolve_refs, sha256_text, write_rows
from helpdesk_triage.policy.data_files import data_file

__all__ = ["CriticalCaseError", "DEFAULT_CASES_PATH", "critical_texts", "iter_customer_texts", "load_critical_cases",
           "read_cases", "sha256_text"]

DEFAULT_CASES_PATH = data_file("critical_cases.jsonl")
REQUIRED_FIELDS = ("ref", "sha256", *HEADS, "why")
CriticalCaseError = CorpusRefError


def read_cases(path: str | Path = DEFAULT_CASES_PATH) -> list[dict]:
    """The committed cases (references, hashes, labels and why; no texts), checked for shape and label codes."""
    return read_refs(path, REQUIRED_FIELDS)


def load_critical_cases(corpus_dir: str | Path, cases_path: str | Path = DEFAULT_CASES_PATH) -> list[dict]:
    """The committed cases with their texts: ``text``, ``category``, ``severity``, ``sentiment``, ``source``,
    ``ref``, ``why``. Raises :class:`CriticalCaseError` naming the row when a reference does not resolve
    in ``corpus_dir`` or the text there no longer has the committed SHA-256."""
    return resolve_refs(corpus_dir, cases_path, REQUIRED_FIELDS, source_prefix="critical_cases:")


def critical_texts(corpus_dir: str | Path, cases_path: str | Path = DEFAULT_CASES_PATH) -> set[str]:
    """The texts of all committed cases (critical and hard negatives), to be kept out of training.

    Raw corpus texts; training's held-out filter (``training.weak_labels.HeldOut``) normalises them and
    also drops corpus texts containing or contained in one of them.
    """
    return {row["text"] for row in load_critical_cases(corpus_dir, cases_path)}


def case_half(text: str) -> str:
    """The fixed half a case belongs to: ``tune`` (decision policies are fitted on it) or ``measure``."""
    return "tune" if int(sha256_text(text)[:8], 16) % 2 == 0 else "measure"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Resolve data/critical_cases.jsonl against the corpora and write labelled rows for `triage evaluate`.")
    parser.add_argument("--corpus", type=Path, required=True, help="folder with jddc/, taobao_ecd/, online_shopping_10_cats/, waimai_10k/")
    parser.add_argument("--out", type=Path, required=True, help="labelled JSONL to write (text + category/severity/sentiment)")
    parser.add_argument("--cases", type=Path, default=DEFAULT_CASES_PATH, help="references file (default: data/critical_cases.jsonl)")
    parser.add_argument("--only", choices=("all", "critical", "negatives"), default="all",
                        help="all rows, only the critical ones, or only the hard negatives")
    parser.add_argument("--half", choices=("both", "tune", "measure"), default="both",
                        help="a fixed half of the cases (by the SHA-256 of the text): 'tune' fits decision policies "
                             "(triage tune-policy), 'measure' is kept for measuring them")
    args = parser.parse_args(argv)
    try:
        rows = load_critical_cases(args.corpus, args.cases)
        if args.only != "all":
            rows = [r for r in rows if (r["severity"] == "critical") == (args.only == "critical")]
        if args.half != "both":
            rows = [r for r in rows if case_half(r["text"]) == args.half]
        write_rows(rows, args.out)
    except (CriticalCaseError, OSError) as exc:
        print(f"critical_cases: error: {exc}", file=sys.stderr)
        return 2
    critical = sum(r["severity"] == "critical" for r in rows)
    print(f"wrote {len(rows)} rows ({critical} critical, {len(rows) - critical} not) to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
