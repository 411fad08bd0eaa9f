import re
from pathlib import Path

import pytest

from helpdesk_triage.policy.replies import (
    DEFAULT_TEMPLATES_PATH,
    SLOTS,
    ReplyTemplateLibrary,
    SuggestedReply,
)
from helpdesk_triage.policy.labels import LABELS

REQUIRED_SUBCASES = {
    "A": {"product_info", "usage", "price_promotion", "general"},
    "B": {"shipping_delay", "order_change_cancel", "invoice", "refund_status", "general"},
    "C": {"quality_defect", "wrong_missing_item", "damaged_package", "return_exchange", "general"},
    "D": {
        "general_complaint",
        "refund_dispute",
        "external_complaint_threat",
        "safety_health_incident",
        "general",
    },
}
HANDBOOK_FORBIDDEN = (
    "这不归我们管",
    "你自己没看说明吗",
    "没办法，就是这样",
    "大家都这样",
    "这是你自己的问题",
    "不可能",
    "我也没办法",
    "你爱找谁找谁",
    "我们规定就是这样",
    "你看清楚再买",
)
FULL_SLOTS = {
    "customer_name": "王先生",
    "order_id": "JD20240518001",
    "agent_name": "小周",
    "first_response_due": "今天18:00",
}
HOSTILE_SLOTS = {
    "customer_name": " {order_id}[[x]]|| ",
    "order_id": "[[{customer_name}]]",
    "agent_name": "}{",
    "first_response_due": "]]{agent_name}",
}
MARKUP = ("{", "}", "[[", "]]", "||")
BAD_PUNCTUATION = re.compile(r"[，。！？、；：]{2,}|^[，。！？、；：\s]|[\s]$")


@pytest.fixture(scope="module")
def lib() -> ReplyTemplateLibrary:
    return ReplyTemplateLibrary.load()


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"[。！？]", text) if s.strip()]


def _assert_clean(text: str) -> None:
    for mark in MARKUP:
        assert mark not in text, text
    assert not BAD_PUNCTUATION.search(text), text


# ------------------------------------------------------------------ the table


def test_default_path_is_the_data_file(lib):
    assert DEFAULT_TEMPLATES_PATH.name == "reply_templates.toml"
    assert DEFAULT_TEMPLATES_PATH.parent.name == "data"
    again = ReplyTemplateLibrary.load(str(DEFAULT_TEMPLATES_PATH))
    assert [t.id for t in again.all_templates()] == [t.id for t in lib.all_templates()]


def test_every_category_has_its_subcases(lib):
    assert set(REQUIRED_SUBCASES) == set(LABELS.categories)
    for category, required in REQUIRED_SUBCASES.items():
        names = {s.name for s in lib.subcases(category)}
        assert required <= names, (category, required - names)


def test_every_subcase_has_a_default_template(lib):
    ids = {t.id for t in lib.all_templates()}
    for category in LABELS.categories:
        for subcase in lib.subcases(category):
            assert f"{category}.{subcase.name}.default" in ids


def test_every_non_general_subcase_has_keywords(lib):
    for category in LABELS.categories:
        for subcase in lib.subcases(category):
            if subcase.name == "general":
                assert subcase.keywords == ()
            else:
                assert len(subcase.keywords) >= 5, subcase.name
                assert subcase.label


@pytest.mark.parametrize("category", ["B", "C", "D"])
def test_bcd_subcases_have_high_and_critical_variants(lib, category):
    for subcase in lib.subcases(category):
        variants = {
            t.variant: t for t in lib.all_templates() if t.category == category and t.subcase == subcase.name
        }
        assert "high" in variants["high"].severities, subcase.name
        assert "critical" in variants["critical"].severities, subcase.name


def test_template_ids_are_unique_and_consistent(lib):
    templates = lib.all_templates()
    assert len({t.id for t in templates}) == len(templates)
    for t in templates:
        assert t.id == f"{t.category}.{t.subcase}.{t.variant}"
        assert set(t.severities) <= set(LABELS.severities)
        assert set(t.sentiments) <= set(LABELS.sentiments)


def test_forbidden_phrases_cover_the_handbook(lib):
    assert set(HANDBOOK_FORBIDDEN) <= set(lib.forbidden_phrases)


# ------------------------------------------------------------------ template wording


