"""Weak labels on the public corpora: reading each corpus format, the labelling functions, held-out
filtering, balancing, the precision report, and `triage train --corpus` end to end (tiny run).

The corpora here are small files the tests write themselves in each corpus's format.
"""

import json
from pathlib import Path

import pytest

from helpdesk_triage.api.cli import main
from helpdesk_triage.training.weak_labels import (
    LABELLING_FUNCTIONS,
    CorpusError,
    CorpusText,
    HeldOut,
    WeakRules,
    measure,
    read_corpora,
    weak_label,
    weak_rows,
)

# Tiny models from the bare encoder, not continued from the embedded one; the verdict's exit status is tested on its own.
FROM_SCRATCH = ["--from-scratch", "--accept-worse"]


pytestmark = pytest.mark.usefixtures("torch_runtime")


@pytest.fixture(scope="module")
def rules() -> WeakRules:
    return WeakRules.load()


def write_corpora(root: Path) -> Path:
    (root / "jddc").mkdir(parents=True)
    (root / "jddc" / "train_enc.txt").write_text(
        "我的快递怎么还没到,客服回复一,中间的话,客服回复二,再不到我就投诉你们\n"
        "这款有货吗,有的亲,好的,不客气,收到的杯子碎了\n",
        encoding="utf-8",
    )
    (root / "taobao_ecd").mkdir()
    (root / "taobao_ecd" / "train.txt").write_text(
        "1\t发货 了 吗\t亲 已经 发 了\t物流 单号 多少\t候选 回复\n"
        "0\t发货 了 吗\t亲 已经 发 了\t物流 单号 多少\t另一个 候选\n",
        encoding="utf-8",
    )
    (root / "online_shopping_10_cats").mkdir()
    (root / "online_shopping_10_cats" / "online_shopping_10_cats.csv").write_text(
        "cat,label,review\n"
        "衣服,1,质量不错，很喜欢，推荐\n"
        "衣服,0,质量太差了，洗一次就坏了\n"
        "水果,1,不是很好吃\n"
        "水果,x,标签不对的行\n",
        encoding="utf-8",
    )
    (root / "waimai_10k").mkdir()
    (root / "waimai_10k" / "waimai_10k.csv").write_text(
        "label,review\n1,很好吃，送餐快，满意\n0,送了两个小时，垃圾，差评\n0,难吃\n",
        encoding="utf-8",
    )
    return root


@pytest.fixture()
def corpus(tmp_path) -> Path:
    return write_corpora(tmp_path / "corpora")


def test_reads_customer_words_only_from_every_corpus(corpus):
    items = list(read_corpora(corpus))
    texts = {t.text: t for t in items}
    # JDDC: first and last segment of a window are the customer's; the agent turns in between are not read.
    assert "我的快递怎么还没到" in texts and "再不到我就投诉你们" in texts
    assert not any("客服回复" in t or "中间的话" in t for t in texts)
    # Taobao: customer turns (odd fields after the label) with word spaces removed; agent turns and candidates skipped;
    # the repeated context of the second line is read once.
    assert "发货了吗" in texts and "物流单号多少" in texts
    assert not any("候选" in t or "已经发了" in t for t in texts)
    assert sum(t == "发货了吗" for t in texts) == 1
    assert texts["质量不错,很喜欢,推荐"].corpus_label == 1
    assert texts["质量不错,很喜欢,推荐"].source == "shop:衣服"
    assert texts["难吃"].source == "waimai" and texts["难吃"].corpus_label == 0
    assert not any("标签不对" in t for t in texts)  # a row whose label is not 0/1 is skipped


