"""Text normalisation applied to every message before the model.

Training, serving and evaluation all call :func:`normalize_text`, so the output must be a pure,
deterministic function of the input (and of the pinned Python / OpenCC versions, see
:func:`normalization_info`). Bump :data:`NORMALIZATION_VERSION` whenever the output for some input
changes; the version is stored with trained models.

Steps, in this order (the order matters, each reason is given):

1. **Invisible characters.** C0/C1 controls that are whitespace (tab, newline, CR, VT, FF,
   U+001C-U+001F, U+0085) become a space; every other control (Cc), format character (Cf: zero-width
   space/non-joiner/joiner, LRM/RLM, bidi embeddings/isolates, U+2060-U+2064, BOM U+FEFF, soft
   hyphen, Unicode tags ...) and lone surrogate (Cs) is deleted. The one exception is U+200D ZERO
   WIDTH JOINER between two emoji ("👨‍👩‍👧"), which is kept so emoji sequences survive.
   Runs first so an invisible character cannot block what later steps do: NFKC composition
   ("e\\u200b\\u0301"), the CJK-space rule ("我\\u200b 的") or OpenCC phrase matching ("乾\\u200b隆").
   Lone surrogates must go before OpenCC, which only accepts valid UTF-8.
2. **Unicode NFKC.** Full-width letters/digits/punctuation become ASCII ("ＡＢＣ１２３" -> "ABC123",
   "，" -> ",", "？" -> "?", "［数字x］" -> "[数字x]"), the ideographic space U+3000 and NBSP become
   U+0020, CJK compatibility ideographs and Kangxi radicals become the unified ideographs OpenCC
   knows. Note NFKC keeps "。", "、", "“”", "【】", "《》" and emoji as they are, and turns "…" into
   "...". Runs before the whitespace steps because it creates spaces, and before OpenCC (see 1).
   NFKC never produces a control or format character (checked over all code points in the tests).
3. **Whitespace.** Every run of whitespace (Python ``str.split()``: ASCII, NBSP, U+2000-U+200A,
   U+2028/U+2029, U+3000 ...) becomes one U+0020; leading/trailing whitespace is stripped.
4. **CJK spaces.** A space between two CJK characters (Han ideographs, CJK symbols and punctuation,
   kana, bopomofo, full-width forms) is removed: the Taobao corpus is word-segmented, and
   "我 的 快递 到 哪 了" becomes "我的快递到哪了". Spaces touching a Latin letter, digit or any other
   character stay ("iPhone 15 Pro", "打 95 折", "[数字x] 耐威克"). Hangul is not CJK here (Korean
   uses spaces between words, and joining conjoining jamo would change NFKC output).
5. **Traditional -> Simplified** with OpenCC ``t2s`` (phrase-level, e.g. "乾隆" stays, "乾杯" ->
   "干杯"), only for texts that contain Traditional characters (see ``_convert``). Runs last, on
   the final character sequence, so its phrase matching sees whole words.
6. **Truncation** to ``max_chars`` characters of the normalised text. The cut never lands inside
   a ``[...]`` placeholder or between an emoji and its joiner/modifier (it moves left to the start of
   that unit), and the truncated text is normalised again until stable so that
   ``normalize(normalize(x)) == normalize(x)`` also holds for cut texts (e.g. a cut "乾隆" -> "乾" -> "干").

OpenCC is only applied to texts holding a character that t2s changes on its own, and repeated
until stable; see ``_convert`` for why. The converter and that character set are built once, on
first use (~50 ms), under a lock. Calls into the converter are serialised with a lock: the binding
holds the GIL during ``convert`` anyway, so the lock costs no parallelism and keeps the code safe
should a future binding release the GIL.

Speed (Python 3.11, one core): about 6-10 µs for a 30-character message, ~0.4 ms for 2,000
characters.

Inputs are not size-limited here: the whole input is normalised before the cut (about 0.15 s per
million characters); the API should bound request sizes.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from dataclasses import dataclass

NORMALIZATION_VERSION = "1"
DEFAULT_MAX_CHARS = 2000

__all__ = [
    "DEFAULT_MAX_CHARS",
    "NORMALIZATION_VERSION",
    "NormalizedText",
    "normalization_info",
    "normalize",
    "normalize_text",
    "to_simplified",
    "visible_text_pattern",
]


@dataclass(frozen=True)
class NormalizedText:
    text: str
    truncated: bool  # True when max_chars cut it
    original_length: int  # len() of the input before normalisation


# --------------------------------------------------------------------------------------------
# Character tables (built once at import, ~20 ms)
# --------------------------------------------------------------------------------------------

_ZWJ = "\u200d"
# Controls that separate words: turned into a space rather than deleted.
_WHITESPACE_CONTROLS = frozenset("\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f\x85")
# All Cc/Cf code points lie below U+20000 or in U+E0000-U+E0FFF (Unicode 14, Python 3.11);
# tests/test_text_normalization.py checks this over the full code-point range.
_SCAN_RANGES = (range(0x20000), range(0xE0000, 0xE1000))


def _build_translate_table() -> dict[int, str | None]:
    table: dict[int, str | None] = {}
    for rng in _SCAN_RANGES:
        for cp in rng:
            if unicodedata.category(chr(cp)) in ("Cc", "Cf"):
                table[cp] = " " if chr(cp) in _WHITESPACE_CONTROLS else None
    for cp in range(0xD800, 0xE000):  # lone surrogates (Cs)
        table[cp] = None
    del table[ord(_ZWJ)]  # handled separately, in emoji context
    return table


def _char_class(codepoints: set[int]) -> str:
    """Regex character class body for a set of code points (contiguous runs as ranges)."""
    parts: list[str] = []
    cps = sorted(codepoints)
    i = 0
    while i < len(cps):
        j = i
        while j + 1 < len(cps) and cps[j + 1] == cps[j] + 1:
            j += 1
        lo, hi = cps[i], cps[j]
        parts.append(re.escape(chr(lo)) if lo == hi else f"{re.escape(chr(lo))}-{re.escape(chr(hi))}")
        i = j + 1
    return "".join(parts)


_TRANSLATE = _build_translate_table()
_INVISIBLE_RE = re.compile("[" + _char_class(set(_TRANSLATE)) + "]")

# Emoji that may sit around a ZWJ. Only NFKC-stable characters qualify (™, ℹ, ‼, ㊗ ... are
# excluded) so that a ZWJ kept here is still between two emoji after NFKC (idempotence).
_EMOJI_RANGES = (
    (0x00A9, 0x00A9), (0x00AE, 0x00AE), (0x203C, 0x203C), (0x2049, 0x2049), (0x2122, 0x2122),
    (0x2139, 0x2139), (0x2194, 0x21FF), (0x2300, 0x23FF), (0x24C2, 0x24C2), (0x25A0, 0x27BF),
    (0x2900, 0x297F), (0x2B00, 0x2BFF), (0x3030, 0x3030), (0x303D, 0x303D), (0x3297, 0x3297),
    (0x3299, 0x3299), (0x1F000, 0x1FAFF),
)
_EMOJI = {
    cp
    for lo, hi in _EMOJI_RANGES
    for cp in range(lo, hi + 1)
    if unicodedata.normalize("NFKC", chr(cp)) == chr(cp) and unicodedata.category(chr(cp)) != "Cn"
}
_EMOJI_CLASS = _char_class(_EMOJI)
# A ZWJ may also follow the emoji presentation selector U+FE0F ("❤️‍🔥").
_EMOJI_LEFT_CLASS = _EMOJI_CLASS + "\ufe0f"
_STRAY_ZWJ_RE = re.compile(f"(?<![{_EMOJI_LEFT_CLASS}])\u200d|\u200d(?![{_EMOJI_CLASS}])")

_CJK_RANGES = (
    (0x2E80, 0x2FDF),  # CJK radicals supplement, Kangxi radicals
    (0x3001, 0x303F),  # CJK symbols and punctuation (U+3000 is a space, NFKC maps it)
    (0x3040, 0x30FF),  # hiragana, katakana
    (0x3100, 0x312F),  # bopomofo
    (0x3190, 0x31FF),  # kanbun, bopomofo extended, CJK strokes, katakana phonetic ext.
    (0x3200, 0x33FF),  # enclosed CJK, CJK compatibility
    (0x3400, 0x4DBF),  # ext. A
    (0x4E00, 0x9FFF),  # unified ideographs
    (0xF900, 0xFAFF),  # compatibility ideographs
    (0xFE10, 0xFE1F),  # vertical forms
    (0xFE30, 0xFE4F),  # CJK compatibility forms
    (0xFF01, 0xFF60),  # full-width forms (NFKC maps them; listed so the rule does not rely on it)
    (0xFF61, 0xFF9F),  # half-width CJK punctuation and katakana
    (0x20000, 0x3FFFF),  # ext. B - H, compatibility supplement
)
_CJK_CLASS = "".join(
    re.escape(chr(lo)) if lo == hi else f"{re.escape(chr(lo))}-{re.escape(chr(hi))}" for lo, hi in _CJK_RANGES
)
_CJK_SPACE_RE = re.compile(f"(?<=[{_CJK_CLASS}]) (?=[{_CJK_CLASS}])")

# A masked placeholder such as [数字x], [金额x], [ORDERID_10086]: never cut inside one.
_PLACEHOLDER_RE = re.compile(r"\[[^\[\]\s]{1,40}\]")
_PLACEHOLDER_MAX = 42
# Characters that continue the preceding character (a cut before them is moved left).
_EXTENDERS = frozenset(["\u200d", "\u20e3", *map(chr, range(0xFE00, 0xFE10)), *map(chr, range(0x1F3FB, 0x1F400))])
_MAX_BACKOFF = 16


# --------------------------------------------------------------------------------------------
# OpenCC
# --------------------------------------------------------------------------------------------

_OPENCC_CONFIG = "t2s"
# Recent OpenCC releases (1.4.2 here) can map rare Traditional characters to rare Simplified ones
# that fonts and tokenisers lack ("tofu"); we keep the original character instead.
_OPENCC_TOFU_RISK = False
# Code points where single characters can change under t2s (checked over all of Unicode in the
# tests; U+F900-U+FAFF is covered although NFKC has already mapped those).
_T2S_SCAN_RANGES = ((0x3400, 0x9FFF), (0xF900, 0xFAFF), (0x20000, 0x323AF))
_t2s_state: tuple[object, frozenset[str]] | None = None
_init_lock = threading.Lock()
_convert_lock = threading.Lock()


def _make_converter():
    import opencc

    try:
        return opencc.OpenCC(_OPENCC_CONFIG, include_tofu_risk_dictionaries=_OPENCC_TOFU_RISK)
    except TypeError:  # older opencc releases have no such option (nor those dictionaries)
        return opencc.OpenCC(_OPENCC_CONFIG)


def _get_t2s() -> tuple[object, frozenset[str]]:
    """The converter and the set of characters it changes on their own, built once (~40 ms)."""
    global _t2s_state
    state = _t2s_state
    if state is None:
        with _init_lock:
            if _t2s_state is None:
                conv = _make_converter()
                chars = [chr(cp) for lo, hi in _T2S_SCAN_RANGES for cp in range(lo, hi + 1)]
                converted = conv.convert("\n".join(chars)).split("\n")
                if len(converted) != len(chars):  # pragma: no cover - would be an OpenCC change
                    raise RuntimeError("OpenCC changed the number of lines while scanning t2s characters")
                changing = frozenset(c for c, o in zip(chars, converted) if o != c)
                _t2s_state = (conv, changing)
            state = _t2s_state
    return state


def _convert(text: str) -> str:
    """Gated, repeated t2s.

    * Texts without any character that t2s changes on its own are returned unchanged: t2s assumes
      Traditional input and some of its phrase rules damage Simplified text ("万一坏了" -> "万一坯了",
      "说明覆盖" -> "说明复盖"); almost all our messages are Simplified. This is also the fast path.
    * t2s is not idempotent ("薴" -> "苧" -> "苎"), so it is applied again while its output still
      holds such characters and still changes (at most 3 rounds), which makes the result stable.
    """
    conv, changing = _get_t2s()
    if changing.isdisjoint(text):
        return text
    for _ in range(3):
        with _convert_lock:
            out = conv.convert(text)
        if out == text or changing.isdisjoint(out):
            return out
        text = out
    return text


def to_simplified(text: str) -> str:
    """Traditional -> Simplified Chinese with OpenCC ``t2s`` (phrase level), gated and repeated as
    described in :func:`_convert`. Only the conversion: no other normalisation. Lone surrogates
    (not encodable as UTF-8) are removed first."""
    if not isinstance(text, str):
        raise TypeError(f"to_simplified() expects str, got {type(text).__name__}")
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = _SURROGATE_RE.sub("", text)
    return _convert(text)


_SURROGATE_RE = re.compile("[\ud800-\udfff]")


def normalization_info() -> dict[str, str]:
    """What the output depends on, to store next to NORMALIZATION_VERSION with a trained model."""
    import opencc

    return {
        "normalization_version": NORMALIZATION_VERSION,
        "unicodedata_version": unicodedata.unidata_version,
        "opencc_version": str(opencc.__version__),
        "opencc_config": _OPENCC_CONFIG,
        "opencc_tofu_risk_dictionaries": str(_OPENCC_TOFU_RISK),
    }


def visible_text_pattern() -> str:
    """A regular expression that a text matches exactly when :func:`normalize_text` leaves something of it:
    one character that is neither deleted in step 1 (Cc, Cf, a stray ZWJ) nor whitespace.

    For the API contract (JSON Schema ``pattern``), so the same source as Python's ``re``: BMP code points are
    written ``\\uXXXX``, the few astral ones (Cf: tags, Egyptian format controls ...) as themselves, which
    ECMA-262 in Unicode mode reads alike. Lone surrogates, which step 1 deletes too, are left out: a JSON
    Schema string cannot hold one.
    """
    vanishing = {cp for cp in _TRANSLATE if not 0xD800 <= cp <= 0xDFFF} | {ord(_ZWJ)}
    vanishing |= {cp for cp in range(0x3000 + 1) if chr(cp).isspace()}  # the last whitespace is U+3000
    return "[^" + code_point_ranges(vanishing) + "]"


def code_point_ranges(code_points) -> str:
    """The inside of a regular-expression character class holding exactly ``code_points`` (no surrogates), as
    runs ``a-b``: BMP code points written ``\\uXXXX``, astral ones as themselves, so that Python's ``re`` and
    ECMA-262 in Unicode mode (JSON Schema ``pattern``) read it alike."""
    def char(cp: int) -> str:
        return f"\\u{cp:04x}" if cp <= 0xFFFF else chr(cp)

    parts, cps, i = [], sorted(code_points), 0
    while i < len(cps):
        j = i
        while j + 1 < len(cps) and cps[j + 1] == cps[j] + 1:
            j += 1
        parts.append(char(cps[i]) if i == j else f"{char(cps[i])}-{char(cps[j])}")
        i = j + 1
    return "".join(parts)


# --------------------------------------------------------------------------------------------
# Pipeline
# --------------------------------------------------------------------------------------------


def _pipeline(text: str) -> str:
    """Steps 1-5 (everything but truncation)."""
    if _INVISIBLE_RE.search(text) is not None:
        text = text.translate(_TRANSLATE)
    if _ZWJ in text:
        text = _STRAY_ZWJ_RE.sub("", text)
    if text.isascii():
        # ASCII is NFKC-stable and has neither CJK nor Traditional characters.
        return " ".join(text.split())
    text = unicodedata.normalize("NFKC", text)
    text = " ".join(text.split())
    if " " in text:
        text = _CJK_SPACE_RE.sub("", text)
    return _convert(text)


def _cut_position(text: str, limit: int) -> int:
    """Where to cut ``text`` (longer than ``limit``) so no placeholder or emoji unit is split."""
    cut = limit
    start = text.rfind("[", max(0, cut - _PLACEHOLDER_MAX), cut)
    if start != -1:
        m = _PLACEHOLDER_RE.match(text, start)
        if m is not None and m.end() > cut:
            cut = start
    floor = max(0, cut - _MAX_BACKOFF)
    pos = cut
    while pos > floor and (text[pos] in _EXTENDERS or text[pos - 1] == _ZWJ or unicodedata.combining(text[pos])):
        pos -= 1
    if pos > floor or not (text[pos] in _EXTENDERS or unicodedata.combining(text[pos])):
        cut = pos
    return cut


def normalize_text(text: str, max_chars: int | None = DEFAULT_MAX_CHARS) -> NormalizedText:
    """Normalise ``text`` (see the module docstring) and cut it to ``max_chars`` characters.

    Empty or whitespace-only input gives ``text == ""``; callers decide whether to reject it.
    ``max_chars=None`` disables truncation.
    """
    if not isinstance(text, str):
        raise TypeError(f"normalize_text() expects str, got {type(text).__name__}")
    if max_chars is not None:
        if isinstance(max_chars, bool) or not isinstance(max_chars, int):
            raise TypeError(f"max_chars must be an int or None, got {type(max_chars).__name__}")
        if max_chars < 0:
            raise ValueError(f"max_chars must be >= 0, got {max_chars}")
    original_length = len(text)
    out = _pipeline(text)
    truncated = False
    if max_chars is not None and len(out) > max_chars:
        truncated = True
        # Re-normalise the cut text until it is a fixed point (a cut can split an OpenCC phrase
        # or leave a trailing space); converges in one or two rounds in practice.
        for _ in range(8):
            if len(out) > max_chars:
                out = out[: _cut_position(out, max_chars)]
            again = _pipeline(out)
            if again == out:
                break
            out = again
        else:  # pragma: no cover - defensive, never observed
            out = out[:max_chars].rstrip()
    return NormalizedText(text=out, truncated=truncated, original_length=original_length)


def normalize(text: str) -> str:
    """Shorthand for ``normalize_text(text).text`` (default ``max_chars``)."""
    return normalize_text(text).text
