"""`triage predict`: archives in JSONL/CSV/Parquet → shards with the API's answer per row, rejects, resume."""

from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from helpdesk_triage.api import archive_scoring
from helpdesk_triage.api.cli import main
from helpdesk_triage.model import TriageModel
from helpdesk_triage.policy.triage import TriageRequest

REPO = Path(__file__).resolve().parents[1]
AT = "2026-03-10T20:30:00+08:00"


def team_texts(n: int) -> list[str]:
    """``n`` texts from the repository's own team-written messages, each made distinct by a counter."""
    base = [json.loads(line)["text"] for line in (REPO / "data/team_written/messages_ab.jsonl").read_text(encoding="utf-8").splitlines()
            + (REPO / "data/team_written/messages_cd.jsonl").read_text(encoding="utf-8").splitlines()]
    return [f"{base[i % len(base)]}（{i}）" for i in range(n)]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def read_output(folder: Path) -> list[dict]:
    rows = []
    for shard in sorted(folder.glob("part-*")):
        if shard.suffix == ".parquet":
            rows += pq.read_table(shard).to_pylist()
        else:
            rows += [json.loads(line) for line in shard.read_text(encoding="utf-8").splitlines()]
    return rows


@pytest.fixture(scope="module")
def model() -> TriageModel:
    return TriageModel.load()


def test_every_format_in_gives_the_apis_answer_per_row(tmp_path, model):
    texts = ["我的快递到哪了", "收到就是坏的，质量太差", "吃了你们的零食孩子过敏住院了", "再不发货我就投诉，明天中午前必须给我答复"]
    archive = tmp_path / "archive"
    archive.mkdir()
    write_jsonl(archive / "a.jsonl", [{"id": "j1", "text": texts[0], "received_at": AT, "channel": "chat"},
                                      {"id": "j2", "text": texts[1], "received_at": AT}])
    (archive / "b.csv").write_text(f"id,text,received_at,channel\nc1,{texts[2]},{AT},mail\n", encoding="utf-8")
    pq.write_table(pa.table({"id": ["p1"], "text": [texts[3]], "received_at": [AT], "channel": ["app"]}), archive / "c.parquet")
    out = tmp_path / "out"
    assert main(["predict", "--input", str(archive), "--output", str(out), "--keep", "id,channel", "--format", "parquet"]) == 0
    rows = read_output(out)
    assert [r["id"] for r in rows] == ["j1", "j2", "c1", "p1"]
    assert [r["channel"] for r in rows] == ["chat", None, "mail", "app"]
    assert [(r["source_file"], r["source_row"]) for r in rows] == [("a.jsonl", 1), ("a.jsonl", 2), ("b.csv", 2), ("c.parquet", 1)]
    expected = model.triage([TriageRequest(text=t, received_at=AT) for t in texts])
    for row, answer in zip(rows, expected):
        assert row["category"] == answer.category.label and row["severity"] == answer.severity.label
        assert row["sentiment"] == answer.sentiment.label
        assert row["category_p_D"] == answer.category.scores["D"]
        assert row["queue"] == answer.queue
        assert row["needs_human_review"] == answer.needs_human_review
        assert row["review_reasons"] == answer.review_reasons
        assert row["sla_first_response_due"] == answer.sla.first_response_due
        assert row["sla_resolution_due"] == answer.sla.resolution_due
        assert row["reply_template_id"] == answer.reply.template_id
        assert row["model_version"] == model.version and row["degraded"] is False
    assert rows[2]["severity"] == "critical" and rows[2]["needs_human_review"]  # the allergy case: a human looks


def test_bad_rows_are_rejected_with_file_row_and_reason_and_the_job_goes_on(tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"\n".join([
        b"\xef\xbb\xbf" + json.dumps({"text": "我的快递到哪了"}, ensure_ascii=False).encode(),  # with a byte-order mark
        b'{"text": "   "}',
        b"{not json",
        '{"text": "快递"}'.encode("gbk"),
        b'{"txt": "no text field"}',
        json.dumps({"text": "有货吗", "received_at": "yesterday"}).encode(),
        b"",
        json.dumps({"text": "有货吗", "received_at": AT}, ensure_ascii=False).encode(),
    ]) + b"\n")
    out = tmp_path / "out"
    assert main(["predict", "--input", str(src), "--output", str(out), "--shard-rows", "4"]) == 0
    assert [r["source_row"] for r in read_output(out)] == [1, 8]
    rejects = [json.loads(line) for f in sorted((out / "rejects").iterdir()) for line in f.read_text(encoding="utf-8").splitlines()]
    assert [(r["file"], r["row"]) for r in rejects] == [(str(src.resolve()), n) for n in (2, 3, 4, 5, 6)]
    reasons = [r["reason"] for r in rejects]
    assert "empty" in reasons[0] and "invalid JSON" in reasons[1] and "not UTF-8" in reasons[2]
    assert "no 'text' field" in reasons[3] and "received_at" in reasons[4]
    assert "2 rows scored, 5 rejected" in capsys.readouterr().err

    strict = tmp_path / "strict"
    assert main(["predict", "--input", str(src), "--output", str(strict), "--strict"]) == 2
    err = capsys.readouterr().err
    assert f"{src.resolve()}: row 2: text: text is empty" in err and len(err.strip().splitlines()) <= 2
    assert not list(strict.glob("part-*"))


