import json
import subprocess
import sys
from pathlib import Path

import pytest

from api.cli import main


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_predict_writes_one_row_per_input_and_keeps_fields(tmp_path):
    src = write_lines(tmp_path / "in.jsonl", [
        json.dumps({"id": "a", "text": "我的快递到哪了", "channel": "chat"}, ensure_ascii=False),
        "",
        json.dumps({"id": "b", "text": "收到就是坏的，质量太差"}, ensure_ascii=False),
    ])
    out = tmp_path / "sub" / "out.jsonl"
    assert main(["predict", "--input", str(src), "--output", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in rows] == ["a", "b"]
    assert rows[0]["channel"] == "chat"
    assert rows[0]["pred_category"] == "B"
    assert rows[1]["pred_category"] == "C"
    assert all(r["pred_sentiment"] in {"negative", "neutral", "positive"} for r in rows)


@pytest.mark.parametrize(
    "lines, message",
    [
        (['{"text": "ok"}', "{not json"], "row 2: invalid JSON"),
        (['{"txt": "ok"}'], "row 1: needs a non-empty string field 'text'"),
        (['{"text": "   "}'], "row 1"),
        (['["text"]'], "row 1"),
        ([""], "no rows"),
    ],
)
def test_predict_rejects_bad_files_naming_the_row(tmp_path, capsys, lines, message):
    src = write_lines(tmp_path / "bad.jsonl", lines)
    assert main(["predict", "--input", str(src), "--output", str(tmp_path / "o.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "bad.jsonl" in err and message in err
    assert not (tmp_path / "o.jsonl").exists()


def test_predict_rejects_non_utf8_and_missing_files(tmp_path, capsys):
    src = tmp_path / "gbk.jsonl"
    src.write_bytes('{"text": "快递"}\n'.encode("gbk"))
    assert main(["predict", "--input", str(src), "--output", str(tmp_path / "o.jsonl")]) == 2
    assert "row 1: not UTF-8" in capsys.readouterr().err
    assert main(["predict", "--input", str(tmp_path / "missing.jsonl"), "--output", str(tmp_path / "o.jsonl")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_evaluate_writes_metrics_and_names_bad_rows(tmp_path, capsys):
    rows = [("我的快递到哪了", "B", "low", "neutral"), ("收到的杯子碎了", "C", "medium", "negative"),
            ("再不发货我就投诉", "D", "high", "negative"), ("有货吗", "A", "low", "neutral")]
    data = write_lines(tmp_path / "dev.jsonl", [
        json.dumps({"text": t, "category": c, "severity": s, "sentiment": m}, ensure_ascii=False) for t, c, s, m in rows
    ])
    out = tmp_path / "report"
    assert main(["evaluate", "--data", str(data), "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["n"] == 4
    assert set(metrics["category"]) >= {"accuracy", "macro_f1", "weighted_f1", "labels", "per_label", "confusion", "ece"}
    assert sum(map(sum, metrics["category"]["confusion"])) == 4
    assert "keyword rules" in (out / "report.md").read_text(encoding="utf-8")
    bad = write_lines(tmp_path / "bad.jsonl", ['{"text": "x", "category": "Z"}'])
    assert main(["evaluate", "--data", str(bad), "--out", str(tmp_path / "r2")]) == 2
    assert "bad.jsonl: row 1" in capsys.readouterr().err


def test_console_script_is_installed():
    result = subprocess.run([sys.executable, "-m", "api.cli", "--help"], capture_output=True, text=True, check=False)
    assert result.returncode == 0
    for command in ("serve", "predict", "train", "evaluate"):
        assert command in result.stdout
    missing = subprocess.run([sys.executable, "-m", "api.cli"], capture_output=True, text=True, check=False)
    assert missing.returncode == 2 and "required" in missing.stderr
