"""evaluation/monitoring.py: PSI, Wilson intervals, local day and ISO week buckets, agent accuracy; with
expectations worked out by hand."""

from __future__ import annotations

from datetime import date
from zoneinfo import ZoneInfo

import pytest

from helpdesk_triage.evaluation.monitoring import (
    PSI_EPSILON,
    default_reference,
    figures,
    iso_week_key,
    local_day,
    monitor_report,
    psi,
    utc_bounds,
)
from helpdesk_triage.policy.settings import Settings, parse_date_range

SHANGHAI = ZoneInfo("Asia/Shanghai")
CONFIDENCE = {"category": 0.9, "severity": 0.6, "sentiment": 0.3}


def row(decided_at: str, category: str = "B", severity: str = "low", sentiment: str = "neutral", *,
        verdicts: dict | None = None, needs_review: bool = False, degraded: bool = False,
        confidence: dict | None = None) -> dict:
    return {"id": decided_at, "decided_at": decided_at,
            "labels": {"category": category, "severity": severity, "sentiment": sentiment},
            "confidence": confidence or CONFIDENCE, "degraded": degraded, "needs_review": needs_review,
            "verdicts": verdicts or {}}


def report(rows, reference_rows=(), since=date(2026, 11, 1), until=date(2026, 11, 8),
           reference=(date(2026, 10, 1), date(2026, 10, 7)), **kwargs):
    return monitor_report(rows, reference_rows, since=since, until=until, reference=reference, **kwargs)


def test_psi_of_a_known_pair():
    # (0.5 - 0.25) ln(0.5/0.25) + (0.5 - 0.75) ln(0.5/0.75) = 0.25 * 0.693147 + 0.25 * 0.405465 = 0.274653
    assert psi({"A": 0.5, "B": 0.5}, {"A": 0.25, "B": 0.75}) == pytest.approx(0.274653, abs=1e-6)
    assert psi({"A": 0.3, "B": 0.7}, {"A": 0.3, "B": 0.7}) == 0.0
    # An empty cell counts as epsilon = 1e-4: 0.5 ln 2 + (1e-4 - 0.5) ln(1e-4 / 0.5) = 0.346574 + 4.257744
    assert PSI_EPSILON == 1e-4
    assert psi({"A": 1.0, "B": 0.0}, {"A": 0.5, "B": 0.5}) == pytest.approx(4.604318, abs=1e-5)


def test_wilson_interval_and_accuracy_of_nine_out_of_ten():
    # 9 of 10: centre (0.9 + 1.96²/20) / (1 + 1.96²/10) = 0.788985; half 1.96 sqrt(0.009 + 0.009604) / 1.38416 = 0.193139
    rows = [row(f"2026-11-03T02:00:{i:02d}+00:00", verdicts={"category": "B" if i < 9 else "D"}) for i in range(10)]
    total = report(rows)["total"]
    assert (total["verdicts"]["category"], total["correct"]["category"]) == (10, 9)
    assert total["accuracy"]["category"] == 0.9
    assert (total["accuracy_low"]["category"], total["accuracy_high"]["category"]) == (0.596, 0.982)
    # No verdict on the other heads: no accuracy, no interval.
    assert total["verdicts"]["severity"] == 0
    assert total["accuracy"]["severity"] is None and total["accuracy_low"]["severity"] is None


def test_days_and_weeks_are_local_to_the_sla_timezone():
    # 2026-11-01 is a Sunday (ISO week 44). 16:00 UTC is midnight in Shanghai: Monday 2026-11-02, week 45.
    before_midnight = "2026-11-01T15:59:59.999999+00:00"
    after_midnight = "2026-11-01T16:00:00+00:00"
    assert local_day(before_midnight, SHANGHAI) == date(2026, 11, 1)
    assert local_day(after_midnight, SHANGHAI) == date(2026, 11, 2)
    assert (iso_week_key(date(2026, 11, 1)), iso_week_key(date(2026, 11, 2))) == ("2026-W44", "2026-W45")
    result = report([row(before_midnight), row(after_midnight), row("2026-11-02T03:00:00+08:00")])
    volumes = {day["key"]: day["volume"] for day in result["days"]}
    assert volumes["2026-11-01"] == 1 and volumes["2026-11-02"] == 2 and len(volumes) == 8
    assert [(w["key"], w["start"], w["end"], w["volume"]) for w in result["weeks"]] == [
        ("2026-W44", "2026-11-01", "2026-11-01", 1), ("2026-W45", "2026-11-02", "2026-11-08", 2)]
    # In UTC both would be on 2026-11-01, week 44.
    utc = report([row(before_midnight), row(after_midnight)], timezone_name="UTC")
    assert [w["volume"] for w in utc["weeks"]] == [2, 0]
    # The store window of local dates 11-01..11-02 in Shanghai starts and ends at 16:00 UTC.
    assert utc_bounds(date(2026, 11, 1), date(2026, 11, 2), SHANGHAI) == (
        "2026-10-31T16:00:00+00:00", "2026-11-02T16:00:00+00:00")


def test_rows_outside_the_period_are_left_out():
    result = report([row("2026-10-31T15:00:00+00:00"), row("2026-11-08T16:00:00+00:00"), row("2026-11-08T15:00:00+00:00")])
    assert result["total"]["volume"] == 1 and result["days"][-1]["volume"] == 1


