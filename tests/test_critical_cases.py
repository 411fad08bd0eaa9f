"""evaluation/critical_cases.py: references into the corpora, resolved and checked by SHA-256.

The corpora here are tiny files the tests write in each corpus's format; one test checks the committed
``data/critical_cases.jsonl`` against ``../shared/data/corpora`` and skips where that folder is absent.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpdesk_triage.evaluation.critical_cases import (
    DEFAULT_CASES_PATH,
    CriticalCaseError,
    critical_texts,
    iter_customer_texts,
    load_critical_cases,
    main,
    read_cases,
    sha256_text,
)
from helpdesk_triage.policy.text_normalization import normalize
from helpdesk_triage.training.weak_labels import HeldOut, WeakRules, read_corpora

REPO = Path(__file__).resolve().parents[1]


def write_corpora(root: Path) -> Path:
    (root / "jddc").mkdir(parents=True)
    (root / "jddc" / "train_enc.txt").write_text(
        "我的快递怎么还没到,客服一,中间,客服二,再不到我就投诉你们\n"
        "充电器冒烟了差点着火,客服,好的, ,\n"          # the last non-empty segment is "好的"
        "吃了你们的饼干拉肚子\n",                           # one segment: first and last are the same
        encoding="utf-8",
    )
    (root / "taobao_ecd").mkdir()
    (root / "taobao_ecd" / "train.txt").write_text(
        "1\t发货 了 吗\t亲 已经 发 了\t我 要 打 12315\t候选 回复\n",
        encoding="utf-8",
    )
    (root / "online_shopping_10_cats").mkdir()
    (root / "online_shopping_10_cats" / "online_shopping_10_cats.csv").write_text(
        "cat,label,review\n"
        "洗发水,0,用了过敏，头皮红肿\n"
        "水果,x,标签不对的行\n"
        "水果,1,很甜，推荐\n",
        encoding="utf-8",
    )
    (root / "waimai_10k").mkdir()
    (root / "waimai_10k" / "waimai_10k.csv").write_text(
        "label,review\n0,吃完上吐下泻\n1,很好吃\n", encoding="utf-8",
    )
    return root


def case(corpus: str, file: str, line: int, segment, text: str, severity: str = "critical", **labels) -> dict:
    return {
        "ref": {"corpus": corpus, "file": file, "line": line, "segment": segment},
        "sha256": sha256_text(text),
        "category": labels.get("category", "D"),
        "severity": severity,
        "sentiment": labels.get("sentiment", "negative"),
        "why": "test",
    }


CASES = [
    case("jddc", "jddc/train_enc.txt", 1, -1, "再不到我就投诉你们", severity="high"),
    case("jddc", "jddc/train_enc.txt", 2, 0, "充电器冒烟了差点着火"),
    case("jddc", "jddc/train_enc.txt", 2, -1, "好的", severity="low", category="A", sentiment="neutral"),
    case("jddc", "jddc/train_enc.txt", 3, 0, "吃了你们的饼干拉肚子"),
    case("taobao_ecd", "taobao_ecd/train.txt", 1, 3, "我 要 打 12315"),
    case("online_shopping_10_cats", "online_shopping_10_cats/online_shopping_10_cats.csv", 2, None, "用了过敏，头皮红肿"),
    case("waimai_10k", "waimai_10k/waimai_10k.csv", 2, None, "吃完上吐下泻"),
]


def write_cases(path: Path, cases: list[dict]) -> Path:
    path.write_text("".join(json.dumps(c, ensure_ascii=False) + "\n" for c in cases), encoding="utf-8")
    return path


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return write_corpora(tmp_path / "corpora")


def test_refs_resolve_to_the_customer_texts(corpus: Path, tmp_path: Path) -> None:
    rows = load_critical_cases(corpus, write_cases(tmp_path / "cases.jsonl", CASES))
    assert [r["text"] for r in rows] == [
        "再不到我就投诉你们", "充电器冒烟了差点着火", "好的", "吃了你们的饼干拉肚子", "我 要 打 12315", "用了过敏，头皮红肿", "吃完上吐下泻",
    ]
    assert [r["severity"] for r in rows] == [c["severity"] for c in CASES]
    assert rows[4]["source"] == "critical_cases:ecd"
    assert rows[5]["source"] == "critical_cases:shop:洗发水"
    assert all(r["ref"] == c["ref"] for r, c in zip(rows, CASES))


def test_changed_text_is_reported_with_its_row(corpus: Path, tmp_path: Path) -> None:
    cases = write_cases(tmp_path / "cases.jsonl", CASES)
    (corpus / "waimai_10k" / "waimai_10k.csv").write_text("label,review\n0,吃完上吐下泻了\n", encoding="utf-8")
    with pytest.raises(CriticalCaseError, match=r"cases\.jsonl row 7 .*sha256 differs"):
        load_critical_cases(corpus, cases)


@pytest.mark.parametrize("ref, reason", [
    ({"corpus": "jddc", "file": "jddc/train_enc.txt", "line": 9, "segment": 0}, "no usable line 9"),
    ({"corpus": "jddc", "file": "jddc/train_enc.txt", "line": 1, "segment": 2}, "no customer segment 2"),
    ({"corpus": "taobao_ecd", "file": "taobao_ecd/train.txt", "line": 1, "segment": 2}, "no customer segment 2"),
    ({"corpus": "online_shopping_10_cats", "file": "online_shopping_10_cats/online_shopping_10_cats.csv",
      "line": 3, "segment": None}, "no usable line 3"),  # label 'x': the readers skip it
    ({"corpus": "waimai_10k", "file": "waimai_10k/other.csv", "line": 2, "segment": None}, "no such file"),
    ({"corpus": "jddc", "file": "waimai_10k/waimai_10k.csv", "line": 2, "segment": None}, "not inside the jddc/ folder"),
    ({"corpus": "jddc", "file": "jddc/../waimai_10k/waimai_10k.csv", "line": 2, "segment": None}, "not inside"),
    ({"corpus": "weibo", "file": "weibo/x.txt", "line": 1, "segment": None}, "unknown corpus"),
])
def test_unresolvable_refs_are_reported_with_their_row(corpus: Path, tmp_path: Path, ref: dict, reason: str) -> None:
    cases = write_cases(tmp_path / "cases.jsonl", [CASES[0], {**CASES[1], "ref": ref}])
    with pytest.raises(CriticalCaseError, match=rf"cases\.jsonl row 2 .*does not resolve: .*{reason}"):
        load_critical_cases(corpus, cases)


@pytest.mark.parametrize("change, message", [
    ({"severity": "urgent"}, "severity 'urgent' is not one of"),
    ({"text": "copied corpus text"}, "holds a text"),
    ({"why": None, "_drop": "why"}, r"missing \['why'\]"),
])
def test_malformed_rows_are_rejected(tmp_path: Path, change: dict, message: str) -> None:
    row = {**CASES[0], **{k: v for k, v in change.items() if k != "_drop"}}
    if "_drop" in change:
        del row[change["_drop"]]
    with pytest.raises(CriticalCaseError, match=rf"cases\.jsonl row 1: {message}"):
        read_cases(write_cases(tmp_path / "cases.jsonl", [row]))


def test_missing_corpus_folder(tmp_path: Path) -> None:
    with pytest.raises(CriticalCaseError, match="no such corpus folder"):
        load_critical_cases(tmp_path / "nowhere", write_cases(tmp_path / "cases.jsonl", CASES))


def test_customer_texts_are_the_texts_weak_labels_reads(corpus: Path) -> None:
    """Every reference points at a text training.weak_labels reads, and every such text has one."""
    rules = WeakRules.load()
    mine = {normalize(text)[: rules.max_chars].strip() for _ref, text, _source in iter_customer_texts(corpus)}
    assert {t.text for t in read_corpora(corpus, rules.max_chars)} == {t for t in mine if len(t) >= 2}


def test_critical_texts_keep_the_cases_out_of_weak_labels(corpus: Path, tmp_path: Path) -> None:
    texts = critical_texts(corpus, write_cases(tmp_path / "cases.jsonl", CASES))
    assert "吃完上吐下泻" in texts and len(texts) == len(CASES)
    held_out = HeldOut(texts)
    left = [t.text for t in read_corpora(corpus) if t.text not in held_out]
    assert left == ["我的快递怎么还没到", "发货了吗", "很甜,推荐", "很好吃"]


def test_cli_writes_labelled_rows(corpus: Path, tmp_path: Path) -> None:
    cases = write_cases(tmp_path / "cases.jsonl", CASES)
    out = tmp_path / "out" / "critical.jsonl"
    assert main(["--corpus", str(corpus), "--out", str(out), "--cases", str(cases), "--only", "critical"]) == 0
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 5 and {r["severity"] for r in rows} == {"critical"}
    assert set(rows[0]) >= {"text", "category", "severity", "sentiment", "source"}
    assert main(["--corpus", str(tmp_path / "nowhere"), "--out", str(out), "--cases", str(cases)]) == 2


def test_committed_cases_hold_no_texts() -> None:
    rows = read_cases(DEFAULT_CASES_PATH)
    assert rows, "data/critical_cases.jsonl is empty"
    assert any(r["severity"] == "critical" for r in rows) and any(r["severity"] != "critical" for r in rows)
    refs = [json.dumps(r["ref"], sort_keys=True) for r in rows]
    assert len(set(refs)) == len(refs), "a reference is listed twice"
    assert len({r["sha256"] for r in rows}) == len(rows), "the same text is listed twice"


def test_committed_refs_resolve_in_the_shared_corpora(shared_corpora) -> None:
    rows = load_critical_cases(shared_corpora)  # raises, naming the row, on a stale ref or a changed text
    assert len(rows) == len(read_cases(DEFAULT_CASES_PATH))
    # Each case is a text weak labelling reads (normalised and cut as it reads them), and the held-out
    # filter built from critical_texts() drops it.
    max_chars = WeakRules.load().max_chars
    corpus_texts = {t.text for t in read_corpora(shared_corpora, max_chars)}
    held_out = HeldOut(critical_texts(shared_corpora))
    cut = {json.dumps(r["ref"]): normalize(r["text"])[:max_chars].strip() for r in rows}
    assert [ref for ref, text in cut.items() if text not in corpus_texts] == []
    assert [ref for ref, text in cut.items() if text not in held_out] == []
