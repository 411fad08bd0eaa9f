"""training/dataset_io.py: loading, validating, de-duplicating and splitting labelled data."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from helpdesk_triage.policy.labels import HEADS, LABELS
from helpdesk_triage.training.dataset_io import (
    IGNORE_INDEX,
    MAX_PROBLEMS_SHOWN,
    DataValidationError,
    load_labelled,
    stratified_split,
)

REPO = Path(__file__).resolve().parents[1]
TEAM_WRITTEN = sorted((REPO / "data" / "team_written").glob("*.jsonl"))

EXPECTED_COLUMNS = [
    "text", "raw_text", "category", "severity", "sentiment", "source_file", "source_row",
    "category_id", "severity_id", "sentiment_id",
]


def write_jsonl(path: Path, rows: list) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_csv(path: Path, text: str, bom: bool = False) -> Path:
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


def row(text: str, category="A", severity="low", sentiment="neutral", **extra) -> dict:
    return {"text": text, "category": category, "severity": severity, "sentiment": sentiment, **extra}


def problems_of(paths, **kwargs) -> list[str]:
    with pytest.raises(DataValidationError) as info:
        load_labelled(paths, **kwargs)
    return info.value.problems


# --------------------------------------------------------------------------------------------
# Good files
# --------------------------------------------------------------------------------------------


def test_good_jsonl_columns_ids_and_report(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [
        {"id": "x1", "text": "  这款 有 XL码 吗 ", "category": "A", "severity": "low", "sentiment": "neutral", "subcase": "s"},
        row("快递到哪了", "B", "medium", "negative"),
        row("东西坏了，退货", "C", "high", "negative"),
        row("再不处理就投诉到12315", "D", "critical", "negative"),
    ])
    ds, report = load_labelled([path])
    assert ds.column_names == EXPECTED_COLUMNS
    assert len(ds) == 4
    first = ds[0]
    assert first["text"] == "这款有 XL码吗"  # normalised: stripped, CJK-CJK spaces removed (CJK-Latin kept)
    assert first["raw_text"] == "  这款 有 XL码 吗 "
    assert first["source_file"] == str(path)
    assert list(ds["source_row"]) == [1, 2, 3, 4]
    assert list(ds["category"]) == ["A", "B", "C", "D"]
    assert list(ds["category_id"]) == [LABELS.codes("category").index(c) for c in "ABCD"]
    assert list(ds["severity_id"]) == [LABELS.codes("severity").index(s) for s in ("low", "medium", "high", "critical")]
    assert list(ds["sentiment_id"]) == [LABELS.codes("sentiment").index(s) for s in ("neutral", "negative", "negative", "negative")]
    assert report.files == [str(path)]
    assert (report.rows_read, report.rows_kept, report.duplicates_dropped, report.unusable_skipped) == (4, 4, 0, 0)
    assert report.label_counts["category"] == {"A": 1, "B": 1, "C": 1, "D": 1}
    assert report.label_counts["sentiment"] == {"negative": 3, "neutral": 1, "positive": 0}
    assert report.missing_label_counts == {"category": 0, "severity": 0, "sentiment": 0}
    assert ds.cache_files == []  # in memory, nothing written to an HF cache
    assert "4 rows kept of 4 read" in report.summary()


def test_blank_lines_keep_editor_row_numbers(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text(json.dumps(row("有货吗")) + "\n\n   \n" + json.dumps(row("多少钱")) + "\n", encoding="utf-8")
    ds, report = load_labelled([path])
    assert list(ds["source_row"]) == [1, 4]
    assert report.rows_read == 2


def test_good_csv_rows_start_at_2_and_multiline_record(tmp_path):
    path = write_csv(
        tmp_path / "a.csv",
        'id,text,category,severity,sentiment,note\n'
        '1,有货吗,A,low,neutral,x\n'
        '2,"第一行\n第二行, 还是同一条",C,medium,negative,\n'
        '3,"他说""坏了""",C,,negative,\n'
        '4,NA,A,low,neutral,\n',
    )
    ds, report = load_labelled([path])
    assert list(ds["source_row"]) == [2, 3, 5, 6]  # header is row 1; a record is numbered by its first line
    assert ds[1]["raw_text"] == "第一行\n第二行, 还是同一条"
    assert ds[1]["text"] == "第一行第二行, 还是同一条"
    assert ds[2]["raw_text"] == '他说"坏了"'
    assert ds[2]["severity"] is None and ds[2]["severity_id"] == IGNORE_INDEX
    assert ds[3]["text"] == "NA"  # not turned into a missing value (pandas would)
    assert report.rows_kept == 4
    assert report.missing_label_counts["severity"] == 1