@pytest.mark.parametrize("slots", [FULL_SLOTS, {}, {k: None for k in SLOTS}, {k: "  " for k in SLOTS}])
def test_every_template_renders_cleanly(lib, slots):
    for t in lib.all_templates():
        text = lib.render(t.text, slots)
        _assert_clean(text)
        assert 2 <= len(_sentences(text)) <= 5, (t.id, text)


def test_every_slot_a_template_uses_is_filled(lib):
    for t in lib.all_templates():
        text = lib.render(t.text, FULL_SLOTS)
        for name, value in FULL_SLOTS.items():
            assert (value in text) == (f"{{{name}}}" in t.text), (t.id, name)


def test_every_template_renders_hostile_slot_values_literally(lib):
    for t in lib.all_templates():
        text = lib.render(t.text, HOSTILE_SLOTS)
        assert "{order_id}[[x]]||" in text, t.id
        assert " {order_id}" not in text
        stripped = text
        for value in HOSTILE_SLOTS.values():
            stripped = stripped.replace(value.strip(), "")
        for mark in MARKUP:
            assert mark not in stripped, (t.id, text)


def test_no_template_contains_a_forbidden_phrase(lib):
    for t in lib.all_templates():
        for slots in (FULL_SLOTS, {}):
            text = lib.render(t.text, slots)
            assert lib.forbidden_in(text) == (), t.id
            for phrase in HANDBOOK_FORBIDDEN:
                assert phrase not in text


def test_forbidden_in_ignores_spacing_and_punctuation(lib):
    assert lib.forbidden_in("没办法 就是这样。") == ("没办法，就是这样",)
    assert lib.forbidden_in("这个 不可能！") == ("不可能",)
    assert lib.forbidden_in("理解您的心情，非常抱歉。") == ()


def test_templates_follow_the_handbook_script(lib):
    for t in lib.all_templates():
        text = lib.render(t.text, {})
        assert re.search(r"\d+(小时|分钟)内", text), (t.id, "no follow-up time")
        if t.category != "A":
            assert "理解" in text, (t.id, "no empathy")
            if "抱歉" in text:
                assert text.index("理解") < text.index("抱歉"), (t.id, "empathy comes first")
        if t.category in "BCD" and t.severities:
            assert "非常抱歉" in text, t.id
        if "critical" in t.severities:
            assert "15分钟内" in text, t.id
            assert "专员" in text or "专人" in text, t.id


def test_critical_safety_template_tells_customer_to_stop_and_seek_help(lib):
    text = lib.suggest("D", "critical", "negative", "吃了你们的东西拉肚子了").text
    assert "立即停止使用" in text
    assert "就医" in text
    assert "15分钟内" in text


def test_offers_concrete_options(lib):
    damaged = lib.render(next(t.text for t in lib.all_templates() if t.id == "C.damaged_package.default"), {})
    assert all(word in damaged for word in ("补发", "换货", "退款"))
    invoice = lib.render(next(t.text for t in lib.all_templates() if t.id == "B.invoice.default"), {})
    assert "抬头" in invoice and "税号" in invoice
    delay = lib.render(next(t.text for t in lib.all_templates() if t.id == "B.shipping_delay.default"), {})
    assert "加急催件" in delay


# ------------------------------------------------------------------ sub-case detection


@pytest.mark.parametrize(
    "category, text, subcase",
    [
        ("A", "这款有黑色的吗，尺码偏大吗", "product_info"),
        ("A", "这个净水器怎么安装", "usage"),
        ("A", "现在买有优惠券吗", "price_promotion"),
        ("A", "你们周末上班吗", "general"),
        ("B", "快递三天了还没到", "shipping_delay"),
        ("B", "我的包裹到哪了", "shipping_delay"),
        ("B", "还没发货能改地址吗", "order_change_cancel"),
        ("B", "帮我把这个订单取消了", "order_change_cancel"),
        ("B", "发票抬头写错了，能重开吗", "invoice"),
        ("B", "退款什么时候到账", "refund_status"),
        ("B", "申请价保成功后多久退差价", "refund_status"),
        ("B", "你们客服电话打不通", "general"),
        ("C", "收到的杯子碎了", "damaged_package"),
        ("C", "杯子质量太差，收到就碎了，能换货吗", "damaged_package"),
        ("C", "买的蓝色发成了红色", "wrong_missing_item"),
        ("C", "四只轮胎只收到三只", "wrong_missing_item"),
        ("C", "用了两天就开不了机了", "quality_defect"),
        ("C", "质量不好，我要退货", "quality_defect"),
        ("C", "尺码不合适想换个大一号", "return_exchange"),
        ("C", "感觉一般般吧", "general"),
        ("D", "吃了你们的东西拉肚子了", "safety_health_incident"),
        ("D", "充电器冒烟了，我要找12315", "safety_health_incident"),
        ("D", "再不处理我就打12315", "external_complaint_threat"),
        ("D", "我要去微博曝光你们", "external_complaint_threat"),
        ("D", "质量这么差必须差评", "external_complaint_threat"),
        ("D", "拒绝退款是什么意思，必须赔偿", "refund_dispute"),
        ("D", "第三次了，叫你们领导出来", "general_complaint"),
        ("D", "卖假货的骗子", "general_complaint"),
        ("D", "你们等着吧", "general"),
    ],
)
def test_detect_subcase(lib, category, text, subcase):
    assert lib.detect_subcase(category, text) == subcase


