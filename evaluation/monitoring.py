"""The monitor report: how the service did per day, per ISO week and over a period, from stored decisions.

Pure computation, no I/O: ``monitor_report`` takes the rows of ``DecisionStore.window`` (dicts with
``decided_at``, ``labels``, ``confidence``, ``degraded``, ``needs_review``, ``verdicts``) for the period and
for the reference window, and returns a JSON-serialisable dict::

    {"timezone": "Asia/Shanghai",
     "period": {"start": "2026-11-01", "end": "2026-11-28"},            # local dates, both included
     "reference": {"start": ..., "end": ..., "volume": n, "label_share": {head: {label: share}}},
     "psi_alert": 0.2, "psi_epsilon": 0.0001,
     "days": [bucket, ...],    # every local date of the period, empty ones too (volume 0)
     "weeks": [bucket, ...],   # every ISO week touching the period; start/end clipped to the period
     "total": bucket}

Each bucket has the same keys::

    {"key": "2026-11-20" | "2026-W47" | "total", "start": date, "end": date, "volume": n,
     "label_count": {head: {label: n}}, "label_share": {head: {label: share}},
     "mean_confidence": {head: x}, "review_rate": x, "degraded_rate": x,
     "verdicts": {head: n}, "correct": {head: k}, "accuracy": {head: k/n},
     "accuracy_low": {head: x}, "accuracy_high": {head: x},          # 95% Wilson interval
     "psi": {head: x}, "psi_flagged": {head: bool}}

Rates, shares, means, accuracies and PSI are rounded to ``DECIMALS`` (3) places, so any page showing the
report shows exactly these numbers; each is None where its denominator is 0 (no decision, no verdict on
that head, an empty reference).

Days and weeks are local to the SLA timezone: a decision at 2026-11-01T16:30Z is on 2026-11-02 in
Asia/Shanghai. Accuracy is "measured by the agents": a decision counts for a head when an agent gave a
verdict on that head (a review gives all three heads, a /v1/feedback correction only the heads it names)
and is correct when the latest verdict equals the label the service answered.

Drift is the population stability index of a head's label mix against the reference window:
PSI = Σ (p − q) · ln(p / q) over the head's labels, p the bucket's share and q the reference's, where a
share of 0 counts as ``PSI_EPSILON`` (1e-4) so an empty cell weighs without dividing by zero. Above
``psi_alert`` (0.2 by default, the usual "significant shift") the head is flagged.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from helpdesk_triage.evaluation.reply_fit import wilson
from helpdesk_triage.policy.labels import HEADS, LABELS

__all__ = ["DECIMALS", "PSI_ALERT", "PSI_EPSILON", "REFERENCE_DAYS", "default_reference", "figures", "iso_week_key",
           "local_day", "monitor_report", "psi", "utc_bounds"]

DECIMALS = 3
PSI_ALERT = 0.2
PSI_EPSILON = 1e-4
REFERENCE_DAYS = 7  # the default reference window: the first week of decisions


def local_day(decided_at: str, zone: ZoneInfo) -> date:
    """The local date of an ISO timestamp (an offset-less one is taken as UTC, as the store writes UTC)."""
    moment = datetime.fromisoformat(decided_at)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(zone).date()


def utc_bounds(start: date, end: date, zone: ZoneInfo) -> tuple[str, str]:
    """The ``[start, end)`` UTC ISO text for ``DecisionStore.window`` covering local dates start..end (both included)."""
    def utc(day: date) -> str:
        return datetime.combine(day, time(0), tzinfo=zone).astimezone(timezone.utc).isoformat(timespec="seconds")

    return utc(start), utc(end + timedelta(days=1))


def iso_week_key(day: date) -> str:
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def default_reference(first_day: date | None, period_start: date) -> tuple[date, date]:
    """The reference window when none is set: the ``REFERENCE_DAYS`` local days from the store's first
    decision, cut at the day before the period; the period's own first days when nothing is stored before it."""
    if first_day is None or first_day >= period_start:
        return period_start, period_start + timedelta(days=REFERENCE_DAYS - 1)
    return first_day, min(first_day + timedelta(days=REFERENCE_DAYS - 1), period_start - timedelta(days=1))


def psi(actual: Mapping[str, float], expected: Mapping[str, float], epsilon: float = PSI_EPSILON) -> float:
    """Σ (p − q) · ln(p / q) over the labels of either mapping; a share of 0 (or a missing label) counts as ``epsilon``."""
    total = 0.0
    for label in set(actual) | set(expected):
        p = max(actual.get(label, 0.0), epsilon)
        q = max(expected.get(label, 0.0), epsilon)
        total += (p - q) * math.log(p / q)
    return total


