from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import tomllib

from helpdesk_triage.policy.sla import DEFAULT_POLICY_PATH, SlaPolicy, SlaPolicyError, parse_timestamp

SH = ZoneInfo("Asia/Shanghai")


def sh(*args) -> datetime:
    return datetime(*args, tzinfo=SH)


def raw_policy() -> dict:
    with DEFAULT_POLICY_PATH.open("rb") as f:
        return tomllib.load(f)


def policy_with(**calendar) -> SlaPolicy:
    raw = raw_policy()
    raw["calendar"].update(calendar)
    return SlaPolicy.from_dict(raw)


@pytest.fixture(scope="module")
def policy() -> SlaPolicy:
    return SlaPolicy.load()


def test_default_table_matches_handbook_during_working_hours(policy):
    received = sh(2026, 3, 10, 10, 0)
    # (first response h, its clock, resolution h, its clock): 1/4/12 h in working hours, 24/48 h on the clock.
    expected = {"A": (1, "business", 1, "business"), "B": (1, "business", 4, "business"),
                "C": (12, "business", 24, "calendar"), "D": (1, "business", 48, "calendar")}
    for category, (first_h, first_clock, resolve_h, resolve_clock) in expected.items():
        d = policy.deadlines(category, "medium", received)
        assert d.rule == f"category:{category}"
        assert (d.clock, d.resolution_clock) == (first_clock, resolve_clock)
        assert d.first_response_due == policy.calendar.add_business_time(received, timedelta(hours=first_h))
        if resolve_clock == "calendar":
            assert d.resolution_due == received + timedelta(hours=resolve_h)
        else:
            assert d.resolution_due == policy.calendar.add_business_time(received, timedelta(hours=resolve_h))
    assert policy.deadlines("A", "low", received).first_response_due == sh(2026, 3, 10, 11, 0)
    assert policy.deadlines("B", "low", received).resolution_due == sh(2026, 3, 10, 14, 0)
    # C: 12 business hours from 10:00 = 11 h today (to 21:00) + 1 h tomorrow; the solution 24 h on the clock.
    assert policy.deadlines("C", "high", received).first_response_due == sh(2026, 3, 11, 10, 0)
    assert policy.deadlines("C", "high", received).resolution_due == sh(2026, 3, 11, 10, 0)
    # D: listen and apologise within the general 1 h standard; resolved within 48 h on the clock.
    assert policy.deadlines("D", "high", received).first_response_due == sh(2026, 3, 10, 11, 0)
    assert policy.deadlines("D", "high", received).resolution_due == sh(2026, 3, 12, 10, 0)


def test_a_complaint_after_hours_gets_its_first_response_an_hour_after_opening(policy):
    d = policy.deadlines("D", "high", sh(2026, 3, 10, 20, 30))
    assert d.first_response_due == sh(2026, 3, 11, 9, 30)  # 30 min that evening, 30 min the next morning
    assert d.resolution_due == sh(2026, 3, 12, 20, 30)


@pytest.mark.parametrize("category", ["A", "B", "C", "D"])
@pytest.mark.parametrize("severity", ["low", "medium", "high", "critical"])
def test_no_default_first_response_is_due_later_than_24_hours_after_receipt(policy, category, severity):
    # Every 10 minutes of a whole week, day and night.
    start = sh(2026, 3, 9, 0, 0)
    for step in range(7 * 24 * 6):
        received = start + timedelta(minutes=10 * step)
        d = policy.deadlines(category, severity, received)
        assert received < d.first_response_due <= received + timedelta(hours=24), (received, d)
        assert d.first_response_due <= d.resolution_due


def test_d_escalates_immediately_and_a_does_not(policy):
    received = sh(2026, 3, 10, 10, 0)
    assert policy.deadlines("D", "high", received).escalate_immediately is True
    assert policy.deadlines("A", "low", received).escalate_immediately is False


def test_overnight_message_starts_counting_at_opening(policy):
    d = policy.deadlines("A", "low", sh(2026, 3, 10, 23, 30))
    assert d.first_response_due == sh(2026, 3, 11, 10, 0)
    early = policy.deadlines("B", "medium", sh(2026, 3, 11, 3, 15))
    assert early.first_response_due == sh(2026, 3, 11, 10, 0)
    assert early.resolution_due == sh(2026, 3, 11, 13, 0)


