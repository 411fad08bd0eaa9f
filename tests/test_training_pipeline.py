"""A tiny end-to-end retraining run (1 encoder layer, a few steps) and the predict contract."""

import json
from pathlib import Path

import pytest
import torch

from helpdesk_triage.api.cli import main
from helpdesk_triage.policy.labels import LABELS
from helpdesk_triage.model import TriageModel
from helpdesk_triage.training.pipeline import train_from_files
from helpdesk_triage.training.trainer import TrainConfig, eval_nlls, fit_temperature

MESSAGES = {
    "A": ["这款有货吗", "怎么使用呢", "多少钱一个", "有优惠券吗", "支持七天无理由吗", "尺码偏大吗", "能开发票吗亲", "保修多久"],
    "B": ["我的快递到哪了", "怎么还没发货", "改一下地址", "退款什么时候到账", "取消订单", "三天了还没到", "物流不动了", "发票还没收到"],
    "C": ["收到的杯子碎了", "质量太差了开不了机", "发错颜色了", "少发了一个配件", "衣服掉色严重", "包装破损漏了", "屏幕有坏点", "尺码不对要换货"],
    "D": ["再不处理我就投诉", "骗子卖假货", "我要打12315", "吃了拉肚子住院了", "垃圾店铺千万别买", "找你们领导来", "第三次了太过分了", "充电器冒烟起火了"],
}
SEVERITY = {"A": "low", "B": "medium", "C": "medium", "D": "high"}
SENTIMENT = {"A": "neutral", "B": "negative", "C": "negative", "D": "negative"}

# Tiny models from the bare encoder, not continued from the embedded one; the verdict's exit status is tested on its own.
FROM_SCRATCH = ["--from-scratch", "--accept-worse"]


pytestmark = pytest.mark.usefixtures("torch_runtime")


def write_training_file(path: Path) -> Path:
    with path.open("w", encoding="utf-8") as f:
        for category, texts in MESSAGES.items():
            for text in texts:
                f.write(json.dumps({"text": text, "category": category, "severity": SEVERITY[category], "sentiment": SENTIMENT[category]}, ensure_ascii=False) + "\n")
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("run")
    data = write_training_file(folder / "train.jsonl")
    out = folder / "model"
    code = main(["train", *FROM_SCRATCH, "--data", str(data), "--out", str(out), "--num-layers", "1", "--trained-layers", "1",
                 "--epochs", "2", "--batch-size", "8", "--max-length", "32", "--seed", "7", "--version", "tiny-test"])
    assert code == 0
    return out


def test_training_writes_a_complete_model_folder(trained):
    for name in ("triager_config.json", "trained_weights.safetensors", "README.md", "training_info.json"):
        assert (trained / name).is_file(), name
    info = json.loads((trained / "training_info.json").read_text(encoding="utf-8"))
    assert info["n_train"] + info["n_eval"] == 32
    assert info["label_counts"]["category"]["D"] == 8
    assert set(info["temperatures"]) == {"category", "severity", "sentiment"}
    card = (trained / "README.md").read_text(encoding="utf-8")
    assert "tiny-test" in card and "macro-F1" in card
    # Only the fine-tuned layer and the heads are stored, in fp16: far below the 470 MB base.
    assert (trained / "trained_weights.safetensors").stat().st_size < 5_000_000
    # The character n-gram half of the blend, with its settings, beside the weights.
    assert (trained / "char_ngram.json").is_file() and (trained / "char_ngram.npz").is_file()
    assert info["ngram_blend"]["weight"] == 0.5
    assert set(info["ngram_blend"]["eval_macro_f1"]) == {"category", "severity", "sentiment"}
    assert "n-gram" in card and "blend temperature" in card


