"""The rows a model got most confidently wrong, with their texts PII-masked, for the report.

For one head: the rows with a true label where the predicted label differs, ordered by the model's
confidence in its (wrong) label, highest first (ties: file order), at most ``limit``. The text is the
raw input passed through :func:`data.pii_masking.mask_pii`, cut to :data:`MAX_TEXT_CHARS`.
"""

from __future__ import annotations

from collections.abc import Sequence

from helpdesk_triage.policy.labels import HEADS
from helpdesk_triage.policy.pii_masking import mask_pii
from helpdesk_triage.evaluation.predictions import Predictions

__all__ = ["MAX_TEXT_CHARS", "WORST_ERRORS", "worst_errors"]

WORST_ERRORS = 20
MAX_TEXT_CHARS = 200


def worst_errors(
    texts: Sequence[str],
    predictions: Predictions,
    head: str,
    *,
    where: Sequence[str] | None = None,
    limit: int = WORST_ERRORS,
) -> list[dict]:
    """``[{"row", "where", "text", "true", "pred", "confidence", "other"}]``; ``row`` is the 0-based
    index among the evaluated rows, ``where`` e.g. ``"dev.jsonl:17"``, ``other`` the true → predicted
    labels of the other heads (``{"severity": "low → high", ...}``)."""
    if len(texts) != predictions.n:
        raise ValueError(f"{len(texts)} texts for {predictions.n} rows")
    out = predictions.head(head)
    wrong = [i for i, t in enumerate(out.true) if t is not None and out.pred[i] != t]
    wrong.sort(key=lambda i: (-out.confidence[i], i))
    rows = []
    for i in wrong[:limit]:
        text = mask_pii(texts[i])
        if len(text) > MAX_TEXT_CHARS:
            text = text[:MAX_TEXT_CHARS] + "…"
        other = {}
        for h in HEADS:
            if h == head:
                continue
            o = predictions.head(h)
            shown_true = o.true[i] if o.true[i] is not None else "?"
            other[h] = f"{shown_true} → {o.pred[i]}"
        rows.append(
            {
                "row": i,
                "where": where[i] if where is not None else str(i),
                "text": text,
                "true": out.true[i],
                "pred": out.pred[i],
                "confidence": float(out.confidence[i]),
                "other": other,
            }
        )
    return rows
