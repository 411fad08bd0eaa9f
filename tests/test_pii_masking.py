import random

import pytest

from helpdesk_triage.policy.pii_masking import PII_TOKENS, PiiMatch, find_pii, mask_pii
from helpdesk_triage.policy.text_normalization import normalize

PHONE, IDC, EMAIL, ORDER, BANK = "[手机号]", "[身份证号]", "[邮箱]", "[订单号]", "[银行卡号]"


def with_id_check(first17: str) -> str:
    """Append the ISO 7064 MOD 11-2 check character (written independently of the module)."""
    weights = [2 ** (17 - i) % 11 for i in range(17)]
    total = sum(int(d) * w for d, w in zip(first17, weights))
    return first17 + "10X98765432"[total % 11]


def luhn_complete(prefix: str) -> str:
    """Append the Luhn check digit."""
    for d in "0123456789":
        digits = [int(c) for c in prefix + d][::-1]
        total = sum(x if i % 2 == 0 else (2 * x - 9 if 2 * x > 9 else 2 * x) for i, x in enumerate(digits))
        if total % 10 == 0:
            return prefix + d
    raise AssertionError


VALID_ID = with_id_check("11010519900307123")
VALID_ID_X = "11010519491231002X"
BANK_16 = luhn_complete("622202123456789")
BANK_19 = luhn_complete("622848001234567890")


def kinds(text: str) -> list[str]:
    return [m.kind for m in find_pii(text)]


def test_fixtures_are_what_they_claim():
    assert with_id_check(VALID_ID_X[:17]) == VALID_ID_X
    assert VALID_ID == "110105199003071239"
    assert len(BANK_16) == 16 and len(BANK_19) == 19


def test_tokens():
    assert PII_TOKENS == {"mobile": PHONE, "id_card": IDC, "email": EMAIL, "order_id": ORDER, "bank_card": BANK}


@pytest.mark.parametrize("bad", [None, b"13812345678", 13812345678])
def test_non_str_raises(bad):
    with pytest.raises(TypeError, match="expects str"):
        find_pii(bad)
    with pytest.raises(TypeError, match="expects str"):
        mask_pii(bad)


# ------------------------------------------------------------------------------- mobile


@pytest.mark.parametrize(
    "phone",
    [
        "13812345678",
        "19912345678",
        "138-1234-5678",
        "138 1234 5678",
        "+8613812345678",
        "+86 138 1234 5678",
        "+86-138-1234-5678",
        "8613812345678",
        "0086 13812345678",
        "(+86)13812345678",
        "１３８１２３４５６７８",  # full-width digits
        "１３８－１２３４－５６７８",
        "138\u200b1234\u200b5678",  # zero-width spaces inside
    ],
)
def test_mobile_positive(phone):
    text = f"我的电话是{phone},请联系"
    assert mask_pii(text) == f"我的电话是{PHONE},请联系"
    [m] = find_pii(text)
    assert m == PiiMatch("mobile", 5, 5 + len(phone))
    assert mask_pii(phone) == PHONE


@pytest.mark.parametrize(
    "text",
    [
        "编号1381234567",  # 10 digits: not a mobile (masked as a long number, see below)
        "号码12345678901",  # 11 digits starting 12
        "号码10012345678",  # 11 digits starting 10
        "138123456789",  # 12 digits starting 138: one number, no partial mask
        "213812345678",  # mobile digits inside a longer digit run
    ],
)
def test_mobile_negative(text):
    assert "mobile" not in kinds(text)
    assert PHONE not in mask_pii(text)


def test_digits_inside_longer_run_are_never_partially_masked():
    assert mask_pii("流水号213812345678结束") == f"流水号{ORDER}结束"
    assert mask_pii("12345678901") == ORDER  # >= 10 digits: a long number, labelled order id
    assert mask_pii("a13812345678b") == f"a{PHONE}b"  # letters are not digits: still a mobile


# ------------------------------------------------------------------------------- ID card


@pytest.mark.parametrize("idn", [VALID_ID, VALID_ID_X, VALID_ID_X.lower()])
def test_id_card_positive(idn):
    text = f"身份证号{idn}。"
    assert mask_pii(text) == f"身份证号{IDC}。"
    assert kinds(text) == ["id_card"]


def test_id_card_full_width():
    fw = "".join(chr(ord(c) + 0xFEE0) for c in VALID_ID_X)
    assert mask_pii(f"证件:{fw}") == f"证件:{IDC}"


def test_id_card_bad_checksum_is_not_labelled_id():
    bad = "110105199003071230"  # VALID_ID with a wrong last digit
    assert "id_card" not in kinds(bad)
    assert mask_pii(bad) == ORDER  # still masked: 18 digits is a long number
    bad_x = "11010519491231003X"
    assert with_id_check(bad_x[:17]) != bad_x
    assert mask_pii(bad_x) == ORDER + "X"


def test_id_card_invalid_date_is_not_labelled_id():
    bad_month = with_id_check("11010519901307123")  # month 13
    assert "id_card" not in kinds(bad_month)


# ------------------------------------------------------------------------------- email


