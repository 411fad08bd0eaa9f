import random
import sys
import threading
import unicodedata

import pytest

from helpdesk_triage.policy import text_normalization as tn
from helpdesk_triage.policy.text_normalization import (
    DEFAULT_MAX_CHARS,
    NORMALIZATION_VERSION,
    NormalizedText,
    normalization_info,
    normalize,
    normalize_text,
    to_simplified,
)

ZWJ = "\u200d"


# ------------------------------------------------------------------------------- API basics


def test_public_constants_and_result_type():
    assert NORMALIZATION_VERSION == "1"
    assert DEFAULT_MAX_CHARS == 2000
    r = normalize_text("你好")
    assert r == NormalizedText(text="你好", truncated=False, original_length=2)
    with pytest.raises(Exception):
        r.text = "x"  # frozen


def test_normalize_is_shorthand():
    s = "　這個 產品\u200b太差了！！"
    assert normalize(s) == normalize_text(s).text


@pytest.mark.parametrize("bad", [None, b"abc", 123, 1.5, ["a"], bytearray(b"a")])
def test_non_str_raises_type_error(bad):
    with pytest.raises(TypeError, match="expects str"):
        normalize_text(bad)
    with pytest.raises(TypeError, match="expects str"):
        normalize(bad)
    with pytest.raises(TypeError, match="expects str"):
        to_simplified(bad)


@pytest.mark.parametrize("bad", ["10", 1.0, True])
def test_bad_max_chars_type(bad):
    with pytest.raises(TypeError, match="max_chars"):
        normalize_text("abc", max_chars=bad)


def test_negative_max_chars():
    with pytest.raises(ValueError, match="max_chars"):
        normalize_text("abc", max_chars=-1)


@pytest.mark.parametrize("s", ["", " ", "\t\n\r ", "\u3000\u3000", "\u200b\ufeff\u200d", "\x00\x01\x7f", "\u00a0\u2028"])
def test_empty_and_whitespace_only_give_empty_text(s):
    r = normalize_text(s)
    assert r.text == ""
    assert r.truncated is False
    assert r.original_length == len(s)


def test_normalization_info():
    info = normalization_info()
    assert info["normalization_version"] == NORMALIZATION_VERSION
    assert info["unicodedata_version"] == unicodedata.unidata_version
    assert info["opencc_config"] == "t2s"
    assert info["opencc_version"]


# ------------------------------------------------------------------------------- NFKC


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("ＡＢＣ１２３", "ABC123"),
        ("ｉＰｈｏｎｅ　１５　Ｐｒｏ", "iPhone 15 Pro"),
        ("价格：９９元！", "价格:99元!"),
        ("什么时候发货？", "什么时候发货?"),
        ("（急）", "(急)"),
        ("＃Ｅ－ｓ", "#E-s"),
        ("ｈｔｔｐｓ：／／ｊｄ．ｃｏｍ", "https://jd.com"),
        ("５０％", "50%"),
        ("ｶﾀｶﾅ", "カタカナ"),  # half-width katakana become full-width
        ("①②③", "123"),
        ("㎏", "kg"),
        ("\ufa0c", "\u5140"),  # CJK compatibility ideograph -> unified
        ("\uf900", "岂"),  # compatibility 豈 -> unified 豈 -> Simplified 岂
        ("\u2f00", "一"),  # Kangxi radical one -> unified ideograph
    ],
)
def test_nfkc_full_width_and_compatibility_forms(raw, expected):
    assert normalize(raw) == expected


def test_chinese_punctuation_after_nfkc():
    # NFKC maps the full-width comma/question/exclamation marks to ASCII but keeps 。、“”【】《》
    assert normalize("好的，谢谢。") == "好的,谢谢。"
    assert normalize("“快递”、【急】《说明书》") == "“快递”、【急】《说明书》"
    assert normalize("等了好久……") == "等了好久......"


# ------------------------------------------------------------------------------- invisible chars


@pytest.mark.parametrize(
    "ch",
    [
        "\u200b", "\u200c", "\u200d", "\u200e", "\u200f",  # zero width space/non-joiner/joiner, LRM, RLM
        "\u2060", "\u2061", "\u2062", "\u2063", "\u2064",  # word joiner, invisible operators
        "\ufeff",  # BOM / zero width no-break space
        "\u202a", "\u202b", "\u202c", "\u202d", "\u202e",  # bidi embeddings / overrides
        "\u2066", "\u2067", "\u2068", "\u2069",  # bidi isolates
        "\u061c", "\u00ad", "\u180e",  # arabic letter mark, soft hyphen, mongolian vowel separator
        "\x00", "\x01", "\x07", "\x08", "\x1b", "\x7f",  # C0 controls and DEL
        "\x80", "\x9f",  # C1 controls
        "\U000e0001", "\U000e0041",  # language tag, tag letter
    ],
)
def test_invisible_characters_are_removed(ch):
    assert normalize(f"我{ch}的快递") == "我的快递"
    assert normalize(f"ab{ch}cd") == "abcd"
    assert normalize(f"{ch}退货{ch}") == "退货"


