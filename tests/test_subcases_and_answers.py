"""Sub-cases (taxonomy, head, choice), the answer library and the customer's stated deadline."""

import json
import re
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from helpdesk_triage.model.char_ngram import CharNgramModel
from helpdesk_triage.model.subcase_head import ARRAYS_NAME, JSON_NAME, SubcaseHead
from helpdesk_triage.policy.answer_library import AnswerLibrary
from helpdesk_triage.policy.customer_deadline import stated_deadline
from helpdesk_triage.policy.labels import LABELS
from helpdesk_triage.policy.replies import ReplyTemplateLibrary
from helpdesk_triage.policy.subcases import SubcaseTaxonomy

BEIJING = timezone(timedelta(hours=8))
TUESDAY_10 = datetime(2026, 3, 10, 10, 0, tzinfo=BEIJING)


@pytest.fixture(scope="module")
def taxonomy() -> SubcaseTaxonomy:
    return SubcaseTaxonomy.load()


# ------------------------------------------------------------------ taxonomy and choice


def test_taxonomy_has_the_issue_sub_cases_and_other_per_category(taxonomy):
    keys = set(taxonomy.keys)
    for key in ("A.product_info", "A.stock", "A.shipping_method", "A.policy", "B.delivered_missing", "B.price_protection",
                "B.invoice", "C.food_quality", "C.missing_part", "D.safety_health", "D.external_threat", "D.fraud_fake"):
        assert key in keys
    for category in LABELS.categories:
        assert f"{category}.other" in keys


def test_choose_takes_the_model_when_sure_within_the_decided_category(taxonomy):
    scores = {k: 0.0 for k in taxonomy.keys}
    scores.update({"B.invoice": 0.30, "B.refund_status": 0.05, "A.policy": 0.65})
    choice = taxonomy.choose("B", "随便", scores, 0.5)
    assert (choice.key, choice.decided_by) == ("B.invoice", "model")
    assert choice.probability == pytest.approx(0.30 / 0.35, abs=1e-3)


def test_choose_falls_back_to_cues_then_other_when_unsure(taxonomy):
    flat = {k: 1.0 for k in taxonomy.keys}
    assert taxonomy.choose("B", "发票什么时候开", flat, 0.5).key == "B.invoice"
    assert taxonomy.choose("B", "发票什么时候开", flat, 0.5).decided_by == "cue"
    none = taxonomy.choose("B", "嗯嗯", None, 0.5)
    assert (none.key, none.decided_by, none.probability) == ("B.other", "fallback", None)


def test_longest_cue_wins(taxonomy):
    assert taxonomy.by_cue("B", "显示签收了但我没收到") == "B.delivered_missing"


def test_ranked_renormalises_within_the_category(taxonomy):
    scores = {k: 0.01 for k in taxonomy.keys}
    scores["C.damaged"] = 0.5
    ranked = taxonomy.ranked("C", scores)
    assert ranked[0][0] == "C.damaged"
    assert sum(p for _, p in ranked) == pytest.approx(1.0)
    assert all(k.startswith("C.") for k, _ in ranked)


def test_taxonomy_rejects_a_duplicate_and_a_bad_code(tmp_path):
    base = "".join(f'[[subcase]]\ncategory = "{c}"\ncode = "other"\nname = "其他"\n\n' for c in LABELS.categories)
    (tmp_path / "dup.toml").write_text(base + '[[subcase]]\ncategory = "A"\ncode = "other"\nname = "又"\n', encoding="utf-8")
    with pytest.raises(ValueError, match="A.other is declared twice"):
        SubcaseTaxonomy.load(tmp_path / "dup.toml")
    (tmp_path / "bad.toml").write_text(base + '[[subcase]]\ncategory = "A"\ncode = "Bad-Code"\nname = "x"\n', encoding="utf-8")
    with pytest.raises(ValueError, match="code must match"):
        SubcaseTaxonomy.load(tmp_path / "bad.toml")


# ------------------------------------------------------------------ the head


def _head(ngram: CharNgramModel | None) -> SubcaseHead:
    rng = np.random.default_rng(0)
    classes = ("A.other", "B.invoice", "C.damaged")
    columns = np.array([0, 2, 5]) if ngram is not None else None
    return SubcaseHead(classes, rng.normal(size=(3, 8)), rng.normal(size=3),
                       rng.normal(size=(3, 3)).astype(np.float16) if ngram is not None else None,
                       rng.normal(size=3) if ngram is not None else None, columns, 0.5, 0.8, {"n_train": 3})


def test_head_round_trips_through_its_files_and_gives_distributions(tmp_path):
    ngram = CharNgramModel().fit(["发票开错了", "东西摔坏了", "在吗"], {"category": ["B", "C", "A"]})
    head = _head(ngram)
    head.save(tmp_path)
    assert (tmp_path / JSON_NAME).is_file() and (tmp_path / ARRAYS_NAME).is_file()
    loaded = SubcaseHead.load(tmp_path)
    embeddings = np.random.default_rng(1).normal(size=(2, 8))
    texts = ["发票开错了", "完全没见过的字"]
    a, b = head.probabilities(embeddings, texts, ngram), loaded.probabilities(embeddings, texts, ngram)
    assert a.shape == (2, 3) and np.allclose(a.sum(axis=1), 1.0)
    assert np.allclose(a, b, atol=1e-3)
    assert loaded.classes == head.classes and loaded.temperature == pytest.approx(0.8)


