"""`triage monitor`: the JSON report and the table from a SQLite store; bad dates are exit 2 naming the flag."""

from __future__ import annotations

import json
from contextlib import closing
from datetime import date

import pytest

from helpdesk_triage.api.cli import main
from helpdesk_triage.api.decision_store import open_store
from helpdesk_triage.api.monitor_source import store_report
from helpdesk_triage.policy.settings import Settings
from tests.monitor_store import fill_example


@pytest.fixture()
def database(tmp_path, monkeypatch):
    monkeypatch.delenv("TRIAGE_MONITOR_REFERENCE", raising=False)
    path = tmp_path / "decisions.db"
    store = open_store(f"sqlite:///{path}")
    fill_example(store)
    store.close()
    return f"sqlite:///{path}"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["monitor", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_json_report_of_the_store(database, capsys):
    code, out, _ = run(capsys, "--since", "2026-11-02", "--until", "2026-11-15", "--json", "--database-url", database)
    assert code == 0
    report = json.loads(out)
    assert [(w["key"], w["volume"]) for w in report["weeks"]] == [("2026-W45", 8), ("2026-W46", 9)]
    # Default reference: the store's first decisions (10-27) to 7 days on, before the period.
    assert report["reference"] == {**report["reference"], "start": "2026-10-27", "end": "2026-11-01", "volume": 10}
    week45, week46 = report["weeks"]
    # Decided labels from the stored answer, not the stored argmax labels (all A).
    assert week46["label_count"]["category"] == {"A": 2, "B": 2, "C": 1, "D": 4}
    # Week 45: a review all right, a review with the severity changed, a category correction.
    assert week45["verdicts"] == {"category": 3, "severity": 2, "sentiment": 2}
    assert week45["correct"] == {"category": 2, "severity": 1, "sentiment": 2}
    # Week 46: a correction then a review (the review's category A stands: right), a sentiment correction.
    assert week46["verdicts"] == {"category": 1, "severity": 1, "sentiment": 2}
    assert week46["correct"] == {"category": 1, "severity": 1, "sentiment": 0}
    assert week46["psi_flagged"]["category"] and not week45["psi_flagged"]["category"]
    with closing(open_store(database)) as store:
        assert report == store_report(store, Settings(database_url=database), date(2026, 11, 2), date(2026, 11, 15))


def test_table_per_week_and_total(database, capsys):
    code, out, _ = run(capsys, "--since", "2026-11-02", "--until", "2026-11-15", "--database-url", database)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:5] == ["window", "days", "volume", "review", "degraded"]
    week46 = next(line for line in lines if line.startswith("2026-W46"))
    total = next(line for line in lines if line.startswith("total"))
    assert week46.split()[2] == "9" and total.split()[2] == "17"
    assert "1.000 [0.207, 1.000] n=1" in week46  # category: 1 of 1; Wilson (0.2065, 1.0)
    assert week46.split()[-3:] == ["0.893!", "0.680!", "0.000"] and total.split()[-1] == "0.000"
    assert "drift reference 2026-10-27..2026-11-01 (10 decisions)" in out


def test_an_explicit_reference_window(database, capsys):
    code, out, _ = run(capsys, "--since", "2026-11-09", "--until", "2026-11-15", "--reference", "2026-11-02/2026-11-08",
                       "--json", "--database-url", database)
    report = json.loads(out)
    assert code == 0 and report["reference"]["volume"] == 8 and report["total"]["volume"] == 9


@pytest.mark.parametrize(("argv", "flag"), [
    (["--since", "2026-13-01"], "--since"),
    (["--since", "2026-11-02", "--until", "yesterday"], "--until"),
    (["--since", "2026-11-09", "--until", "2026-11-02"], "--until"),
    (["--since", "2026-11-02", "--reference", "2026-11-01"], "--reference"),
])
def test_bad_dates_are_exit_2_naming_the_flag(database, capsys, argv, flag):
    code, out, err = run(capsys, *argv, "--database-url", database)
    assert code == 2 and out == ""
    assert err.startswith(f"triage monitor: error: {flag} ") and err.count("\n") == 1


def test_a_missing_database_is_one_line(tmp_path, capsys):
    code, _, err = run(capsys, "--since", "2026-11-02", "--database-url", f"sqlite:///{tmp_path}/none.db")
    assert code == 2 and "no database at" in err