def test_boundaries_at_opening_and_closing(policy):
    assert policy.deadlines("A", "low", sh(2026, 3, 10, 9, 0)).first_response_due == sh(2026, 3, 10, 10, 0)
    assert policy.deadlines("A", "low", sh(2026, 3, 10, 8, 59, 59)).first_response_due == sh(2026, 3, 10, 10, 0)
    # Received at closing time: nothing left today.
    assert policy.deadlines("A", "low", sh(2026, 3, 10, 21, 0)).first_response_due == sh(2026, 3, 11, 10, 0)
    # Thirty minutes before closing: thirty today, thirty tomorrow.
    assert policy.deadlines("A", "low", sh(2026, 3, 10, 20, 30)).first_response_due == sh(2026, 3, 11, 9, 30)
    # Exactly fits: due at closing time, not carried to the next day.
    assert policy.deadlines("A", "low", sh(2026, 3, 10, 20, 0)).first_response_due == sh(2026, 3, 10, 21, 0)


def test_emergency_ignores_calendar_and_category(policy):
    night = sh(2026, 3, 10, 23, 50)
    for category in "ABCD":
        d = policy.deadlines(category, "critical", night)
        assert d.rule == "emergency:critical"
        assert d.clock == "calendar"
        assert d.escalate_immediately
        assert d.first_response_due == sh(2026, 3, 11, 0, 5)
        assert d.resolution_due == sh(2026, 3, 11, 23, 50)


def test_holidays_are_skipped():
    p = policy_with(holidays=["2026-10-01", "2026-10-02"])
    d = p.deadlines("B", "medium", sh(2026, 9, 30, 20, 30))
    # 30 min on Sep 30, then Oct 1 and 2 closed, the rest on Oct 3.
    assert d.first_response_due == sh(2026, 10, 3, 9, 30)
    assert d.resolution_due == sh(2026, 10, 3, 12, 30)
    assert p.deadlines("A", "low", sh(2026, 10, 1, 12, 0)).first_response_due == sh(2026, 10, 3, 10, 0)
    assert p.deadlines("A", "critical", sh(2026, 10, 1, 12, 0)).first_response_due == sh(2026, 10, 1, 12, 15)


def test_weekdays_only_calendar_with_make_up_day():
    # 2026-11-27 is a Friday. Saturday 28th is a make-up working day, Sunday is off.
    p = policy_with(workdays=[1, 2, 3, 4, 5], open="09:00", close="18:00", extra_workdays=["2026-11-28"])
    assert p.deadlines("A", "low", sh(2026, 11, 27, 17, 30)).first_response_due == sh(2026, 11, 28, 9, 30)
    assert p.deadlines("A", "low", sh(2026, 11, 28, 18, 0)).first_response_due == sh(2026, 11, 30, 10, 0)
    assert p.calendar.is_working_day(date(2026, 11, 28))
    assert not p.calendar.is_working_day(date(2026, 11, 29))


def test_received_at_in_another_zone_is_converted(policy):
    # 02:00 UTC is 10:00 in Shanghai.
    d = policy.deadlines("A", "low", datetime(2026, 3, 10, 2, 0, tzinfo=timezone.utc))
    assert d.first_response_due == sh(2026, 3, 10, 11, 0)
    assert d.first_response_due.utcoffset() == timedelta(hours=8)
    assert d.timezone == "Asia/Shanghai"


def test_dst_zone_business_time_and_emergency_clock():
    p = policy_with(timezone="America/New_York", open="00:00", close="24:00")
    ny = ZoneInfo("America/New_York")
    # Spring forward 2026-03-08 02:00 -> 03:00: one hour of wall clock does not exist.
    before = datetime(2026, 3, 8, 1, 30, tzinfo=ny)
    d = p.deadlines("A", "low", before)
    assert d.first_response_due == datetime(2026, 3, 8, 3, 30, tzinfo=ny)
    # Same-zone subtraction in Python is wall-clock; compare real elapsed time in UTC.
    assert d.first_response_due.astimezone(timezone.utc) - before.astimezone(timezone.utc) == timedelta(hours=1)
    emergency = p.deadlines("A", "critical", datetime(2026, 3, 8, 1, 50, tzinfo=ny))
    assert emergency.first_response_due == datetime(2026, 3, 8, 3, 5, tzinfo=ny)
    # Fall back 2026-11-01: the day has 25 hours of working time, so 24 business hours end an hour "early".
    fall = datetime(2026, 11, 1, 0, 0, tzinfo=ny)
    c = p.deadlines("C", "medium", fall)
    assert c.resolution_due.astimezone(timezone.utc) - fall.astimezone(timezone.utc) == timedelta(hours=24)
    assert c.resolution_due.isoformat() == "2026-11-01T23:00:00-05:00"


