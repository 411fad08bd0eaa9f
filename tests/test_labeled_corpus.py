"""data/labeled_corpus.jsonl: real corpus messages labelled per LABELING.md, committed as references only.

They train the default model, so none may be a dev text (held out or not) or a critical case (an
evaluation set), and the committed file must hold no text. Resolution is checked against
``../shared/data/corpora`` where that folder exists.
"""

from __future__ import annotations

import json
from pathlib import Path


from helpdesk_triage.policy.text_normalization import normalize
from helpdesk_triage.evaluation.critical_cases import critical_texts, read_cases
from helpdesk_triage.training.corpus_refs import read_refs, resolve_refs
from helpdesk_triage.training.default_recipe import LABELED_CORPUS
from helpdesk_triage.training.weak_labels import HeldOut

REPO = Path(__file__).resolve().parents[1]


def test_committed_rows_are_references_with_valid_labels() -> None:
    rows = read_refs(LABELED_CORPUS)  # raises on a text, a missing field or an unknown label
    assert len(rows) >= 500
    refs = [json.dumps(r["ref"], sort_keys=True) for r in rows]
    assert len(set(refs)) == len(refs), "a reference is listed twice"
    assert len({r["sha256"] for r in rows}) == len(rows), "the same text is listed twice"
    assert {r["category"] for r in rows} == {"A", "B", "C", "D"}
    critical_refs = {json.dumps(r["ref"], sort_keys=True) for r in read_cases()}
    assert critical_refs.isdisjoint(refs), "a critical case (evaluation set) is in the training references"


def test_rows_resolve_and_none_is_a_dev_text_or_critical_case(shared_corpora, shared_dev) -> None:
    rows = resolve_refs(shared_corpora, LABELED_CORPUS)  # raises, naming the row, on a stale ref or changed text
    dev = [json.loads(line)["text"] for line in shared_dev.read_text(encoding="utf-8").splitlines() if line.strip()]
    held_out = HeldOut(dev + sorted(critical_texts(shared_corpora)))
    assert [r["ref"] for r in rows if normalize(r["text"]) in held_out] == []


def test_command_writes_the_rows_for_triage_evaluate(tmp_path, capsys, shared_corpora) -> None:
    from helpdesk_triage.training.corpus_refs import main
    from helpdesk_triage.training.dataset_io import load_labelled

    out = tmp_path / "labelled.jsonl"
    assert main(["--corpus", str(shared_corpora), "--refs", str(LABELED_CORPUS), "--out", str(out)]) == 0
    written = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    committed = [json.loads(line) for line in LABELED_CORPUS.read_text(encoding="utf-8").splitlines()]
    assert [(r["ref"], r["category"], r["severity"], r["sentiment"]) for r in written] == \
        [(r["ref"], r["category"], r["severity"], r["sentiment"]) for r in committed]
    assert load_labelled([out])[0].num_rows == len(committed)  # what `triage evaluate --data` reads
    assert main(["--corpus", str(tmp_path / "none"), "--refs", str(LABELED_CORPUS), "--out", str(tmp_path / "x.jsonl")]) == 2
    assert "no such corpus folder" in capsys.readouterr().err