def test_a_crash_mid_run_then_a_rerun_completes_without_duplicates(tmp_path, monkeypatch):
    texts = team_texts(600)
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": f"t{i}", "text": t} for i, t in enumerate(texts)])
    out = tmp_path / "out"
    args = ["predict", "--input", str(src), "--output", str(out), "--shard-rows", "100", "--keep", "id"]
    commit = archive_scoring._ShardWriter.commit
    calls = []

    def crash_on_third(self):
        calls.append(self.final.name)
        if len(calls) == 3:  # the third shard's rows are written to its temporary file when the process dies
            raise KeyboardInterrupt("killed")
        commit(self)

    monkeypatch.setattr(archive_scoring._ShardWriter, "commit", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        main(args)
    monkeypatch.setattr(archive_scoring._ShardWriter, "commit", commit)
    done_before = {p.name: p.stat().st_mtime_ns for p in out.glob("part-*")}
    assert len(done_before) == 2

    assert main(args) == 0
    rows = read_output(out)
    assert len(rows) == 600 and sorted(r["id"] for r in rows) == sorted(f"t{i}" for i in range(600))
    assert len({r["source_row"] for r in rows}) == 600
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("part-*") if p.name in done_before} == done_before
    assert not list(out.rglob("*.tmp"))


def test_a_rerun_with_other_inputs_or_options_is_refused(tmp_path, capsys):
    src = write_jsonl(tmp_path / "in.jsonl", [{"text": "我的快递到哪了"}])
    out = tmp_path / "out"
    assert main(["predict", "--input", str(src), "--output", str(out)]) == 0
    assert main(["predict", "--input", str(src), "--output", str(out), "--format", "parquet"]) == 2
    assert "holds a run with other options" in capsys.readouterr().err
    write_jsonl(src, [{"text": "我的快递到哪了"}, {"text": "有货吗"}])
    assert main(["predict", "--input", str(src), "--output", str(out)]) == 2
    assert "holds a run with other inputs" in capsys.readouterr().err
    assert main(["predict", "--input", str(tmp_path / "nothing*.csv"), "--output", str(tmp_path / "o2")]) == 2
    assert "no file matches" in capsys.readouterr().err
    csv_file = tmp_path / "x.csv"
    csv_file.write_text("id,body\n1,hello\n", encoding="utf-8")
    assert main(["predict", "--input", str(csv_file), "--output", str(tmp_path / "o3")]) == 2
    assert "no column 'text'" in capsys.readouterr().err


def test_received_at_column_sets_the_sla_clock_and_is_required_when_named(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", [{"text": "我的快递到哪了", "created": AT}, {"text": "有货吗"}])
    out = tmp_path / "out"
    assert main(["predict", "--input", str(src), "--output", str(out), "--received-at-column", "created"]) == 0
    [row] = read_output(out)
    assert row["received_at"] == AT and row["sla_first_response_due"].startswith("2026-03-11T")
    [reject] = [json.loads(line) for line in next((out / "rejects").iterdir()).read_text(encoding="utf-8").splitlines()]
    assert reject["row"] == 2 and "no 'created' value" in reject["reason"]


def test_engine_ray_without_ray_is_a_one_line_error_naming_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray → ImportError
    src = write_jsonl(tmp_path / "in.jsonl", [{"text": "有货吗"}])
    assert main(["predict", "--input", str(src), "--output", str(tmp_path / "o"), "--engine", "ray"]) == 2
    assert capsys.readouterr().err.strip() == "triage predict: error: --engine ray needs Ray: pip install -e '.[ray]'"


def test_the_plain_install_does_not_pull_ray():
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert not any(dep.lower().startswith("ray") for dep in project["dependencies"])
    assert any(dep.startswith("ray[data]") for dep in project["optional-dependencies"]["ray"])