def test_predict_contract(trained):
    triager = TriageModel.load(trained, runtime="torch")
    texts = ["我的快递到哪了", "收到的杯子碎了", "我要投诉你们", "有货吗", "質量太差"]
    batch = triager.predict(texts)
    assert triager.version == "tiny-test"
    for prediction in batch:
        for head in ("category", "severity", "sentiment"):
            result = prediction.head(head)
            assert result.label in LABELS.codes(head)
            assert set(result.scores) == set(LABELS.codes(head))
            assert abs(sum(result.scores.values()) - 1) < 1e-5
            assert result.confidence == max(result.scores.values())
    singles = [triager.predict([t])[0] for t in texts]
    assert [p.labels() for p in singles] == [p.labels() for p in batch]
    again = triager.predict(texts)
    assert [p.category.scores for p in again] == [p.category.scores for p in batch]


@pytest.mark.slow
def test_same_seed_gives_the_same_model(trained, tmp_path):
    data = write_training_file(tmp_path / "train.jsonl")
    out = tmp_path / "again"
    assert main(["train", *FROM_SCRATCH, "--data", str(data), "--out", str(out), "--num-layers", "1", "--trained-layers", "1",
                 "--epochs", "2", "--batch-size", "8", "--max-length", "32", "--seed", "7", "--version", "tiny-test"]) == 0
    first = TriageModel.load(trained, runtime="torch").logits(["我的快递到哪了", "骗子"])
    second = TriageModel.load(out, runtime="torch").logits(["我的快递到哪了", "骗子"])
    for head in first:
        assert abs(first[head] - second[head]).max() < 1e-4
    assert (out / "char_ngram.npz").read_bytes() == (trained / "char_ngram.npz").read_bytes()
    assert (out / "char_ngram.json").read_bytes() == (trained / "char_ngram.json").read_bytes()


def test_ngram_weight_zero_serves_the_transformer_alone(tmp_path):
    data = write_training_file(tmp_path / "train.jsonl")
    out = tmp_path / "plain"
    assert main(["train", *FROM_SCRATCH, "--data", str(data), "--out", str(out), "--num-layers", "1", "--trained-layers", "1",
                 "--epochs", "1", "--batch-size", "8", "--max-length", "32", "--seed", "7", "--ngram-weight", "0"]) == 0
    assert not (out / "char_ngram.json").exists() and not (out / "char_ngram.npz").exists()
    triager = TriageModel.load(out, runtime="torch")
    assert triager.ngram is None
    texts = ["我的快递到哪了", "骗子"]
    logits = triager.logits(texts)
    for text_index, prediction in enumerate(triager.predict(texts)):
        for head, values in logits.items():
            expected = torch.softmax(torch.from_numpy(values[text_index]) / triager.config.temperatures[head], dim=-1).tolist()
            assert list(prediction.head(head).scores.values()) == pytest.approx(expected, abs=1e-6)


@pytest.mark.slow
def test_transformer_from_refits_only_the_blend(trained, tmp_path):
    data = write_training_file(tmp_path / "train.jsonl")
    settings = TrainConfig(num_layers=1, trained_layers=1, epochs=2, batch_size=8, max_length=32, seed=7, ngram_weight=0.3)
    run = train_from_files([data], tmp_path / "reused", config=settings, version="tiny-reused", transformer_from=trained,
                           log=lambda message: None)
    assert run.result.history == json.loads((trained / "training_info.json").read_text(encoding="utf-8"))["history"]
    reused, original = TriageModel.load(tmp_path / "reused", runtime="torch"), TriageModel.load(trained, runtime="torch")
    assert reused.version == "tiny-reused" and reused.ngram.weights["category"] == 0.3
    for head, values in reused.logits(["骗子卖假货"]).items():
        assert abs(values - original.logits(["骗子卖假货"])[head]).max() < 1e-6
    other = TrainConfig(num_layers=1, trained_layers=1, epochs=3, batch_size=8, max_length=32, seed=7)
    with pytest.raises(ValueError, match="epochs"):
        train_from_files([data], tmp_path / "other", config=other, transformer_from=trained, log=lambda message: None)