def test_head_without_ngram_side_and_a_damaged_file(tmp_path):
    head = _head(None)
    probs = head.probabilities(np.ones((1, 8)), ["x"], None)
    assert probs.shape == (1, 3)
    head.save(tmp_path)
    meta = json.loads((tmp_path / JSON_NAME).read_text(encoding="utf-8"))
    meta["classes"] = ["A.other"]
    (tmp_path / JSON_NAME).write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(ValueError, match="damaged sub-case head"):
        SubcaseHead.load(tmp_path)
    assert SubcaseHead.load(tmp_path / "nothing") is None


# ------------------------------------------------------------------ answer library


HEADER = "min_similarity = 0.8\nmin_alternative_similarity = 0.7\nlexical_weight = 0.0\nmin_subcase_probability = 0.3\n"


def _library_file(tmp_path, body: str, header: str = HEADER):
    path = tmp_path / "answers.toml"
    path.write_text(header + body, encoding="utf-8")
    return path


ENTRY = '[[answer]]\nid = "couriers"\ncategory = "A"\nsubcase = "shipping_method"\nquestions = ["发什么快递", "用哪家快递"]\nanswer = "您好！我们默认发【快递公司】。"\n'


def test_shipped_library_loads_with_the_reply_checks():
    replies = ReplyTemplateLibrary.load()
    library = AnswerLibrary.load(check_answer=replies.check_reply_text)
    assert len(library.entries) >= 20
    assert {e.subcase for e in library.entries} >= {"A.policy", "A.shipping_method", "A.price_promotion", "B.invoice"}


@pytest.mark.parametrize("body, error", [
    (ENTRY + ENTRY, "answer ids ['couriers'] are used twice"),
    (ENTRY.replace('"shipping_method"', '"teleport"'), "sub-case 'A.teleport' is not in data/subcases.toml"),
    (ENTRY.replace('questions = ["发什么快递", "用哪家快递"]', "questions = []"), "questions must be a non-empty list"),
    (ENTRY.replace("您好！我们默认发【快递公司】。", "这不归我们管"), "forbidden phrase"),
    (ENTRY.replace('id = "couriers"', 'id = "Couriers!"'), "id must match"),
])
def test_library_rejects_bad_entries_naming_them(tmp_path, body, error):
    replies = ReplyTemplateLibrary.load()
    with pytest.raises(ValueError, match=re.escape(error)):
        AnswerLibrary.load(_library_file(tmp_path, body), replies.check_reply_text)


def test_library_needs_its_thresholds(tmp_path):
    with pytest.raises(ValueError, match="min_similarity must be a number"):
        AnswerLibrary.load(_library_file(tmp_path, ENTRY, header="min_subcase_probability = 0.3\n"))
    with pytest.raises(ValueError, match="must not exceed min_similarity"):
        AnswerLibrary.load(_library_file(tmp_path, ENTRY, HEADER.replace("alternative_similarity = 0.7", "alternative_similarity = 0.9")))


def _fake_embed(texts):
    """Texts mentioning 快递 point one way, others another: a stand-in for the model's embedding."""
    rows = np.array([[1.0, 0.0] if "快递" in t else [0.0, 1.0] for t in texts], dtype=np.float32)
    return rows


def test_matches_need_similarity_the_category_and_a_likely_sub_case(tmp_path):
    library = AnswerLibrary.load(_library_file(tmp_path, ENTRY))
    index = library.index("v1", _fake_embed)
    assert library.index("v1", _fake_embed) is index  # embedded once per model version
    message = _fake_embed(["你们发的什么快递"])[0]
    likely = {"A.shipping_method": 0.6, "A.other": 0.4}
    unlikely = {"A.shipping_method": 0.1, "A.other": 0.9}
    text = "你们发的什么快递"
    assert [m.entry.id for m in index.matches(message, text, "A", likely)] == ["couriers"]
    assert index.matches(message, text, "A", unlikely) == []
    assert index.matches(message, text, "B", likely) == []
    assert index.matches(_fake_embed(["在吗"])[0], "在吗", "A", likely) == []
    assert index.matches(message, text, "A", None) == []  # no sub-case head: no answers


def test_the_score_blends_embedding_and_character_ngrams(tmp_path):
    library = AnswerLibrary.load(_library_file(tmp_path, ENTRY, HEADER.replace("lexical_weight = 0.0", "lexical_weight = 0.5")))
    index = library.index("v1", _fake_embed)
    same_words = index.scores(_fake_embed(["发什么快递"])[0], "发什么快递")
    other_words = index.scores(_fake_embed(["快递呢"])[0], "快递呢")
    assert same_words.max() == pytest.approx(1.0, abs=1e-6)
    assert 0.5 < other_words.max() < same_words.max()
    assert library.index("v1", None) is None


# ------------------------------------------------------------------ the customer's deadline


@pytest.mark.parametrize("text, expected", [
    ("明天要用，快点发货", datetime(2026, 3, 11, 9, 0, tzinfo=BEIJING)),
    ("周五前必须到", datetime(2026, 3, 13, 9, 0, tzinfo=BEIJING)),
    ("今天下午3点前要", datetime(2026, 3, 10, 15, 0, tzinfo=BEIJING)),
    ("今晚8点前送到", datetime(2026, 3, 10, 20, 0, tzinfo=BEIJING)),
    ("下周一要送人", datetime(2026, 3, 16, 9, 0, tzinfo=BEIJING)),
    ("15号之前能到吗", datetime(2026, 3, 15, 9, 0, tzinfo=BEIJING)),
    ("明天到的，东西不错", None),
    ("快递五天了还没到", None),
    ("今天早上8点前要", None),  # already past
])
def test_stated_deadline(text, expected):
    assert stated_deadline(text, TUESDAY_10) == expected
