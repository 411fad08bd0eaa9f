"""A deadline the customer states in the message ("明天要用", "周五前必须到", "今天下午3点前"), as a moment.

The service never promises a time later than it: the SLA deadlines the answer returns (and so the times in
the suggested reply) are capped at it. Only explicit day words count, next to a word of need or limit
(要用, 前, 之前, 必须, 急, 赶, 等着); a bare date ("明天到的") is not a deadline.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

_CN_DIGITS = {"零": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9, "十": 10}
_WEEKDAYS = {"一": 0, "二": 1, "三": 2, "四": 3, "五": 4, "六": 5, "日": 6, "天": 6}
_NEED = r"(?:之前|以前|前|要用|要穿|要送人|急用|必须|一定要|得到|要到|赶着|等着用|等着)"
_HOUR = r"(?:(上午|早上|中午|下午|晚上)?\s*([0-9]{1,2}|[一二两三四五六七八九十]{1,3})\s*[点:：])?"
_DAY = (r"(今天|今晚|今日|明天|明早|明晚|明日|后天|(?:下)?(?:周|星期|礼拜)([一二三四五六日天])|"
        r"([0-9]{1,2})\s*[号日])")
PATTERN = re.compile(_DAY + r"\s*" + _HOUR + r"\s*(?:的话)?\s*" + _NEED)
DEFAULT_HOUR = 9  # a day named without an hour: the customer needs it by the start of that day


def _number(token: str) -> int | None:
    if token.isdigit():
        return int(token)
    if token == "十":
        return 10
    if token.startswith("十"):
        return 10 + _CN_DIGITS.get(token[1:], 0)
    if token.endswith("十"):
        return _CN_DIGITS.get(token[0], 0) * 10
    if "十" in token:
        tens, ones = token.split("十", 1)
        return _CN_DIGITS.get(tens, 0) * 10 + _CN_DIGITS.get(ones, 0)
    return _CN_DIGITS.get(token)


def stated_deadline(text: str, received_at: datetime) -> datetime | None:
    """The earliest deadline stated in ``text``, in ``received_at``'s timezone; None when there is none or it
    lies before ``received_at``."""
    found: list[datetime] = []
    for m in PATTERN.finditer(text):
        day_word, weekday, date, period, hour_token = m.group(1), m.group(2), m.group(3), m.group(4), m.group(5)
        base = received_at.replace(minute=0, second=0, microsecond=0)
        if day_word in ("今天", "今日", "今晚"):
            day = base
        elif day_word in ("明天", "明早", "明晚", "明日"):
            day = base + timedelta(days=1)
        elif day_word == "后天":
            day = base + timedelta(days=2)
        elif weekday is not None:
            if day_word.startswith("下"):  # next week's day
                day = base + timedelta(days=7 - base.weekday() + _WEEKDAYS[weekday])
            else:  # this week's, or next week's once it has passed
                day = base + timedelta(days=(_WEEKDAYS[weekday] - base.weekday()) % 7)
        else:
            number = int(date)
            if not 1 <= number <= 31:
                continue
            year, month = base.year, base.month
            if number < base.day:
                year, month = (year + 1, 1) if month == 12 else (year, month + 1)
            try:
                day = base.replace(year=year, month=month, day=number)
            except ValueError:
                continue
        hour = _number(hour_token) if hour_token else None
        if hour is None:
            hour = 20 if day_word in ("今晚", "明晚") else DEFAULT_HOUR
        elif (period in ("下午", "晚上") or day_word in ("今晚", "明晚")) and hour < 12:
            hour += 12
        if not 0 <= hour <= 23:
            continue
        moment = day.replace(hour=hour)
        if moment > received_at:
            found.append(moment)
    return min(found) if found else None
