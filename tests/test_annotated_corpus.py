"""data/annotated_corpus.jsonl: real corpus messages labelled twice independently, adjudicated, as references.

Its validation split decides model choices, so none of its rows may be trained on; no row may be a dev text,
a ``train.jsonl`` text, a critical case or a row of the earlier labelled file; the committed file holds no text.
Resolution is checked against ``../shared/data/corpora`` where that folder exists.
"""

from __future__ import annotations

import json
from collections import Counter

from helpdesk_triage.evaluation.critical_cases import critical_texts, read_cases
from helpdesk_triage.policy.data_files import data_file
from helpdesk_triage.policy.labels import LABELS
from helpdesk_triage.policy.text_normalization import normalize
from helpdesk_triage.training.annotation import subcases
from helpdesk_triage.training.corpus_refs import read_refs, resolve_refs
from helpdesk_triage.training.default_recipe import LABELED_CORPUS
from helpdesk_triage.training.weak_labels import HeldOut

ANNOTATED = data_file("annotated_corpus.jsonl")


def test_rows_are_references_with_valid_labels_and_provenance():
    rows = read_refs(ANNOTATED, required=("ref", "sha256", "category", "severity", "sentiment", "subcase", "split",
                                          "labelled", "round", "stratum"))
    codes = subcases()
    for number, row in enumerate(rows, start=1):
        assert row["subcase"] in codes[row["category"]], (number, row["category"], row["subcase"])
        assert row["split"] in ("train", "validation") and row["labelled"] in ("agreed", "adjudicated"), number
    refs = [json.dumps(r["ref"], sort_keys=True) for r in rows]
    assert len(set(refs)) == len(refs), "a reference is listed twice"
    assert len({r["sha256"] for r in rows}) == len(rows), "the same text is listed twice"
    assert Counter(r["split"] for r in rows)["validation"] >= 1500
    assert {r["stratum"] for r in rows if r["split"] == "validation"} == {"uniform"}  # dev's source mix, not picked
    assert set(LABELS.categories) <= {r["category"] for r in rows if r["split"] == "validation"}
    others = {json.dumps(r["ref"], sort_keys=True) for r in read_refs(LABELED_CORPUS)}
    others |= {json.dumps(r["ref"], sort_keys=True) for r in read_cases()}
    assert others.isdisjoint(refs), "a row of the earlier labelled file or a critical case is labelled again"


def test_rows_resolve_and_none_is_a_hand_labelled_text_or_critical_case(shared_corpora, shared_dev):
    rows = resolve_refs(shared_corpora, ANNOTATED, required=("ref", "sha256", "category", "severity", "sentiment"))
    hand = [json.loads(line)["text"] for path in (shared_dev, shared_dev.with_name("train.jsonl"))
            for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    held_out = HeldOut(hand + sorted(critical_texts(shared_corpora)))
    assert [r["ref"] for r in rows if normalize(r["text"]) in held_out] == []


def test_the_validation_split_is_written_for_triage_evaluate(tmp_path, capsys, shared_corpora):
    from helpdesk_triage.training.corpus_refs import main
    from helpdesk_triage.training.dataset_io import load_labelled

    out = tmp_path / "validation.jsonl"
    assert main(["--corpus", str(shared_corpora), "--refs", str(ANNOTATED), "--out", str(out), "--split", "validation"]) == 0
    committed = [r for r in read_refs(ANNOTATED) if r["split"] == "validation"]
    written = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["ref"] for r in written] == [r["ref"] for r in committed]
    assert load_labelled([out])[0].num_rows == len(committed)
    assert main(["--corpus", str(shared_corpora), "--refs", str(ANNOTATED), "--out", str(out), "--split", "nope"]) == 2
    assert "no row has split 'nope'" in capsys.readouterr().err


def test_weak_labelling_never_draws_a_text_that_measures_the_model(shared_corpora):
    from helpdesk_triage.training.corpus_refs import measuring_texts
    from helpdesk_triage.training.weak_labels import weak_rows

    texts = measuring_texts(shared_corpora)
    validation = [r for r in read_refs(ANNOTATED) if r["split"] == "validation"]
    assert len(texts) == len(read_cases()) + len(validation)
    rows, _ = weak_rows(shared_corpora, 1500, texts, seed=13)  # as training.pipeline calls it, with the eval texts too
    measured = HeldOut(texts)
    assert [r["text"] for r in rows if normalize(r["text"]) in measured] == []


def test_measuring_texts_of_a_folder_of_other_texts_is_empty_not_an_error(tmp_path):
    from helpdesk_triage.training.corpus_refs import measuring_texts

    (tmp_path / "jddc").mkdir()
    (tmp_path / "jddc" / "train_enc.txt").write_text("你好,在的,我的快递到哪了\n", encoding="utf-8")
    assert measuring_texts(tmp_path) == []


def test_the_recipe_validates_on_the_validation_split_and_never_trains_on_it(shared_corpora, tmp_path):
    from helpdesk_triage.training.corpus_refs import measuring_texts
    from helpdesk_triage.training.default_recipe import ANNOTATED_CORPUS, _refs_file, _validation_rows

    validation = _validation_rows(shared_corpora)
    committed = [r for r in read_refs(ANNOTATED_CORPUS) if r["split"] == "validation"]
    assert len(validation) == len(committed)
    assert all(set(r) == {"text", "category", "severity", "sentiment"} for r in validation)
    trained = _refs_file(shared_corpora, ANNOTATED_CORPUS, measuring_texts(shared_corpora), [], tmp_path, split="train")
    trained_texts = {normalize(json.loads(line)["text"]) for line in trained.read_text(encoding="utf-8").splitlines()}
    assert trained_texts and trained_texts.isdisjoint(normalize(r["text"]) for r in validation)
