"""The fixed dev split: the committed id list decides, a foreign dev file is refused."""

import json
from pathlib import Path

import pytest

from helpdesk_triage.training.dev_split import DevSplitError, load_holdout_ids, main, make_holdout_ids, split



def write_dev(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def rows_of(n: int, category: str, severity: str = "low") -> list[dict]:
    return [{"id": f"{category}{severity}{i}", "text": f"消息{category}{i}", "category": category, "severity": severity} for i in range(n)]


def test_every_other_row_per_category_and_every_critical_row_is_held_out():
    rows = rows_of(10, "A") + rows_of(7, "B") + rows_of(3, "D", "critical")
    held = set(make_holdout_ids(rows))
    assert sum(i.startswith("Alow") for i in held) == 5
    assert sum(i.startswith("Blow") for i in held) == 4
    assert {r["id"] for r in rows if r["severity"] == "critical"} <= held
    assert make_holdout_ids(list(reversed(rows))) == sorted(held)  # order of the file does not matter


def test_split_keeps_lines_verbatim_and_partitions(tmp_path):
    rows = rows_of(6, "A") + rows_of(4, "C")
    dev = write_dev(tmp_path / "dev.jsonl", rows)
    held_ids = set(make_holdout_ids(rows))
    train, held = split(dev, held_ids)
    assert len(train) + len(held) == 10
    assert {json.loads(line)["id"] for line in held} == held_ids
    assert set(train) | set(held) == set(dev.read_text(encoding="utf-8").splitlines())


def test_dev_file_without_the_held_out_ids_is_refused(tmp_path):
    dev = write_dev(tmp_path / "dev.jsonl", rows_of(4, "A"))
    with pytest.raises(DevSplitError, match="not the dev set"):
        split(dev, {"d9999"})


def test_duplicate_or_missing_ids_are_refused(tmp_path):
    dev = write_dev(tmp_path / "dev.jsonl", rows_of(2, "A") + rows_of(1, "A"))
    with pytest.raises(DevSplitError, match="appears twice"):
        split(dev, set())
    dev = write_dev(tmp_path / "dev2.jsonl", [{"text": "没有编号"}])
    with pytest.raises(DevSplitError, match="needs a string id"):
        split(dev, set())


def test_cli_reports_a_foreign_dev_file_with_exit_2(tmp_path, capsys):
    dev = write_dev(tmp_path / "dev.jsonl", rows_of(3, "B"))
    assert main(["--dev", str(dev), "--out", str(tmp_path / "out")]) == 2
    assert "held-out ids" in capsys.readouterr().err


def test_committed_ids_split_the_real_dev_file_in_halves_with_all_critical_held_out(tmp_path, shared_dev):
    assert main(["--dev", str(shared_dev), "--out", str(tmp_path)]) == 0
    train = [json.loads(line) for line in (tmp_path / "dev_train.jsonl").read_text(encoding="utf-8").splitlines()]
    held = [json.loads(line) for line in (tmp_path / "dev_holdout.jsonl").read_text(encoding="utf-8").splitlines()]
    assert {r["id"] for r in held} == load_holdout_ids()
    assert not any(r.get("severity") == "critical" for r in train)
    assert abs(len(train) - len(held)) <= 10
    assert not {r["text"] for r in train} & {r["text"] for r in held}
