"""Noise the service meets in real traffic, added to training: perturbed copies of some training rows.

Each chosen row gets one copy with one perturbation of :mod:`training.perturbations` that keeps its labels
(leading greeting, emoji matching the sentiment, repeated punctuation, a masked id, a homophone typo, a
word in pinyin). The copies use their own seed, so a training copy of a text is not the variant the
robustness report measures; the tables are shared, which makes the report somewhat optimistic for the
word-table perturbations (said in the experiment log).
"""

from __future__ import annotations

import random
from collections.abc import Iterable

from helpdesk_triage.training.perturbations import load_tables, perturb
from helpdesk_triage.policy.labels import HEADS

KINDS = ("greeting", "emoji", "punctuation", "masked_ids", "homophone", "pinyin")
AUGMENT_SEED = 7351


def augmented_rows(rows: Iterable[dict], fraction: float, seed: int = AUGMENT_SEED) -> list[dict]:
    """Perturbed copies (``text`` + the row's labels) of about ``fraction`` of ``rows``; a row whose
    chosen perturbation does not apply (no word of the typo table in it) gets no copy."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"augment fraction must lie in [0, 1], got {fraction}")
    rng = random.Random(seed)
    tables = load_tables()
    copies = []
    for row in rows:
        if rng.random() >= fraction:
            continue
        kind = rng.choice(KINDS)
        labels = {head: row.get(head) for head in HEADS if row.get(head)}
        text = perturb(row["text"], kind, seed=rng.randrange(1 << 30), labels=labels, tables=tables)
        if text != row["text"]:
            copies.append({"text": text, **labels})
    return copies
