import re
from pathlib import Path

import pytest

from helpdesk_triage.policy.labels import LABELS
from helpdesk_triage.policy.replies import DEFAULT_TEMPLATES_PATH, MAX_SLOT_CHARS, SLOTS, ReplyTemplateLibrary
from helpdesk_triage.policy.subcases import SubcaseChoice, SubcaseTaxonomy

HANDBOOK_FORBIDDEN = (
    "这不归我们管", "你自己没看说明吗", "没办法，就是这样", "大家都这样", "这是你自己的问题",
    "不可能", "我也没办法", "你爱找谁找谁", "我们规定就是这样", "你看清楚再买",
)
FULL_SLOTS = {
    "customer_name": "王先生",
    "order_id": "JD20240518001",
    "agent_name": "小周",
    "first_response_due": "3月10日11:00",
    "resolution_due": "3月11日11:00",
}
HOSTILE_SLOTS = {
    "customer_name": " {order_id}[[x]]|| ",
    "order_id": "[[{customer_name}]]",
    "agent_name": "}{",
    "first_response_due": "]]{agent_name}",
    "resolution_due": "||",
}
MARKUP = ("{", "}", "[[", "]]", "||")
BAD_PUNCTUATION = re.compile(r"[，。！？、；：]{2,}|^[，。！？、；：\s]|[\s]$")
APOLOGY = ("抱歉", "对不起", "理解您的心情")
# wordings the handbook review found out of place on a first contact or as an admission for the trade
FIRST_CONTACT_FALSE = ("一再", "拖到现在", "又一次", "再次让您")
LIABILITY = ("是我们的责任", "我们的错")


@pytest.fixture(scope="module")
def lib() -> ReplyTemplateLibrary:
    return ReplyTemplateLibrary.load()


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"[。！？]", text) if s.strip()]


def _assert_clean(text: str) -> None:
    for mark in MARKUP:
        assert mark not in text, text
    assert not BAD_PUNCTUATION.search(text), text


def _choice(key: str) -> SubcaseChoice:
    return SubcaseChoice(key, None, "model")


def _reply(lib, key, severity, sentiment, text, slots=None):
    return lib.suggest(key.split(".")[0], severity, sentiment, text, _choice(key), slots=slots)


# ------------------------------------------------------------------ the table


def test_default_path_is_the_data_file(lib):
    assert DEFAULT_TEMPLATES_PATH.name == "reply_templates.toml"
    assert DEFAULT_TEMPLATES_PATH.is_file()


def test_every_subcase_of_the_taxonomy_has_a_default_template(lib):
    ids = {t.id for t in lib.all_templates()}
    for sc in SubcaseTaxonomy.load().subcases:
        assert f"{sc.key}.default" in ids


def test_forbidden_phrases_cover_the_handbook(lib):
    assert set(HANDBOOK_FORBIDDEN) <= set(lib.forbidden_phrases)


@pytest.mark.parametrize("slots", [FULL_SLOTS, {}, {k: None for k in SLOTS}, {k: "  " for k in SLOTS}])
def test_every_template_renders_cleanly(lib, slots):
    for t in lib.all_templates():
        text = lib.render(t.text, slots)
        _assert_clean(text)
        assert 1 <= len(_sentences(text)) <= 6, (t.id, text)


def test_every_template_renders_hostile_slot_values_literally(lib):
    for t in lib.all_templates():
        text = lib.render(t.text, HOSTILE_SLOTS)
        stripped = text
        for value in sorted(HOSTILE_SLOTS.values(), key=len, reverse=True):
            stripped = stripped.replace(value.strip(), "")
        for mark in MARKUP:
            assert mark not in stripped, (t.id, text)


def test_no_template_contains_a_forbidden_phrase(lib):
    for t in lib.all_templates():
        for slots in (FULL_SLOTS, {}):
            text = lib.render(t.text, slots)
            assert lib.forbidden_in(text) == (), t.id


def test_forbidden_in_ignores_spacing_and_punctuation(lib):
    assert lib.forbidden_in("没办法 就是这样。") == ("没办法，就是这样",)
    assert lib.forbidden_in("这个 不可能！") == ("不可能",)
    assert lib.forbidden_in("理解您的心情，非常抱歉。") == ()


# ------------------------------------------------------------------ the handbook's scripts


def test_every_time_a_template_promises_comes_from_the_sla_slots(lib):
    """One source for promises: with the slots known, no template states a duration of its own."""
    for t in lib.all_templates():
        text = lib.render(t.text, FULL_SLOTS)
        assert not re.search(r"\d+\s*(小时|分钟)内", text), (t.id, text)
        assert not re.search(r"(24|48)小时", text), (t.id, text)