@pytest.mark.parametrize("ch", ["\t", "\n", "\r", "\x0b", "\x0c", "\x1c", "\x1f", "\x85", "\u2028", "\u2029"])
def test_whitespace_controls_become_spaces(ch):
    assert normalize(f"hello{ch}world") == "hello world"
    assert normalize(f"hello{ch}{ch} {ch}world{ch}") == "hello world"


def test_lone_surrogates_are_removed_without_error():
    assert normalize("退\ud800货\udfff") == "退货"
    assert to_simplified("這\udc00個") == "这个"


def test_invisible_char_does_not_block_later_steps():
    assert normalize("e\u200b\u0301") == "\u00e9"  # NFKC composes once the ZWSP is gone
    assert normalize("我\u200b 的 快递") == "我的快递"  # CJK-space rule sees both CJK chars
    assert normalize("退\u200b貨") == "退货"


def test_all_control_and_format_chars_are_in_the_scanned_ranges():
    scanned = {cp for rng in tn._SCAN_RANGES for cp in rng}
    missing = [
        hex(cp)
        for cp in range(sys.maxunicode + 1)
        if unicodedata.category(chr(cp)) in ("Cc", "Cf") and cp not in scanned
    ]
    assert missing == []


def test_nfkc_never_produces_control_or_format_chars():
    bad = []
    for cp in range(sys.maxunicode + 1):
        if 0xD800 <= cp < 0xE000:
            continue
        ch = chr(cp)
        out = unicodedata.normalize("NFKC", ch)
        if out != ch and any(unicodedata.category(c) in ("Cc", "Cf", "Cs") for c in out):
            bad.append(hex(cp))
    assert bad == []


# ------------------------------------------------------------------------------- whitespace


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("  hello   world  ", "hello world"),
        ("a\u3000\u3000b", "a b"),
        ("a\u00a0b", "a b"),
        ("a\u2002\u2003\u2009b", "a b"),
        ("a \t \n b", "a b"),
        ("\n\n退货\n\n", "退货"),
    ],
)
def test_whitespace_collapse_and_strip(raw, expected):
    assert normalize(raw) == expected


# ------------------------------------------------------------------------------- CJK spaces


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("我 的 快递 到 哪 了", "我的快递到哪了"),
        ("帮 我 改 一下 快递费 吧", "帮我改一下快递费吧"),
        ("买二送 一是 坚果 类产品 呢", "买二送一是坚果类产品呢"),
        ("你好 。 在 吗", "你好。在吗"),  # 。 is CJK punctuation
        ("日本 の 商品", "日本の商品"),  # kana count as CJK
        ("我\u3000的", "我的"),
        ("我    的", "我的"),
    ],
)
def test_space_between_cjk_is_removed(raw, expected):
    assert normalize(raw) == expected


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("iPhone 15 Pro", "iPhone 15 Pro"),
        ("买了 iPhone 15 Pro 屏幕 坏了", "买了 iPhone 15 Pro 屏幕坏了"),
        ("打 95 折 的 商品", "打 95 折的商品"),
        ("亲 现在 只要 收藏 本店 100 片防溢 乳垫", "亲现在只要收藏本店 100 片防溢乳垫"),
        ("[数字x] 耐威克", "[数字x] 耐威克"),
        ("退货 , 谢谢", "退货 , 谢谢"),
        ("在 吗 ？", "在吗 ?"),  # NFKC turns ？ into ASCII ?, which is not CJK
        ("안녕 하세요", "안녕 하세요"),  # Hangul keeps its spaces
        ("hello world", "hello world"),
    ],
)
def test_space_next_to_non_cjk_is_kept(raw, expected):
    assert normalize(raw) == expected


# ------------------------------------------------------------------------------- Traditional -> Simplified


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("這個產品質量太差了，我要退貨", "这个产品质量太差了,我要退货"),
        ("請問什麼時候發貨？", "请问什么时候发货?"),
        ("客服態度很差，我要投訴！", "客服态度很差,我要投诉!"),
        ("謝謝，東西已經收到了", "谢谢,东西已经收到了"),
        ("頭髮乾燥", "头发干燥"),
        ("乾隆皇帝", "乾隆皇帝"),  # phrase-level: 乾 is not always 干
        ("為什麼還沒有發貨", "为什么还没有发货"),
        ("這 個 產品", "这个产品"),  # segmented traditional text
    ],
)
def test_traditional_to_simplified(raw, expected):
    assert normalize(raw) == expected


