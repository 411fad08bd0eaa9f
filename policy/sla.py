"""SLA deadlines from a ticket's labels, counted in business time.

The policy (deadline table and working calendar) lives in ``data/sla_policy.toml``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from helpdesk_triage.policy.labels import LABELS, LabelSchema
from helpdesk_triage.policy.data_files import data_file, read_toml

DEFAULT_POLICY_PATH = data_file("sla_policy.toml")
Clock = Literal["business", "calendar"]
CLOCKS: tuple[str, ...] = ("business", "calendar")
MINUTES_PER_DAY = 24 * 60
# A calendar with no working minute in this many consecutive days is treated as broken.
MAX_SEARCH_DAYS = 400
MAX_RULE_MINUTES = 366 * MINUTES_PER_DAY


class SlaPolicyError(ValueError):
    """The policy file is invalid."""


@dataclass(frozen=True)
class BusinessCalendar:
    timezone: ZoneInfo
    open_minute: int
    close_minute: int
    workdays: frozenset[int]
    holidays: frozenset[date]
    extra_workdays: frozenset[date]

    def is_working_day(self, day: date) -> bool:
        if day in self.holidays:
            return False
        return day in self.extra_workdays or day.isoweekday() in self.workdays

    def working_hours(self, day: date) -> tuple[datetime, datetime]:
        """The day's opening and closing instants, in UTC (a DST gap or overlap resolves as zoneinfo does)."""
        return self._instant(day, self.open_minute), self._instant(day, self.close_minute)

    def _instant(self, day: date, minute_of_day: int) -> datetime:
        local = datetime.combine(day, time(0), tzinfo=self.timezone) + timedelta(minutes=minute_of_day)
        # Wall-clock arithmetic above, then a round trip through UTC to land on a real instant.
        return local.astimezone(timezone.utc)

    def add_business_time(self, start: datetime, duration: timedelta) -> datetime:
        """The instant at which ``duration`` of working time has elapsed after ``start``."""
        cursor = start.astimezone(timezone.utc)
        remaining = duration
        day = start.astimezone(self.timezone).date()
        days_without_work = 0
        while days_without_work < MAX_SEARCH_DAYS:
            days_without_work += 1
            if self.is_working_day(day):
                opens, closes = self.working_hours(day)
                begin = max(opens, cursor)
                if begin < closes:
                    days_without_work = 0
                    available = closes - begin
                    if remaining <= available:
                        return (begin + remaining).astimezone(self.timezone)
                    remaining -= available
            day += timedelta(days=1)
        raise SlaPolicyError(f"the business calendar has no working time within {MAX_SEARCH_DAYS} days")


@dataclass(frozen=True)
class SlaRule:
    name: str
    first_response: timedelta
    resolution: timedelta
    clock: Clock  # how the first-response window counts
    resolution_clock: Clock
    escalate_immediately: bool
    note: str


@dataclass(frozen=True)
class SlaDeadlines:
    first_response_due: datetime
    resolution_due: datetime
    rule: str
    clock: Clock
    resolution_clock: Clock
    timezone: str
    escalate_immediately: bool
    note: str

    def capped_at(self, deadline: datetime) -> "SlaDeadlines":
        """These deadlines, none later than ``deadline`` (one the customer stated); the rule says so when it bites."""
        if deadline >= self.first_response_due and deadline >= self.resolution_due:
            return self
        return replace(self, first_response_due=min(self.first_response_due, deadline),
                       resolution_due=min(self.resolution_due, deadline), rule=f"{self.rule}+customer_deadline")

    def to_dict(self) -> dict[str, Any]:
        return {
            "first_response_due": self.first_response_due.isoformat(),
            "resolution_due": self.resolution_due.isoformat(),
            "rule": self.rule,
            "clock": self.clock,
            "resolution_clock": self.resolution_clock,
            "timezone": self.timezone,
            "escalate_immediately": self.escalate_immediately,
            "note": self.note,
        }