def test_detection_is_case_insensitive_for_latin_cues(tmp_path):
    toml = _minimal_toml(
        subcases='[[subcase]]\ncategory = "A"\nname = "usage"\nlabel = "使用"\nkeywords = ["APP"]\n',
        templates=_template("A.usage.default"),
    )
    lib = _load(tmp_path, toml)
    assert lib.detect_subcase("A", "你们的app怎么登录") == "usage"


def test_priority_beats_longer_cue(tmp_path):
    toml = _minimal_toml(
        subcases=(
            '[[subcase]]\ncategory = "C"\nname = "long"\nlabel = "长"\nkeywords = ["很长的关键词"]\n'
            '[[subcase]]\ncategory = "C"\nname = "urgent"\nlabel = "急"\npriority = 5\nkeywords = ["急"]\n'
        ),
        templates=_template("C.long.default") + _template("C.urgent.default"),
    )
    lib = _load(tmp_path, toml)
    assert lib.detect_subcase("C", "很长的关键词，很急") == "urgent"
    assert lib.detect_subcase("C", "很长的关键词") == "long"


# ------------------------------------------------------------------ suggest


def test_suggest_returns_a_suggested_reply(lib):
    reply = lib.suggest("B", "medium", "negative", "快递三天了还没到", {"order_id": "JD123"})
    assert isinstance(reply, SuggestedReply)
    assert reply.template_id == "B.shipping_delay.default"
    assert reply.subcase == "shipping_delay"
    assert "订单JD123" in reply.text


def test_critical_selects_the_critical_variant(lib):
    reply = lib.suggest("D", "critical", "negative", "吃了你们的东西拉肚子了")
    assert reply.template_id == "D.safety_health_incident.critical"
    assert reply.subcase == "safety_health_incident"
    for category, text in [("B", "快递还没到"), ("C", "收到的杯子碎了"), ("D", "再不处理我就打12315")]:
        assert lib.suggest(category, "critical", "negative", text).template_id.endswith(".critical")


def test_high_selects_the_high_variant_and_low_medium_the_default(lib):
    assert lib.suggest("C", "high", "negative", "收到的杯子碎了").template_id == "C.damaged_package.high"
    for severity in ("low", "medium"):
        reply = lib.suggest("C", severity, "negative", "收到的杯子碎了")
        assert reply.template_id == "C.damaged_package.default"


def test_external_threat_suggestion(lib):
    reply = lib.suggest("D", "high", "negative", "再不处理我就打12315")
    assert reply.subcase == "external_complaint_threat"
    assert reply.template_id == "D.external_complaint_threat.high"


def test_positive_sentiment_picks_the_thank_you_variant(lib):
    reply = lib.suggest("A", "low", "positive", "味道不错，超值的")
    assert reply.template_id == "A.general.positive"
    assert "感谢" in reply.text
    assert lib.suggest("A", "low", "neutral", "你们周末上班吗").template_id == "A.general.default"


def test_no_cue_falls_back_to_general(lib):
    reply = lib.suggest("C", "medium", "negative", "感觉一般般吧")
    assert reply.subcase == "general"
    assert reply.template_id == "C.general.default"


@pytest.mark.parametrize(
    "category, severity, sentiment",
    [("E", "low", "neutral"), ("a", "low", "neutral"), ("A", "urgent", "neutral"), ("A", "low", "angry")],
)
def test_unknown_labels_raise(lib, category, severity, sentiment):
    with pytest.raises(ValueError):
        lib.suggest(category, severity, sentiment, "你好")