@pytest.mark.parametrize(
    "s",
    [
        "这个产品质量太差了,我要退货",
        "万一坏了怎么办",  # plain t2s would give 万一坯了
        "说明覆盖上去的",  # plain t2s would give 说明复盖
        "快递到哪了",
        "",
    ],
)
def test_simplified_text_is_left_alone(s):
    assert to_simplified(s) == s
    assert normalize(s) == s


def test_t2s_is_applied_until_stable():
    # OpenCC t2s maps 薴 -> 苧 and 苧 -> 苎; one pass would not be idempotent.
    assert to_simplified("薴") == to_simplified(to_simplified("薴"))
    assert normalize("薴") == normalize(normalize("薴"))


def test_to_simplified_only_converts():
    assert to_simplified("這 個\u3000ＡＢＣ") == "这 个\u3000ＡＢＣ"
    assert to_simplified("ascii only") == "ascii only"


def test_every_char_t2s_changes_is_in_the_scanned_ranges():
    conv, changing = tn._get_t2s()
    cps = [cp for cp in range(sys.maxunicode + 1) if not 0xD800 <= cp < 0xE000 and cp not in (0x0A, 0x0D)]
    out = conv.convert("\n".join(chr(cp) for cp in cps)).split("\n")
    assert len(out) == len(cps)
    changed = {chr(cp) for cp, o in zip(cps, out) if o != chr(cp)}
    assert changed == set(changing)


def test_concurrent_use_matches_serial():
    texts = [f"這個產品第{i}次壞了，我要退貨 {i}" for i in range(200)]
    texts += [f"我 的 快递 {i} 到 哪 了" for i in range(200)]
    expected = [normalize(t) for t in texts]
    results: dict[int, list[str]] = {}

    def work(k: int) -> None:
        results[k] = [normalize(t) for t in texts]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(results[k] == expected for k in range(8))


# ------------------------------------------------------------------------------- emoji, placeholders


@pytest.mark.parametrize(
    "s",
    [
        "太好了😀",
        "👍👍👍",
        "点赞👍🏽",  # skin tone modifier
        "一家人👨\u200d👩\u200d👧",  # ZWJ sequence keeps its joiners
        "❤\ufe0f\u200d🔥",  # heart on fire: VS16 + ZWJ
        "国旗🇨🇳",  # regional indicators
        "按1\ufe0f\u20e3",  # keycap
        "❤️好评",
    ],
)
def test_emoji_are_preserved(s):
    assert normalize(s) == s


def test_stray_zero_width_joiner_is_removed():
    assert normalize("a\u200db") == "ab"
    assert normalize("😀\u200d好") == "😀好"
    assert normalize("好\u200d😀") == "好😀"
    assert normalize("😀\u200d") == "😀"
    # ™ becomes "TM" under NFKC, so it does not count as an emoji next to a ZWJ
    assert normalize("™\u200d😀") == "TM😀"


@pytest.mark.parametrize(
    "s",
    [
        "[数字x]",
        "[金额x]",
        "[姓名x]",
        "[日期x]",
        "[ORDERID_10086]",
        "咨询订单号:[ORDERID_10005629] 订单金额:[金额x] 下单时间:[日期x]",
        "耽误这么久的时间,真的灰常抱歉#E-s[数字x]",
        "[数字x] 耐威克(Navarch) 宠物天然粮[姓名x]犬成犬狗粮[数字x]kg",
    ],
)
def test_placeholders_are_preserved(s):
    assert normalize(s) == s


def test_full_width_placeholder_becomes_canonical():
    assert normalize("［数字ｘ］") == "[数字x]"
    assert normalize("［ＯＲＤＥＲＩＤ＿１００８６］") == "[ORDERID_10086]"
    assert normalize("［數字x］") == "[数字x]"


# ------------------------------------------------------------------------------- truncation


def test_truncation_flag_and_lengths():
    s = "我要退货" * 10  # 40 chars
    r = normalize_text(s, max_chars=10)
    assert r.text == "我要退货我要退货我要"
    assert r.truncated is True
    assert r.original_length == 40
    assert len(r.text) == 10


def test_no_truncation_at_exact_length_or_none():
    s = "我要退货" * 10
    assert normalize_text(s, max_chars=40) == NormalizedText(s, False, 40)
    assert normalize_text(s, max_chars=None) == NormalizedText(s, False, 40)
    long = "退" * 5000
    assert normalize_text(long, max_chars=None).text == long
    r = normalize_text(long)
    assert (len(r.text), r.truncated, r.original_length) == (DEFAULT_MAX_CHARS, True, 5000)