@dataclass(frozen=True)
class SlaPolicy:
    calendar: BusinessCalendar
    category_rules: dict[str, SlaRule]
    emergency_severity: str
    emergency_rule: SlaRule

    @classmethod
    def load(cls, path: str | Path | None = None, labels: LabelSchema = LABELS) -> "SlaPolicy":
        path = Path(path) if path is not None else DEFAULT_POLICY_PATH
        raw = read_toml(path, "SLA policy", SlaPolicyError)
        try:
            return cls.from_dict(raw, labels)
        except SlaPolicyError as exc:
            raise SlaPolicyError(f"{path}: {exc}") from exc

    @classmethod
    def from_dict(cls, raw: dict[str, Any], labels: LabelSchema = LABELS) -> "SlaPolicy":
        _reject_unknown_keys("policy", raw, {"calendar", "categories", "emergency"}, required={"calendar", "categories", "emergency"})
        calendar = _parse_calendar(raw["calendar"])
        categories = raw["categories"]
        if not isinstance(categories, dict):
            raise SlaPolicyError("[categories] must be a table")
        missing = [c for c in labels.categories if c not in categories]
        unknown = [c for c in categories if c not in labels.categories]
        if missing or unknown:
            raise SlaPolicyError(f"[categories] must have exactly {list(labels.categories)}; missing {missing}, unknown {unknown}")
        rules = {code: _parse_rule(f"category:{code}", categories[code]) for code in labels.categories}
        emergency_raw = dict(_as_table("emergency", raw["emergency"]))
        severity = emergency_raw.pop("severity", None)
        if not labels.is_valid("severity", severity):
            raise SlaPolicyError(f"[emergency] severity must be one of {list(labels.severities)}, got {severity!r}")
        emergency = _parse_rule(f"emergency:{severity}", emergency_raw)
        return cls(calendar, rules, severity, emergency)

    def rule_for(self, category: str, severity: str) -> SlaRule:
        if category not in self.category_rules:
            raise ValueError(f"unknown category {category!r}; expected one of {list(self.category_rules)}")
        if not LABELS.is_valid("severity", severity):
            raise ValueError(f"unknown severity {severity!r}; expected one of {list(LABELS.severities)}")
        if severity == self.emergency_severity:
            return self.emergency_rule
        return self.category_rules[category]

    def deadlines(self, category: str, severity: str, received_at: datetime) -> SlaDeadlines:
        if not isinstance(received_at, datetime):
            raise TypeError(f"received_at must be a datetime, got {type(received_at).__name__}")
        if received_at.tzinfo is None or received_at.utcoffset() is None:
            raise ValueError("received_at must be timezone-aware (include an offset such as +08:00 or Z)")
        rule = self.rule_for(category, severity)
        return SlaDeadlines(
            first_response_due=self._due(received_at, rule.first_response, rule.clock),
            resolution_due=self._due(received_at, rule.resolution, rule.resolution_clock),
            rule=rule.name,
            clock=rule.clock,
            resolution_clock=rule.resolution_clock,
            timezone=self.calendar.timezone.key,
            escalate_immediately=rule.escalate_immediately,
            note=rule.note,
        )

    def _due(self, received_at: datetime, duration: timedelta, clock: Clock) -> datetime:
        if clock == "calendar":
            return (received_at.astimezone(timezone.utc) + duration).astimezone(self.calendar.timezone)
        return self.calendar.add_business_time(received_at, duration)


def parse_timestamp(value: str) -> datetime:
    """Parse an ISO-8601 timestamp that must carry a UTC offset or ``Z``."""
    if not isinstance(value, str):
        raise TypeError(f"timestamp must be a string, got {type(value).__name__}")
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise ValueError(f"not an ISO-8601 timestamp: {value!r}") from exc
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp {value!r} has no timezone offset (add e.g. +08:00 or Z)")
    return parsed


_RULE_KEYS = {"first_response_minutes", "resolution_minutes", "clock", "resolution_clock", "escalate_immediately", "note"}
_CALENDAR_KEYS = {"timezone", "open", "close", "workdays", "holidays", "extra_workdays"}