def test_csv_with_bom_and_crlf(tmp_path):
    path = write_csv(tmp_path / "bom.csv", "text,category\r\n有货吗,A\r\n到哪了,B\r\n", bom=True)
    ds, _ = load_labelled([path])
    assert list(ds["text"]) == ["有货吗", "到哪了"]
    assert list(ds["category"]) == ["A", "B"]
    assert list(ds["source_row"]) == [2, 3]


def test_jsonl_with_bom_and_extension_case(tmp_path):
    path = tmp_path / "a.JSONL"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(row("有货吗")).encode() + b"\n")
    ds, _ = load_labelled([str(path)])
    assert list(ds["text"]) == ["有货吗"]


def test_json_extension_is_json_lines(tmp_path):
    path = write_jsonl(tmp_path / "a.json", [row("有货吗")])
    ds, _ = load_labelled([path])
    assert len(ds) == 1


def test_several_files_in_order(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", [row("有货吗"), row("多少钱")])
    b = write_csv(tmp_path / "b.csv", "text,category\n到哪了,B\n")
    ds, report = load_labelled([a, b])
    assert list(ds["source_file"]) == [str(a), str(a), str(b)]
    assert list(ds["source_row"]) == [1, 2, 2]
    assert report.files == [str(a), str(b)]


def test_partial_labels_give_ignore_index(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [
        {"text": "只有类别", "category": "B"},
        {"text": "只有严重度", "severity": "high", "category": None},
        {"text": "只有情绪", "sentiment": "positive", "category": "", "severity": "  "},
    ])
    ds, report = load_labelled([path])
    assert list(ds["category_id"]) == [LABELS.codes("category").index("B"), -100, -100]
    assert list(ds["severity_id"]) == [-100, LABELS.codes("severity").index("high"), -100]
    assert list(ds["sentiment_id"]) == [-100, -100, LABELS.codes("sentiment").index("positive")]
    assert list(ds["category"]) == ["B", None, None]
    assert report.missing_label_counts == {"category": 2, "severity": 2, "sentiment": 2}
    assert report.label_counts["category"] == {"A": 0, "B": 1, "C": 0, "D": 0}
    assert report.label_counts["severity"]["high"] == 1


def test_no_label_allowed_when_not_required(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [{"text": "无标签"}])
    ds, report = load_labelled([path], require_any_label=False)
    assert len(ds) == 1 and report.missing_label_counts == {h: 1 for h in HEADS}


def test_label_counts(tmp_path):
    rows = [row(f"消息{i}", c, s, t) for i, (c, s, t) in enumerate(
        [("A", "low", "neutral")] * 3 + [("B", "medium", "negative")] * 2 + [("D", "critical", "negative")]
    )]
    ds, report = load_labelled([write_jsonl(tmp_path / "a.jsonl", rows)])
    assert report.label_counts == {
        "category": {"A": 3, "B": 2, "C": 0, "D": 1},
        "severity": {"low": 3, "medium": 2, "high": 0, "critical": 1},
        "sentiment": {"negative": 3, "neutral": 3, "positive": 0},
    }
    assert list(report.label_counts["category"]) == list(LABELS.codes("category"))


# --------------------------------------------------------------------------------------------
# usable / duplicates
# --------------------------------------------------------------------------------------------


def test_unusable_rows_skipped_and_counted(tmp_path):
    j = write_jsonl(tmp_path / "a.jsonl", [
        row("有货吗"),
        {"text": "你自己看", "usable": False},  # no labels: not validated, just skipped
        row("到哪了", "B", usable=True),
        row("多少钱", usable=None),
    ])
    c = write_csv(tmp_path / "b.csv", "text,category,usable\n生鲜里面的,,false\n坏了,C,0\n退款,B,FALSE\n好的,A,true\n发票,B,\n")
    ds, report = load_labelled([j, c])
    assert list(ds["text"]) == ["有货吗", "到哪了", "多少钱", "好的", "发票"]
    assert report.unusable_skipped == 4
    assert report.rows_read == 9 and report.rows_kept == 5


def test_bad_usable_value_is_a_problem(tmp_path):
    path = write_csv(tmp_path / "b.csv", "text,category,usable\n好的,A,maybe\n")
    (problem,) = problems_of([path])
    assert problem.startswith(f"{path}: row 2: 'usable'")


def test_exact_duplicates_dropped_and_counted(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", [row("有货吗"), row("有 货 吗"), row("多少钱")])
    b = write_csv(tmp_path / "b.csv", "text,category,severity,sentiment\n有货吗 ,A,low,neutral\n到哪了,B,low,neutral\n")
    ds, report = load_labelled([a, b])
    assert list(ds["text"]) == ["有货吗", "多少钱", "到哪了"]
    assert list(ds["source_row"]) == [1, 3, 3]  # the first occurrence is kept
    assert report.duplicates_dropped == 2
    assert report.rows_read == 5 and report.rows_kept == 3
    assert report.label_counts["category"]["A"] == 2


def test_compatible_partial_duplicates_are_merged(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", [{"text": "有货吗", "category": "A"}])
    b = write_jsonl(tmp_path / "b.jsonl", [{"text": "有货吗", "category": "A", "sentiment": "neutral"}])
    ds, report = load_labelled([a, b])
    assert len(ds) == 1 and report.duplicates_dropped == 1
    assert ds[0]["sentiment"] == "neutral" and ds[0]["severity"] is None
    assert ds[0]["source_file"] == str(a)


def test_conflicting_duplicates_name_both_rows(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", [row("多少钱"), row("有货吗", "A")])
    b = write_csv(tmp_path / "b.csv", "text,category,severity,sentiment\n到哪了,B,low,neutral\n有 货 吗,B,low,neutral\n")
    (problem,) = problems_of([a, b])
    assert problem.startswith(f"{b}: row 3: same text as {a} row 2 but category 'B' here, 'A' there")


def test_conflict_with_a_merged_label_names_its_origin(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [
        {"text": "有货吗", "category": "A"},
        {"text": "有货吗", "sentiment": "neutral"},
        {"text": "有货吗", "sentiment": "negative"},
    ])
    (problem,) = problems_of([path])
    assert f"{path}: row 3: same text as {path} row 2 but sentiment 'negative' here, 'neutral' there" in problem


# --------------------------------------------------------------------------------------------
# Bad files: every problem names the file and the exact row
# --------------------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    missing = tmp_path / "nope.jsonl"
    assert problems_of([missing]) == [f"{missing}: no such file"]


def test_unknown_extension(tmp_path):
    path = tmp_path / "data.xlsx"
    path.write_bytes(b"PK")
    (problem,) = problems_of([path])
    assert problem.startswith(f"{path}: unsupported file type '.xlsx'")


def test_not_utf8_names_the_row(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_bytes(json.dumps(row("有货吗")).encode() + b"\n" + '{"text": "到哪了", "category": "B"}\n'.encode("gbk"))
    problems = problems_of([path])
    assert any(p.startswith(f"{path}: row 2: not UTF-8") for p in problems)
    assert any("GBK" in p for p in problems)  # a hint on how to fix it
    assert not any("row 1" in p for p in problems)


def test_gbk_csv_names_the_rows(tmp_path):
    path = tmp_path / "a.csv"
    path.write_bytes("text,category\n有货吗,A\nok,A\n坏了,C\n".encode("gbk"))
    problems = problems_of([path])
    assert [p for p in problems if ": row " in p] == [
        f"{path}: row 2: not UTF-8 (byte 0xd3 at column 1)",
        f"{path}: row 4: not UTF-8 (byte 0xbb at column 1)",
    ]


def test_utf16_file(tmp_path):
    path = tmp_path / "a.csv"
    path.write_bytes("text,category\n有货吗,A\n".encode("utf-16"))
    assert problems_of([path]) == [f"{path}: the file is UTF-16; save it as UTF-8"]


def test_invalid_json_and_non_object_lines(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [
        row("有货吗"),
        '{"text": "到哪了", "category": "B"',
        '["text", "A"]',
        '"just a string"',
        row("多少钱"),
    ])
    problems = problems_of([path])
    assert problems[0].startswith(f"{path}: row 2: invalid JSON")
    assert problems[1] == f"{path}: row 3: expected a JSON object, got an array"
    assert problems[2] == f"{path}: row 4: expected a JSON object, got a string"
    assert len(problems) == 3


def test_json_array_file_gets_a_hint(tmp_path):
    path = tmp_path / "a.json"
    path.write_text('[\n  {"text": "有货吗", "category": "A"}\n]\n', encoding="utf-8")
    problems = problems_of([path])
    assert problems[0].startswith(f"{path}: row 1: invalid JSON") and "JSON array" in problems[0]


def test_missing_text_field_and_column(tmp_path):
    j = write_jsonl(tmp_path / "a.jsonl", [row("有货吗"), {"category": "A"}])
    c = write_csv(tmp_path / "b.csv", "message,category\n有货吗,A\n")
    problems = problems_of([j, c])
    assert problems[0] == f"{j}: row 2: no 'text' field"
    assert problems[1].startswith(f"{c}: row 1: header has no 'text' column")
    assert len(problems) == 2


@pytest.mark.parametrize("text, what", [
    (None, "'text' must be a string, got null"),
    (42, "'text' must be a string, got a number"),
    ("", "'text' is empty"),
    ("  \t ", "'text' is empty"),
    ("\u200b\u3000", "'text' is empty"),  # zero-width space + ideographic space: empty after normalize
])
def test_bad_text(tmp_path, text, what):
    path = write_jsonl(tmp_path / "a.jsonl", [row("有货吗"), {"text": text, "category": "A"}])
    (problem,) = problems_of([path])
    assert problem.startswith(f"{path}: row 2: {what}")


def test_empty_text_in_csv(tmp_path):
    path = write_csv(tmp_path / "a.csv", "text,category\n有货吗,A\n ,B\n")
    (problem,) = problems_of([path])
    assert problem.startswith(f"{path}: row 3: 'text' is empty")


@pytest.mark.parametrize("head, value", [
    ("category", "E"), ("category", "aa"), ("severity", "urgent"), ("sentiment", "pos"), ("severity", 3),
])
def test_invalid_label_names_head_and_allowed_values(tmp_path, head, value):
    bad = row("有货吗")
    bad[head] = value
    path = write_jsonl(tmp_path / "a.jsonl", [row("多少钱"), row("到哪了"), bad])
    (problem,) = problems_of([path])
    assert problem.startswith(f"{path}: row 3: {head} ")
    assert json.dumps(value) in problem
    assert "allowed: " + ", ".join(LABELS.codes(head)) in problem


@pytest.mark.parametrize("given, code", [
    ("d", "D"), (" b ", "B"), ("投诉不满", "D"), ("complaint", "D"), ("Product Issue", "C"), ("简单咨询", "A"),
])
def test_label_codes_in_any_case_names_and_aliases_are_accepted(tmp_path, given, code):
    path = write_jsonl(tmp_path / "a.jsonl", [row("有货吗", category=given, severity="HIGH", sentiment="Negative")])
    ds, _ = load_labelled([path])
    assert (ds["category"][0], ds["severity"][0], ds["sentiment"][0]) == (code, "high", "negative")


def test_invalid_label_in_csv(tmp_path):
    path = write_csv(tmp_path / "a.csv", "text,category,severity,sentiment\n有货吗,A,low,neutral\n到哪了,B,urgent,pos\n")
    problems = problems_of([path])
    assert len(problems) == 2
    assert problems[0].startswith(f'{path}: row 3: severity "urgent" is not a severity label; allowed: low, medium, high, critical')
    assert problems[1].startswith(f'{path}: row 3: sentiment "pos" is not a sentiment label; allowed: negative, neutral, positive')


def test_row_without_any_label(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [row("有货吗"), {"text": "到哪了", "category": "", "severity": None}])
    (problem,) = problems_of([path])
    assert problem.startswith(f"{path}: row 2: no label at all")


def test_csv_field_count_and_syntax_errors(tmp_path):
    path = write_csv(
        tmp_path / "a.csv",
        'text,category\n有货吗,A\n坏了, 真的坏了,C\n"他说"坏了,C\n到哪了,B\n"没关上的引号,B\n',
    )
    problems = problems_of([path])
    assert problems[0].startswith(f"{path}: row 3: 3 fields but the header has 2")
    assert problems[1].startswith(f"{path}: row 4: CSV syntax error")
    assert problems[2].startswith(f"{path}: row 6: CSV syntax error") and "never closed" in problems[2]
    assert len(problems) == 3


def test_broken_csv_header_is_one_problem(tmp_path):
    gbk = tmp_path / "gbk.csv"
    gbk.write_bytes("文本,类别\n".encode("gbk") + "有货吗,A\n到哪了,B\n".encode("utf-8"))
    quoted = write_csv(tmp_path / "q.csv", '"text,category\n有货吗,A\n')
    problems = problems_of([gbk, quoted])
    gbk_rows = [p for p in problems if p.startswith(f"{gbk}: row ")]
    quoted_problems = [p for p in problems if p.startswith(f"{quoted}:")]
    assert gbk_rows == [f"{gbk}: row 1: not UTF-8 (byte 0xce at column 1)"]
    assert len(quoted_problems) == 1
    assert quoted_problems[0].startswith(f"{quoted}: row 1: CSV syntax error") and "never closed" in quoted_problems[0]


def test_empty_files(tmp_path):
    j = tmp_path / "a.jsonl"
    j.write_text("\n\n", encoding="utf-8")
    c = write_csv(tmp_path / "b.csv", "")
    h = write_csv(tmp_path / "c.csv", "text,category\n")
    assert problems_of([j, c, h]) == [
        f"{j}: no data rows",
        f"{c}: empty file (expected a header row with a 'text' column)",
        f"{h}: no data rows",
    ]


def test_same_file_twice(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [row("有货吗")])
    (problem,) = problems_of([path, str(path)])
    assert problem == f"{path}: the same file as {path} (given twice)"


def test_problem_in_second_of_two_files(tmp_path):
    good = write_jsonl(tmp_path / "good.jsonl", [row("有货吗"), row("多少钱")])
    bad = write_jsonl(tmp_path / "bad.jsonl", [row("到哪了", "B"), row("坏了", "E"), row("退款", "B")])
    problems = problems_of([good, bad])
    assert len(problems) == 1
    assert problems[0].startswith(f"{bad}: row 2: category \"E\"")


def test_all_problems_across_files_reported_together(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", [row("有货吗"), "{oops", row("到哪了", severity="urgent")])
    b = write_csv(tmp_path / "b.csv", "text,category\n,A\n退款,X\n")
    missing = tmp_path / "gone.csv"
    with pytest.raises(DataValidationError) as info:
        load_labelled([a, b, missing])
    problems = info.value.problems
    assert [p.split(": ")[0] + ": " + p.split(": ")[1] for p in problems] == [
        f"{a}: row 2", f"{a}: row 3", f"{b}: row 2", f"{b}: row 3", f"{missing}: no such file",
    ]
    message = str(info.value)
    assert message.startswith("5 problems in the training data:")
    for p in problems:
        assert p in message
    assert isinstance(info.value, ValueError)


def test_message_shows_at_most_20_problems(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [row(f"消息{i}", "E") for i in range(25)])
    with pytest.raises(DataValidationError) as info:
        load_labelled([path])
    assert len(info.value.problems) == 25
    message = str(info.value)
    assert f"{path}: row {MAX_PROBLEMS_SHOWN}:" in message
    assert f"{path}: row {MAX_PROBLEMS_SHOWN + 1}:" not in message
    assert message.endswith(f"… {25 - MAX_PROBLEMS_SHOWN} more")


def test_no_paths():
    with pytest.raises(DataValidationError):
        load_labelled([])


# --------------------------------------------------------------------------------------------
# stratified_split
# --------------------------------------------------------------------------------------------


@pytest.fixture
def split_data(tmp_path):
    rows = []
    for category, n in (("A", 40), ("B", 23), ("C", 7), ("D", 2)):
        rows += [row(f"{category}类消息{i}", category) for i in range(n)]
    rows += [{"text": f"只有严重度{i}", "severity": "high"} for i in range(5)]
    rows += [{"text": f"只有情绪{i}", "sentiment": "positive"} for i in range(3)]
    rows += [{"text": "只有一条C", "category": None, "severity": "critical"}]  # a stratum of one
    ds, _ = load_labelled([write_jsonl(tmp_path / "a.jsonl", rows)])
    return ds


def _strata(ds) -> Counter:
    out = Counter()
    for c, s, t in zip(ds["category"], ds["severity"], ds["sentiment"]):
        out[c or (f"sev:{s}" if s else f"sent:{t}" if t else "none")] += 1
    return out


def test_split_deterministic_for_a_seed(split_data):
    tr1, ev1 = stratified_split(split_data, 0.15, seed=13)
    tr2, ev2 = stratified_split(split_data, 0.15, seed=13)
    assert list(ev1["text"]) == list(ev2["text"]) and list(tr1["text"]) == list(tr2["text"])
    _, ev3 = stratified_split(split_data, 0.15, seed=14)
    assert list(ev1["text"]) != list(ev3["text"])


def test_split_partitions_and_fractions(split_data):
    for fraction in (0.1, 0.15, 0.3, 0.5):
        train, ev = stratified_split(split_data, fraction, seed=7)
        train_texts, eval_texts = list(train["text"]), list(ev["text"])
        assert not set(train_texts) & set(eval_texts)
        assert sorted(train_texts + eval_texts) == sorted(split_data["text"])
        assert train.column_names == split_data.column_names
        total, in_eval = _strata(split_data), _strata(ev)
        for stratum, n in total.items():
            if n >= 2:
                assert 1 <= in_eval[stratum] <= n - 1, stratum
                assert abs(in_eval[stratum] - n * fraction) <= 1, (stratum, fraction)
            else:
                assert in_eval[stratum] == 0
        assert set(in_eval) == {s for s, n in total.items() if n >= 2}


def test_split_keeps_row_order_and_works_on_a_selection(split_data):
    train, ev = stratified_split(split_data, 0.2, seed=1)
    rows = list(ev["source_row"])
    assert rows == sorted(rows)
    sub = split_data.select(range(len(split_data) - 1, -1, -1))  # reversed: an indices mapping
    tr2, ev2 = stratified_split(sub, 0.2, seed=1)
    assert len(tr2) + len(ev2) == len(split_data)


def test_split_too_few_rows(tmp_path):
    ds, _ = load_labelled([write_jsonl(tmp_path / "a.jsonl", [row(f"消息{i}") for i in range(9)])])
    with pytest.raises(ValueError, match="too few rows"):
        stratified_split(ds)


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5])
def test_split_bad_fraction(split_data, fraction):
    with pytest.raises(ValueError, match="eval_fraction"):
        stratified_split(split_data, fraction)


# --------------------------------------------------------------------------------------------
# The real team-written data
# --------------------------------------------------------------------------------------------


def test_team_written_files_validate():
    assert len(TEAM_WRITTEN) >= 2
    ds, report = load_labelled(TEAM_WRITTEN)
    expected_rows = sum(1 for p in TEAM_WRITTEN for line in p.read_text(encoding="utf-8").splitlines() if line.strip())
    assert report.rows_read == expected_rows
    assert report.rows_kept == len(ds) == expected_rows
    assert report.duplicates_dropped == 0 and report.unusable_skipped == 0
    assert report.missing_label_counts == {h: 0 for h in HEADS}
    for head in HEADS:
        assert sum(report.label_counts[head].values()) == len(ds)
    assert all(count > 0 for count in report.label_counts["category"].values())
    train, ev = stratified_split(ds)
    assert len(train) + len(ev) == len(ds)


def test_without_texts_of_drops_rows_whose_text_is_held_out():
    import datasets

    from helpdesk_triage.training.dataset_io import without_texts_of

    train = datasets.Dataset.from_dict({"text": ["有货吗", "我的快递到哪了", "有货吗", "坏了"]})
    held_out = datasets.Dataset.from_dict({"text": ["有货吗", "投诉"]})
    kept, dropped = without_texts_of(train, held_out)
    assert list(kept["text"]) == ["我的快递到哪了", "坏了"]
    assert dropped == 2




def test_no_team_written_text_is_a_dev_text(shared_dev):
    dev, _ = load_labelled([shared_dev])
    team, _ = load_labelled(TEAM_WRITTEN)
    assert not set(dev["text"]) & set(team["text"])


SHARED_RUN = 10  # characters; shorter runs are stock phrases ("吃完第二天拉肚子") that any writer may use


def _runs(text: str, n: int) -> set[str]:
    import re

    from helpdesk_triage.policy.text_normalization import normalize

    text = re.sub(r"\[[^\]]*\]|(?:https?:)?t\.cn/[A-Za-z0-9]*", "□", normalize(text))  # placeholders and links
    return {text[i : i + n] for i in range(len(text) - n + 1)}


def test_no_team_written_text_shares_a_long_run_with_a_measuring_text(shared_dev, shared_corpora):
    """Team-written rows are trained on; dev.jsonl and the critical corpus cases measure. A 10-character run in
    common would mean a writer copied from them, and the measurement would flatter the model."""
    from helpdesk_triage.evaluation.critical_cases import critical_texts

    measuring = [json.loads(line)["text"] for line in shared_dev.read_text(encoding="utf-8").splitlines() if line.strip()]
    measuring += sorted(critical_texts(shared_corpora))
    measured_runs = set().union(*(_runs(text, SHARED_RUN) for text in measuring))
    team = [json.loads(line) for path in TEAM_WRITTEN for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(team) > 2000
    shared = [(row["id"], run) for row in team for run in _runs(row["text"], SHARED_RUN) & measured_runs]
    assert shared == []