def test_no_template_makes_a_first_contact_false_claim_or_admits_liability(lib):
    for t in lib.all_templates():
        text = lib.render(t.text, {})
        for phrase in FIRST_CONTACT_FALSE + LIABILITY:
            assert phrase not in text, (t.id, phrase)


def test_plain_questions_and_praise_get_no_apology(lib):
    for t in lib.all_templates():
        neutral_question = t.category == "A" and (not t.sentiments or "negative" not in t.sentiments) and not t.severities
        if neutral_question or t.sentiments == ("positive",):
            text = lib.render(t.text, {})
            assert not any(word in text for word in APOLOGY), (t.id, text)


def test_praise_is_thanked_and_never_answered_with_a_complaint_script(lib):
    reply = _reply(lib, "A.other", "low", "positive", "东西很好，物流也快，五星好评")
    assert "感谢" in reply.text and "抱歉" not in reply.text


def test_a_complaint_is_never_thanked_for_praise(lib):
    for t in lib.all_templates():
        if t.category == "D" or "negative" in t.sentiments:
            assert "好评" not in lib.render(t.text, {}), t.id


def test_health_emergency_asks_about_symptoms_and_a_doctor_without_hazard_clauses(lib):
    reply = _reply(lib, "D.safety_health", "critical", "negative", "吃了你们的外卖拉肚子了，现在很难受", FULL_SLOTS)
    assert "症状" in reply.text and "就医" in reply.text
    assert "断电" not in reply.text and "断开电源" not in reply.text
    assert "3月10日11:00前" in reply.text


def test_hazard_emergency_says_stop_using_and_cut_the_power(lib):
    reply = _reply(lib, "C.defect", "critical", "negative", "充电器用着用着冒烟了", FULL_SLOTS)
    assert "停止使用" in reply.text and "电源" in reply.text
    assert "症状" not in reply.text


def test_takeaway_meal_gets_meal_wording_not_parcel_wording(lib):
    reply = _reply(lib, "C.food_quality", "medium", "negative", "外卖送来饭菜都凉了")
    assert "餐" in reply.text
    for parcel in ("面单", "运费", "寄回", "快递"):
        assert parcel not in reply.text


def test_greeting_gets_zai_de(lib):
    reply = _reply(lib, "A.other", "low", "neutral", "在吗")
    assert "在的" in reply.text


def test_each_subcase_gets_its_own_script(lib):
    protection = _reply(lib, "B.price_protection", "medium", "neutral", "买了就降价能保价吗").text
    refund = _reply(lib, "B.refund_status", "medium", "neutral", "退款什么时候到").text
    delivered = _reply(lib, "B.delivered_missing", "medium", "negative", "显示签收了但我没收到").text
    assert "价格保护" in protection and protection != refund
    assert "签收" in delivered and "代收" in delivered


def test_every_label_combination_of_every_subcase_gets_a_reply(lib):
    for sc in SubcaseTaxonomy.load().subcases:
        for severity in LABELS.severities:
            for sentiment in LABELS.sentiments:
                reply = _reply(lib, sc.key, severity, sentiment, "随便一句话")
                _assert_clean(reply.text)
                if severity == "critical":
                    assert "紧急" in reply.text or "立即" in reply.text, (sc.key, reply.best.source)


# ------------------------------------------------------------------ choosing and alternatives


def test_suggest_puts_answers_first_and_alternatives_after(lib):
    from helpdesk_triage.policy.answer_library import AnswerEntry, AnswerMatch

    entry = AnswerEntry("seven_day", "A", "A.policy", ("能退吗",), "[[{customer_name}，]]您好！支持7天无理由退货。")
    reply = lib.suggest("A", "low", "neutral", "能七天无理由退吗", _choice("A.policy"),
                        ranked_subcases=[("A.policy", 0.7), ("A.other", 0.2), ("A.stock", 0.1)],
                        answers=[AnswerMatch(entry, 0.93, "能退吗")], answer_floor=0.9)
    assert reply.best.source == "answer:seven_day"
    assert [o.source for o in reply.alternatives] == ["A.policy.default", "A.other.default"]
    weaker = lib.suggest("A", "low", "neutral", "能七天无理由退吗", _choice("A.policy"),
                         answers=[AnswerMatch(entry, 0.85, "能退吗")], answer_floor=0.9)
    assert [weaker.best.source, weaker.alternatives[0].source] == ["A.policy.default", "answer:seven_day"]