def test_accuracy_counts_a_partial_correction_on_its_heads_only_and_a_review_on_all():
    rows = [
        # /v1/feedback correcting the category only: category wrong, the other heads unjudged.
        row("2026-11-03T01:00:00+00:00", "B", verdicts={"category": "D"}),
        # A review confirming every head: all correct.
        row("2026-11-03T02:00:00+00:00", "C", "high", "negative",
            verdicts={"category": "C", "severity": "high", "sentiment": "negative"}),
        # A review changing the severity: category and sentiment correct, severity wrong.
        row("2026-11-03T03:00:00+00:00", "A", "low", "neutral",
            verdicts={"category": "A", "severity": "medium", "sentiment": "neutral"}),
        row("2026-11-03T04:00:00+00:00", "A"),  # no feedback: no verdict anywhere
    ]
    total = report(rows)["total"]
    assert total["verdicts"] == {"category": 3, "severity": 2, "sentiment": 2}
    assert total["correct"] == {"category": 2, "severity": 1, "sentiment": 2}
    assert total["accuracy"] == {"category": 0.667, "severity": 0.5, "sentiment": 1.0}


def test_volume_mix_confidence_and_rates():
    rows = [row("2026-11-04T01:00:00+00:00", "A", needs_review=True, confidence={"category": 0.5, "severity": 0.5, "sentiment": 0.5}),
            row("2026-11-04T02:00:00+00:00", "A", degraded=True, needs_review=True,
                confidence={"category": 1.0, "severity": 0.2, "sentiment": 0.0}),
            row("2026-11-04T03:00:00+00:00", "D", "critical"),
            row("2026-11-04T04:00:00+00:00", "B")]
    total = report(rows)["total"]
    assert total["volume"] == 4
    assert total["label_count"]["category"] == {"A": 2, "B": 1, "C": 0, "D": 1}
    assert total["label_share"]["category"] == {"A": 0.5, "B": 0.25, "C": 0.0, "D": 0.25}
    assert total["label_count"]["severity"]["critical"] == 1
    # (0.5 + 1.0 + 0.9 + 0.9) / 4 = 0.825; (0.5 + 0.2 + 0.6 + 0.6) / 4 = 0.475; (0.5 + 0 + 0.3 + 0.3) / 4 = 0.275
    assert total["mean_confidence"] == {"category": 0.825, "severity": 0.475, "sentiment": 0.275}
    assert (total["review_rate"], total["degraded_rate"]) == (0.5, 0.25)
    empty_day = report(rows)["days"][0]
    assert empty_day["volume"] == 0 and empty_day["review_rate"] is None and empty_day["psi"]["category"] is None


def test_drift_against_the_reference_is_flagged_above_the_alert():
    reference_rows = [row("2026-10-02T01:00:00+00:00", "A"), row("2026-10-02T02:00:00+00:00", "A"),
                      row("2026-10-02T03:00:00+00:00", "A"), row("2026-10-02T04:00:00+00:00", "B")]
    # Category mix 0.5/0.5 against 0.75/0.25 (C and D empty on both sides add 0):
    # (0.5-0.75) ln(0.5/0.75) + (0.5-0.25) ln(0.5/0.25) = 0.101366 + 0.173287 = 0.274653 > 0.2
    rows = [row("2026-11-05T01:00:00+00:00", "A"), row("2026-11-05T02:00:00+00:00", "B")]
    result = report(rows, reference_rows)
    assert result["reference"]["volume"] == 4 and result["reference"]["label_share"]["category"]["A"] == 0.75
    assert result["total"]["psi"]["category"] == 0.275 and result["total"]["psi_flagged"]["category"] is True
    assert result["total"]["psi"]["severity"] == 0.0 and result["total"]["psi_flagged"]["severity"] is False
    assert report(rows, reference_rows, psi_alert=0.3)["total"]["psi_flagged"]["category"] is False
    # No reference decision: no PSI.
    assert report(rows)["total"]["psi"]["category"] is None
    # Reference rows outside the reference dates do not count.
    assert report(rows, reference_rows, reference=(date(2026, 10, 3), date(2026, 10, 7)))["reference"]["volume"] == 0


def test_default_reference_is_the_first_week_before_the_period():
    assert default_reference(date(2026, 9, 1), date(2026, 11, 1)) == (date(2026, 9, 1), date(2026, 9, 7))
    assert default_reference(date(2026, 10, 29), date(2026, 11, 1)) == (date(2026, 10, 29), date(2026, 10, 31))
    assert default_reference(None, date(2026, 11, 1)) == (date(2026, 11, 1), date(2026, 11, 7))
    assert default_reference(date(2026, 11, 3), date(2026, 11, 1)) == (date(2026, 11, 1), date(2026, 11, 7))


def test_figures_name_every_bucket_value():
    result = report([row("2026-11-20T01:00:00+00:00", verdicts={"category": "B"})], since=date(2026, 11, 16),
                    until=date(2026, 11, 22))
    named = figures(result)
    assert named["total.volume"] == 1 and named["weeks.2026-W47.volume"] == 1 and named["days.2026-11-19.volume"] == 0
    assert named["total.accuracy.category"] == 1.0 and named["total.verdicts.severity"] == 0
    assert named["days.2026-11-20.label_share.category.B"] == 1.0


def test_a_period_that_ends_before_it_starts_is_refused():
    with pytest.raises(ValueError, match="before it starts"):
        report([], since=date(2026, 11, 8), until=date(2026, 11, 1))


def test_reference_setting_is_checked_at_startup():
    assert parse_date_range("2026-11-01/2026-11-07") == (date(2026, 11, 1), date(2026, 11, 7))
    assert Settings(monitor_reference=" 2026-11-01 / 2026-11-07 ").monitor_reference == "2026-11-01/2026-11-07"
    assert Settings().monitor_reference == ""
    for bad, why in (("2026-11-01", "START/END"), ("2026-11-07/2026-11-01", "before the start"),
                     ("2026-11-01/soon", "START/END")):
        with pytest.raises(ValueError, match=why):
            Settings(monitor_reference=bad)
