"""TriageModel's two backends: the optimised ONNX model gives the torch model's answers with the same
contract; cached builds; the runtime setting; the fallback to torch.

The real build (about a minute on 2 cores) happens once per machine, into the same cache the service
uses, and is reused by every later run; the cache mechanics are tested with a fake build.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

import helpdesk_triage.model.onnx_export as onnx_export
from helpdesk_triage.policy.settings import Settings
from helpdesk_triage.model import TriageModel, load_classifier
from helpdesk_triage.model.folder import DEFAULT_MODEL_DIR
from helpdesk_triage.model.onnx_backend import (
    META_FILE,
    MODEL_FILE,
    RECIPE_VERSION,
    TOKENIZER_FILE,
    artifact_key,
    artifact_path,
)
from helpdesk_triage.model.onnx_export import build_onnx_model
from helpdesk_triage.policy.prediction import TextPrediction
from helpdesk_triage.policy.sla import parse_timestamp

HEADS = ("category", "severity", "sentiment")

# A fixed set of help-desk messages (written for this test) over the four categories and the usual lengths.
MESSAGES = [
    "你好，这款电饭煲有几种颜色可以选？",
    "请问你们店铺支持七天无理由退货吗",
    "这个面霜适合敏感肌用吗",
    "满300减50的活动还有吗？",
    "洗碗机的安装需要另外收费吗",
    "会员生日有什么优惠",
    "我的包裹显示在中转站三天没动了",
    "下单时地址填错了，能帮我改成公司地址吗",
    "昨天付的款，订单还是待发货状态",
    "申请了退款，商家一直没处理",
    "请帮我开一张电子发票，抬头是个人",
    "这个订单我不想要了，帮我取消",
    "买的台灯开关坏了，按了没反应",
    "鞋子两只大小不一样，要求换货",
    "收到的蛋糕都压扁了，盒子也破了",
    "少发了一瓶洗发水",
    "裤子洗了一次就褪色了，质量有问题",
    "电动牙刷充不上电，才用了一周",
    "你们卖的是假货！专柜验过了，我要投诉",
    "说好的24小时发货，一周了还没发，骗人的吧，我要去消协投诉",
    "客服态度恶劣，直接挂我电话，太过分了",
    "用了你们的面膜脸过敏红肿，去医院花了好几百，必须赔偿",
    "电热毯漏电把我电了一下，太危险了，我要找媒体曝光",
    "第四次联系你们了，问题还是没解决，再这样我就起诉",
    "非常满意，下次还来买",
    "谢谢客服耐心解答",
    "好的，收到",
    "我想问一下这个耳机是不是正品，有没有防伪码，另外保修期是多久，坏了去哪里修",
    "前天下的单，物流信息显示已经到了我们市，但是一直没有派送，打快递电话也打不通，麻烦帮忙联系一下快递公司",
    "东西收到了，打开发现屏幕碎了，外包装完好，应该是出厂就有问题，请尽快给我换一台新的，不然我就给差评",
]
LONG_TEXT = "我想问一下这个商品什么时候有货，" * 19  # ~300 characters: far over the 128-token window


@pytest.fixture(scope="module")
def fast() -> TriageModel:
    model = TriageModel.load(DEFAULT_MODEL_DIR, runtime="onnx-int8")
    assert model.runtime == "onnx-int8"
    return model


@pytest.fixture(scope="module")
def reference() -> TriageModel:
    return TriageModel.load(DEFAULT_MODEL_DIR, runtime="torch")


# --------------------------------------------------------------------------------------------
# the optimised model against the torch reference
# --------------------------------------------------------------------------------------------


def test_optimised_model_gives_the_reference_labels_on_a_fixed_set(fast, reference):
    ours, theirs = fast.predict(MESSAGES), reference.predict(MESSAGES)
    for text, a, b in zip(MESSAGES, ours, theirs):
        for head in HEADS:
            # int8 kernels differ slightly between CPUs: a genuine near-tie may go either way.
            if b.head(head).margin() >= 0.05:
                assert a.head(head).label == b.head(head).label, (text, head, a.head(head), b.head(head))
            for code, p in b.head(head).scores.items():
                assert abs(a.head(head).scores[code] - p) < 0.06, (text, head, code)
    # The label check above must not be vacuous: nearly every label on this set is far from a tie.
    margins = [b.head(head).margin() for b in theirs for head in HEADS]
    assert sum(m >= 0.05 for m in margins) >= 0.95 * len(margins)


def test_build_check_recorded_agreement_with_the_torch_model(fast):
    meta = fast.backend.meta
    check = meta["check"]
    assert check["n"] == len(onnx_export.CALIBRATION_TEXTS)
    assert min(check["agreement"].values()) >= onnx_export.MIN_LABEL_AGREEMENT
    assert meta["word_embedding"].startswith("int4")  # the 250k x 384 table in 4 bits, exactly
    assert meta["layers"]["int8"] and (fast.backend.artifact / MODEL_FILE).stat().st_size < 150 * 2**20


def test_both_backends_keep_one_contract(fast, reference, embedded_version):
    assert fast.version == reference.version == embedded_version
    assert fast.config.max_length == reference.config.max_length == 128
    assert fast.predict([]) == []
    predictions = fast.predict(["有货吗", "收到的杯子碎了", "   快递到哪了 "])
    assert all(isinstance(p, TextPrediction) for p in predictions) and len(predictions) == 3
    for p in predictions:
        for head in HEADS:
            result = p.head(head)
            assert abs(sum(result.scores.values()) - 1) < 1e-6
            assert result.confidence == max(result.scores.values()) and result.scores[result.label] == result.confidence
            assert list(result.scores) == reference.config.labels[head]
    for text in ["有货吗", "iPhone 15 Pro 😀 有现货吗", LONG_TEXT, "臺灣的朋友買的"]:
        assert fast.token_count(text) == reference.token_count(text)
    assert fast.token_count(LONG_TEXT) > fast.config.max_length


def test_tokens_are_those_of_the_transformers_tokenizer(fast, reference):
    from helpdesk_triage.policy.text_normalization import normalize

    texts = [normalize(t) for t in ["有货吗", "iPhone 15 Pro 😀 有现货吗", LONG_TEXT, "ＡＢＣ１２３，退款"]]
    ours = fast.backend.token_ids(texts)
    theirs = reference.tokenizer([reference.config.text_prefix + t for t in texts], truncation=True,
                                 max_length=reference.config.max_length)["input_ids"]
    assert ours == theirs == reference.backend.token_ids(texts)
    assert len(ours[2]) == 128


def test_batch_order_and_padding_do_not_change_answers(fast):
    texts = [MESSAGES[-1], "好", MESSAGES[3], LONG_TEXT, MESSAGES[18]]
    together = fast.predict(texts, batch_size=2)  # several length buckets
    for text, p in zip(texts, together):
        alone = fast.predict([text])[0]
        assert p.labels() == alone.labels()
        for head in HEADS:
            for code, value in alone.head(head).scores.items():
                assert abs(p.head(head).scores[code] - value) < 0.05
    assert [p.labels() for p in fast.predict(texts[::-1])][::-1] == [p.labels() for p in together]


def test_a_text_gets_the_same_answer_alone_and_in_a_batch(fast):
    # Static int8: every layer input has a fixed scale, so a text's neighbours in a batch cannot change
    # its labels (dynamic quantisation took the scale of the whole batch).
    texts = MESSAGES + [LONG_TEXT, "好"]
    together = fast.predict(texts, batch_size=32)
    for text, p in zip(texts, together):
        alone = fast.predict([text])[0]
        assert p.labels() == alone.labels(), text
        for head in HEADS:
            for code, value in alone.head(head).scores.items():
                assert abs(p.head(head).scores[code] - value) < 1e-3, (text, head, code)
    assert fast.backend.meta["recipe"] == RECIPE_VERSION >= 2


def test_the_optimised_model_is_built_once_and_reused(fast):
    artifact = fast.backend.artifact
    assert artifact == artifact_path(DEFAULT_MODEL_DIR)
    assert artifact.name.startswith("onnx-int8-")
    started = time.monotonic()
    assert build_onnx_model(DEFAULT_MODEL_DIR) == artifact  # cached: no rebuild
    assert time.monotonic() - started < 5


def test_cli_optimize_prints_the_built_folder(fast, capsys, embedded_version):
    from helpdesk_triage.api.cli import main

    assert main(["optimize"]) == 0
    out = capsys.readouterr().out
    assert str(fast.backend.artifact) in out and embedded_version in out
    assert main(["optimize", "--model", "/nonexistent"]) == 2


# --------------------------------------------------------------------------------------------
# the runtime setting and the fallback to torch
# --------------------------------------------------------------------------------------------


def test_runtime_setting(monkeypatch):
    assert Settings().runtime == "onnx-int8"
    assert Settings(runtime="Torch").runtime == "torch"
    with pytest.raises(ValidationError, match="runtime"):
        Settings(runtime="tensorrt")
    with pytest.raises(ValidationError):
        Settings(batch_wait_ms=-1)
    with pytest.raises(ValidationError):
        Settings(max_model_batch=0)
    monkeypatch.setenv("TRIAGE_RUNTIME", "torch")
    assert Settings().runtime == "torch"
    assert TriageModel.load().runtime == "torch"  # the model loader reads the same setting
    monkeypatch.delenv("TRIAGE_RUNTIME")
    with pytest.raises(ValueError, match="unknown runtime"):
        load_classifier(None, runtime="tensorrt")


def test_default_loader_serves_the_onnx_model(fast):
    classifier, degraded = load_classifier(None)
    assert isinstance(classifier, TriageModel) and classifier.runtime == "onnx-int8" and not degraded


def test_a_failed_onnx_build_falls_back_to_the_torch_model(monkeypatch, caplog):
    def broken(folder, *args, **kwargs):
        raise RuntimeError("exporter exploded")

    monkeypatch.setattr(onnx_export, "build_onnx_model", broken)
    with caplog.at_level(logging.WARNING, logger="helpdesk_triage.model.triage_model"):
        classifier, degraded = load_classifier(DEFAULT_MODEL_DIR, runtime="onnx-int8")
    assert isinstance(classifier, TriageModel) and classifier.runtime == "torch" and not degraded
    assert "exporter exploded" in caplog.text and "serving the torch model" in caplog.text
    with pytest.raises(FileNotFoundError):  # an explicit folder that is no model is still an error
        load_classifier(Path("/nonexistent"), runtime="onnx-int8")


# --------------------------------------------------------------------------------------------
# cache mechanics, with a fake build (no export)
# --------------------------------------------------------------------------------------------


@pytest.fixture
def fake_model(tmp_path) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "triager_config.json").write_text('{"version": "fake-1"}', encoding="utf-8")
    (folder / "trained_weights.safetensors").write_bytes(b"weights-1")
    return folder


@pytest.fixture
def fake_build(monkeypatch):
    calls = []

    def build(model_dir, out, key, say):
        calls.append(key)
        time.sleep(0.2)
        (out / MODEL_FILE).write_bytes(b"onnx")
        (out / TOKENIZER_FILE).write_text("{}", encoding="utf-8")
        files = {MODEL_FILE: 4, TOKENIZER_FILE: 2}
        (out / META_FILE).write_text(json.dumps({"key": key, "files": files}), encoding="utf-8")

    monkeypatch.setattr(onnx_export, "_build", build)
    return calls


def test_cache_builds_once_keyed_by_the_weights(fake_model, fake_build, tmp_path):
    cache = tmp_path / "cache"
    first = build_onnx_model(fake_model, cache)
    assert build_onnx_model(fake_model, cache) == first and len(fake_build) == 1
    assert first.parent == cache and first.name == f"onnx-int8-{artifact_key(fake_model)[:16]}"
    (fake_model / "trained_weights.safetensors").write_bytes(b"weights-2")  # retrained: a new build
    second = build_onnx_model(fake_model, cache)
    assert second != first and len(fake_build) == 2 and first.exists()
    assert not list(cache.glob(".*.tmp-*"))  # no staging left behind


def test_a_damaged_build_is_rebuilt(fake_model, fake_build, tmp_path):
    folder = build_onnx_model(fake_model, tmp_path)
    (folder / MODEL_FILE).write_bytes(b"truncated!")
    assert build_onnx_model(fake_model, tmp_path) == folder and len(fake_build) == 2
    (folder / META_FILE).unlink()
    build_onnx_model(fake_model, tmp_path)
    assert len(fake_build) == 3 and (folder / MODEL_FILE).read_bytes() == b"onnx"


def test_concurrent_builders_build_once(fake_model, fake_build, tmp_path):
    results = []
    threads = [threading.Thread(target=lambda: results.append(build_onnx_model(fake_model, tmp_path))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(set(results)) == 1 and len(results) == 3 and len(fake_build) == 1


def test_a_failed_build_publishes_nothing(fake_model, monkeypatch, tmp_path):
    def failing(model_dir, out, key, say):
        (out / MODEL_FILE).write_bytes(b"half")
        raise RuntimeError("disk full")

    monkeypatch.setattr(onnx_export, "_build", failing)
    cache = tmp_path / "cache"
    with pytest.raises(RuntimeError, match="disk full"):
        build_onnx_model(fake_model, cache)
    assert [p.name for p in cache.iterdir() if not p.name.endswith(".lock")] == []


def test_cache_dir_follows_triage_cache_dir(fake_model, monkeypatch, tmp_path):
    monkeypatch.setenv("TRIAGE_CACHE_DIR", str(tmp_path / "elsewhere"))
    assert artifact_path(fake_model).parent == tmp_path / "elsewhere"
    with pytest.raises(FileNotFoundError):
        artifact_key(tmp_path)  # not a model folder


def test_the_service_loads_the_runtime_its_settings_name(monkeypatch):
    from helpdesk_triage.api import triage_service
    from helpdesk_triage.api.decision_store import open_store
    from helpdesk_triage.api.triage_service import TriageService

    asked = []

    def fake_load(model_dir, runtime, cache_dir):
        asked.append(runtime)
        from helpdesk_triage.policy.keyword_rules import KeywordClassifier

        return KeywordClassifier(), False

    monkeypatch.setattr(triage_service, "load_classifier", fake_load)
    monkeypatch.delenv("TRIAGE_RUNTIME", raising=False)
    for runtime in ("torch", "onnx-int8"):
        service = TriageService(Settings(database_url="sqlite:///:memory:", runtime=runtime), open_store("sqlite:///:memory:"))
        service.load_model()
        service.close()
    assert asked == ["torch", "onnx-int8"]  # the service passes its settings' runtime to the loader


# --------------------------------------------------------------------------------------------
# sub-cases, the answer library and the reply (issue 16)
# --------------------------------------------------------------------------------------------

RECEIVED = "2026-03-10T10:00:00+08:00"


def test_the_embedded_model_predicts_a_calibrated_sub_case_distribution_and_an_embedding(fast):
    from helpdesk_triage.policy.subcases import SubcaseTaxonomy

    prediction = fast.predict(["发票抬头开错了，能重开吗"])[0]
    assert set(prediction.subcases) == set(SubcaseTaxonomy.load().keys)
    assert sum(prediction.subcases.values()) == pytest.approx(1.0, abs=1e-6)
    assert max(prediction.subcases, key=prediction.subcases.get).startswith("B.invoice")
    assert prediction.embedding.shape == (384,)
    assert float(np.linalg.norm(prediction.embedding)) == pytest.approx(1.0, abs=1e-4)
    assert np.allclose(fast.embed(["发票抬头开错了，能重开吗"])[0], prediction.embedding, atol=1e-5)


def test_a_policy_question_gets_the_library_answer_and_two_alternatives(fast):
    answer = fast.triage(["能七天无理由退货吗"], RECEIVED)[0]
    assert answer.reply.source.startswith("answer:")
    assert answer.reply.template_id == answer.reply.source
    assert answer.reply.answer_similarity >= 0.8
    assert "7天无理由" in answer.reply.text
    assert answer.reply.subcase.code == "A.policy"
    assert len(answer.reply.alternatives) == 2
    assert len({answer.reply.source, *(a.source for a in answer.reply.alternatives)}) == 3


def test_praise_gets_thanks_not_an_answer(fast):
    answer = fast.triage(["东西很好，物流很快，五星好评！"], RECEIVED)[0]
    assert answer.sentiment.label == "positive"
    assert not answer.reply.source.startswith("answer:")
    assert "感谢" in answer.reply.text and "抱歉" not in answer.reply.text


def test_a_health_emergency_gets_the_health_script(fast):
    answer = fast.triage(["昨天吃了你们家的外卖，全家拉肚子，现在在医院"], RECEIVED)[0]
    assert answer.severity.label == "critical"
    assert answer.reply.source == "any.any.health"
    assert "就医" in answer.reply.text and "断开电源" not in answer.reply.text


def test_every_time_in_a_reply_is_a_deadline_of_the_same_answer(fast):
    """One source for promises: the times a reply states are the SLA's first-response or resolution deadline."""
    answers = fast.triage(MESSAGES, "2026-03-10T20:30:00+08:00")
    for answer in answers:
        for text in [answer.reply.text, *(a.text for a in answer.reply.alternatives)]:
            stated = re.findall(r"\d+月\d+日\d{2}:\d{2}", text)
            due = {_chinese(answer.sla.first_response_due), _chinese(answer.sla.resolution_due)}
            assert set(stated) <= due, (text, due)
            assert not re.search(r"\d+\s*(小时|分钟)内", text), text


def test_a_stated_deadline_caps_the_sla_and_the_reply(fast):
    answer = fast.triage(["快递到哪了？明天要用，麻烦快点"], "2026-03-10T20:30:00+08:00")[0]
    assert answer.sla.customer_deadline == "2026-03-11T09:00:00+08:00"
    assert answer.sla.rule.endswith("+customer_deadline")
    assert parse_timestamp(answer.sla.resolution_due) <= parse_timestamp("2026-03-11T09:00:00+08:00")
    assert any(reason.startswith("customer deadline") for reason in answer.review_reasons)
    assert "3月11日09:00" in answer.reply.text or "3月11日" not in answer.reply.text


def _chinese(timestamp: str) -> str:
    moment = parse_timestamp(timestamp)
    return f"{moment.month}月{moment.day}日{moment:%H:%M}"
