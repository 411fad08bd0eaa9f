"""Retraining a data team can trust: the shipped recipe as the defaults, continuing from the model in service with
replayed rows, the verdict at the end of every run, one progress bar, and evaluation that finds trained-on rows."""

from __future__ import annotations

import io
import json
import shutil
from dataclasses import asdict
from pathlib import Path

import pytest

from helpdesk_triage.api.cli import main
from helpdesk_triage.evaluation.metrics import figure_name
from helpdesk_triage.model.folder import DEFAULT_MODEL_DIR
from helpdesk_triage.model.trained_texts import fingerprint, trained_fingerprints, trained_on
from helpdesk_triage.training.progress import RunProgress
from helpdesk_triage.training.replay import load_replay
from helpdesk_triage.training.train_config import TrainConfig
from helpdesk_triage.training.verdict import FigureComparison, recall_comparison, worse_reasons

from tests.test_training_pipeline import MESSAGES, SENTIMENT, SEVERITY

pytestmark = pytest.mark.usefixtures("torch_runtime")
TINY = ["--num-layers", "1", "--trained-layers", "1", "--epochs", "2", "--batch-size", "8", "--max-length", "32", "--seed", "7"]
# A second set of messages, none of them in MESSAGES: what a data team adds.
NEW_MESSAGES = {
    "A": ["请问支持花呗分期吗", "门店几点关门", "能开专票吗", "会员积分怎么查", "包邮吗亲", "这个有现货吗"],
    "B": ["订单一直显示待发货", "物流三天没更新了", "我要改收货地址", "退款还没到账", "快递送错地址了", "包裹显示签收但我没收到"],
    "C": ["充电器插上没反应", "屏幕有一条竖线", "衣服洗一次就掉色", "耳机左边没声音", "杯子有裂纹", "鞋底开胶了"],
    "D": ["你们太坑了我要投诉", "再不处理我就报警", "客服态度恶劣", "虚假宣传我要曝光", "我要向消协举报", "一个月了都没人管"],
}

# Rows neither model trains on: what the verdict compares on (it needs 20 or more).
FRESH_MESSAGES = {
    "A": ["周末发货吗", "可以用优惠券吗", "有没有大一号的", "能先试用再付款吗", "什么时候上新", "几天能到北京"],
    "B": ["我的订单怎么取消了", "快递被退回去了", "换货单号是多少", "发票还没开出来", "付款了订单没显示", "运费多扣了"],
    "C": ["洗衣机漏水", "手机发烫厉害", "拉链坏了", "颜色和图片不一样", "电池一天就没电", "键盘有几个键不灵"],
    "D": ["我要找你们领导", "骗人的商家", "态度太差了必须赔偿", "我要去市场监管局举报", "已经找律师了", "再拖我就差评曝光"],
}


