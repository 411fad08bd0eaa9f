"""`triage predict --engine ray` against the local engine, on a local Ray with 2 CPUs (skipped without Ray:
pip install -e '.[ray]')."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("ray.data")

from helpdesk_triage.api.cli import main  # noqa: E402

from tests.test_archive_scoring import read_output, team_texts, write_jsonl  # noqa: E402


@pytest.mark.slow  # about 100 s on 2 cores: a Ray start and two actors loading the model
def test_local_and_ray_give_the_same_labels_and_row_counts_on_2000_rows(tmp_path):
    rows = [{"id": f"t{i}", "text": text} for i, text in enumerate(team_texts(2000))]
    rows[7]["text"] = "  "  # one rejected row in each engine
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    common = ["predict", "--input", str(src), "--shard-rows", "500", "--keep", "id"]
    assert main([*common, "--output", str(tmp_path / "local")]) == 0
    assert main([*common, "--output", str(tmp_path / "ray"), "--engine", "ray", "--ray-num-cpus", "2"]) == 0

    local, ray = read_output(tmp_path / "local"), read_output(tmp_path / "ray")
    assert len(local) == len(ray) == 1999
    heads = ("category", "severity", "sentiment", "queue", "needs_human_review", "reply_template_id")
    assert [(r["id"], *(r[h] for h in heads)) for r in local] == [(r["id"], *(r[h] for h in heads)) for r in ray]
    assert sorted(p.name for p in (tmp_path / "local").glob("part-*")) == sorted(p.name for p in (tmp_path / "ray").glob("part-*"))
    for folder in ("local", "ray"):
        [reject] = [json.loads(line) for f in (tmp_path / folder / "rejects").iterdir()
                    for line in f.read_text(encoding="utf-8").splitlines()]
        assert reject["row"] == 8
