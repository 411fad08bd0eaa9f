"""PII masking for logs and exported data.

:func:`find_pii` returns the PII spans of a text (offsets into the text as given), :func:`mask_pii`
replaces each span with a fixed token:

==========  ==============  ====================================================================
kind        token           what
==========  ==============  ====================================================================
mobile      ``[手机号]``    mainland mobile 1[3-9]x + 8 digits, optional ``+86``/``0086``/``86``/``(+86)``
                            prefix, optional single space/dash separators (``138-1234-5678``)
id_card     ``[身份证号]``  18-character resident ID: region, birth date 18xx-20xx, sequence, check
                            character (digit or X/x) and a valid ISO 7064 MOD 11-2 checksum
email       ``[邮箱]``      ``local@domain.tld``
order_id    ``[订单号]``    the corpus placeholder ``[ORDERID_…]``; an id after 订单号/订单/单号/
                            运单号/快递单号/物流单号/订单编号 (optional ``:`` ``#`` ``是`` spaces):
                            6-40 letters/digits/``-``/``_`` with at least 4 digits, not a date;
                            any other run of >= 10 digits not claimed by another kind
bank_card   ``[银行卡号]``  16-19 digits written in groups of 4 (``6222 0212 3456 7890``), or an
                            ungrouped run of 16-19 digits that passes the Luhn check
==========  ==============  ====================================================================

Decisions:

* Every digit pattern has digit boundaries: digits inside a longer digit run never produce a
  partial mask (``213812345678`` is one 12-digit run, masked whole as an order id).
* Any run of >= 10 digits is masked (as ``order_id`` unless a more specific kind claims it), so the
  ID checksum and the Luhn check only choose the *label*, never whether digits are masked. An
  18-digit number with a wrong ID checksum becomes ``[订单号]``; 17 digits + ``X`` with a wrong
  checksum becomes ``[订单号]X``. 15-digit (pre-1999) IDs are masked as ``[订单号]``.
  Ungrouped 16-19 digit runs are ambiguous (Taobao order numbers are 18-19 digits): Luhn-valid ones
  are labelled bank cards, so about 1 in 10 random order numbers is labelled ``[银行卡号]``.
* Not masked: numbers under 10 digits that fit no pattern (prices, 6-digit codes, dates such as
  2024-05-01), 11-digit numbers not starting with 13-19 are not mobiles (but are >= 10 digits, so
  they become ``[订单号]``), landlines, QQ numbers, names and addresses.
* Overlapping candidates: the longest span wins; equal length goes to the more specific kind
  (placeholder > email > keyword order id > ID card > mobile > grouped bank card > digit run),
  then the earlier start. Deterministic.
* Works on raw or normalised text: matching runs on a folded copy (full-width ASCII and every
  Unicode decimal digit to ASCII, Unicode spaces to U+0020, dash variants to ``-``, invisible
  format/control characters skipped), offsets map back to the original text, and an invisible
  character inside a match is masked with it (``138\\u200b1234\\u200b5678``).
* Idempotent: the tokens contain no digits, letters or ``@``, and the search is repeated with the
  found spans masked until it finds nothing more (see ``_find_spans``), so nothing in a masked text
  matches.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

__all__ = ["PII_TOKENS", "PiiMatch", "find_pii", "mask_pii"]

PII_TOKENS: dict[str, str] = {
    "mobile": "[手机号]",
    "id_card": "[身份证号]",
    "email": "[邮箱]",
    "order_id": "[订单号]",
    "bank_card": "[银行卡号]",
}


@dataclass(frozen=True)
class PiiMatch:
    kind: str
    start: int
    end: int


# --------------------------------------------------------------------------------------------
# Folding: a same-length (per kept character) ASCII-ish view of the text for matching.
# --------------------------------------------------------------------------------------------


def _build_fold_table() -> dict[int, str]:
    table: dict[int, str] = {}
    for cp in range(0x80, 0x20000):  # every Nd code point lies below U+20000 (checked in tests)
        d = unicodedata.decimal(chr(cp), None)
        if d is not None:
            table[cp] = str(d)
    for cp in range(0xFF01, 0xFF5F):  # full-width ASCII
        table[cp] = chr(cp - 0xFEE0)
    for ch in "\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u202f\u205f\u3000\t":
        table[ord(ch)] = " "
    for ch in "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63":
        table[ord(ch)] = "-"
    table[0xFE6B] = "@"  # small commercial at
    table[0xFF3F] = "_"
    return table


_FOLD = _build_fold_table()
# Invisible characters skipped while matching (format characters; controls that are not whitespace).
_INVISIBLE_RE = re.compile(
    r"[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e"
    r"\u2060-\u2064\u2066-\u206f\ufeff\U000e0000-\U000e007f]"
)
# Quick reject: no digit of any script, no @, no placeholder -> nothing to find.
_MAYBE_PII_RE = re.compile(r"[\d@\uff20\ufe6b]|ORDERID|ＯＲＤＥＲＩＤ", re.IGNORECASE)


def _fold(text: str) -> tuple[str, list[int] | None]:
    """Folded text and, when invisible characters were skipped, the original index of each char."""
    folded = text.translate(_FOLD)
    if _INVISIBLE_RE.search(folded) is None:
        return folded, None
    kept = [(i, ch) for i, ch in enumerate(folded) if not _INVISIBLE_RE.match(ch)]
    return "".join(ch for _, ch in kept), [i for i, _ in kept]


# --------------------------------------------------------------------------------------------
# Patterns (on the folded text; ASCII classes only)
# --------------------------------------------------------------------------------------------

_PLACEHOLDER_RE = re.compile(r"\[ORDERID_[^\[\]\s]{0,40}\]", re.IGNORECASE)
_EMAIL_RE = re.compile(
    r"(?<![A-Za-z0-9._%+\-])[A-Za-z0-9][A-Za-z0-9._%+\-]{0,63}"
    r"@[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?)*\.[A-Za-z]{2,24}(?![A-Za-z0-9\-])"
)
_MOBILE_RE = re.compile(
    r"(?<![0-9])(?:(?:\((?:\+|00)?86\)|(?:\+|00)?86)[ \-]?)?1[3-9][0-9](?:[ \-]?[0-9]{4}){2}(?![0-9])"
)
_ID_CARD_RE = re.compile(
    r"(?<![0-9])[1-9][0-9]{5}(?:18|19|20)[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])[0-9]{3}[0-9Xx](?![0-9])"
)
_BANK_GROUPED_RE = re.compile(r"(?<![0-9])[0-9]{4}(?:[ \-][0-9]{4}){3}(?:[ \-]?[0-9]{1,3})?(?![0-9])")
_DIGIT_RUN_RE = re.compile(r"(?<![0-9])[0-9]{10,}(?![0-9])")
_ORDER_KEYWORD_RE = re.compile(
    r"(?:订单编号|订单号码|订单号|运单号码|运单号|快递单号|物流单号|单号|订单"
    r"|訂單編號|訂單號碼|訂單號|運單號碼|運單號|快遞單號|物流單號|單號|訂單)"
    r" {0,3}(?:[:#] {0,3})?(?:是|为|為)? {0,3}(?:[:#] {0,3})?"
    r"([A-Za-z0-9](?:[A-Za-z0-9_\-]{0,38}[A-Za-z0-9])?)(?![A-Za-z0-9_\-])"
)
_ANY_DIGIT_RE = re.compile(r"[0-9]")
_DATE_LIKE_RE = re.compile(r"[0-9]{2,4}[\-_][0-9]{1,2}[\-_][0-9]{1,2}")

# Specificity for equal-length overlaps (higher wins).
_P_PLACEHOLDER, _P_EMAIL, _P_KEYWORD, _P_ID, _P_MOBILE, _P_BANK_GROUPED, _P_DIGITS = 7, 6, 5, 4, 3, 2, 1

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def _id_checksum_ok(s: str) -> bool:
    total = sum(int(c) * w for c, w in zip(s[:17], _ID_WEIGHTS))
    return _ID_CHECK[total % 11] == s[17].upper()


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, c in enumerate(reversed(digits)):
        d = ord(c) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _candidates(f: str) -> list[tuple[int, int, str, int]]:
    cands: list[tuple[int, int, str, int]] = []
    add = cands.append
    if "[" in f:
        for m in _PLACEHOLDER_RE.finditer(f):
            add((m.start(), m.end(), "order_id", _P_PLACEHOLDER))
    if "@" in f:
        for m in _EMAIL_RE.finditer(f):
            add((m.start(), m.end(), "email", _P_EMAIL))
    if _ANY_DIGIT_RE.search(f) is None:
        return cands
    if "单" in f or "單" in f:
        for m in _ORDER_KEYWORD_RE.finditer(f):
            value = m.group(1)
            if len(value) >= 6 and sum(c.isdigit() for c in value) >= 4 and not _DATE_LIKE_RE.fullmatch(value):
                add((m.start(1), m.end(1), "order_id", _P_KEYWORD))
    for m in _ID_CARD_RE.finditer(f):
        if _id_checksum_ok(m.group()):
            add((m.start(), m.end(), "id_card", _P_ID))
    for m in _MOBILE_RE.finditer(f):
        add((m.start(), m.end(), "mobile", _P_MOBILE))
    for m in _BANK_GROUPED_RE.finditer(f):
        add((m.start(), m.end(), "bank_card", _P_BANK_GROUPED))
    for m in _DIGIT_RUN_RE.finditer(f):
        digits = m.group()
        kind = "bank_card" if 16 <= len(digits) <= 19 and _luhn_ok(digits) else "order_id"
        add((m.start(), m.end(), kind, _P_DIGITS))
    return cands


def _resolve(cands: list[tuple[int, int, str, int]]) -> list[tuple[int, int, str]]:
    """Longest first, then most specific, then earliest; drop anything overlapping a kept span."""
    kept: list[tuple[int, int, str]] = []
    for start, end, kind, _ in sorted(cands, key=lambda c: (c[0] - c[1], -c[3], c[0])):
        if all(end <= s or start >= e for s, e, _ in kept):
            kept.append((start, end, kind))
    return kept


_MAX_PASSES = 8


def _find_spans(folded: str) -> list[tuple[int, int, str]]:
    """Resolved spans, repeated until nothing new is found.

    A candidate can lose to an overlapping one and a lookaround can fail because of a neighbour
    ("a@qq.com138..." is no e-mail while digits follow ".com"); once the neighbour is masked it
    would match, and ``mask_pii`` would not be idempotent. So accepted spans are replaced by a
    same-length stand-in for the token ("[号…号]": bracketed, no digits, letters or "@", exactly
    like the real tokens for every pattern here) and the search runs again until it finds nothing.
    Every round masks more ASCII letters/digits, so this ends; in practice after 1-2 rounds.
    """
    spans: list[tuple[int, int, str]] = []
    for _ in range(_MAX_PASSES):
        new = _resolve(_candidates(folded))
        if not new:
            break
        spans.extend(new)
        chars = list(folded)
        for start, end, _ in new:
            chars[start:end] = "[" + "号" * (end - start - 2) + "]"
        folded = "".join(chars)
    spans.sort()
    return spans


def find_pii(text: str) -> list[PiiMatch]:
    """PII spans in ``text``, sorted by start, non-overlapping; offsets index ``text`` itself."""
    if not isinstance(text, str):
        raise TypeError(f"find_pii() expects str, got {type(text).__name__}")
    if _MAYBE_PII_RE.search(text) is None:
        return []
    folded, index = _fold(text)
    spans = _find_spans(folded)
    if index is None:
        return [PiiMatch(kind, start, end) for start, end, kind in spans]
    return [PiiMatch(kind, index[start], index[end - 1] + 1) for start, end, kind in spans]


def mask_pii(text: str) -> str:
    """``text`` with every :func:`find_pii` span replaced by its :data:`PII_TOKENS` token."""
    matches = find_pii(text)
    if not matches:
        return text
    parts: list[str] = []
    pos = 0
    for m in matches:
        parts.append(text[pos : m.start])
        parts.append(PII_TOKENS[m.kind])
        pos = m.end
    parts.append(text[pos:])
    return "".join(parts)