def test_an_emergency_script_goes_before_any_answer(lib):
    from helpdesk_triage.policy.answer_library import AnswerEntry, AnswerMatch

    entry = AnswerEntry("usage", "D", "D.safety_health", ("怎么用",), "您好！说明书在盒子里。")
    reply = lib.suggest("D", "critical", "negative", "用了之后过敏了", _choice("D.safety_health"),
                        answers=[AnswerMatch(entry, 0.95, "怎么用")])
    assert reply.best.source == "any.any.health"
    assert reply.alternatives[0].source == "answer:usage"


def test_unknown_labels_raise(lib):
    with pytest.raises(ValueError):
        lib.suggest("E", "low", "neutral", "x", _choice("A.other"))
    with pytest.raises(ValueError):
        lib.template_for("A.other", "urgent", "neutral", "x")
    with pytest.raises(KeyError):
        lib.template_for("A.nothing", "low", "neutral", "x")


# ------------------------------------------------------------------ rendering


def test_slots_fill_name_order_and_times(lib):
    text = _reply(lib, "B.in_transit_delay", "medium", "negative", "快递还没到", FULL_SLOTS).text
    for value in ("王先生", "JD20240518001", "小周", "3月10日11:00", "3月11日11:00"):
        assert value in text


def test_missing_slots_drop_their_segments(lib):
    text = _reply(lib, "B.in_transit_delay", "medium", "negative", "快递还没到").text
    assert text.startswith("您好") and "订单的物流" in text


@pytest.mark.parametrize("template", ["您好{customer_name}", "[[{customer_name}", "{customer_name}]]", "[[{nickname}]]",
                                      "[[[[{order_id}]]]]", "[[您好]]", "您好||", "您好}"])
def test_render_rejects_bad_markup(lib, template):
    with pytest.raises(ValueError):
        lib.render(template, {})


def test_slot_values_are_not_reinterpreted(lib):
    assert lib.render("[[{customer_name}，]]您好", {"customer_name": "[[{order_id}]]"}) == "[[{order_id}]]，您好"


@pytest.mark.parametrize("value", ["张女士", " 王先生 ", "JD20240518001", "ORD-2024_01/3#2", "O'Brien & Co.", "Ｚｈａｎｇ",
                                   "李" * MAX_SLOT_CHARS, "小周😀"])
def test_ordinary_slot_values_pass_the_check(lib, value):
    lib.check_slot_value("customer_name", value)  # raises for a refused value


@pytest.mark.parametrize("value, reason", [
    ("这不归我们管", "handbook forbids"), ("王女士，这 不归我们管！", "handbook forbids"), ("我也没办法", "forbids"),
    ("<script>alert(1)</script>", "markup '<'"), ("a>b", "markup '>'"), ("{order_id}", "markup '{'"),
    ("[[张]]", "markup"), ("张||李", "markup"), ("}", "markup"),
    ("王\u202e士女", "format character \\(U\\+202E\\)"), ("王\u200b女士", "format character \\(U\\+200B\\)"),
    ("\ufeff张", "format character"), ("\U000e0041张", "format character"), ("张\ue000", "private-use"),
    ("张\U000f0000", "private-use"), ("张\x00", "control"), ("张\n李", "control"),
    ("张\x1b[31m", "control"), ("张\ud800", "surrogate"), ("张\u2028李", "line separator"),
    ("李" * (MAX_SLOT_CHARS + 1), f"at most {MAX_SLOT_CHARS}"),
])
def test_slot_values_that_may_not_go_into_a_reply_are_refused(lib, value, reason):
    with pytest.raises(ValueError, match=f"^customer_name .*{reason}"):
        lib.check_slot_value("customer_name", value)


def test_the_slot_check_uses_the_loaded_tables_forbidden_phrases(tmp_path, lib):
    custom = _load(tmp_path)  # forbids 不可能 and 大家都这样 only
    with pytest.raises(ValueError, match="'大家都这样', a phrase the reply handbook forbids"):
        custom.check_slot_value("customer_name", "大家都这样")
    custom.check_slot_value("customer_name", "这不归我们管")
    with pytest.raises(ValueError, match="forbids"):
        lib.check_slot_value("customer_name", "这不归我们管")


def test_unknown_slot_name_raises(lib):
    with pytest.raises(ValueError, match="unknown slot"):
        lib.render("您好", {"nickname": "x"})


# ------------------------------------------------------------------ validation on load

GOOD_TEXT = "[[{customer_name}，]]您好，我们会在[[{first_response_due}前||1小时内]]回复您。"
TAXONOMY = "".join(f'[[subcase]]\ncategory = "{c}"\ncode = "other"\nname = "其他"\n\n' for c in LABELS.categories)


