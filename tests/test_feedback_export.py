"""api/feedback_export.py: corrected decisions -> training JSON Lines that load_labelled accepts."""

from __future__ import annotations

import json

import pytest

from helpdesk_triage.api.decision_store import DecisionRecord, FeedbackRecord, open_store
from helpdesk_triage.api.feedback_export import export_feedback
from helpdesk_triage.training.dataset_io import DataValidationError, load_labelled

MODEL_LABELS = {"category": "B", "severity": "low", "sentiment": "neutral"}


@pytest.fixture
def store(tmp_path):
    s = open_store(f"sqlite:///{tmp_path / 'decisions.db'}")
    yield s
    s.close()


def add_decision(store, id: str, masked_text: str, raw_text: str | None = None) -> None:
    store.record_decision(DecisionRecord(
        id=id, masked_text=masked_text, raw_text=raw_text, labels=dict(MODEL_LABELS),
        scores={"category": {"A": 0.1, "B": 0.9}}, model_version="triage-e5s-default-1", degraded=False,
        received_at="2026-03-10T20:30:00+08:00", decided_at="2026-03-10T12:30:00+00:00",
    ))


def add_feedback(store, id: str, note: str | None = None, **corrections) -> None:
    at = "2026-03-11T01:00:00+00:00"
    store.record_feedback(FeedbackRecord(id=id, corrections=corrections, agent="agent-7", note=note, created_at=at))


@pytest.fixture
def corrected(store):
    """t-1: severity corrected; t-2: corrected twice (the latest category wins); t-3: no feedback;
    t-4: feedback with a note only (no label asserted)."""
    add_decision(store, "t-1", "快递还没到，我的手机号[手机号]", raw_text="快递还没到，我的手机号13812345678")
    add_decision(store, "t-2", "东西坏了，再不处理就投诉", raw_text="东西坏了，再不处理就投诉")
    add_decision(store, "t-3", "这款有XL码吗", raw_text="这款有XL码吗")
    add_decision(store, "t-4", "谢谢，已经收到了", raw_text="谢谢，已经收到了")
    add_feedback(store, "t-2", category="D", sentiment="negative")
    add_feedback(store, "t-1", severity="high")
    add_feedback(store, "t-2", category="C")
    add_feedback(store, "t-4", note="客户已确认")
    return store


def read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_masked_export_loads_as_training_data(corrected, tmp_path):
    out = tmp_path / "exports" / "feedback.jsonl"
    assert export_feedback(corrected, out) == 2

    rows = read_jsonl(out)
    assert [r["id"] for r in rows] == ["t-2", "t-1"]  # order of first feedback
    assert rows[1] == {
        "id": "t-1", "text": "快递还没到，我的手机号[手机号]", "category": "B", "severity": "high", "sentiment": "neutral",
        "source": "feedback", "model_version": "triage-e5s-default-1", "corrected_heads": ["severity"],
    }
    assert rows[0]["corrected_heads"] == ["category", "sentiment"]

    ds, report = load_labelled([out])
    assert report.rows_kept == 2
    assert ds["raw_text"] == ["东西坏了，再不处理就投诉", "快递还没到，我的手机号[手机号]"]
    assert ds["category"] == ["C", "B"]
    assert ds["severity"] == ["low", "high"]
    assert ds["sentiment"] == ["negative", "neutral"]


def test_masked_export_masks_again_with_the_current_masker(store, tmp_path):
    add_decision(store, "t-1", "请发到 zhang.san@example.com，快递没到")  # stored before emails were masked
    add_feedback(store, "t-1", severity="medium")
    out = tmp_path / "feedback.jsonl"
    export_feedback(store, out)
    assert read_jsonl(out)[0]["text"] == "请发到 [邮箱]，快递没到"


def test_unmasked_export_uses_the_raw_text(corrected, tmp_path):
    out = tmp_path / "feedback.jsonl"
    assert export_feedback(corrected, out, mask_pii=False) == 2
    ds, _ = load_labelled([out])
    assert ds["raw_text"] == ["东西坏了，再不处理就投诉", "快递还没到，我的手机号13812345678"]
    assert ds["severity"] == ["low", "high"]


def test_unmasked_export_without_raw_text_fails_and_writes_nothing(store, tmp_path):
    add_decision(store, "t-1", "快递没到", raw_text="快递没到")
    add_decision(store, "t-2", "手机号[手机号]打不通")
    add_feedback(store, "t-1", category="B")
    add_feedback(store, "t-2", category="C")
    out_dir = tmp_path / "exports"
    out_dir.mkdir()
    out = out_dir / "feedback.jsonl"
    out.write_text("previous export\n", encoding="utf-8")

    with pytest.raises(ValueError, match="TRIAGE_STORE_RAW_TEXT=true") as info:
        export_feedback(store, out, mask_pii=False)
    assert "'t-2'" in str(info.value) and "'t-1'" not in str(info.value)
    assert out.read_text(encoding="utf-8") == "previous export\n"
    assert [p.name for p in out_dir.iterdir()] == ["feedback.jsonl"]


def test_empty_store_writes_an_empty_file(store, tmp_path):
    add_decision(store, "t-1", "这款有XL码吗")  # triaged, never corrected
    out = tmp_path / "feedback.jsonl"
    out.write_text("previous export\n", encoding="utf-8")
    assert export_feedback(store, out) == 0
    assert out.read_bytes() == b""
    # Documented: load_labelled refuses a file without rows, so callers check the count first.
    with pytest.raises(DataValidationError, match="no data rows"):
        load_labelled([out])


def test_export_replaces_the_file_and_leaves_no_temporary_files(corrected, tmp_path):
    out_dir = tmp_path / "exports"
    out_dir.mkdir()
    out = out_dir / "feedback.jsonl"
    out.write_text("previous export\n", encoding="utf-8")
    export_feedback(corrected, out)
    assert [r["id"] for r in read_jsonl(out)] == ["t-2", "t-1"]
    assert [p.name for p in out_dir.iterdir()] == ["feedback.jsonl"]
