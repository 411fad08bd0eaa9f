"""Fine-tune the triage classifier on a ``datasets.Dataset`` and calibrate it on validation data.

Input datasets carry ``text`` (already normalised) and ``category_id`` / ``severity_id`` /
``sentiment_id`` columns, -100 where a row has no label for that head (as produced by
``training.dataset_io.load_labelled``).
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from helpdesk_triage.policy.labels import HEADS, LABELS
from helpdesk_triage.evaluation.metrics import macro_f1_rows
from helpdesk_triage.model.folder import ModelConfig
from helpdesk_triage.model.torch_backend import TorchBackend, TriageNet, build_net, load_trained_weights, trained_prefixes
from helpdesk_triage.model.triage_model import TriageModel
from helpdesk_triage.training.progress import RunProgress
from helpdesk_triage.training.train_config import SELECT_ON, TrainConfig  # noqa: F401 - re-exported

IGNORE = -100


@dataclass
class TrainResult:
    model: TriageModel
    history: list[dict]
    best_epoch: int
    eval_metrics: dict[str, dict[str, float]]
    seconds: float
    examples_per_second: float


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train(
    train_ds,
    eval_ds,
    config: TrainConfig | None = None,
    base_folder: Path | None = None,
    version: str = "triage-e5s",
    log: Callable[[str], None] = print,
    start_from: Path | None = None,
    progress: RunProgress | None = None,
) -> TrainResult:
    """``start_from``: a model folder (same base and layers) whose fine-tuned weights are the starting point,
    instead of the bare encoder. ``progress`` advances by one per optimiser step and per evaluated batch."""
    from helpdesk_triage.model.base_encoder import build_base_encoder
    from transformers import AutoTokenizer

    config = config or TrainConfig()
    if config.problems():
        raise ValueError("; ".join(config.problems()))
    set_seed(config.seed)
    base_folder = Path(base_folder) if base_folder else build_base_encoder()
    tokenizer = AutoTokenizer.from_pretrained(base_folder)
    head_sizes = {h: len(LABELS.codes(h)) for h in HEADS}
    net = build_net(base_folder, config.num_layers, head_sizes)
    if start_from is not None:
        _load_trained_weights(net, Path(start_from), base_folder)
    trained_layers = config.trained_layer_indices()
    _freeze_all_but(net, trained_layers)

    train_batches = _encode(train_ds, tokenizer, config.max_length, config.text_prefix)
    eval_batches = _encode(eval_ds, tokenizer, config.max_length, config.text_prefix)
    loss_fns = {
        h: nn.CrossEntropyLoss(weight=_class_weights(train_batches["labels"][h], head_sizes[h], config.class_weight_power), ignore_index=IGNORE)
        for h in HEADS
    }
    optimizer = torch.optim.AdamW(
        [
            {"params": [p for n, p in net.named_parameters() if p.requires_grad and not n.startswith("heads.")], "lr": config.lr},
            {"params": net.heads.parameters(), "lr": config.head_lr},
        ],
        weight_decay=config.weight_decay,
    )
    epoch_pool = _epoch_pool(train_ds)
    steps_per_epoch = math.ceil(len(epoch_pool) / config.batch_size)
    total_steps = config.max_steps or steps_per_epoch * config.epochs
    scheduler = _linear_warmup(optimizer, int(total_steps * config.warmup_fraction), total_steps)
    eval_steps = math.ceil(len(eval_batches["ids"]) / config.batch_size)
    if progress is not None:
        progress.total += min(total_steps, steps_per_epoch * config.epochs) + eval_steps * (config.epochs + 1)

    model_config = ModelConfig(
        base_folder_name=base_folder.name,
        base_source_sha256=_source_sha(base_folder),
        num_layers=config.num_layers,
        trained_layers=trained_layers,
        max_length=config.max_length,
        text_prefix=config.text_prefix,
        version=version,
    )
    best_score, best_state, best_epoch, history, bad_epochs, step = -math.inf, None, 0, [], 0, 0
    started = time.perf_counter()
    seen = 0
    generator = torch.Generator().manual_seed(config.seed)
    for epoch in range(1, config.epochs + 1):
        net.train()
        order = [epoch_pool[i] for i in torch.randperm(len(epoch_pool), generator=generator).tolist()]
        running = 0.0
        batch_starts = range(0, len(order), config.batch_size)
        for start in batch_starts:
            idx = order[start : start + config.batch_size]
            input_ids, mask = _pad([train_batches["ids"][i] for i in idx], tokenizer.pad_token_id)
            logits = net(input_ids, mask)
            loss = sum(
                config.head_loss_weights[h] * _masked_loss(loss_fns[h], logits[h], train_batches["labels"][h][idx])
                for h in HEADS
            )
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            running += loss.item()
            seen += len(idx)
            step += 1
            if progress is not None:
                progress.advance(1, f"epoch {epoch}/{config.epochs}")
            if config.max_steps and step >= config.max_steps:
                break
        eval_logits = _predict_logits(net, eval_batches, tokenizer.pad_token_id, config.batch_size, progress)
        metrics = macro_f1s(eval_logits, eval_batches["labels"])
        nll = eval_nlls(eval_logits, eval_batches["labels"])
        score = float(np.mean([metrics[h] for h in HEADS if not math.isnan(metrics[h])]))
        mean_nll = float(np.mean([nll[h] for h in HEADS if not math.isnan(nll[h])]))
        history.append({"epoch": epoch, "train_loss": running / max(1, math.ceil(len(order) / config.batch_size)),
                        **{f"eval_{h}_macro_f1": metrics[h] for h in HEADS}, "eval_mean_macro_f1": score,
                        **{f"eval_{h}_nll": nll[h] for h in HEADS}})
        log(f"epoch {epoch}: loss {history[-1]['train_loss']:.4f}  eval macro-F1 " + "  ".join(f"{h} {metrics[h]:.3f}" for h in HEADS)
            + "  eval NLL " + "  ".join(f"{h} {nll[h]:.3f}" for h in HEADS))
        merit = {"mean_macro_f1": score, "nll": -mean_nll, "last": float(epoch)}[config.select_on]
        if merit > best_score:
            best_score, best_epoch, bad_epochs = merit, epoch, 0
            best_state = net.trained_state(trained_layers, dtype=torch.float32)
        else:
            bad_epochs += 1
            if bad_epochs >= config.patience:
                log(f"early stop: no gain for {config.patience} epochs")
                break
        if config.max_steps and step >= config.max_steps:
            break
    seconds = time.perf_counter() - started
    if best_state is not None:
        net.load_state_dict(best_state, strict=False)
    net.eval()
    eval_logits = _predict_logits(net, eval_batches, tokenizer.pad_token_id, config.batch_size, progress)
    model_config.temperatures = {h: fit_temperature(eval_logits[h], eval_batches["labels"][h]) for h in HEADS}
    log("temperatures: " + ", ".join(f"{h} {t:.2f}" for h, t in model_config.temperatures.items()))
    model = TriageModel(TorchBackend(net, tokenizer, model_config), model_config)
    return TrainResult(model, history, best_epoch, macro_f1s(eval_logits, eval_batches["labels"]), seconds, seen / seconds)


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Temperature that minimises validation NLL (Guo et al. 2017); 1.0 when there is nothing to fit."""
    keep = labels != IGNORE
    if keep.sum() < 2:
        return 1.0
    logits, labels = logits[keep].detach(), labels[keep]
    log_t = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    optimizer.step(closure)
    temperature = float(log_t.detach().exp().clamp(0.05, 20.0))
    # A diverged fit (e.g. perfectly separated tiny validation data) must not poison every probability.
    return temperature if math.isfinite(temperature) else 1.0


