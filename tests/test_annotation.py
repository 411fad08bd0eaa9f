"""Annotation tooling: batches with blind controls, answer checks, agreement figures."""

from __future__ import annotations

import json

import pytest
from sklearn.metrics import cohen_kappa_score

from helpdesk_triage.training.annotation import (
    ANNOTATED,
    agreement,
    check_answers,
    cohen_kappa,
    draw,
    main,
    pack,
    subcases,
    write_jsonl,
)

POOL = [{"uid": f"u{i:03d}", "text": f"消息{i}", "ref": {"corpus": "jddc", "line": i}, "sha256": str(i)} for i in range(10)]
CONTROLS = [{"id": f"c{i}", "text": f"对照{i}", "category": "B", "severity": "medium", "sentiment": "neutral"} for i in range(6)]


def test_kappa_matches_sklearn():
    a = list("AABBCCDDAB")
    b = list("AABBCDDDBB")
    assert cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b))
    assert cohen_kappa(["A"] * 3, ["A"] * 3) is None  # no variation: undefined, not 1.0
    assert cohen_kappa([], []) is None


def test_batches_hide_which_rows_are_controls():
    batches = pack(POOL, CONTROLS, batch_size=4, controls_per_batch=2, seed=1)
    assert [name for name, _, _ in batches] == ["b001", "b002", "b003"]
    shown = [item for _, items, _ in batches for item in items]
    assert all(set(item) == {"item", "text"} for item in shown)  # no label, no uid, no hint
    keys = [key for _, _, ks in batches for key in ks]
    assert sorted(k["uid"] for k in keys if "uid" in k) == [r["uid"] for r in POOL]
    controls = [k["control"]["id"] for k in keys if "control" in k]
    assert len(controls) == 6 and len(set(controls)) == 6  # each control used once
    with pytest.raises(ValueError, match="control rows left"):
        pack(POOL, CONTROLS[:3], batch_size=4, controls_per_batch=2, seed=1)


def test_answer_check_names_the_row_and_the_field():
    items = [{"item": "b001-001", "text": "x"}, {"item": "b001-002", "text": "y"}]
    good = {"item": "b001-001", "category": "B", "severity": "low", "sentiment": "neutral", "subcase": "not_shipped", "usable": True}
    unusable = {"item": "b001-002", "usable": False}
    assert set(check_answers([good, unusable], items, "f")) == {"b001-001", "b001-002"}
    with pytest.raises(ValueError, match="row 1 .*subcase 'defect'"):
        check_answers([{**good, "subcase": "defect"}, unusable], items, "f")  # a C sub-case on a B row
    with pytest.raises(ValueError, match="row 2 .*severity 'urgent'"):
        check_answers([good, {**good, "item": "b001-002", "severity": "urgent"}], items, "f")
    with pytest.raises(ValueError, match="1 items unanswered"):
        check_answers([good], items, "f")
    with pytest.raises(ValueError, match="unknown item"):
        check_answers([good, {**unusable, "item": "b009-001"}], items, "f")


def test_every_category_has_subcases_ending_in_other():
    codes = subcases()
    assert sorted(codes) == ["A", "B", "C", "D"]
    assert all(c[-1] == "other" and len(c) == len(set(c)) >= 5 for c in codes.values())


def test_agreement_compares_passes_on_pool_rows_and_passes_with_controls(tmp_path):
    [(name, items, keys)] = pack(POOL[:4], CONTROLS[:2], batch_size=4, controls_per_batch=2, seed=3)
    write_jsonl(tmp_path / "batches" / f"{name}.jsonl", items)
    write_jsonl(tmp_path / "keys" / f"{name}.jsonl", keys)
    first, second = [], []
    for n, key in enumerate(keys):
        row = {"item": key["item"], "category": "B", "severity": "medium", "sentiment": "neutral", "subcase": "not_shipped", "usable": True}
        first.append(row)
        # p2 disagrees on one pool row's category and gets one control's sentiment wrong
        if "uid" in key and key["uid"] == "u000":
            row = {**row, "category": "C", "subcase": "defect"}
        if "control" in key and key["control"]["id"] == "c0":
            row = {**row, "sentiment": "negative"}
        second.append(row)
    write_jsonl(tmp_path / "labels" / "p1" / f"{name}.jsonl", first)
    write_jsonl(tmp_path / "labels" / "p2" / f"{name}.jsonl", second)
    report = agreement(tmp_path)
    assert report["rows_compared"] == 4
    assert report["raw_agreement"]["category"] == 0.75
    assert report["raw_agreement"]["severity"] == 1.0
    assert set(report["kappa"]) == set(ANNOTATED)
    assert report["control_agreement"]["p1"]["sentiment"] == {"n": 2, "agreement": 1.0}
    assert report["control_agreement"]["p2"]["sentiment"] == {"n": 2, "agreement": 0.5}
    assert main(["check", "--work", str(tmp_path), "--pass", "p2", "--batch", name]) == 0
    assert main(["check", "--work", str(tmp_path), "--pass", "p3", "--batch", name]) == 2


def test_draw_follows_the_source_mix_and_adds_escalation_candidates():
    groups = {g: [{"ref": {"corpus": g, "line": i}, "sha256": f"{g}{i}", "source": g if g != "shop" else "shop:衣服",
                   "text": "你们就是骗子，我要投诉" if i % 10 == 0 else f"{g} 请问{i}号有货吗"} for i in range(200)]
              for g in ("jddc", "ecd", "waimai", "shop")}
    rows = draw(groups, uniform=100, escalation=20, seed=5)
    uniform = [r for r in rows if r["stratum"] == "uniform"]
    assert len(uniform) == 100 and sum(r["source"] == "jddc" for r in uniform) == 62
    escalation = [r for r in rows if r["stratum"] == "escalation"]
    assert len(escalation) == 20 and all("骗子" in r["text"] for r in escalation)
    assert len({r["uid"] for r in rows}) == len(rows)
    assert not {r["sha256"] for r in uniform} & {r["sha256"] for r in escalation}
    json.dumps(rows, ensure_ascii=False)  # the pool is written as JSONL