def test_detect_subcase_rejects_unknown_category(lib):
    with pytest.raises(ValueError):
        lib.detect_subcase("Z", "你好")


def test_every_label_combination_gets_a_reply(lib):
    for category in LABELS.categories:
        for severity in LABELS.severities:
            for sentiment in LABELS.sentiments:
                reply = lib.suggest(category, severity, sentiment, "你好", FULL_SLOTS)
                assert reply.template_id.startswith(f"{category}.general.")
                _assert_clean(reply.text)


# ------------------------------------------------------------------ slots


def test_slots_fill_name_and_order(lib):
    slots = {"customer_name": "  李女士 ", "order_id": "JD998"}
    reply = lib.suggest("C", "medium", "negative", "买的蓝色发成了红色", slots)
    assert reply.text.startswith("李女士，您好")
    assert "订单JD998" in reply.text


def test_missing_slots_drop_their_segments(lib):
    reply = lib.suggest("C", "medium", "negative", "买的蓝色发成了红色", {"customer_name": "", "order_id": None})
    assert reply.text.startswith("您好")
    assert "订单后" in reply.text
    assert "12小时内" in reply.text


def test_first_response_due_replaces_the_fallback(lib):
    with_due = lib.suggest("B", "medium", "neutral", "发票什么时候开", {"first_response_due": "今天18:00"})
    assert "今天18:00前" in with_due.text
    assert "1小时内回复" not in with_due.text
    without = lib.suggest("B", "medium", "neutral", "发票什么时候开")
    assert "1小时内回复" in without.text


def test_render_segment_syntax(lib):
    template = "[[{customer_name}，]]您好！[[订单{order_id}]]已处理，我们会在[[{first_response_due}前||2小时内]]回复。"
    assert lib.render(template, {}) == "您好！已处理，我们会在2小时内回复。"
    assert lib.render(template, {"customer_name": "小王", "order_id": "42", "first_response_due": "明天"}) == (
        "小王，您好！订单42已处理，我们会在明天前回复。"
    )


def test_render_segment_needs_every_slot(lib):
    template = "您好[[，{customer_name}的订单{order_id}]]。"
    assert lib.render(template, {"customer_name": "小王"}) == "您好。"
    assert lib.render(template, {"customer_name": "小王", "order_id": "7"}) == "您好，小王的订单7。"


def test_slot_values_are_not_reinterpreted(lib):
    text = lib.render("[[{customer_name}，]]您好[[，订单{order_id}]]。", HOSTILE_SLOTS)
    assert text == "{order_id}[[x]]||，您好，订单[[{customer_name}]]。"


def test_unknown_slot_name_raises(lib):
    with pytest.raises(ValueError):
        lib.render("[[{customer_name}，]]您好。", {"name": "x"})


@pytest.mark.parametrize(
    "template",
    [
        "您好{customer_name}",
        "[[{customer_name}",
        "{customer_name}]]",
        "[[{nickname}]]",
        "[[[[{order_id}]]]]",
        "[[您好]]",
        "您好||",
        "您好}",
    ],
)
def test_render_rejects_bad_markup(lib, template):
    with pytest.raises(ValueError):
        lib.render(template, {})


# ------------------------------------------------------------------ validation on load


GOOD_TEXT = "[[{customer_name}，]]您好，理解您的心情。我们会在1小时内回复您。"
HIGH = 'severities = ["high"]\n'


def _template(template_id: str, text: str = GOOD_TEXT, extra: str = "") -> str:
    return f'[[template]]\nid = "{template_id}"\n{extra}text = "{text}"\n'


def _high(template_id: str, text: str = GOOD_TEXT) -> str:
    return _template(template_id, text, HIGH)


def _minimal_toml(subcases: str = "", templates: str = "") -> str:
    parts = ['forbidden_phrases = ["不可能", "大家都这样"]\n']
    for category in LABELS.categories:
        parts.append(f'[[subcase]]\ncategory = "{category}"\nname = "general"\nlabel = "其他"\n')
        parts.append(_template(f"{category}.general.default"))
    parts.append(subcases)
    parts.append(templates)
    return "\n".join(parts)