def test_dst_zone_with_normal_hours_across_a_change():
    p = policy_with(timezone="Europe/Berlin")
    berlin = ZoneInfo("Europe/Berlin")
    # Clocks go forward on 2026-03-29 at 02:00, outside working hours: opening time stays 09:00 local.
    d = p.deadlines("A", "low", datetime(2026, 3, 28, 20, 30, tzinfo=berlin))
    assert d.first_response_due == datetime(2026, 3, 29, 9, 30, tzinfo=berlin)
    assert d.first_response_due.utcoffset() == timedelta(hours=2)


def test_naive_and_non_datetime_received_at_rejected(policy):
    with pytest.raises(ValueError, match="timezone"):
        policy.deadlines("A", "low", datetime(2026, 3, 10, 10, 0))
    with pytest.raises(TypeError):
        policy.deadlines("A", "low", "2026-03-10T10:00:00+08:00")


def test_unknown_labels_rejected(policy):
    with pytest.raises(ValueError, match="category"):
        policy.deadlines("E", "low", sh(2026, 3, 10, 10, 0))
    with pytest.raises(ValueError, match="severity"):
        policy.deadlines("A", "urgent", sh(2026, 3, 10, 10, 0))


@pytest.mark.parametrize("value", ["2026-03-10T10:00:00+08:00", "2026-03-10T02:00:00Z", " 2026-03-10 10:00+08:00 "])
def test_parse_timestamp_accepts_zoned_iso(value):
    assert parse_timestamp(value) == sh(2026, 3, 10, 10, 0)


@pytest.mark.parametrize("value", ["2026-03-10T10:00:00", "yesterday", "", "2026-13-01T00:00:00Z", "2026-02-30T10:00+08:00"])
def test_parse_timestamp_rejects_bad_values(value):
    with pytest.raises(ValueError):
        parse_timestamp(value)


def test_parse_timestamp_rejects_non_string():
    with pytest.raises(TypeError):
        parse_timestamp(1700000000)


def test_to_dict_is_iso_with_offset(policy):
    out = policy.deadlines("B", "medium", sh(2026, 3, 10, 10, 0)).to_dict()
    assert out["first_response_due"] == "2026-03-10T11:00:00+08:00"
    assert out["rule"] == "category:B"
    assert parse_timestamp(out["resolution_due"]) == sh(2026, 3, 10, 14, 0)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda r: r["calendar"].update(timezone="Mars/Base"), "timezone"),
        (lambda r: r["calendar"].update(open="21:00", close="09:00"), "before close"),
        (lambda r: r["calendar"].update(open="9am"), "09:00"),
        (lambda r: r["calendar"].update(close="24:30"), "not a time"),
        (lambda r: r["calendar"].update(workdays=[0, 8]), "workdays"),
        (lambda r: r["calendar"].update(holidays=["2026-02-30"]), "holidays"),
        (lambda r: r["categories"].pop("C"), "missing"),
        (lambda r: r["categories"].update(E=r["categories"]["A"]), "unknown"),
        (lambda r: r["categories"]["A"].update(first_response_minutes=-5), "minutes"),
        (lambda r: r["categories"]["A"].update(first_response_minutes=True), "minutes"),
        (lambda r: r["categories"]["A"].update(first_response_minute=5), "unknown keys"),
        (lambda r: r["categories"]["B"].update(resolution_minutes=30), "shorter"),
        (lambda r: r["categories"]["B"].update(clock="wall"), "clock"),
        (lambda r: r["categories"]["C"].update(resolution_clock="sundial"), "resolution_clock"),
        (lambda r: r["emergency"].update(severity="extreme"), "severity"),
    ],
)
def test_invalid_policies_rejected(mutate, message):
    raw = raw_policy()
    mutate(raw)
    with pytest.raises(SlaPolicyError, match=message):
        SlaPolicy.from_dict(raw)


def test_policy_file_errors_name_the_file(tmp_path: Path):
    missing = tmp_path / "nope.toml"
    with pytest.raises(SlaPolicyError, match="nope.toml"):
        SlaPolicy.load(missing)
    broken = tmp_path / "broken.toml"
    broken.write_text("[calendar\n", encoding="utf-8")
    with pytest.raises(SlaPolicyError, match="broken.toml"):
        SlaPolicy.load(broken)


def test_calendar_without_working_days_fails_clearly():
    p = policy_with(workdays=[1], holidays=[])
    assert p.deadlines("A", "low", sh(2026, 11, 24, 12, 0)).first_response_due == sh(2026, 11, 30, 10, 0)
    raw = raw_policy()
    raw["calendar"]["workdays"] = []
    with pytest.raises(SlaPolicyError, match="no working days"):
        SlaPolicy.from_dict(raw)
