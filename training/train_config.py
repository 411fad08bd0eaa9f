"""Every knob of a training run, in one object (importing it does not load torch)."""

from __future__ import annotations

from dataclasses import dataclass, field

SELECT_ON = ("mean_macro_f1", "nll", "last")


@dataclass
class TrainConfig:
    """Every knob of a training run. The defaults are the recipe the embedded model was trained with
    (``training.default_recipe`` uses them as they are): a retraining run with no option is that recipe."""

    epochs: int = 3
    lr: float = 6e-5
    head_lr: float = 2e-3
    weight_decay: float = 0.01
    warmup_fraction: float = 0.1
    batch_size: int = 32
    max_length: int = 128
    num_layers: int = 12
    trained_layers: int = 6
    patience: int = 2
    seed: int = 13
    head_loss_weights: dict[str, float] = field(default_factory=lambda: {"category": 1.0, "severity": 1.0, "sentiment": 1.0})
    # Class weights ~ (count)^-power, normalised to mean 1: 0.5 softens the pull of rare labels (D, critical).
    class_weight_power: float = 0.5
    max_steps: int | None = None
    text_prefix: str = "query: "
    # Share of a character n-gram model in each head's answer (model.char_ngram); 0 = the transformer alone.
    ngram_weight: float = 0.5
    # Which epoch's weights are kept: the best mean macro-F1 or the lowest mean NLL on the validation rows, or
    # the last epoch (the learning rate has decayed to 0 there; the validation rows then only calibrate).
    select_on: str = "mean_macro_f1"
    # Continuing from a trained model: rows of that model's own training data replayed beside the new rows, so that
    # a few hundred new rows add to what it learned instead of replacing it (training.replay).
    replay_rows: int = 2000

    def trained_layer_indices(self) -> list[int]:
        """Indices of the encoder layers that are fine-tuned: the top ``trained_layers`` of ``num_layers``."""
        return list(range(self.num_layers - self.trained_layers, self.num_layers))

    def problems(self) -> list[str]:
        """What is wrong with these settings, as messages for the user."""
        checks = [
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (0 < self.lr < 1, f"lr must be in (0, 1), got {self.lr}"),
            (0 < self.head_lr < 1, f"head_lr must be in (0, 1), got {self.head_lr}"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (8 <= self.max_length <= 512, f"max_length must be 8..512, got {self.max_length}"),
            (1 <= self.num_layers <= 12, f"num_layers must be 1..12, got {self.num_layers}"),
            (1 <= self.trained_layers <= self.num_layers, f"trained_layers must be 1..num_layers ({self.num_layers}), got {self.trained_layers}"),
            (self.max_steps is None or self.max_steps >= 1, f"max_steps must be >= 1, got {self.max_steps}"),
            (self.patience >= 1, f"patience must be >= 1, got {self.patience}"),
            (0.0 <= self.ngram_weight < 1.0, f"ngram_weight must be in [0, 1), got {self.ngram_weight}"),
            (self.select_on in SELECT_ON, f"select_on must be one of {', '.join(SELECT_ON)}, got {self.select_on!r}"),
            (self.replay_rows >= 0, f"replay_rows must be >= 0, got {self.replay_rows}"),
        ]
        return [message for ok, message in checks if not ok]