@pytest.mark.parametrize(
    "email",
    ["abc@qq.com", "zhang.san+shop@163.com", "a_b-c@mail.example.com.cn", "HRZJQ@163.COM", "13812345678@139.com"],
)
def test_email_positive(email):
    text = f"邮箱:{email} 谢谢"
    assert mask_pii(text) == f"邮箱:{EMAIL} 谢谢"
    assert kinds(text) == ["email"]


def test_email_full_width_and_adjacent_cjk():
    assert mask_pii("发到ａｂｃ＠ｑｑ．ｃｏｍ吧") == f"发到{EMAIL}吧"
    assert mask_pii("我的邮箱abc@qq.com谢谢") == f"我的邮箱{EMAIL}谢谢"


@pytest.mark.parametrize("text", ["@客服 你好", "价格@100元", "a@b", "user@localhost"])
def test_email_negative(text):
    assert mask_pii(text) == text


# ------------------------------------------------------------------------------- order ids


@pytest.mark.parametrize(
    "text, expected",
    [
        ("咨询订单号:[ORDERID_10005629] 订单金额:[金额x]", f"咨询订单号:{ORDER} 订单金额:[金额x]"),
        ("[ORDERID_10086]", ORDER),
        ("订单号：AB12345678 已发货", f"订单号：{ORDER} 已发货"),
        ("订单号:AB12345678", f"订单号:{ORDER}"),
        ("单号#SF1234567890123", f"单号#{ORDER}"),
        ("运单号 YT9876543210", f"运单号 {ORDER}"),
        ("快递单号是JD0012345678901", f"快递单号是{ORDER}"),
        ("对应老订单71748934没到", f"对应老订单{ORDER}没到"),  # 8 digits after a keyword
        ("訂單號：A1234567", f"訂單號：{ORDER}"),
        ("订单编号 2024050112345", f"订单编号 {ORDER}"),
        ("流水 1234567890", f"流水 {ORDER}"),  # any run of >= 10 digits
    ],
)
def test_order_id_positive(text, expected):
    assert mask_pii(text) == expected
    assert set(kinds(text)) == {"order_id"}


@pytest.mark.parametrize(
    "text",
    [
        "订单2个都没到",
        "订单 2024-05-01 下的",
        "我的订单ok了吗",
        "订单号是多少",
        "订单 iPhone15",  # too few digits
        "单号123",
        "商品编号123456789",  # 9 digits, no keyword
    ],
)
def test_order_id_negative(text):
    assert mask_pii(text) == text


# ------------------------------------------------------------------------------- bank cards


@pytest.mark.parametrize(
    "card",
    ["6222 0212 3456 7890", "6222-0212-3456-7890", "6222 0212 3456 7890 123", "6228 4800 1234 5678 90"],
)
def test_bank_card_grouped(card):
    assert mask_pii(f"卡号{card}。") == f"卡号{BANK}。"
    assert kinds(card) == ["bank_card"]


@pytest.mark.parametrize("card", [BANK_16, BANK_19, "4111111111111111"])
def test_bank_card_ungrouped_luhn(card):
    assert mask_pii(f"银行卡{card}") == f"银行卡{BANK}"


def test_ungrouped_16_digits_failing_luhn_is_a_long_number():
    not_luhn = BANK_16[:-1] + str((int(BANK_16[-1]) + 1) % 10)
    assert kinds(not_luhn) == ["order_id"]


# ------------------------------------------------------------------------------- negatives


@pytest.mark.parametrize(
    "text",
    [
        "价格[金额x]元",
        "订单金额:[金额x] 下单时间:[日期x]",
        "验证码123456",
        "2024-05-01 12:30:00 下单",
        "2024年5月1日",
        "iPhone 15 Pro 256G",
        "¥199.00,便宜了50%",
        "打 95 折",
        "[数字x]个 [姓名x]",
        "电话 1234 5678",
        "买了3件,共计1299元",
        "",
        "没有任何数字的句子",
    ],
)
def test_not_pii(text):
    assert find_pii(text) == []
    assert mask_pii(text) == text


# ------------------------------------------------------------------------------- overlaps, mixed


def test_overlaps_resolved_deterministically():
    # e-mail containing a mobile number: the longer span wins
    assert kinds("13812345678@163.com") == ["email"]
    # keyword context beats the mobile pattern for the same digits
    assert mask_pii("订单号13812345678") == f"订单号{ORDER}"
    assert kinds("订单号13812345678") == ["order_id"]
    # a valid ID beats the generic long-digit run covering the same digits
    assert kinds(VALID_ID) == ["id_card"]
    # grouped bank card beats anything inside it
    assert kinds("6222 1381 2345 6789") == ["bank_card"]
    # placeholder holds digits but is one order id
    assert find_pii("[ORDERID_13812345678]") == [PiiMatch("order_id", 0, 21)]


def test_neighbours_masked_after_the_first_round():
    # ".com" directly followed by digits is no e-mail end until the digits are masked
    assert mask_pii("abc@qq.com13812345678") == EMAIL + PHONE
    assert mask_pii("a.b@qq.com138-1234-5678") == EMAIL + PHONE


