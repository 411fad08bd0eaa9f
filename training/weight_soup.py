"""Average the fine-tuned weights of two models trained from the same base (a uniform "model soup").

Wortsman et al. 2022 (Model soups): models fine-tuned from one pretrained start usually lie in one basin, so
the average of their weights is a model at least as good as either, at the cost of one. Here it combines a
new run with an earlier one whose strengths differ (for example a run with new data for one kind of message
and the previous default), without doubling size or latency. The temperatures are fitted again on the
validation rows after averaging: the soup's logits are not either parent's.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from safetensors.torch import load as load_safetensors

from helpdesk_triage.policy.labels import HEADS
from helpdesk_triage.model.folder import WEIGHTS_NAME, ModelConfig
from helpdesk_triage.model.triage_model import TriageModel
from helpdesk_triage.training.trainer import TrainConfig, fit_temperature, macro_f1s

# Settings two models must share for their weights to be averaged.
SHARED_SETTINGS = ("base_folder_name", "base_source_sha256", "num_layers", "trained_layers", "max_length", "text_prefix",
                   "labels", "normalization_version")


def soup_problems(other: str | Path, config: TrainConfig) -> list[str]:
    """What stops a run with these settings from being averaged with ``other``, checked before fine-tuning starts."""
    return [f"--soup-with {other}: it has {difference}" for difference in setting_differences(other, config)]


def setting_differences(folder: str | Path, config: TrainConfig) -> list[str]:
    """How the model in ``folder`` differs from a run with ``config`` in the settings its weights depend on, as
    "num_layers 12, this run 6"; a folder that is no model is one difference saying why."""
    try:
        theirs = ModelConfig.load(Path(folder))
    except (FileNotFoundError, TypeError, ValueError) as error:
        return [f"no readable model config ({error})"]
    wanted = {"num_layers": config.num_layers, "trained_layers": config.trained_layer_indices(),
              "max_length": config.max_length, "text_prefix": config.text_prefix}
    return [f"{name} {getattr(theirs, name)!r}, this run {value!r}" for name, value in wanted.items()
            if getattr(theirs, name) != value]


def soup_with(triager: TriageModel, other: str | Path, eval_ds) -> dict:
    """Replace ``triager``'s fine-tuned weights by their average with those of the model folder ``other``, refit its
    temperatures on ``eval_ds`` (rows of ``training.dataset_io.load_labelled``) and say what was done."""
    other = Path(other)
    other_config = ModelConfig.load(other)
    differ = [name for name in SHARED_SETTINGS if getattr(other_config, name) != getattr(triager.config, name)]
    if differ:
        raise ValueError(f"{other} differs from this run in {', '.join(differ)}: its weights cannot be averaged with these")
    weights_path = other / WEIGHTS_NAME
    stored = weights_path.read_bytes()
    theirs = load_safetensors(stored)
    # Both sides and the average in the form a model folder stores them (trained_state's fp16): the soup
    # calibrated here is exactly the one saved, the same whether this run was just fine-tuned or loaded.
    ours = triager.net.trained_state(triager.config.trained_layers)
    if set(theirs) != set(ours):
        raise ValueError(f"{weights_path}: other fine-tuned parameters than this run's")
    averaged = {name: ((ours[name].float() + theirs[name].float()) / 2).to(ours[name].dtype).float() for name in ours}
    triager.net.load_state_dict(averaged, strict=False)
    triager.net.eval()
    logits = {h: torch.from_numpy(v) for h, v in triager.logits(list(eval_ds["text"]), normalized=True).items()}
    labels = {h: torch.tensor(eval_ds[f"{h}_id"], dtype=torch.long) for h in HEADS}
    before = dict(triager.config.temperatures)
    triager.config.temperatures = {h: fit_temperature(logits[h], labels[h]) for h in HEADS}
    return {
        "with": str(other),
        "with_version": other_config.version,
        "with_weights_sha256": hashlib.sha256(stored).hexdigest(),
        "temperatures_before": before,
        "eval_macro_f1": macro_f1s(logits, labels),
    }
