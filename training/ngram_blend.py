"""Fit the character n-gram half of a model (``model.char_ngram``) on the transformer's own training rows.

The blend weight is a setting (``TrainConfig.ngram_weight``, default 0.5 = equal say), not fitted: the
transformer was early-stopped on the validation rows, so its validation scores are optimistic and a
weight picked there leans towards it (measured: evaluation/experiments.md, run 8). The blend
temperature per head is fitted on the validation rows, as the transformer's own temperature is.
"""

from __future__ import annotations

from typing import Callable

import torch

from helpdesk_triage.policy.labels import HEADS, LABELS
from helpdesk_triage.policy.text_normalization import normalize
from helpdesk_triage.model.char_ngram import CharNgramModel, NgramBlend, head_probabilities
from helpdesk_triage.model.triage_model import TriageModel
from helpdesk_triage.training.augmentation import augmented_rows
from helpdesk_triage.training.trainer import IGNORE, fit_temperature, macro_f1s

# Perturbed copies (training.augmentation) for this share of the n-gram model's rows: surface n-grams
# break on a greeting, a masked id or a typo more easily than the transformer does.
NOISE_FRACTION = 1.0
NOISE_SEED = 2719
# The blend never makes these less likely than the transformer alone (model.char_ngram, NgramBlend).
ESCALATION_LABELS = {"category": ["D"], "severity": ["critical"]}


def fit_ngram_blend(triager: TriageModel, train_ds, eval_ds, weight: float, noise_fraction: float = NOISE_FRACTION,
                    log: Callable[[str], None] = print) -> tuple[NgramBlend, dict[str, float]]:
    """The fitted blend and its macro-F1 per head on ``eval_ds`` (after the blend temperature).

    Datasets as produced by ``training.dataset_io.load_labelled`` (normalised ``text``, one label
    column per head, None where unlabelled); a ``repeat`` column weights rows as training repeats them.
    """
    texts = list(train_ds["text"])
    # A head nobody labelled keeps the transformer's answer alone (its untrained output, as without a blend).
    labels = {h: list(train_ds[h]) for h in HEADS if any(v is not None for v in train_ds[h])}
    weights = list(train_ds["repeat"]) if "repeat" in train_ds.column_names else [1] * len(texts)
    if noise_fraction > 0:
        rows = ({"text": t, **{h: labels[h][i] for h in labels}} for i, t in enumerate(texts))
        copies = augmented_rows(rows, noise_fraction, seed=NOISE_SEED)
        texts += [normalize(c["text"]) for c in copies]
        for h in labels:
            labels[h] += [c.get(h) for c in copies]
        weights += [1] * len(copies)
    model = CharNgramModel().fit(texts, labels, sample_weight=weights)
    blend = NgramBlend(model, {h: weight for h in labels}, {h: 1.0 for h in HEADS}, ESCALATION_LABELS)
    eval_texts = list(eval_ds["text"])
    logits = triager.logits(eval_texts, normalized=True)
    scaled = {h: v / triager.config.temperatures[h] for h, v in logits.items()}
    blended = blend.blended_logits(scaled, eval_texts)
    truth = {h: torch.tensor([LABELS.codes(h).index(v) if v else IGNORE for v in eval_ds[h]], dtype=torch.long) for h in HEADS}
    blend.temperatures = {h: fit_temperature(torch.from_numpy(blended[h]).float(), truth[h]) for h in HEADS}
    probs = head_probabilities(logits, triager.config.temperatures, blend, eval_texts)
    scores = macro_f1s({h: torch.from_numpy(probs[h]) for h in HEADS}, truth)
    log(f"n-gram blend (weight {weight}): temperatures " + ", ".join(f"{h} {t:.2f}" for h, t in blend.temperatures.items())
        + "; eval macro-F1 " + "  ".join(f"{h} {scores[h]:.3f}" for h in HEADS))
    return blend, scores