def _parse_rule(name: str, raw: Any) -> SlaRule:
    table = _as_table(name, raw)
    _reject_unknown_keys(name, table, _RULE_KEYS, required={"first_response_minutes", "resolution_minutes", "clock"})
    first = _minutes(name, "first_response_minutes", table["first_response_minutes"])
    resolution = _minutes(name, "resolution_minutes", table["resolution_minutes"])
    clock = table["clock"]
    if clock not in CLOCKS:
        raise SlaPolicyError(f"{name}: clock must be one of {list(CLOCKS)}, got {clock!r}")
    resolution_clock = table.get("resolution_clock", clock)
    if resolution_clock not in CLOCKS:
        raise SlaPolicyError(f"{name}: resolution_clock must be one of {list(CLOCKS)}, got {resolution_clock!r}")
    # Minutes on different clocks do not compare (12 business hours can end after 24 hours on the clock).
    if resolution_clock == clock and resolution < first:
        raise SlaPolicyError(f"{name}: resolution_minutes ({resolution}) is shorter than first_response_minutes ({first})")
    escalate = table.get("escalate_immediately", False)
    if not isinstance(escalate, bool):
        raise SlaPolicyError(f"{name}: escalate_immediately must be true or false")
    note = table.get("note", "")
    if not isinstance(note, str):
        raise SlaPolicyError(f"{name}: note must be a string")
    return SlaRule(name, timedelta(minutes=first), timedelta(minutes=resolution), clock, resolution_clock, escalate, note)


def _parse_calendar(raw: Any) -> BusinessCalendar:
    table = _as_table("calendar", raw)
    _reject_unknown_keys("calendar", table, _CALENDAR_KEYS, required={"timezone", "open", "close"})
    try:
        zone = ZoneInfo(str(table["timezone"]))
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise SlaPolicyError(f"calendar: unknown timezone {table['timezone']!r}") from exc
    open_minute = _clock_time("open", table["open"])
    close_minute = _clock_time("close", table["close"])
    if not open_minute < close_minute:
        raise SlaPolicyError(f"calendar: open ({table['open']}) must be before close ({table['close']})")
    workdays = table.get("workdays", [1, 2, 3, 4, 5, 6, 7])
    if not isinstance(workdays, list) or not all(isinstance(d, int) and not isinstance(d, bool) and 1 <= d <= 7 for d in workdays):
        raise SlaPolicyError(f"calendar: workdays must be a list of ISO weekdays 1..7, got {workdays!r}")
    holidays = _dates("holidays", table.get("holidays", []))
    extra = _dates("extra_workdays", table.get("extra_workdays", []))
    if not workdays and not extra:
        raise SlaPolicyError("calendar: no working days at all")
    return BusinessCalendar(zone, open_minute, close_minute, frozenset(workdays), holidays, extra)


def _clock_time(key: str, value: Any) -> int:
    """Minutes after midnight for "HH:MM"; "24:00" is allowed as a closing time."""
    if not isinstance(value, str):
        raise SlaPolicyError(f"calendar: {key} must be a \"HH:MM\" string, got {value!r}")
    parts = value.split(":")
    if len(parts) != 2 or not all(p.isdigit() and len(p) == 2 for p in parts):
        raise SlaPolicyError(f"calendar: {key} must look like \"09:00\", got {value!r}")
    hours, minutes = int(parts[0]), int(parts[1])
    total = hours * 60 + minutes
    if minutes >= 60 or total > MINUTES_PER_DAY:
        raise SlaPolicyError(f"calendar: {key} is not a time of day: {value!r}")
    return total


def _dates(key: str, values: Any) -> frozenset[date]:
    if not isinstance(values, list):
        raise SlaPolicyError(f"calendar: {key} must be a list of dates")
    parsed = set()
    for value in values:
        if isinstance(value, date) and not isinstance(value, datetime):
            parsed.add(value)
            continue
        try:
            parsed.add(date.fromisoformat(str(value)))
        except ValueError as exc:
            raise SlaPolicyError(f"calendar: {key} entry {value!r} is not a YYYY-MM-DD date") from exc
    return frozenset(parsed)


def _minutes(name: str, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_RULE_MINUTES:
        raise SlaPolicyError(f"{name}: {key} must be a whole number of minutes from 0 to {MAX_RULE_MINUTES}, got {value!r}")
    return value


def _as_table(name: str, raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise SlaPolicyError(f"[{name}] must be a table")
    return raw


def _reject_unknown_keys(name: str, table: dict[str, Any], allowed: set[str], required: set[str]) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise SlaPolicyError(f"{name}: unknown keys {unknown}; allowed: {sorted(allowed)}")
    missing = sorted(required - set(table))
    if missing:
        raise SlaPolicyError(f"{name}: missing keys {missing}")