def _epoch_pool(ds) -> list[int]:
    """Row indices seen in one epoch: a row with a ``repeat`` column value of k appears k times."""
    if "repeat" not in ds.column_names:
        return list(range(len(ds)))
    return [i for i, k in enumerate(ds["repeat"]) for _ in range(max(1, int(k)))]


def _load_trained_weights(net: TriageNet, folder: Path, base_folder: Path) -> None:
    """The fine-tuned layers and heads of the model folder ``folder`` over ``net`` (built on the same base)."""
    theirs = ModelConfig.load(folder)
    if theirs.base_folder_name != base_folder.name:
        raise ValueError(f"{folder}: trained over base {theirs.base_folder_name}, this run's base is {base_folder.name}")
    load_trained_weights(net, folder)


def _freeze_all_but(net: TriageNet, trained_layers: list[int]) -> None:
    prefixes = trained_prefixes(trained_layers)
    for name, param in net.named_parameters():
        param.requires_grad = name.startswith(prefixes)


def _encode(ds, tokenizer, max_length: int, prefix: str) -> dict:
    ids = tokenizer([prefix + text for text in ds["text"]], truncation=True, max_length=max_length)["input_ids"]
    labels = {h: torch.tensor(ds[f"{h}_id"], dtype=torch.long) for h in HEADS}
    return {"ids": ids, "labels": labels}