def write_rows(path: Path, messages: dict[str, list[str]]) -> Path:
    path.write_text("".join(json.dumps({"text": t, "category": c, "severity": SEVERITY[c], "sentiment": SENTIMENT[c]},
                                       ensure_ascii=False) + "\n" for c, texts in messages.items() for t in texts),
                    encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def in_service(tmp_path_factory) -> Path:
    """A tiny model trained from scratch, standing for the model in service."""
    folder = tmp_path_factory.mktemp("service")
    data = write_rows(folder / "first.jsonl", MESSAGES)
    assert main(["train", "--from-scratch", "--accept-worse", "--data", str(data), "--out", str(folder / "m"), *TINY,
                 "--version", "tiny-service"]) == 0
    return folder / "m"


@pytest.fixture(scope="module")
def continued(in_service, tmp_path_factory) -> tuple[Path, int]:
    folder = tmp_path_factory.mktemp("continued")
    data = write_rows(folder / "new.jsonl", NEW_MESSAGES)
    fresh = write_rows(folder / "fresh.jsonl", FRESH_MESSAGES)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRIAGE_MODEL_DIR", str(in_service))
        code = main(["train", "--data", str(data), "--eval", str(fresh), "--out", str(folder / "m"), "--epochs", "1",
                     "--batch-size", "8", "--version", "tiny-continued"])
    return folder / "m", code


def test_the_defaults_are_the_shipped_recipe():
    shipped = json.loads((DEFAULT_MODEL_DIR / "training_info.json").read_text(encoding="utf-8"))["config"]
    defaults = asdict(TrainConfig())
    for knob in ("epochs", "lr", "head_lr", "batch_size", "max_length", "num_layers", "trained_layers", "seed",
                 "ngram_weight", "select_on", "class_weight_power", "warmup_fraction"):
        assert defaults[knob] == shipped[knob], knob


def test_a_run_continues_from_the_model_in_service_and_replays_its_rows(in_service, continued):
    out, code = continued
    info = json.loads((out / "training_info.json").read_text(encoding="utf-8"))
    assert code == (3 if info["verdict"]["worse_than"] else 0)
    start = info["started_from"]
    assert start["version"] == "tiny-service" and Path(start["path"]) == in_service
    # Its settings (1 layer, max length 32) were taken from the model it continued from, not the 12-layer defaults.
    assert info["config"]["num_layers"] == 1 and info["config"]["max_length"] == 32
    # The service model's rows not held out for its own validation are replayable; TrainConfig.replay_rows > all of them.
    assert start["replayed_rows"] == start["replayable_rows"] > 20
    # The weights saw the service model's rows and the new ones: both are fingerprinted.
    prints = trained_fingerprints(out)
    assert fingerprint(NEW_MESSAGES["D"][0]) in prints or fingerprint(NEW_MESSAGES["D"][1]) in prints
    assert trained_fingerprints(in_service) <= prints
    # The replay sources chain: the new model would replay its own file and the service model's.
    names = {Path(s["file"]).name for s in info["replay_sources"]}
    assert names == {"first.jsonl", "new.jsonl"}
    # The rows that measured it without training it: its --eval file (the verdict's fallback when it is in service).
    assert [Path(s["file"]).name for s in info["measuring_sources"]] == ["fresh.jsonl"]


def test_every_run_ends_with_a_verdict_in_the_card_and_the_exit_status(continued):
    out, code = continued
    info = json.loads((out / "training_info.json").read_text(encoding="utf-8"))
    verdict = info["verdict"]
    assert verdict["sentence"].startswith("Verdict: the new model tiny-continued is")
    assert set(verdict["against"]) == {"the model in service", "the TF-IDF baseline"}
    figures = [f["figure"] for f in verdict["against"]["the model in service"]]
    assert figures[:3] == [figure_name(head) for head in ("category", "severity", "sentiment")]
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "## Verdict" in card and verdict["sentence"] in card
    assert "Continued from `tiny-service`" in card


def test_a_worse_run_exits_3_unless_accepted(in_service, tmp_path, capsys):
    data = write_rows(tmp_path / "new.jsonl", NEW_MESSAGES)
    fresh = write_rows(tmp_path / "fresh.jsonl", FRESH_MESSAGES)
    args = ["train", "--from-scratch", "--data", str(data), "--eval", str(fresh), *TINY, "--max-steps", "1",
            "--version", "tiny-worse"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRIAGE_MODEL_DIR", str(in_service))
        code = main([*args, "--out", str(tmp_path / "a")])
        err = capsys.readouterr().err
        info = json.loads((tmp_path / "a" / "training_info.json").read_text(encoding="utf-8"))
        if info["verdict"]["worse_than"]:
            assert code == 3 and "WARNING: the new model" in err and "WORSE" in err
            assert main([*args, "--out", str(tmp_path / "b"), "--accept-worse"]) == 0
        else:
            assert code == 0 and "WARNING" not in err
    assert "Verdict: the new model tiny-worse is" in err


def test_temperatures_are_kept_when_the_evaluation_rows_were_trained_on(in_service, tmp_path):
    data = write_rows(tmp_path / "same.jsonl", MESSAGES)  # the service model's own rows, split with another seed
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRIAGE_MODEL_DIR", str(in_service))
        main(["train", "--data", str(data), "--out", str(tmp_path / "m"), "--epochs", "1", "--seed", "3", "--accept-worse"])
    info = json.loads((tmp_path / "m" / "training_info.json").read_text(encoding="utf-8"))
    service = json.loads((in_service / "triager_config.json").read_text(encoding="utf-8"))
    assert "its own temperatures are kept" in info["started_from"]["kept_temperatures"]
    assert info["temperatures"] == service["temperatures"]
    card = (tmp_path / "m" / "README.md").read_text(encoding="utf-8")
    assert "Calibration: the starting model trained on" in card
    # Rows the model in service trained on cannot judge it: the verdict leaves them out and says it could not measure.
    assert info["verdict"]["unmeasured"].startswith("only ") and info["verdict"]["worse_than"] == []
    assert info["verdict"]["notes"][0].endswith("(figures on them would flatter it)")
    assert "Verdict: not measured for" in card


def test_the_verdict_falls_back_on_the_rows_that_measured_the_model_in_service(in_service, tmp_path):
    service = tmp_path / "service"
    shutil.copytree(in_service, service)
    fresh = write_rows(tmp_path / "fresh.jsonl", FRESH_MESSAGES)
    info = json.loads((service / "training_info.json").read_text(encoding="utf-8"))
    info["measuring_sources"] = [{"file": str(fresh)}]
    (service / "training_info.json").write_text(json.dumps(info), encoding="utf-8")
    data = write_rows(tmp_path / "same.jsonl", MESSAGES)  # every held-out row is one the service model trained on
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRIAGE_MODEL_DIR", str(service))
        main(["train", "--data", str(data), "--out", str(tmp_path / "m"), "--epochs", "1", "--seed", "3", "--accept-worse"])
    verdict = json.loads((tmp_path / "m" / "training_info.json").read_text(encoding="utf-8"))["verdict"]
    n = verdict["n_rows"]
    assert verdict["unmeasured"] is None and 20 <= n <= 24
    assert any(note.startswith(f"compared on {n} rows that measured the model in service instead (fresh.jsonl")
               for note in verdict["notes"])
    assert set(verdict["against"]) == {"the model in service", "the TF-IDF baseline"}


def test_continuing_keeps_the_starting_models_settings(in_service, tmp_path, capsys):
    data = write_rows(tmp_path / "new.jsonl", NEW_MESSAGES)
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "m"), "--from", str(in_service),
                 "--num-layers", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "num_layers" in err and "--from-scratch" in err
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "m"), "--from", str(in_service), "--from-scratch"]) == 2
    assert "choose one" in capsys.readouterr().err
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "m"), "--replay-corpus", str(tmp_path / "nope")]) == 2
    assert "--replay-corpus" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_replay_reads_package_files_and_says_what_it_skipped(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    kept = write_rows(tmp_path / "kept.jsonl", NEW_MESSAGES)
    (folder / "training_info.json").write_text(json.dumps({"replay_sources": [
        {"package": "team_written/messages_ab.jsonl"}, {"file": str(kept)}, {"file": str(tmp_path / "gone.jsonl")},
        {"refs": "annotated_corpus.jsonl", "split": "train"}]}), encoding="utf-8")
    replay = load_replay(folder, 50, seed=1, exclude_texts=NEW_MESSAGES["A"])
    assert len(replay.sample) == 50 and replay.counts["kept.jsonl"] == 18  # the six A rows were excluded
    assert replay.counts["team_written/messages_ab.jsonl"] > 100
    assert any("gone.jsonl" in why for why in replay.skipped)
    assert any("--replay-corpus" in why for why in replay.skipped)
    assert not set(replay.everything["raw_text"]) & set(NEW_MESSAGES["A"])
    again = load_replay(folder, 50, seed=1, exclude_texts=NEW_MESSAGES["A"])
    assert list(again.sample["raw_text"]) == list(replay.sample["raw_text"])


def test_worse_rules():
    service = [FigureComparison("category macro-F1", 0.70, 0.74, -0.10, 0.02, False, 100),
               FigureComparison("sentiment macro-F1", 0.60, 0.80, -0.3, -0.1, True, 100)]
    reasons = worse_reasons("the model in service", service, 0.03)
    assert len(reasons) == 2 and "more than 0.03 below" in reasons[0] and "significantly worse" in reasons[1] or \
        "significantly worse" in reasons[0]
    within = [FigureComparison("category macro-F1", 0.72, 0.74, -0.10, 0.05, False, 100)]
    assert worse_reasons("the model in service", within, 0.03) == []
    # Against the baseline any shortfall in category macro-F1 or D recall counts, significant or not.
    assert worse_reasons("the TF-IDF baseline", within, None) == ["category macro-F1 0.720 is below the TF-IDF baseline's 0.740"]


def test_recall_needs_enough_rows_to_be_called_worse():
    few = recall_comparison(["D", "D", "A"], ["A", "A", "A"], ["D", "D", "A"], "D", "D recall")
    assert few.new == 0.0 and few.other == 1.0 and few.word == "not distinguishable"
    many = recall_comparison(["D"] * 30, ["A"] * 30, ["D"] * 30, "D", "D recall")
    assert many.word == "worse" and many.n == 30


def test_progress_is_one_bar_with_time_left_and_plain_lines_in_a_log():
    now = [0.0]
    log = io.StringIO()
    bar = RunProgress(100, label="triage train", stream=log, interactive=False, clock=lambda: now[0])
    for _ in range(100):
        now[0] += 1.0
        bar.advance(1, "epoch 1/1")
    lines = log.getvalue().splitlines()
    assert 10 <= len(lines) <= 12 and "\r" not in log.getvalue()
    assert "50%" in lines[5] and "~0m50s left" in lines[5]
    assert lines[-1].startswith("triage train [##############################] 100%")
    screen = io.StringIO()
    live = RunProgress(10, stream=screen, interactive=True, clock=lambda: now[0])
    live.advance(5)
    live.say("epoch 1: loss 0.1")
    assert screen.getvalue().startswith("\r") and "epoch 1: loss 0.1\n" in screen.getvalue()


def test_evaluate_leaves_out_rows_the_model_trained_on(in_service, tmp_path, capsys):
    seen = write_rows(tmp_path / "seen.jsonl", {"A": MESSAGES["A"][:3]})
    rows = write_rows(tmp_path / "mixed.jsonl", {**NEW_MESSAGES, "A": MESSAGES["A"][:3] + NEW_MESSAGES["A"]})
    trained_here = sum(trained_on(MESSAGES["A"][:3], trained_fingerprints(in_service)))
    assert trained_here >= 1
    assert main(["evaluate", "--data", str(rows), "--model", str(in_service), "--out", str(tmp_path / "r"), "--no-policy"]) == 0
    err = capsys.readouterr().err
    assert f"{trained_here} of the 27 evaluation rows were trained on (tiny-service on {trained_here}); left out" in err
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["n"] == 27 - trained_here and metrics["trained_rows"]["found"] == trained_here
    assert "were trained on" in (tmp_path / "r" / "report.md").read_text(encoding="utf-8")[:2000]
    assert main(["evaluate", "--data", str(rows), "--model", str(in_service), "--out", str(tmp_path / "k"), "--no-policy",
                 "--allow-trained-rows"]) == 0
    assert "kept (--allow-trained-rows)" in capsys.readouterr().err
    assert json.loads((tmp_path / "k" / "metrics.json").read_text(encoding="utf-8"))["n"] == 27
    only_seen = write_rows(tmp_path / "only.jsonl", {"A": [t for t in MESSAGES["A"][:3]
                                                           if trained_on([t], trained_fingerprints(in_service))[0]]})
    assert main(["evaluate", "--data", str(only_seen), "--model", str(in_service), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--allow-trained-rows" in err
    assert seen.is_file()


def test_the_embedded_model_knows_what_it_trained_on(shared_dev):
    prints = trained_fingerprints(DEFAULT_MODEL_DIR)
    assert prints is not None and len(prints) > 10_000
    from helpdesk_triage.training.dev_split import split

    train_part, holdout = split(shared_dev)
    assert not any(trained_on([json.loads(line)["text"] for line in holdout], prints))
    assert all(trained_on([json.loads(line)["text"] for line in train_part], prints))
