"""evaluation/baselines.py: the keyword-rules baseline and the char TF-IDF + LogReg baseline."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest

from helpdesk_triage.policy.labels import HEADS, LABELS
from helpdesk_triage.evaluation.baselines import KeywordBaseline, TfidfLogRegBaseline
from helpdesk_triage.policy.keyword_rules import KeywordClassifier
from helpdesk_triage.policy.prediction import TextPrediction
from helpdesk_triage.training.dataset_io import load_labelled

# 40 short hand-written messages, 10 per category (A inquiry, B order, C product, D complaint).
# No message is labelled severity "critical", so that label never occurs in training.
# (text, category, severity, sentiment); None = label missing.
ROWS = [
    ("这款有黑色的吗", "A", "low", "neutral"),
    ("请问有XL码吗", "A", "low", "neutral"),
    ("这个手机支持快充吗", "A", "low", "neutral"),
    ("店里有优惠券吗", "A", "low", "neutral"),
    ("这个杯子能放微波炉吗", "A", "low", "neutral"),
    ("你们几点下班", "A", "low", "neutral"),
    ("这款和那款有什么区别", "A", "low", None),
    ("衣服是纯棉的吗", "A", None, "neutral"),
    ("东西很好，想再买一个，有货吗", "A", "low", "positive"),
    ("上次买的很喜欢，这个颜色还有吗", "A", "low", "positive"),
    ("我的快递到哪了", "B", "low", "neutral"),
    ("什么时候发货", "B", "low", "neutral"),
    ("能帮我改一下收货地址吗", "B", "low", "neutral"),
    ("订单能取消吗", "B", "low", "neutral"),
    ("发票怎么开", "B", "low", "neutral"),
    ("退款什么时候到账", "B", "medium", "neutral"),
    ("下单五天了还没发货", "B", "medium", "negative"),
    ("物流三天没动了", "B", "medium", None),
    ("付款了订单还显示待支付", "B", None, "negative"),
    ("快递显示签收了但我没收到", "B", "medium", "negative"),
    ("收到的杯子碎了", "C", "medium", "negative"),
    ("衣服有个洞", "C", "medium", "negative"),
    ("耳机左边没声音", "C", "medium", "negative"),
    ("发错颜色了", "C", "medium", "negative"),
    ("少发了一个配件", "C", "medium", "negative"),
    ("用了两天就坏了", "C", "high", "negative"),
    ("屏幕有划痕", "C", "medium", None),
    ("鞋子尺码不对想换货", "C", "medium", "neutral"),
    ("味道不对，好像变质了", "C", "high", "negative"),
    ("充电器充不进电", "C", None, "negative"),
    ("再不发货我就投诉", "D", "high", "negative"),
    ("你们就是骗子", "D", "high", "negative"),
    ("质量太差了，我要给差评", "D", "high", "negative"),
    ("第三次找你们了还没解决", "D", "high", "negative"),
    ("我要找你们领导", "D", "high", "negative"),
    ("卖假货，我要退一赔三", "D", "high", "negative"),
    ("客服态度太恶心了", "D", "high", "negative"),
    ("这种垃圾也敢卖", "D", "high", None),
    ("太过分了，必须赔偿", "D", "high", "negative"),
    ("等了一个月，再也不买了", "D", None, "negative"),
]


def make_dataset(rows=ROWS) -> datasets.Dataset:
    return datasets.Dataset.from_dict(
        {
            "text": [r[0] for r in rows],
            "category": [r[1] for r in rows],
            "severity": [r[2] for r in rows],
            "sentiment": [r[3] for r in rows],
        }
    )


@pytest.fixture(scope="module")
def fitted() -> TfidfLogRegBaseline:
    return TfidfLogRegBaseline().fit(make_dataset())


PROBES = ["这款有白色的吗", "快递怎么还没到", "杯子收到就是碎的", "我要投诉你们", "很好用，谢谢"]


def test_rows_are_well_formed():
    assert len(ROWS) == 40
    for head_index, head in enumerate(HEADS, start=1):
        assert all(r[head_index] is None or LABELS.is_valid(head, r[head_index]) for r in ROWS)
    assert [sum(r[1] == c for r in ROWS) for c in "ABCD"] == [10, 10, 10, 10]


def test_tfidf_predicts_full_distributions(fitted):
    preds = fitted.predict(PROBES)
    assert len(preds) == len(PROBES)
    for pred in preds:
        assert isinstance(pred, TextPrediction)
        for head in HEADS:
            hp = pred.head(head)
            assert list(hp.scores) == list(LABELS.codes(head))  # every schema label, schema order
            assert sum(hp.scores.values()) == pytest.approx(1.0)
            assert all(0.0 <= p <= 1.0 for p in hp.scores.values())
            assert hp.label == max(hp.scores, key=hp.scores.get)
            assert hp.confidence == hp.scores[hp.label]
    assert fitted.version == "tfidf-logreg-char1-3"


def test_label_missing_from_training_has_probability_zero(fitted):
    assert fitted.classes_["severity"] == ("low", "medium", "high")
    for pred in fitted.predict(PROBES + ["着火了，孩子烫伤住院了"]):
        assert pred.severity.scores["critical"] == 0.0
        assert pred.severity.label != "critical"


def test_tfidf_learns_the_training_set(fitted):
    preds = fitted.predict([r[0] for r in ROWS])
    right = sum(p.category.label == r[1] for p, r in zip(preds, ROWS))
    assert right >= 36  # a char-n-gram model with 40 rows fits its own training data


def test_predictions_are_deterministic(fitted):
    first = fitted.predict(PROBES)
    assert fitted.predict(PROBES) == first
    again = TfidfLogRegBaseline().fit(make_dataset())
    assert again.predict(PROBES) == first  # refit from scratch: identical probabilities
    # one text alone gets the same answer as inside a batch
    assert fitted.predict([PROBES[2]])[0] == first[2]


def test_rows_missing_a_label_are_skipped_per_head(fitted):
    counts = {head: sum(r[i] is not None for r in ROWS) for i, head in enumerate(HEADS, start=1)}
    assert counts == {"category": 40, "severity": 36, "sentiment": 36}  # 4 rows lack each of the two
    assert fitted.n_train_ == counts


def test_missing_labels_do_not_leak_into_training():
    # severity is known only for the A and D rows: the severity head learns only low and high,
    # while the category head still trains on all 40 rows
    rows = [(t, c, s if c in "AD" else None, se) for t, c, s, se in ROWS]
    model = TfidfLogRegBaseline().fit(make_dataset(rows))
    assert model.n_train_["category"] == 40
    assert model.n_train_["severity"] == 18  # 9 A + 9 D rows carry a severity
    assert model.classes_["severity"] == ("low", "high")
    for pred in model.predict(PROBES):
        assert pred.severity.scores["medium"] == 0.0 and pred.severity.scores["critical"] == 0.0


def test_head_with_one_class_predicts_it_with_probability_one():
    rows = [(t, c, s, "neutral" if i % 3 == 0 else None) for i, (t, c, s, _) in enumerate(ROWS)]
    model = TfidfLogRegBaseline().fit(make_dataset(rows))
    assert model.classes_["sentiment"] == ("neutral",)
    for pred in model.predict(PROBES):
        assert pred.sentiment.label == "neutral"
        assert pred.sentiment.scores == {"negative": 0.0, "neutral": 1.0, "positive": 0.0}


def test_head_without_labels_is_an_error():
    rows = [(t, c, s, None) for t, c, s, _ in ROWS]
    with pytest.raises(ValueError, match="no row has a sentiment label"):
        TfidfLogRegBaseline().fit(make_dataset(rows))


def test_invalid_label_is_an_error():
    rows = [*ROWS[:-1], ("还行吧", "E", "low", "neutral")]
    with pytest.raises(ValueError, match="'E'"):
        TfidfLogRegBaseline().fit(make_dataset(rows))


def test_fits_the_output_of_load_labelled(tmp_path: Path):
    path = tmp_path / "small.jsonl"
    lines = [
        json.dumps({"text": t, "category": c, "severity": s, "sentiment": se}, ensure_ascii=False)
        for t, c, s, se in ROWS
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    ds, _ = load_labelled([path])
    model = TfidfLogRegBaseline().fit(ds)
    assert model.predict(PROBES) == TfidfLogRegBaseline().fit(make_dataset()).predict(PROBES)


def test_predict_normalises_its_input(fitted):
    # full-width characters and Traditional script reach the model normalised, as training texts did
    assert fitted.predict(["我要投訴你們！！"]) == fitted.predict(["我要投诉你们!!"])


def test_predict_edge_cases(fitted):
    assert fitted.predict([]) == []
    with pytest.raises(TypeError, match="list of texts"):
        fitted.predict("我要投诉")
    with pytest.raises(RuntimeError, match="before fit"):
        TfidfLogRegBaseline().predict(["你好"])


# ---------------------------------------------------------------------------------------------
# Keyword baseline
# ---------------------------------------------------------------------------------------------


def test_keyword_baseline_is_the_keyword_classifier():
    baseline = KeywordBaseline()
    assert isinstance(baseline, KeywordClassifier)
    assert baseline.version == KeywordClassifier().version


def test_keyword_baseline_categories():
    complaint, broken = KeywordBaseline().predict(["再不发货我就投诉", "收到的杯子碎了"])
    assert complaint.category.label == "D"
    assert broken.category.label == "C"
    for pred in (complaint, broken):
        for head in HEADS:
            assert list(pred.head(head).scores) == list(LABELS.codes(head))
            assert sum(pred.head(head).scores.values()) == pytest.approx(1.0)


def test_keyword_baseline_normalises_its_input():
    # Traditional "投訴" only matches the (Simplified) cue "投诉" after normalisation
    assert KeywordBaseline().predict(["再不發貨我就投訴"])[0].category.label == "D"