def _template(template_id: str, text: str = GOOD_TEXT, extra: str = "") -> str:
    return f'[[template]]\nid = "{template_id}"\n{extra}text = "{text}"\n'


def _load(tmp_path: Path, templates: str = "", taxonomy: str = TAXONOMY) -> ReplyTemplateLibrary:
    parts = ['forbidden_phrases = ["不可能", "大家都这样"]\n']
    parts += [_template(f"{c}.other.default") for c in LABELS.categories]
    (tmp_path / "templates.toml").write_text("\n".join(parts) + "\n" + templates, encoding="utf-8")
    (tmp_path / "subcases.toml").write_text(taxonomy, encoding="utf-8")
    return ReplyTemplateLibrary.load(tmp_path / "templates.toml", tmp_path / "subcases.toml")


def test_minimal_table_loads(tmp_path):
    lib = _load(tmp_path)
    assert len(lib.all_templates()) == len(LABELS.categories)
    assert _reply(lib, "A.other", "low", "neutral", "你好").text == "您好，我们会在1小时内回复您。"


X = "A.other.x"
HIGH = 'severities = ["high"]\n'


@pytest.mark.parametrize(
    "templates, error",
    [
        pytest.param(_template(X, "您好，这个不可能。", HIGH), f"{X}: contains the forbidden phrase '不可能'", id="forbidden"),
        pytest.param(_template(X, "[[{nickname}，]]您好。", HIGH), f"{X}: unknown slot", id="unknown-slot"),
        pytest.param(_template(X, "{customer_name}，您好。", HIGH), f"{X}: slot {{customer_name}} must sit", id="bare-slot"),
        pytest.param(_template(X, "[[{customer_name}]]，您好。", HIGH), f"{X}: renders with stray punctuation", id="punct"),
        pytest.param(_template("A.other.default"), "duplicate template id A.other.default", id="duplicate-id"),
        pytest.param(_template("X.other.default"), "X.other.default: unknown category", id="unknown-category"),
        pytest.param(_template("A.nothing.default"), "sub-case A.nothing is not in data/subcases.toml", id="unknown-subcase"),
        pytest.param(_template("any.other.x", extra=HIGH), "for every category is for every sub-case", id="any-category"),
        pytest.param(_template(X, extra='severities = ["urgent"]\n'), f"{X}: unknown severity", id="unknown-severity"),
        pytest.param(_template("A.other.default2", extra='cues = ["在吗"]\n').replace("default2", "default"),
                     "duplicate template id", id="default-with-cues"),
        pytest.param(_template(X) , f"{X}: the 'default' variant has no severities", id="variant-without-condition"),
        pytest.param(_template(X, extra=HIGH) + _template("A.other.y", extra='severities = ["high", "critical"]\n'),
                     f"templates ['{X}', 'A.other.y'] all apply to severity=high", id="ambiguous-variants"),
        pytest.param(_template(X, extra=HIGH.replace("severities", "severity")), f"{X}: unknown keys", id="typo"),
    ],
)
def test_validator_rejects_bad_templates(tmp_path, templates, error):
    with pytest.raises(ValueError, match=re.escape(error)):
        _load(tmp_path, templates)


def test_validator_requires_a_default_per_subcase(tmp_path):
    taxonomy = TAXONOMY + '[[subcase]]\ncategory = "B"\ncode = "odd"\nname = "怪"\n'
    with pytest.raises(ValueError, match="B.odd has no 'default'"):
        _load(tmp_path, _template("B.odd.high", extra=HIGH), taxonomy)


def test_taxonomy_requires_other_per_category(tmp_path):
    taxonomy = TAXONOMY.replace('category = "D"\ncode = "other"', 'category = "D"\ncode = "rest"')
    with pytest.raises(ValueError, match="category D has no 'other'"):
        _load(tmp_path, taxonomy=taxonomy)


def test_cue_variant_wins_over_the_conditions_and_any_levels_apply(tmp_path):
    lib = _load(tmp_path, _template("A.other.greet", "您好，在的。", 'cues = ["在吗"]\n')
                + _template("A.any.critical", "您好，紧急处理中。", 'severities = ["critical"]\n'))
    assert lib.template_for("A.other", "low", "neutral", "在吗？").id == "A.other.greet"
    assert lib.template_for("A.other", "low", "neutral", "你好").id == "A.other.default"
    assert lib.template_for("A.other", "critical", "neutral", "你好").id == "A.any.critical"


def test_shipped_table_documents_the_syntax():
    text = DEFAULT_TEMPLATES_PATH.read_text(encoding="utf-8")
    assert text.lstrip().startswith("#")
    assert "[[ ... ]]" in text and "||" in text and "cues" in text