@pytest.mark.parametrize("select_on", ["last", "nll"])
def test_epoch_selection(select_on, tmp_path):
    data = write_training_file(tmp_path / "train.jsonl")
    settings = TrainConfig(num_layers=1, trained_layers=1, epochs=3, batch_size=8, max_length=32, seed=7, ngram_weight=0,
                           select_on=select_on)
    run = train_from_files([data], tmp_path / "m", config=settings, log=lambda message: None)
    history = run.result.history
    assert len(history) == 3  # no early stop: "last" always gains, and patience 2 allows one NLL setback
    mean_nll = [sum(epoch[f"eval_{h}_nll"] for h in ("category", "severity", "sentiment")) / 3 for epoch in history]
    expected = 3 if select_on == "last" else 1 + mean_nll.index(min(mean_nll))
    assert run.result.best_epoch == expected
    info = json.loads((tmp_path / "m" / "training_info.json").read_text(encoding="utf-8"))
    assert info["config"]["select_on"] == select_on and info["best_epoch"] == expected


def test_unknown_epoch_selection_is_refused():
    assert any("select_on" in problem for problem in TrainConfig(select_on="best").problems())


def test_transformer_from_accepts_a_run_recorded_before_a_setting_existed(trained, tmp_path):
    """A model trained before ``select_on`` existed ran with today's default; reusing it must still work."""
    import shutil

    old = tmp_path / "old"
    shutil.copytree(trained, old)
    info = json.loads((old / "training_info.json").read_text(encoding="utf-8"))
    del info["config"]["select_on"]
    (old / "training_info.json").write_text(json.dumps(info), encoding="utf-8")
    settings = TrainConfig(num_layers=1, trained_layers=1, epochs=2, batch_size=8, max_length=32, seed=7)
    run = train_from_files([write_training_file(tmp_path / "train.jsonl")], tmp_path / "reused", config=settings,
                           transformer_from=old, log=lambda message: None)
    assert run.result.best_epoch == info["best_epoch"]
    with pytest.raises(ValueError, match="select_on"):
        train_from_files([write_training_file(tmp_path / "train2.jsonl")], tmp_path / "other",
                         config=TrainConfig(num_layers=1, trained_layers=1, epochs=2, batch_size=8, max_length=32, seed=7,
                                            select_on="last"),
                         transformer_from=old, log=lambda message: None)


TINY = dict(num_layers=1, trained_layers=1, epochs=2, batch_size=8, max_length=32)


@pytest.mark.slow
def test_weight_soup_averages_two_runs_and_refits_temperatures(trained, tmp_path):
    from safetensors.torch import load_file

    data = write_training_file(tmp_path / "train.jsonl")
    quiet = dict(log=lambda message: None)
    other = tmp_path / "seed8"
    train_from_files([data], other, config=TrainConfig(**TINY, seed=8), version="tiny-seed8", **quiet)
    soup = tmp_path / "soup"
    run = train_from_files([data], soup, config=TrainConfig(**TINY, seed=8), version="tiny-soup",
                           transformer_from=other, soup_with=trained, **quiet)
    a, b, mixed = (load_file(str(folder / "trained_weights.safetensors")) for folder in (trained, other, soup))
    assert set(mixed) == set(a)
    for name in mixed:
        assert torch.allclose(mixed[name].float(), (a[name].float() + b[name].float()) / 2, atol=2e-3), name
    info = json.loads((soup / "training_info.json").read_text(encoding="utf-8"))
    assert info["weight_soup"]["with_version"] == "tiny-test"
    assert info["temperatures"] == run.result.model.config.temperatures
    assert info["weight_soup"]["temperatures_before"] == json.loads((other / "training_info.json").read_text(encoding="utf-8"))["temperatures"]
    assert "weight soup" in (soup / "README.md").read_text(encoding="utf-8")
    # The soup is served like any model, and reusing its transformer keeps the record but never averages twice.
    assert TriageModel.load(soup, runtime="torch").predict(["骗子卖假货"])[0].category.label in "ABCD"
    again = train_from_files([data], tmp_path / "refit", config=TrainConfig(**TINY, seed=8), transformer_from=soup, **quiet)
    assert again.soup["with_version"] == "tiny-test"
    with pytest.raises(ValueError, match="already a weight soup"):
        train_from_files([data], tmp_path / "twice", config=TrainConfig(**TINY, seed=8), transformer_from=soup,
                         soup_with=trained, **quiet)