def test_missing_corpus_folder_is_a_clear_error(tmp_path):
    with pytest.raises(CorpusError, match="no such folder"):
        list(read_corpora(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="none of the known corpora"):
        list(read_corpora(tmp_path / "empty"))


@pytest.mark.parametrize(
    ("text", "source", "corpus_label", "expected"),
    [
        ("再不发货我就投诉你们", "jddc", None, {"category": "D", "sentiment": "negative"}),
        ("收到的杯子碎了", "jddc", None, {"category": "C", "sentiment": "negative"}),
        ("我的快递到哪了", "jddc", None, {"category": "B", "sentiment": "neutral"}),
        ("质量不错,很喜欢,推荐", "shop:衣服", 1, {"category": "A", "severity": "low", "sentiment": "positive"}),
        ("质量太差了,洗一次就坏了", "shop:衣服", 0, {"category": "C", "sentiment": "negative"}),
        # 质量 in praise is not a fault; a negated praise cue is not praise.
        ("不是很好吃", "shop:水果", 1, {"category": None, "sentiment": None}),
        ("好的", "jddc", None, {"category": None, "sentiment": "neutral"}),
        ("吃了以后拉肚子住院了,我要投诉", "waimai", 0, {"category": "D", "severity": "critical", "sentiment": "negative"}),
    ],
)
def test_labelling_functions(rules, text, source, corpus_label, expected):
    labels = weak_label(rules, CorpusText(text, source, corpus_label))
    for head, label in expected.items():
        assert labels[head] == label, (head, labels)


def test_disabled_functions_abstain_and_unknown_names_are_rejected(rules, tmp_path):
    question = CorpusText("这款有货吗,支持七天无理由吗", "jddc", None)
    assert "cat_A_question" in rules.disabled
    assert weak_label(rules, question)["category"] is None
    enabled = WeakRules(**{**rules.__dict__, "disabled": frozenset()})
    assert weak_label(enabled, question)["category"] == "A"
    bad = tmp_path / "rules.toml"
    text = Path("data/weak_label_rules.toml").read_text(encoding="utf-8")
    bad.write_text(text.replace('disabled = ["cat_A_question"]', 'disabled = ["no_such_function"]'), encoding="utf-8")
    with pytest.raises(ValueError, match="no_such_function"):
        WeakRules.load(bad)


def test_held_out_matches_exact_and_containment_both_ways():
    held = HeldOut(["快递五天了还没到", "好的"])
    assert "快递五天了还没到" in held
    assert "你好,快递五天了还没到,麻烦查一下" in held  # contains a held-out text
    assert "五天了还没到" in held  # contained in a held-out text (>= 6 chars)
    assert "还没到" not in held  # too short to count as containment
    assert "好的谢谢你们的帮助" not in held  # short held-out texts match exactly only
    assert "好的" in held


def test_weak_rows_are_balanced_capped_deterministic_and_skip_held_out(corpus):
    rows, summary = weak_rows(corpus, max_rows=4, held_out_texts=["收到的杯子碎了"])
    again, _ = weak_rows(corpus, max_rows=4, held_out_texts=["收到的杯子碎了"])
    assert rows == again
    assert len(rows) == 4 == summary["rows"]
    assert summary["held_out_dropped"] == 1
    assert all(r["text"] != "收到的杯子碎了" for r in rows)
    # Round robin over the category votes: four rows, four different groups.
    groups = [r["category"] or "none" for r in rows]
    assert len(set(groups)) == 4
    assert all(r["source"].startswith("weak:") for r in rows)


def test_measure_counts_precision_per_function_and_head(rules):
    rows = [
        {"text": "再不发货我就投诉你们", "source": "jddc", "category": "D", "sentiment": "negative"},
        {"text": "我要投诉这个功能怎么用", "source": "jddc", "category": "A", "sentiment": "neutral"},
        {"text": "质量不错,很喜欢", "source": "shop:衣服", "category": "A", "sentiment": "positive"},
        {"text": "在吗", "source": "jddc", "category": "A", "sentiment": "neutral"},
    ]
    report = measure(rules, rows, review_labels={"质量不错,很喜欢": 1})
    d = report["functions"]["cat_D_cue"]
    assert (d["fired"], d["correct"], d["precision"]) == (2, 1, 0.5)
    praise = report["functions"]["cat_A_praise"]
    assert (praise["fired"], praise["correct"]) == (1, 1)
    category = report["heads"]["category"]
    assert category["rows"] == 4 and category["fired"] == 3 and category["correct"] == 2
    assert category["coverage"] == 0.75 and category["precision"] == round(2 / 3, 3)
    assert {lf.name for lf in LABELLING_FUNCTIONS} == set(report["functions"])


def test_measure_command_and_bad_corpus_exit_code(corpus, tmp_path, capsys):
    from helpdesk_triage.training.weak_labels import main as weak_main

    labelled = tmp_path / "labelled.jsonl"
    labelled.write_text(json.dumps({"text": "再不到我就投诉你们", "source": "jddc", "category": "D"}, ensure_ascii=False) + "\n", encoding="utf-8")
    assert weak_main(["--corpus", str(corpus), "--measure", str(labelled)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["functions"]["cat_D_cue"]["precision"] == 1.0
    assert weak_main(["--corpus", str(tmp_path / "missing"), "--measure", str(labelled)]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_train_with_corpus_adds_weak_rows_to_training_only(corpus, tmp_path):
    from tests.test_training_pipeline import write_training_file

    data = write_training_file(tmp_path / "train.jsonl")
    out = tmp_path / "model"
    code = main(["train", *FROM_SCRATCH, "--data", str(data), "--out", str(out), "--corpus", str(corpus), "--corpus-rows", "5",
                 "--num-layers", "1", "--trained-layers", "1", "--epochs", "1", "--batch-size", "8", "--max-length", "32",
                 "--version", "tiny-weak"])
    assert code == 0
    info = json.loads((out / "training_info.json").read_text(encoding="utf-8"))
    assert info["weak_labels"]["rows"] == 5
    # The 32 labelled rows are split into train and eval; the 5 weak rows only ever train.
    assert info["n_train"] + info["n_eval"] == 32 + 5
    assert "Weak-labelled corpus rows: 5" in (out / "README.md").read_text(encoding="utf-8")


def test_train_with_a_bad_corpus_folder_exits_2(tmp_path, capsys):
    from tests.test_training_pipeline import write_training_file

    data = write_training_file(tmp_path / "train.jsonl")
    code = main(["train", *FROM_SCRATCH, "--data", str(data), "--out", str(tmp_path / "m"), "--corpus", str(tmp_path / "nope")])
    assert code == 2
    assert "no such folder" in capsys.readouterr().err