def _load(tmp_path: Path, toml: str) -> ReplyTemplateLibrary:
    path = tmp_path / "templates.toml"
    path.write_text(toml, encoding="utf-8")
    return ReplyTemplateLibrary.load(path)


def test_minimal_table_loads(tmp_path):
    lib = _load(tmp_path, _minimal_toml())
    assert len(lib.all_templates()) == len(LABELS.categories)
    assert lib.suggest("A", "low", "neutral", "你好").text == "您好，理解您的心情。我们会在1小时内回复您。"


X = "A.general.x"
SEVERITY_URGENT = 'severities = ["urgent"]\n'
SENTIMENT_ANGRY = 'sentiments = ["angry"]\n'
HIGH_AND_CRITICAL = 'severities = ["high", "critical"]\n'


@pytest.mark.parametrize(
    "templates, error",
    [
        pytest.param(
            _high(X, "您好，这个不可能。我们会在1小时内回复您。"),
            f"{X}: contains the forbidden phrase '不可能'",
            id="forbidden",
        ),
        pytest.param(
            _high(X, "您好，大家 都这样。我们会在1小时内回复您。"),
            f"{X}: contains the forbidden phrase '大家都这样'",
            id="forbidden-spaced",
        ),
        pytest.param(_high(X, "[[{nickname}，]]您好。"), f"{X}: unknown slot", id="unknown-slot"),
        pytest.param(_high(X, "[[{customer_name}，您好。"), f"{X}: unbalanced", id="unbalanced-open"),
        pytest.param(_high(X, "{customer_name}]]您好。"), f"{X}: unbalanced", id="unbalanced-close"),
        pytest.param(_high(X, "{customer_name}，您好。"), f"{X}: slot {{customer_name}} must sit", id="bare-slot"),
        pytest.param(_high(X, "[[{customer_name}]]，您好。"), f"{X}: renders with stray punctuation", id="punct"),
        pytest.param(_template("A.general.default"), "duplicate template id A.general.default", id="duplicate-id"),
        pytest.param(_template("X.general.default"), "X.general.default: unknown category", id="unknown-category"),
        pytest.param(_template(X, extra=SEVERITY_URGENT), f"{X}: unknown severity", id="unknown-severity"),
        pytest.param(_template(X, extra=SENTIMENT_ANGRY), f"{X}: unknown sentiment", id="unknown-sentiment"),
        pytest.param(_template("A.nothing.default"), "subcase A.nothing is not declared", id="undeclared-subcase"),
        pytest.param(_template(X), f"{X}: the 'default' variant, and only it", id="variant-without-condition"),
        pytest.param(
            _high(X) + _template("A.general.y", extra=HIGH_AND_CRITICAL),
            f"templates ['{X}', 'A.general.y'] all apply to severity=high",
            id="ambiguous-variants",
        ),
        pytest.param(_template(X, extra=HIGH.replace("severities", "severity")), f"{X}: unknown keys", id="typo"),
    ],
)
def test_validator_rejects_bad_templates(tmp_path, templates, error):
    with pytest.raises(ValueError, match=re.escape(error)):
        _load(tmp_path, _minimal_toml(templates=templates))


def test_validator_rejects_unknown_subcase_category(tmp_path):
    subcase = '[[subcase]]\ncategory = "E"\nname = "odd"\nlabel = "怪"\nkeywords = ["怪"]\n'
    with pytest.raises(ValueError, match="unknown category"):
        _load(tmp_path, _minimal_toml(subcases=subcase))


def test_validator_requires_a_default_per_subcase(tmp_path):
    subcase = '[[subcase]]\ncategory = "B"\nname = "odd"\nlabel = "怪"\nkeywords = ["怪"]\n'
    templates = _high("B.odd.high")
    with pytest.raises(ValueError, match="B.odd"):
        _load(tmp_path, _minimal_toml(subcases=subcase, templates=templates))


def test_validator_requires_general_per_category(tmp_path):
    toml = _minimal_toml().replace('category = "D"\nname = "general"', 'category = "D"\nname = "other"')
    toml = toml.replace("D.general.default", "D.other.default")
    with pytest.raises(ValueError, match="general"):
        _load(tmp_path, toml)


def test_shipped_table_documents_the_syntax():
    text = DEFAULT_TEMPLATES_PATH.read_text(encoding="utf-8")
    assert text.lstrip().startswith("#")
    assert "[[ ... ]]" in text and "||" in text