@pytest.mark.slow
def test_weight_soup_is_the_same_after_fine_tuning_or_from_the_saved_run(trained, tmp_path):
    """The recipe reproduces a soup in one go (fine-tune, then average) or from a saved run (--transformer-from):
    both must give the same files."""
    data = write_training_file(tmp_path / "train.jsonl")
    quiet = dict(log=lambda message: None)
    settings = TrainConfig(**TINY, seed=8)
    train_from_files([data], tmp_path / "one_go", config=settings, version="v", soup_with=trained, **quiet)
    train_from_files([data], tmp_path / "run", config=settings, version="v", **quiet)
    train_from_files([data], tmp_path / "from_saved", config=settings, version="v", transformer_from=tmp_path / "run",
                     soup_with=trained, **quiet)
    for name in ("trained_weights.safetensors", "triager_config.json", "char_ngram.json", "char_ngram.npz"):
        assert (tmp_path / "one_go" / name).read_bytes() == (tmp_path / "from_saved" / name).read_bytes(), name


def test_weight_soup_with_a_different_model_is_refused_before_training(trained, tmp_path):
    data = write_training_file(tmp_path / "train.jsonl")
    settings = TrainConfig(num_layers=2, trained_layers=1, epochs=2, batch_size=8, max_length=32)
    with pytest.raises(ValueError, match="num_layers"):
        train_from_files([data], tmp_path / "m", config=settings, soup_with=trained, log=lambda message: None)
    with pytest.raises(ValueError, match="not a triage model folder"):
        train_from_files([data], tmp_path / "m", config=TrainConfig(**TINY), soup_with=tmp_path, log=lambda message: None)
    assert not (tmp_path / "m").exists()


def test_cli_train_soup_with(trained, tmp_path, capsys):
    data = write_training_file(tmp_path / "train.jsonl")
    tiny = ["--num-layers", "1", "--trained-layers", "1", "--epochs", "2", "--batch-size", "8", "--max-length", "32"]
    out = tmp_path / "soup"
    assert main(["train", *FROM_SCRATCH, "--data", str(data), "--out", str(out), *tiny, "--seed", "8", "--soup-with", str(trained)]) == 0
    assert json.loads((out / "training_info.json").read_text(encoding="utf-8"))["weight_soup"]["with_version"] == "tiny-test"
    # Another layer count is refused before any training, with exit code 2 and the reason.
    other = tmp_path / "other"
    assert main(["train", *FROM_SCRATCH, "--data", str(data), "--out", str(other), "--num-layers", "2", "--trained-layers", "1",
                 "--soup-with", str(trained)]) == 2
    assert "num_layers" in capsys.readouterr().err and not other.exists()


@pytest.mark.slow
def test_cli_predict_with_trained_model(trained, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"id": 1, "text": "退款什么时候到账"}\n{"id": 2, "text": "骗子"}\n', encoding="utf-8")
    out = tmp_path / "scored"  # a folder of shards
    assert main(["predict", "--input", str(src), "--output", str(out), "--model", str(trained), "--keep", "id"]) == 0
    rows = [json.loads(line) for shard in sorted(out.glob("part-*.jsonl"))
            for line in shard.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in rows] == [1, 2]
    assert all(r["model_version"] == "tiny-test" and r["degraded"] is False for r in rows)