def test_disagreements_go_to_adjudication_and_merge_keeps_agreed_and_decided_rows(tmp_path):
    from helpdesk_triage.training.annotation import disagreements, merged

    pool = [{**row, "source": "jddc", "stratum": "uniform"} for row in POOL[:4]]
    write_jsonl(tmp_path / "pool.jsonl", pool)
    [(name, items, keys)] = pack(pool, CONTROLS[:2], batch_size=4, controls_per_batch=2, seed=3)
    write_jsonl(tmp_path / "batches" / f"{name}.jsonl", items)
    write_jsonl(tmp_path / "keys" / f"{name}.jsonl", keys)
    uid_of = {k["item"]: k.get("uid") for k in keys}
    base = {"category": "B", "severity": "medium", "sentiment": "neutral", "subcase": "not_shipped", "usable": True}
    first = [{"item": k["item"], **base} for k in keys]
    second = []
    for k in keys:
        row = {"item": k["item"], **base}
        if uid_of[k["item"]] == "u000":
            row.update(category="C", subcase="defect")      # decided by the adjudicator
        if uid_of[k["item"]] == "u001":
            row.update(sentiment="negative")                 # left unresolved
        if uid_of[k["item"]] == "u002":
            first_row = next(r for r in first if r["item"] == k["item"])
            first_row.update(usable=False)                   # both say unusable
            row = {"item": k["item"], "usable": False}
        second.append(row)
    write_jsonl(tmp_path / "labels" / "p1" / f"{name}.jsonl", first)
    write_jsonl(tmp_path / "labels" / "p2" / f"{name}.jsonl", second)
    to_judge = disagreements(tmp_path)
    assert sorted(uid_of[r["item"]] for r in to_judge) == ["u000", "u001"]
    assert all({"text", "annotator_1", "annotator_2"} <= set(r) for r in to_judge)
    rows, counts = merged(tmp_path)
    assert counts == {"agreed": 1, "awaiting adjudication": 2, "unusable": 1}
    item = {uid_of[r["item"]]: r["item"] for r in to_judge}
    write_jsonl(tmp_path / "labels" / "adj" / "a001.jsonl", [
        {"item": item["u000"], "category": "C", "severity": "medium", "sentiment": "negative", "subcase": "defect", "usable": True},
        {"item": item["u001"], "unresolved": True}])
    rows, counts = merged(tmp_path)
    assert counts == {"agreed": 1, "adjudicated": 1, "unresolved": 1, "unusable": 1}
    decided = next(r for r in rows if r["labelled"] == "adjudicated")
    assert (decided["category"], decided["subcase"], decided["ref"]) == ("C", "defect", POOL[0]["ref"])
    assert all("text" not in r for r in rows)  # references only: no corpus text leaves the work folder


def test_the_pass_record_holds_every_answer_and_no_text(tmp_path):
    from helpdesk_triage.training.annotation import pass_record

    pool = [{**row, "source": "jddc", "stratum": "uniform"} for row in POOL[:4]]
    write_jsonl(tmp_path / "pool.jsonl", pool)
    [(name, items, keys)] = pack(pool, CONTROLS[:2], batch_size=4, controls_per_batch=2, seed=3)
    write_jsonl(tmp_path / "batches" / f"{name}.jsonl", items)
    write_jsonl(tmp_path / "keys" / f"{name}.jsonl", keys)
    answer = {"category": "A", "severity": "low", "sentiment": "neutral", "subcase": "stock", "usable": True}
    for p in ("p1", "p2"):
        write_jsonl(tmp_path / "labels" / p / f"{name}.jsonl", [{"item": k["item"], **answer} for k in keys])
    record = pass_record(tmp_path, "r9")
    assert len(record) == 6 and all(r["round"] == "r9" and r["p1"] == r["p2"] == answer for r in record)
    assert sorted(r["control"] for r in record if "control" in r) == ["c0", "c1"]
    assert sorted(r["ref"]["line"] for r in record if "ref" in r) == [0, 1, 2, 3]
    texts = {row["text"] for row in pool} | {c["text"] for c in CONTROLS}
    assert not any(t in json.dumps(record, ensure_ascii=False) for t in texts)


def test_the_critical_cue_stratum_takes_rule_cues_and_extra_cues_before_escalation():
    texts = ["吃完拉肚子了", "洗完头皮很痒", "你们就是骗子", "请问有货吗"]
    groups = {"shop": [{"ref": {"corpus": "shop", "line": i}, "sha256": f"s{i}", "source": "shop:衣服", "text": t}
                       for i, t in enumerate(texts)]}
    only_rules = draw(groups, uniform=0, escalation=0, seed=1, critical_cue=10)
    assert [r["text"] for r in only_rules] == ["吃完拉肚子了"]  # 拉肚子 is a critical cue of the rules; 痒 is not
    with_extra = draw(groups, uniform=0, escalation=10, seed=1, critical_cue=10, extra_cues=["痒"])
    strata = {r["text"]: r["stratum"] for r in with_extra}
    assert strata == {"吃完拉肚子了": "critical_cue", "洗完头皮很痒": "critical_cue", "你们就是骗子": "escalation"}