def _round(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else round(value, DECIMALS)


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _label_shares(rows: Sequence[dict]) -> dict[str, dict[str, float]]:
    """Unrounded label shares per head (empty dicts when there are no rows)."""
    shares: dict[str, dict[str, float]] = {}
    for head in HEADS:
        counts = {code: 0 for code in LABELS.codes(head)}
        for row in rows:
            code = row["labels"].get(head)
            if code is not None:
                counts[code] = counts.get(code, 0) + 1
        shares[head] = {code: n / len(rows) for code, n in counts.items()} if rows else {}
    return shares


def _bucket(key: str, start: date, end: date, rows: Sequence[dict], reference: dict[str, dict[str, float]] | None,
            psi_alert: float) -> dict:
    volume = len(rows)
    label_count = {head: {code: 0 for code in LABELS.codes(head)} for head in HEADS}
    confidence = {head: 0.0 for head in HEADS}
    verdicts = {head: 0 for head in HEADS}
    correct = {head: 0 for head in HEADS}
    for row in rows:
        for head in HEADS:
            code = row["labels"].get(head)
            if code is not None:
                label_count[head][code] = label_count[head].get(code, 0) + 1
            confidence[head] += row["confidence"].get(head, 0.0)
            verdict = row["verdicts"].get(head)
            if verdict is not None:
                verdicts[head] += 1
                correct[head] += verdict == code
    shares = _label_shares(rows)
    # Unrounded: rounding to 4 places first and then to DECIMALS would round some bounds the wrong way.
    intervals = {head: wilson(correct[head], verdicts[head], digits=None) for head in HEADS}
    drift = {head: psi(shares[head], reference[head]) if volume and reference else None for head in HEADS}
    return {
        "key": key, "start": start.isoformat(), "end": end.isoformat(), "volume": volume,
        "label_count": label_count,
        "label_share": {head: {code: _round(_share(n, volume)) for code, n in label_count[head].items()} for head in HEADS},
        "mean_confidence": {head: _round(_share(confidence[head], volume)) for head in HEADS},
        "review_rate": _round(_share(sum(bool(r["needs_review"]) for r in rows), volume)),
        "degraded_rate": _round(_share(sum(bool(r["degraded"]) for r in rows), volume)),
        "verdicts": verdicts,
        "correct": correct,
        "accuracy": {head: _round(_share(correct[head], verdicts[head])) for head in HEADS},
        "accuracy_low": {head: _round(intervals[head][0]) for head in HEADS},
        "accuracy_high": {head: _round(intervals[head][1]) for head in HEADS},
        "psi": {head: _round(value) for head, value in drift.items()},
        "psi_flagged": {head: value is not None and value > psi_alert for head, value in drift.items()},
    }


def monitor_report(rows: Iterable[dict], reference_rows: Iterable[dict], *, since: date, until: date,
                   reference: tuple[date, date], timezone_name: str = "Asia/Shanghai",
                   psi_alert: float = PSI_ALERT) -> dict:
    """The report (shape in the module docstring) of the decisions of local dates ``since``..``until``
    (both included) against the reference rows (decided on the local dates of ``reference``). Rows outside
    those dates are left out, so callers may pass a wider window."""
    if until < since:
        raise ValueError(f"the period ends ({until}) before it starts ({since})")
    zone = ZoneInfo(timezone_name)
    by_day: dict[date, list[dict]] = {}
    for row in rows:
        day = local_day(row["decided_at"], zone)
        if since <= day <= until:
            by_day.setdefault(day, []).append(row)
    reference_in = [r for r in reference_rows if reference[0] <= local_day(r["decided_at"], zone) <= reference[1]]
    reference_share = _label_shares(reference_in) if reference_in else None

    days, weeks = [], []
    week_rows: list[dict] = []
    day = since
    week_start = since
    while day <= until:
        day_rows = by_day.get(day, [])
        days.append(_bucket(day.isoformat(), day, day, day_rows, reference_share, psi_alert))
        week_rows.extend(day_rows)
        if day.isoweekday() == 7 or day == until:
            weeks.append(_bucket(iso_week_key(day), week_start, day, week_rows, reference_share, psi_alert))
            week_rows, week_start = [], day + timedelta(days=1)
        day += timedelta(days=1)
    all_rows = [row for d in sorted(by_day) for row in by_day[d]]
    return {
        "timezone": timezone_name,
        "period": {"start": since.isoformat(), "end": until.isoformat()},
        "reference": {"start": reference[0].isoformat(), "end": reference[1].isoformat(), "volume": len(reference_in),
                      "label_share": {head: {code: _round(share) for code, share in shares.items()}
                                      for head, shares in (reference_share or {h: {} for h in HEADS}).items()}},
        "psi_alert": psi_alert,
        "psi_epsilon": PSI_EPSILON,
        "days": days,
        "weeks": weeks,
        "total": _bucket("total", since, until, all_rows, reference_share, psi_alert),
    }


# The figures a page shows, by name: "<bucket>.<field>[.<head>[.<label>]]" where <bucket> is "total",
# "days.<YYYY-MM-DD>" or "weeks.<YYYY-Www>", and the rest is the path inside that bucket of the report.
_SCALAR_FIELDS = ("volume", "review_rate", "degraded_rate")
_HEAD_FIELDS = ("mean_confidence", "verdicts", "correct", "accuracy", "accuracy_low", "accuracy_high", "psi")
_LABEL_FIELDS = ("label_count", "label_share")


def figures(report: dict) -> dict[str, float | int | None]:
    """Every figure of the report by its name, e.g. ``total.accuracy.category``, ``weeks.2026-W47.volume``,
    ``days.2026-11-20.label_share.severity.high``: what a page's ``data-figure`` attributes name."""
    named: dict[str, float | int | None] = {}
    buckets = [("total", report["total"])]
    buckets += [(f"weeks.{b['key']}", b) for b in report["weeks"]] + [(f"days.{b['key']}", b) for b in report["days"]]
    for prefix, bucket in buckets:
        for field in _SCALAR_FIELDS:
            named[f"{prefix}.{field}"] = bucket[field]
        for field in _HEAD_FIELDS:
            for head, value in bucket[field].items():
                named[f"{prefix}.{field}.{head}"] = value
        for field in _LABEL_FIELDS:
            for head, per_label in bucket[field].items():
                for code, value in per_label.items():
                    named[f"{prefix}.{field}.{head}.{code}"] = value
    return named
