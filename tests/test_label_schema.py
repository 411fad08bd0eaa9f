from pathlib import Path

import pytest

from helpdesk_triage.policy.labels import HEADS, LABELS, LabelSchema


def test_heads_and_codes_follow_the_label_guide():
    assert LABELS.categories == ("A", "B", "C", "D")
    assert LABELS.severities == ("low", "medium", "high", "critical")
    assert LABELS.sentiments == ("negative", "neutral", "positive")
    assert tuple(LABELS.heads) == HEADS
    assert LABELS.get("category", "B").name_zh == "订单问题"
    assert LABELS.get("category", "D").name_zh == "投诉不满"


def test_every_category_has_a_queue_and_critical_overrides():
    queues = {c: LABELS.queue_for(c, "medium") for c in LABELS.categories}
    assert len(set(queues.values())) == 4
    assert {LABELS.queue_for(c, "critical") for c in LABELS.categories} == {"emergency"}


def test_validation_helpers():
    assert LABELS.is_valid("severity", "high")
    assert not LABELS.is_valid("severity", "HIGH")
    assert not LABELS.is_valid("category", None)
    with pytest.raises(ValueError, match="unknown category"):
        LABELS.get("category", "E")
    with pytest.raises(KeyError):
        LABELS.codes("priority")


def test_schema_file_errors(tmp_path: Path):
    bad = tmp_path / "labels.toml"
    bad.write_text('[[category]]\ncode = "A"\nname_zh = "x"\nname_en = "x"\ndescription = "x"\n', encoding="utf-8")
    with pytest.raises(ValueError, match="severity"):
        LabelSchema.load(bad)
    dup = (Path(__file__).parents[1] / "data" / "labels.toml").read_text(encoding="utf-8")
    dup += '\n[[sentiment]]\ncode = "neutral"\nname_zh = "x"\nname_en = "x"\ndescription = "x"\n'
    bad.write_text(dup, encoding="utf-8")
    with pytest.raises(ValueError, match="duplicate"):
        LabelSchema.load(bad)