def _pad(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.tensor(seq)
        mask[row, : len(seq)] = 1
    return ids, mask


@torch.inference_mode()
def _predict_logits(net: TriageNet, batches: dict, pad_id: int, batch_size: int,
                    progress: RunProgress | None = None) -> dict[str, torch.Tensor]:
    net.eval()
    out = {h: [] for h in HEADS}
    ids = batches["ids"]
    for start in range(0, len(ids), batch_size):
        input_ids, mask = _pad(ids[start : start + batch_size], pad_id)
        for h, v in net(input_ids, mask).items():
            out[h].append(v.float())
        if progress is not None:
            progress.advance(1, "validation")
    return {h: torch.cat(v) for h, v in out.items()}


def _masked_loss(loss_fn: nn.Module, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    if (labels != IGNORE).any():
        return loss_fn(logits, labels)
    return logits.sum() * 0.0


def _class_weights(labels: torch.Tensor, size: int, power: float) -> torch.Tensor:
    counts = torch.bincount(labels[labels != IGNORE], minlength=size).float().clamp(min=1.0)
    weights = counts.pow(-power)
    return weights / weights.mean()


def macro_f1s(logits: dict[str, torch.Tensor], labels: dict[str, torch.Tensor]) -> dict[str, float]:
    """Macro-F1 per head on the labelled rows (NaN for a head with none), by ``evaluation.metrics``: the
    number epoch selection optimises is the one the evaluation report shows."""
    scores = {}
    for h in HEADS:
        keep = labels[h] != IGNORE
        if not keep.any():
            scores[h] = float("nan")
            continue
        y_true = labels[h][keep].numpy()
        y_pred = logits[h][keep].argmax(-1).numpy()
        scores[h] = float(macro_f1_rows(y_true[None], y_pred[None], logits[h].shape[-1])[0])
    return scores


def eval_nlls(logits: dict[str, torch.Tensor], labels: dict[str, torch.Tensor]) -> dict[str, float]:
    """Mean negative log-likelihood per head on the labelled rows (before temperature scaling); NaN for a head with none.
    Logged beside macro-F1: on ~100 validation rows it moves more smoothly from epoch to epoch."""
    scores = {}
    for h in HEADS:
        keep = labels[h] != IGNORE
        scores[h] = float(nn.functional.cross_entropy(logits[h][keep], labels[h][keep])) if keep.any() else float("nan")
    return scores


def _linear_warmup(optimizer, warmup: int, total: int):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _source_sha(base_folder: Path) -> str:
    import json

    manifest = base_folder / "manifest.json"
    if manifest.is_file():
        return json.loads(manifest.read_text(encoding="utf-8")).get("source", {}).get("sha256", "")
    return ""


def config_dict(config: TrainConfig) -> dict:
    return asdict(config)