def test_max_chars_counts_normalised_characters():
    s = "我 的 快递 到 哪 了"  # 12 chars raw, 7 normalised
    assert normalize_text(s, max_chars=7) == NormalizedText("我的快递到哪了", False, 12)
    assert normalize_text(s, max_chars=6) == NormalizedText("我的快递到哪", True, 12)


def test_max_chars_zero():
    assert normalize_text("退货", max_chars=0) == NormalizedText("", True, 2)
    assert normalize_text("", max_chars=0) == NormalizedText("", False, 0)


def test_truncation_does_not_split_placeholder():
    s = "订单[ORDERID_10005629]没到"
    for limit in range(3, 20):  # every cut inside the placeholder
        r = normalize_text(s, max_chars=limit)
        assert r.text == "订单" and r.truncated
    assert normalize_text(s, max_chars=20).text == "订单[ORDERID_10005629]"
    assert normalize_text("[数字x]个", max_chars=3).text == ""


def test_truncation_does_not_split_emoji_sequence():
    family = "👨\u200d👩\u200d👧"
    s = "好" + family + "好"
    for limit in range(1, 6):
        assert normalize_text(s, max_chars=limit).text == "好"
    assert normalize_text(s, max_chars=6).text == "好" + family
    assert normalize_text("好👍🏽", max_chars=2).text == "好"


def test_truncated_text_has_no_trailing_space():
    r = normalize_text("hello world", max_chars=6)
    assert r.text == "hello" and r.truncated


def test_truncation_inside_opencc_phrase_is_stable():
    r = normalize_text("我乾隆", max_chars=2)
    assert r.truncated
    assert normalize_text(r.text, max_chars=2).text == r.text


# ------------------------------------------------------------------------------- idempotence, fuzz

VARIED = [
    "這個產品質量太差了，我要退貨",
    "ＡＢＣ１２３\u200b我的\u3000快遞\ufeff到哪了？\t\n",
    "我 的 快递 到 哪 了",
    "iPhone 15 Pro 很好😀👨\u200d👩\u200d👧",
    "咨询订单号:[ORDERID_10005629] 订单金额:[金额x]",
    "［數字x］ 乾燥 頭髮 乾隆",
    "e\u200b\u0301 a\u0301 Å",
    "  \u2028 多余   空格 \u2029 ",
    "万一坏了怎么办 說明覆蓋",
    "薴麻 苧麻",
    "等了好久……！！！",
    "™\u200d😀 ℹ\u200d😀",
    "안녕 하세요 ᄀ ᅡ",
    "①②③ ㎏ ㍻",
    "",
    "\x00\x01",
]


@pytest.mark.parametrize("s", VARIED)
@pytest.mark.parametrize("max_chars", [None, DEFAULT_MAX_CHARS, 5, 1])
def test_idempotent(s, max_chars):
    once = normalize_text(s, max_chars=max_chars).text
    twice = normalize_text(once, max_chars=max_chars)
    assert twice.text == once
    assert twice.truncated is False


def _random_text(rng: random.Random) -> str:
    chars = []
    for _ in range(rng.randrange(0, 40)):
        r = rng.random()
        if r < 0.25:
            cp = rng.randrange(0x20, 0x7F)
        elif r < 0.5:
            cp = rng.randrange(0x4E00, 0xA000)
        elif r < 0.6:
            cp = rng.choice(
                [0x20, 0x3000, 0x200B, 0x200D, 0xFEFF, 0x09, 0x0A, 0x301, 0xFE0F, 0x1F600, 0x2122, 0xFF3B, 0x5B, 0x5D]
            )
        else:
            cp = rng.randrange(0, 0x110000 - 0x800)
            if cp >= 0xD800:  # skip the surrogate block
                cp += 0x800
        chars.append(chr(cp))
    return "".join(chars)


def test_random_unicode_never_raises_and_is_idempotent():
    rng = random.Random(0)
    allowed_invisible = {ZWJ}
    for _ in range(3000):
        s = _random_text(rng)
        max_chars = rng.choice([None, DEFAULT_MAX_CHARS, rng.randrange(0, 30)])
        r = normalize_text(s, max_chars=max_chars)
        out = r.text
        assert r.original_length == len(s)
        if max_chars is not None:
            assert len(out) <= max_chars
        assert out == out.strip() and "  " not in out
        assert not any(c.isspace() and c != " " for c in out)
        assert not any(unicodedata.category(c) in ("Cc", "Cf", "Cs") and c not in allowed_invisible for c in out)
        assert unicodedata.is_normalized("NFKC", out)
        assert normalize_text(out, max_chars=max_chars).text == out