def test_mixed_text_with_several_kinds():
    text = (
        f"您好,我叫张三,手机138-1234-5678,邮箱zhangsan@163.com,身份证{VALID_ID_X},"
        f"订单号：AB12345678,退款到卡6222 0212 3456 7890,金额[金额x]元,日期2024-05-01。"
    )
    expected = (
        f"您好,我叫张三,手机{PHONE},邮箱{EMAIL},身份证{IDC},"
        f"订单号：{ORDER},退款到卡{BANK},金额[金额x]元,日期2024-05-01。"
    )
    assert mask_pii(text) == expected
    matches = find_pii(text)
    assert [m.kind for m in matches] == ["mobile", "email", "id_card", "order_id", "bank_card"]
    assert [text[m.start : m.end] for m in matches] == [
        "138-1234-5678",
        "zhangsan@163.com",
        VALID_ID_X,
        "AB12345678",
        "6222 0212 3456 7890",
    ]


def test_offsets_refer_to_the_original_text():
    text = "电话：１３８ １２３４ ５６７８。"
    [m] = find_pii(text)
    assert text[m.start : m.end] == "１３８ １２３４ ５６７８"
    text = "电话\u200b138\u200b1234\u200b5678\u200b!"
    [m] = find_pii(text)
    assert text[m.start : m.end] == "138\u200b1234\u200b5678"


@pytest.mark.parametrize(
    "raw",
    [
        "我的手機是１３８－１２３４－５６７８，訂單號：ＡＢ１２３４５６７８",
        "郵箱ａｂｃ＠ｑｑ．ｃｏｍ\u3000卡號６２２２\u3000０２１２\u3000３４５６\u3000７８９０",
        "電話 138 1234 5678 單號 SF1234567890123",
    ],
)
def test_raw_and_normalised_text_give_the_same_kinds(raw):
    assert kinds(raw) == kinds(normalize(raw))
    assert kinds(raw)
    assert mask_pii(normalize(raw)) == normalize(mask_pii(raw))


# ------------------------------------------------------------------------------- idempotence, fuzz

SAMPLES = [
    "我的手机13812345678,邮箱abc.d@qq.com",
    f"身份证{VALID_ID_X}订单号：AB12345678",
    "咨询订单号:[ORDERID_10005629] 订单金额:[金额x]",
    "卡号6222 0212 3456 7890 123 和 4111111111111111",
    "+86 138-1234-5678 / 8613812345678 / １３８１２３４５６７８",
    "订单号13812345678@qq.com",
    "abc@qq.com13812345678",
    "[订单号][手机号]订单号[订单号]",
    "价格[金额x]元 123456 2024-05-01",
]


@pytest.mark.parametrize("text", SAMPLES)
def test_idempotent(text):
    once = mask_pii(text)
    assert mask_pii(once) == once
    assert all(m.kind for m in find_pii(text))


def test_masked_text_contains_no_findable_pii():
    for text in SAMPLES:
        assert find_pii(mask_pii(text)) == []


FRAGMENTS = [
    "13812345678", "138-1234-5678", "+86 139 1234 5678", "8613812345678", VALID_ID_X, VALID_ID,
    "110105194912310021", "a.b@qq.com", "x@y", "@", "订单号", "单号:", "订单 ", "[ORDERID_123]", "[ORDERID_",
    "6222 0212 3456 7890", BANK_16, "4111111111111111", "1234567890", " ", "-", "1", "2", "0", "X", "x", "ab",
    "中", "[", "]", "：", "１３８", "\u200b", "＠", ".com", "是", ":", "#", ORDER, PHONE,
]


def test_random_compositions_are_idempotent_and_non_overlapping():
    rng = random.Random(0)
    for _ in range(3000):
        text = "".join(rng.choice(FRAGMENTS) for _ in range(rng.randrange(1, 8)))
        matches = find_pii(text)
        assert all(0 <= m.start < m.end <= len(text) for m in matches)
        assert all(a.end <= b.start for a, b in zip(matches, matches[1:]))
        once = mask_pii(text)
        assert mask_pii(once) == once, text


def test_random_unicode_never_raises():
    rng = random.Random(0)
    for _ in range(3000):
        n = rng.randrange(0, 40)
        text = "".join(
            chr(rng.choice([rng.randrange(0x20, 0x7F), rng.randrange(0xFF10, 0xFF1A), rng.randrange(0, 0x110000)]))
            for _ in range(n)
        )
        once = mask_pii(text)
        assert mask_pii(once) == once


def test_every_decimal_digit_is_folded():
    import sys
    import unicodedata

    from helpdesk_triage.policy import pii_masking

    missing = [
        hex(cp)
        for cp in range(0x80, sys.maxunicode + 1)
        if unicodedata.decimal(chr(cp), None) is not None and cp not in pii_masking._FOLD
    ]
    assert missing == []
    assert mask_pii("电话١٣٨١٢٣٤٥٦٧٨") == f"电话{PHONE}"  # Arabic-Indic digits
