"""`triage evaluate` end to end on a tiny hand-made set with fake classifiers: metrics.json, the
routing impact, coverage, slices, worst errors, the comparison, and the Markdown / HTML report."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from helpdesk_triage.api.cli import main
from helpdesk_triage.policy.labels import HEADS
from helpdesk_triage.policy.text_normalization import normalize
from helpdesk_triage.evaluation.evaluate import run_evaluation
from helpdesk_triage.evaluation.plots import PNG_SIGNATURE
from helpdesk_triage.evaluation.predictions import predict_rows
from helpdesk_triage.evaluation.routing_impact import DEFAULT_COSTS_PATH
from helpdesk_triage.policy.prediction import TextPrediction, one_label_distribution
from helpdesk_triage.training.dataset_io import load_labelled

PHONE = "13812345678"

# (text, category, severity, sentiment, source) — the evaluation rows. Row 2 carries a phone number
# (must be masked in the report), row 6 HTML metacharacters (must be escaped), row 9 no severity
# label and no source. Plus one row marked unusable (skipped).
ROWS = [
    ("有黑色的吗", "A", "low", "neutral", "chat"),
    ("我的快递到哪了", "B", "low", "neutral", "chat"),
    (f"什么时候发货 电话{PHONE}", "B", "medium", "neutral", "chat"),
    ("杯子碎了", "C", "medium", "negative", "email"),
    ("衣服有个洞", "C", "medium", "negative", "email"),
    ("再不发货我就投诉", "D", "high", "negative", "email"),
    ("你们就是骗子<b>&amp;", "D", "high", "negative", "chat"),
    ("吃了拉肚子", "D", "critical", "negative", "phone"),
    ("请问几点下班", "A", "low", "neutral", "phone"),
    ("东西很好", "A", None, "positive", None),
]

# What the fake model answers per row: (category, category confidence, severity, sentiment).
#   category true  A B B C C D D D A A
#   category pred  A B A C B D C D D A     -> 6 of 10 right
MODEL = [
    ("A", 0.90, "low", "neutral"),
    ("B", 0.80, "low", "negative"),  # sentiment wrong
    ("A", 0.95, "low", "neutral"),  # B -> A, the most confident error; severity medium -> low
    ("C", 0.70, "medium", "negative"),
    ("B", 0.60, "medium", "negative"),  # C -> B
    ("D", 0.85, "high", "negative"),
    ("C", 0.75, "medium", "negative"),  # D -> C: under-triage; severity high -> medium
    ("D", 0.90, "high", "negative"),  # severity critical -> high: under-triage
    ("D", 0.65, "critical", "neutral"),  # A -> D and low -> critical: over-triage twice
    ("A", 0.99, "low", "positive"),
]
# The comparison model: the same, except row 0 wrong (A -> B) and row 6 right (D).
COMPARE = list(MODEL)
COMPARE[0] = ("B", 0.90, "low", "neutral")
COMPARE[6] = ("D", 0.75, "medium", "negative")


class FakeClassifier:
    """Answers from a table keyed by the normalised text (as the evaluation passes normalised texts)."""

    def __init__(self, version: str, answers) -> None:
        self.version = version
        self.answers = {normalize(row[0]): a for row, a in zip(ROWS, answers)}
        self.calls = 0

    def predict(self, texts):
        self.calls += 1
        out = []
        for text in texts:
            cat, conf, sev, sent = self.answers[normalize(text)]
            out.append(TextPrediction(
                category=one_label_distribution("category", cat, conf),
                severity=one_label_distribution("severity", sev, 0.7),
                sentiment=one_label_distribution("sentiment", sent, 0.6),
            ))
        return out


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _write_data(path: Path) -> Path:
    rows = []
    for text, cat, sev, sent, source in ROWS:
        row = {"text": text, "category": cat, "severity": sev, "sentiment": sent}
        if source is not None:
            row["source"] = source
        rows.append(row)
    rows.insert(4, {"text": "生鲜里面的，你自己看", "category": "C", "usable": False, "source": "chat"})
    return write_jsonl(path, rows)


@pytest.fixture
def data_file(tmp_path) -> Path:
    return _write_data(tmp_path / "dev.jsonl")


def _write_train(path: Path) -> Path:
    rows = [
        ("这款有红色的吗", "A", "low", "neutral"), ("支持快充吗", "A", "low", "neutral"),
        ("有优惠券吗", "A", "low", "neutral"), ("什么时候到货", "B", "low", "neutral"),
        ("改一下收货地址", "B", "low", "neutral"), ("退款什么时候到账", "B", "medium", "neutral"),
        ("屏幕碎了", "C", "medium", "negative"), ("少发了一个配件", "C", "medium", "negative"),
        ("用了两天就坏了", "C", "high", "negative"), ("我要投诉你们", "D", "high", "negative"),
        ("卖假货的骗子", "D", "high", "negative"), ("吃了过敏住院了", "D", "critical", "negative"),
        ("东西很好很喜欢", "A", "low", "positive"),
    ]
    return write_jsonl(path, [{"text": t, "category": c, "severity": s, "sentiment": m} for t, c, s, m in rows])


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """One full run shared by the read-only tests of this module (tests that write use a copy)."""
    tmp = tmp_path_factory.mktemp("eval")
    data_file, train_file = _write_data(tmp / "dev.jsonl"), _write_train(tmp / "train.jsonl")
    out = tmp / "report"
    model, compare = FakeClassifier("fake-new", MODEL), FakeClassifier("fake-old", COMPARE)
    logs: list[str] = []
    results = run_evaluation(model, [data_file], out, train_paths=[train_file], log=logs.append,
                             compare=compare, slice_by="source", n_bootstrap=200)
    return out, results, logs, model


# ---------------------------------------------------------------------------------------------
# metrics.json: shape and hand-computed numbers
# ---------------------------------------------------------------------------------------------


def test_metrics_json_shape_and_hand_computed_numbers(report):
    out, results, _, model = report
    m = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert model.calls == 1  # 10 rows: one chunk of 64, predicted once for the whole report
    assert m["n"] == 10 and m["model_version"] == "fake-new"
    for head in HEADS:
        assert set(m[head]) >= {"accuracy", "macro_f1", "weighted_f1", "labels", "per_label", "confusion", "ece", "kappa"}
        for row in m[head]["per_label"].values():
            assert set(row) == {"precision", "recall", "f1", "support"}
    cat = m["category"]
    # confusion (rows true A B C D, columns predicted):
    #   A: rows 0 A, 8 D, 9 A -> [2, 0, 0, 1];  B: rows 1 B, 2 A -> [1, 1, 0, 0]
    #   C: rows 3 C, 4 B      -> [0, 1, 1, 0];  D: rows 5 D, 6 C, 7 D -> [0, 0, 1, 2]
    assert cat["confusion"] == [[2, 0, 0, 1], [1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 2]]
    assert cat["accuracy"] == pytest.approx(0.6)
    # F1: A 2·2/(3+3) = 2/3, B 2/(2+2) = 1/2, C 1/2, D 2/3 -> macro (2/3+1/2+1/2+2/3)/4 = 7/12
    assert cat["macro_f1"] == pytest.approx(7 / 12)
    # weighted: (3·2/3 + 2·1/2 + 2·1/2 + 3·2/3) / 10 = 0.6
    assert cat["weighted_f1"] == pytest.approx(0.6)
    # kappa: p_o 0.6, row and column sums both 3 2 2 3 -> p_e (9+4+4+9)/100 = 0.26 -> 0.34/0.74 = 17/37
    assert cat["kappa"] == pytest.approx(17 / 37)
    assert m["severity"]["per_label"]["low"]["support"] == 3  # row 9 has no severity: left out
    assert sum(map(sum, m["severity"]["confusion"])) == 9
    assert m["sentiment"]["accuracy"] == pytest.approx(0.9)

    r = m["routing_impact"]
    assert (r["category"]["under_triage"], r["category"]["true_escalations"], r["category"]["over_triage"]) == (1, 3, 1)
    assert (r["severity"]["under_triage"], r["severity"]["true_escalations"], r["severity"]["over_triage"]) == (1, 1, 1)
    # default costs: category B→A 1 + C→B 1 + D→C 10 + A→D 2 = 14;
    # severity medium→low 1 + high→medium 1 + critical→high 20 + low→critical 3 = 25; total 39 over 10 rows
    assert r["category"]["cost"] == 14.0 and r["severity"]["cost"] == 25.0
    assert r["total_cost"] == 39.0 and r["cost_per_row"] == pytest.approx(3.9)

    # coverage: confidences 0.9 .8 .95 .7 .6 .85 .75 .9 .65 .99; 80% = 8 rows -> threshold 0.7,
    # covered rows 0 1 2 3 5 6 7 9, right 1 1 0 1 1 0 1 1 = 6/8
    at = m["coverage"]["at_target"]
    assert (at["threshold"], at["n_covered"], at["accuracy"]) == (0.7, 8, 0.75)
    assert m["coverage"]["accuracy_all"] == pytest.approx(0.6)

    slices = {s["value"]: s for s in m["slices"]["rows"]}
    assert [s["value"] for s in m["slices"]["rows"]] == ["chat", "email", "phone", "(missing)"]
    # chat = rows 0 1 2 6 (the unusable chat row is skipped): true A B B D, pred A B A C
    #   accuracy 2/4; F1 A 2/3, B 2/3, C 0 (predicted, never true), D 0 -> macro 1/3; D recall 0/1
    assert slices["chat"]["n"] == 4 and slices["chat"]["category_accuracy"] == 0.5
    assert slices["chat"]["category_macro_f1"] == pytest.approx(1 / 3)
    assert slices["chat"]["D_recall"] == 0.0 and slices["chat"]["D_support"] == 1
    # chat sentiment: true neutral neutral neutral negative, pred neutral negative neutral negative -> negative F1 2/3
    assert slices["chat"]["negative_f1"] == pytest.approx(2 / 3)
    # email = rows 3 4 5: true C C D, pred C B D -> F1 B 0, C 2/3, D 1 -> macro 5/9; D recall 1
    assert slices["email"]["category_macro_f1"] == pytest.approx(5 / 9) and slices["email"]["D_recall"] == 1.0
    assert slices["(missing)"]["n"] == 1 and slices["(missing)"]["D_recall"] is None
    assert all(s["small"] for s in slices.values())

    assert m["data"]["unusable_skipped"] == 1


def test_baselines_and_comparison_files(report):
    out, results, logs, _ = report
    assert list(results) == ["model fake-new", "compare fake-old", "keyword rules", "tf-idf + logreg"]
    baselines = json.loads((out / "baselines.json").read_text(encoding="utf-8"))
    assert set(baselines) == {"keyword rules", "tf-idf + logreg"}
    for m in baselines.values():
        assert m["n"] == 10 and "routing_impact" in m and "coverage" in m and "slices" in m
    comp = json.loads((out / "comparison.json").read_text(encoding="utf-8"))
    assert comp["model"] == "model fake-new" and comp["compare"] == "compare fake-old"
    cat = comp["heads"]["category"]
    # only row 0 is right for the model alone, only row 6 for the compare model: b = c = 1 -> p = 1
    assert (cat["a_right_b_wrong"], cat["a_wrong_b_right"], cat["mcnemar_p"]) == (1, 1, 1.0)
    assert cat["n_resamples"] == 200 and not cat["significant"]
    assert cat["ci_low"] <= cat["difference"] <= cat["ci_high"]
    # severity and sentiment predictions are identical: difference 0, CI [0, 0], p = 1
    sent = comp["heads"]["sentiment"]
    assert (sent["difference"], sent["ci_low"], sent["ci_high"], sent["permutation_p"]) == (0.0, 0.0, 0.0, 1.0)
    assert comp["sentences"][0].startswith("category: no significant difference at 5%")
    assert comp["compare_metrics"]["routing_impact"]["category"]["under_triage"] == 0
    # the console gets the headline and routing tables and the verdicts
    text = "\n".join(logs)
    assert "| model fake-new | 0.583 |" in text and "1 of 3" in text and "no significant difference" in text


# ---------------------------------------------------------------------------------------------
# The HTML report: parse it, decode the images, look for the sections and numbers
# ---------------------------------------------------------------------------------------------


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[dict] = []
        self.ids: list[str] = []
        self.tags: list[str] = []
        self.text: list[str] = []
        self.external: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        if tag == "img":
            self.images.append(attrs)
        if "id" in attrs:
            self.ids.append(attrs["id"])
        for key in ("src", "href"):
            value = attrs.get(key)
            if value and not value.startswith(("data:", "#")):
                self.external.append(value)

    def handle_data(self, data):
        self.text.append(data)


def test_html_report_is_self_contained_with_png_images(report):
    out, *_ = report
    page = (out / "report.html").read_text(encoding="utf-8")
    parser = _Collector()
    parser.feed(page)
    parser.close()
    assert parser.external == []  # no external assets, only data: URIs and in-page links
    assert "<link" not in page and "<script" not in page
    # 3 confusion matrices + 3 reliability diagrams + the coverage curve
    assert len(parser.images) == 7
    for img in parser.images:
        prefix = "data:image/png;base64,"
        assert img["src"].startswith(prefix)
        png = base64.b64decode(img["src"][len(prefix):], validate=True)
        assert png.startswith(PNG_SIGNATURE) and len(png) > 2000
        assert img.get("alt")
    assert {"headline", "routing", "coverage", "heads", "comparison", "slices", "errors"} <= set(parser.ids)
    text = " ".join(" ".join(parser.text).split())
    for expected in (
        "0.583",  # category macro-F1 (7/12)
        "Cohen's kappa 0.459",  # 17/37
        "1 of 3",  # D under-triage
        "39.0",  # total routing cost
        "3.900",  # cost per row
        "set the threshold to 0.700",  # 80% coverage point
        "75.0% category accuracy",
        "small (n < 30)",
        "Worst errors",
        "no significant difference at 5%",
        "(missing)",
    ):
        assert expected in text, expected


def test_worst_errors_are_masked_escaped_and_ordered(report):
    out, *_ = report
    page = (out / "report.html").read_text(encoding="utf-8")
    markdown = (out / "report.md").read_text(encoding="utf-8")
    for doc in (page, markdown):
        assert PHONE not in doc
        assert "[手机号]" in doc
    # the text "<b>&amp;" is shown, not interpreted: escaped once, no <b> element in the page
    assert "你们就是骗子&lt;b&gt;&amp;amp;" in page
    parser = _Collector()
    parser.feed(page)
    assert "b" not in parser.tags
    # category errors by confidence: row 2 (0.95, B→A), row 6 (0.75, D→C), row 8 (0.65, A→D), row 4 (0.6, C→B)
    section = page.split('id="errors-category"')[1].split('id="errors-severity"')[0]
    # their file lines: the unusable row is line 5, so rows 2, 6, 8, 4 are lines 3, 8, 10, 6
    order = [section.index(f"dev.jsonl:{line}<") for line in (3, 8, 10, 6)]
    assert order == sorted(order)
    assert "4 most confident errors" in section


def test_markdown_report_references_the_written_plots(report):
    out, *_ = report
    markdown = (out / "report.md").read_text(encoding="utf-8")
    refs = [line[line.index("](") + 2 : -1] for line in markdown.splitlines() if line.startswith("![")]
    assert sorted(refs) == sorted(f"plots/{p.name}" for p in (out / "plots").glob("*.png"))
    assert len(refs) == 7
    for ref in refs:
        assert (out / ref).read_bytes().startswith(PNG_SIGNATURE)
    assert "| model fake-new | 0\\.583 |" in markdown or "| model fake-new | 0.583 |" in markdown
    assert "## Routing impact" in markdown and "## Slices by source" in markdown


def test_rerun_into_the_same_folder_overwrites_and_drops_stale_comparison(report, data_file, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(report[0], out)
    assert (out / "comparison.json").exists()
    run_evaluation(FakeClassifier("fake-new", MODEL), [data_file], out, log=lambda m: None)
    assert not (out / "comparison.json").exists()  # no --compare this time: the old file would mislead
    assert json.loads((out / "metrics.json").read_text(encoding="utf-8"))["n"] == 10
    assert "slices" not in json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert "No --train data" in (out / "report.md").read_text(encoding="utf-8")


def test_heads_without_any_label_are_reported_not_crashed(tmp_path):
    data = write_jsonl(tmp_path / "cat_only.jsonl", [{"text": t, "category": c} for t, c, *_ in ROWS])
    results = run_evaluation(FakeClassifier("fake-new", MODEL), [data], tmp_path / "r", log=lambda m: None)
    m = results["model fake-new"]
    assert m["severity"] is None and m["sentiment"] is None and m["category"]["accuracy"] == pytest.approx(0.6)
    assert m["routing_impact"]["severity"]["cost"] == 0.0
    assert "No evaluated row has a severity label." in (tmp_path / "r" / "report.md").read_text(encoding="utf-8")


@pytest.mark.skipif(shutil.which("chromium") is None, reason="no headless chromium on this machine")
def test_html_renders_in_headless_chromium(report, tmp_path):
    out, *_ = report
    shot = tmp_path / "shot.png"
    result = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}", "--window-size=1200,3000",
         (out / "report.html").resolve().as_uri()],
        capture_output=True, text=True, timeout=90, check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert shot.read_bytes().startswith(PNG_SIGNATURE) and shot.stat().st_size > 20_000


# ---------------------------------------------------------------------------------------------
# Progress bar, keep_columns
# ---------------------------------------------------------------------------------------------


def test_progress_bar_only_when_asked_or_on_a_terminal(capsys):
    texts = [r[0] for r in ROWS] * 10  # 100 texts: two chunks of 64
    truth = {h: [None] * len(texts) for h in HEADS}
    fake = FakeClassifier("fake-new", MODEL)
    predict_rows(fake, texts, truth)  # stderr is not a terminal under pytest: quiet
    assert capsys.readouterr().err == ""
    assert fake.calls == 2
    predict_rows(fake, texts, truth, progress=True, desc="predicting")
    assert "predicting" in capsys.readouterr().err


def test_load_labelled_keep_columns(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [
        {"text": "有货吗", "category": "A", "source": " shop "},
        {"text": "到哪了", "category": "B", "source": 3},
        {"text": "坏了", "category": "C", "source": None},
        {"text": "投诉", "category": "D"},
        {"text": "到哪了", "severity": "low", "source": "dup"},  # duplicate text: merged, first value kept
        {"text": "退款", "category": "B", "source": ""},
    ])
    ds, _ = load_labelled([path], keep_columns=["source"])
    assert list(ds["source"]) == ["shop", "3", None, None, None]
    assert ds[1]["severity"] == "low"
    plain, _ = load_labelled([path])
    assert "source" not in plain.column_names
    assert ds.remove_columns(["source"]).to_dict() == plain.to_dict()
    csv_path = tmp_path / "d.csv"
    csv_path.write_text("text,category,channel\n有货吗,A,web\n到哪了,B,\n", encoding="utf-8")
    assert list(load_labelled([csv_path], keep_columns=("channel",))[0]["channel"]) == ["web", None]
    for bad in (["text"], ["category"], ["source_row"], ["usable"], ["a", "a"], [""]):
        with pytest.raises(ValueError, match="keep_columns"):
            load_labelled([path], keep_columns=bad)


# ---------------------------------------------------------------------------------------------
# The CLI: options and clear errors (exit 2, naming the file / column)
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def fake_loader(monkeypatch):
    """The default model replaced by the fake (fast); any explicit folder goes to the real loader."""
    import helpdesk_triage.model.triage_model as triage_model

    real = triage_model.load_classifier

    def load(path=None, runtime=None, cache_dir=None):
        if path is None:
            return FakeClassifier("fake-new", MODEL), False
        if Path(path).name == "fake-old":
            return FakeClassifier("fake-old", COMPARE), False
        return real(path)

    monkeypatch.setattr(triage_model, "load_classifier", load)


def test_cli_evaluate_with_every_option(tmp_path, data_file, fake_loader, capsys):
    costs = tmp_path / "costs.toml"
    default = DEFAULT_COSTS_PATH.read_text(encoding="utf-8")
    assert default.count("C = 10,") == 1  # the cost of a true D predicted C
    costs.write_text(default.replace("C = 10,", "C = 100,"), encoding="utf-8")
    (tmp_path / "fake-old").mkdir()
    out = tmp_path / "out"
    code = main(["evaluate", "--data", str(data_file), "--out", str(out), "--slice-by", "source",
                 "--compare", str(tmp_path / "fake-old"), "--costs", str(costs), "--bootstrap", "50"])
    assert code == 0, capsys.readouterr().err
    m = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert m["routing_impact"]["costs_file"] == str(costs)
    # B→A 1 + C→B 1 + D→C now 100 + A→D 2 = 104 (14 with the default matrix)
    assert m["routing_impact"]["category"]["cost"] == 104.0
    keyword = json.loads((out / "baselines.json").read_text(encoding="utf-8"))["keyword rules"]
    assert keyword["routing_impact"]["costs_file"] == str(costs)
    assert json.loads((out / "comparison.json").read_text(encoding="utf-8"))["heads"]["category"]["n_resamples"] == 50
    assert (out / "report.html").is_file()


def test_evaluate_scores_the_decision_policy_beside_argmax(tmp_path, data_file, fake_loader, capsys):
    policy = tmp_path / "policy.toml"
    policy.write_text('[thresholds.severity]\ncritical = 0.05\n[automation.category]\nD = { level = "review" }\n',
                      encoding="utf-8")
    out = tmp_path / "out"
    assert main(["evaluate", "--data", str(data_file), "--out", str(out), "--policy", str(policy)]) == 0
    decided = json.loads((out / "policy_metrics.json").read_text(encoding="utf-8"))
    argmax = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert "policy fake-new" not in json.loads((out / "baselines.json").read_text(encoding="utf-8"))
    # the fake model spreads 0.1 over the other severities: 0.1 ≥ 0.05 makes every row critical
    assert decided["routing"]["critical_recall"] == 1.0 and argmax["routing"]["critical_recall"] == 0.0
    assert decided["automation"]["category"]["auto_rows"] == 10 - 3  # the three rows decided D go to review
    assert decided["automation"]["policy_file"] == str(policy)
    assert "Decision policy" in (out / "report.md").read_text(encoding="utf-8")
    assert "policy fake-new" in capsys.readouterr().err
    assert main(["evaluate", "--data", str(data_file), "--out", str(out), "--no-policy"]) == 0
    assert not (out / "policy_metrics.json").exists()
    bad = tmp_path / "bad.toml"
    bad.write_text('[automation.category]\nA = { level = "sometimes" }\n', encoding="utf-8")
    assert main(["evaluate", "--data", str(data_file), "--out", str(tmp_path / "o2"), "--policy", str(bad)]) == 2
    assert "needs level" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--slice-by", "channel"], "--slice-by channel: no row of {data} has a 'channel' field"),
        (["--slice-by", "category"], "--slice-by 'category': not a column that can be sliced by"),
        (["--costs", "{tmp}/missing.toml"], "{tmp}/missing.toml: no such cost-matrix file"),
        (["--compare", "{tmp}"], "--compare {tmp}: "),
        (["--bootstrap", "0"], "--bootstrap must be a positive"),
        (["--train", "{data}"], "every row's text is among the evaluated rows (--data)"),
    ],
)
def test_cli_evaluate_errors(tmp_path, data_file, fake_loader, capsys, extra, message):
    out = tmp_path / "out"
    args = [a.format(tmp=tmp_path, data=data_file) for a in extra]
    assert main(["evaluate", "--data", str(data_file), "--out", str(out)] + args) == 2
    err = capsys.readouterr().err
    assert message.format(tmp=tmp_path, data=data_file) in err
    assert not (out / "metrics.json").exists()


def test_cli_evaluate_bad_cost_file_and_bad_data_row(tmp_path, data_file, fake_loader, capsys):
    costs = tmp_path / "bad_costs.toml"
    costs.write_text("[category]\nA = { A = 0 }\n", encoding="utf-8")
    assert main(["evaluate", "--data", str(data_file), "--out", str(tmp_path / "o"), "--costs", str(costs)]) == 2
    err = capsys.readouterr().err
    assert f"{costs}: invalid cost matrix" in err and "no cost for predicted 'B'" in err
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"text": "有货吗", "category": "A"}, {"text": "x", "severity": "urgent"}])
    assert main(["evaluate", "--data", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "bad.jsonl: row 2: severity" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


class SubcaseFake(FakeClassifier):
    """The fake answers with a sub-case distribution: the first sub-case of the predicted category."""

    def predict(self, texts):
        from dataclasses import replace

        from helpdesk_triage.policy.subcases import SubcaseTaxonomy

        keys = SubcaseTaxonomy.load().keys
        out = []
        for p in super().predict(texts):
            first = next(k for k in keys if k.startswith(p.category.label + "."))
            out.append(replace(p, subcases={k: (0.9 if k == first else 0.1 / (len(keys) - 1)) for k in keys}))
        return out


def test_evaluate_reports_sub_case_f1_and_judged_reply_fit(tmp_path):
    from helpdesk_triage.policy.subcases import SubcaseTaxonomy
    from helpdesk_triage.policy.triage import TriageRequest, triage

    model = SubcaseFake("fake-new", MODEL)
    received = "2026-03-10T10:00:00+08:00"
    first = {c: next(k for k in SubcaseTaxonomy.load().keys if k.startswith(c + ".")).split(".")[1] for c in "ABCD"}
    rows = []
    for n, (text, cat, sev, sent, _) in enumerate(ROWS):
        current = triage([TriageRequest(text=text, received_at=received)], model=model)[0].reply.text
        rows.append({"text": text, "category": cat, "severity": sev, "sentiment": sent,
                     "subcase": first[cat] if n % 2 == 0 else "other", "received_at": received,
                     "reply_verdict": ("good", "partial", "wrong")[n % 3],
                     "judged_reply": current if n < 6 else "an older reply"})
    data = write_jsonl(tmp_path / "judged.jsonl", rows)
    results = run_evaluation(model, [data], tmp_path / "r", log=lambda m: None)
    m = results["model fake-new"]
    sub = m["subcases"]
    assert sub["n"] == len(ROWS)
    given = [(first[c] if n % 2 == 0 else "other") for n, (_, c, *_) in enumerate(ROWS)]
    assert sub["given_category"]["accuracy"] == pytest.approx(sum(g != "other" for g in given) / len(ROWS))
    fit = m["reply_fit"]
    assert fit["overall"]["n"] == len(ROWS)
    assert fit["overall"]["good"] == sum(n % 3 == 0 for n in range(len(ROWS)))
    assert fit["stale"] == len(ROWS) - 6 and fit["current"]["n"] == 6
    assert set(fit["by_category"]) == {c for _, c, *_ in ROWS}
    report = (tmp_path / "r" / "report.md").read_text(encoding="utf-8")
    assert "## Sub-cases and replies" in report and "still the same reply" in report


def test_reply_judging_agreement_and_record(tmp_path):
    from helpdesk_triage.evaluation import reply_judging

    replied = [{"item": f"r{i:03d}", "text": f"消息{i}", "ref": {"corpus": "x", "line": i}, "stratum": "uniform",
                "subcase": "other", "category": "A", "severity": "low", "sentiment": "neutral", "model_version": "m",
                "reply": f"回复{i}", "source": "A.other.default", "reply_subcase": "A.other",
                "predicted": {"category": "A"}} for i in range(4)]
    packs = reply_judging.pack(replied, "a", 0)
    assert sorted(r["item"] for half in packs for r in half) == [f"a-r{i:03d}" for i in range(4)]
    assert all(set(r) == {"item", "received_at", "message", "reply"} for half in packs for r in half)
    pack_files = [write_jsonl(tmp_path / f"pack{n}.jsonl", half) for n, half in enumerate(packs)]
    a = write_jsonl(tmp_path / "a.jsonl", [{"item": f"a-r{i:03d}", "verdict": v} for i, v in enumerate(["good", "good", "wrong", "partial"])])
    b = write_jsonl(tmp_path / "b.jsonl", [{"item": f"a-r{i:03d}", "verdict": v} for i, v in enumerate(["good", "partial", "wrong", "partial"])])
    figures, disagreements = reply_judging.agreement(pack_files, [a], [b])
    assert figures["agreement"] == 0.75 and [d["item"] for d in disagreements] == ["a-r001"]
    with pytest.raises(ValueError, match="a-r001: the judges disagree"):
        reply_judging.record(replied, "a", [a], [b], None, "after")
    adj = write_jsonl(tmp_path / "adj.jsonl", [{"item": "a-r001", "verdict": "partial", "problems": ["generic"]}])
    rows = reply_judging.record(replied, "a", [a], [b], adj, "after")
    assert [r["reply_verdict"] for r in rows] == ["good", "partial", "wrong", "partial"]
    assert rows[1]["verdicts"] == {"judge_a": "good", "judge_b": "partial", "adjudicated": "partial"}
    assert all("text" not in r and r["sha256"] for r in rows)
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"item": "a-r000", "verdict": "fine"}])
    with pytest.raises(ValueError, match="bad.jsonl:1: verdict 'fine'"):
        reply_judging.agreement(pack_files, [bad], [b])


def test_cli_evaluate_names_the_embedded_model_default(tmp_path, data_file, monkeypatch, capsys):
    from helpdesk_triage.model import triage_model
    from helpdesk_triage.model.folder import DEFAULT_MODEL_DIR

    seen = []

    def load(path=None, runtime=None, cache_dir=None):
        seen.append(path)
        return FakeClassifier("fake-new", MODEL), False

    monkeypatch.setattr(triage_model, "load_classifier", load)
    monkeypatch.chdir(tmp_path)  # no folder called "default" here
    assert main(["evaluate", "--data", str(data_file), "--out", str(tmp_path / "o"), "--model", "default",
                 "--compare", "default", "--bootstrap", "20"]) == 0, capsys.readouterr().err
    assert seen == [DEFAULT_MODEL_DIR, DEFAULT_MODEL_DIR]


def test_cli_evaluate_drops_overlapping_training_rows_with_a_note(tmp_path, data_file, fake_loader, capsys):
    train = _write_train(tmp_path / "train.jsonl")
    both = write_jsonl(tmp_path / "both.jsonl", [json.loads(line) for line in train.read_text(encoding="utf-8").splitlines()]
                       + [{"text": ROWS[0][0], "category": ROWS[0][1]}])
    assert main(["evaluate", "--data", str(data_file), "--out", str(tmp_path / "o"), "--train", str(both)]) == 0
    assert "note: 1 --train rows left out of the TF-IDF baseline" in capsys.readouterr().err