@pytest.mark.parametrize(
    "lines, message",
    [
        (['{"text": "有货吗", "category": "E"}'], "row 1"),
        (['{"text": "", "category": "A"}'], "row 1"),
        (['{"message": "有货吗", "category": "A"}'], "row 1"),
        (['{"text": "有货吗", "severity": "urgent"}'], "urgent"),
    ],
)
def test_train_rejects_bad_files(tmp_path, capsys, lines, message):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert main(["train", *FROM_SCRATCH, "--data", str(bad), "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert "bad.jsonl" in err and message in err
    assert not (tmp_path / "m").exists()


def test_train_rejects_bad_settings(tmp_path, capsys):
    data = write_training_file(tmp_path / "train.jsonl")
    assert main(["train", *FROM_SCRATCH, "--data", str(data), "--out", str(tmp_path / "m"), "--trained-layers", "9", "--num-layers", "6"]) == 2
    assert "trained_layers" in capsys.readouterr().err
    assert main(["train", *FROM_SCRATCH, "--data", str(data), "--out", str(tmp_path / "m"), "--ngram-weight", "1"]) == 2
    assert "ngram_weight" in capsys.readouterr().err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep me")
    assert main(["train", *FROM_SCRATCH, "--data", str(data), "--out", str(tmp_path / "full")]) == 2
    assert "not empty" in capsys.readouterr().err
    assert (tmp_path / "full" / "x").read_text() == "keep me"


def test_fit_temperature_softens_overconfident_logits():
    import torch

    torch.manual_seed(0)
    labels = torch.randint(0, 3, (300,))
    logits = torch.randn(300, 3)
    logits[torch.arange(300), labels] += 1.0  # right 60-70% of the time...
    overconfident = logits * 8  # ...but nearly always ~100% sure
    assert fit_temperature(overconfident, labels) > 3
    assert fit_temperature(overconfident, torch.full((300,), -100)) == 1.0


def test_fit_temperature_stays_finite_on_separable_data():
    import math

    import torch

    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    logits = torch.nn.functional.one_hot(labels, 3).float() * 50
    temperature = fit_temperature(logits, labels)
    assert math.isfinite(temperature) and 0.05 <= temperature <= 20.0


def test_eval_nlls_skip_unlabelled_rows_and_heads():
    import math

    import torch

    logits = {h: torch.zeros(4, size) for h, size in (("category", 4), ("severity", 4), ("sentiment", 3))}
    logits["category"][0, 2] = 100.0  # sure and right on the only labelled row
    labels = {"category": torch.tensor([2, -100, -100, -100]), "severity": torch.tensor([0, 1, -100, 3]),
              "sentiment": torch.full((4,), -100)}
    nll = eval_nlls(logits, labels)
    assert nll["category"] < 1e-6
    assert abs(nll["severity"] - math.log(4)) < 1e-6  # uniform over 4 labels, unlabelled row ignored
    assert math.isnan(nll["sentiment"])


def test_repeat_column_oversamples_rows_per_epoch():
    import datasets

    from helpdesk_triage.training.trainer import _epoch_pool

    plain = datasets.Dataset.from_dict({"text": ["a", "b", "c"]})
    assert _epoch_pool(plain) == [0, 1, 2]
    weighted = plain.add_column("repeat", [1, 3, 0])
    assert sorted(_epoch_pool(weighted)) == [0, 1, 1, 1, 2]


def test_saving_without_a_blend_removes_a_stale_one(trained, tmp_path):
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(trained, folder)
    triager = TriageModel.load(folder, runtime="torch")
    assert triager.ngram is not None
    triager.ngram = None
    triager.save(folder)
    assert not (folder / "char_ngram.json").exists() and not (folder / "char_ngram.npz").exists()
    assert TriageModel.load(folder, runtime="torch").ngram is None


def test_a_head_nobody_labelled_is_left_out_of_the_blend(tmp_path):
    data = tmp_path / "category_only.jsonl"
    data.write_text("".join(json.dumps({"text": t, "category": c}, ensure_ascii=False) + "\n"
                            for c, texts in MESSAGES.items() for t in texts), encoding="utf-8")
    out = tmp_path / "model"
    assert main(["train", *FROM_SCRATCH, "--data", str(data), "--out", str(out), "--num-layers", "1", "--trained-layers", "1",
                 "--epochs", "1", "--batch-size", "8", "--max-length", "32", "--seed", "7"]) == 0
    triager = TriageModel.load(out, runtime="torch")
    assert set(triager.ngram.weights) == {"category"}
    prediction = triager.predict(["骗子卖假货"])[0]
    for head in ("category", "severity", "sentiment"):
        assert abs(sum(prediction.head(head).scores.values()) - 1) < 1e-6
