"""Export agent-corrected decisions as training JSON Lines for ``triage train`` / ``load_labelled``.

Each row: ``text``, ``category``, ``severity``, ``sentiment`` (the model's labels overridden by the
latest correction per head, see :meth:`DecisionStore.corrected_examples`), ``id``,
``source: "feedback"``, ``model_version`` and ``corrected_heads``. Decisions whose feedback
corrects no head (a note only) are left out: nobody asserted their labels.
"""

from __future__ import annotations

import json
from pathlib import Path

from helpdesk_triage.api.decision_store import DecisionStore
from helpdesk_triage.policy import pii_masking
from helpdesk_triage.policy.data_files import write_text_atomically
from helpdesk_triage.policy.labels import HEADS

__all__ = ["export_feedback"]


def export_feedback(store: DecisionStore, out: Path, mask_pii: bool = True) -> int:
    """Write the corrected decisions of ``store`` to ``out`` (JSON Lines); returns the row count.

    ``mask_pii=True`` uses the stored masked text, masked again with the current masker (idempotent,
    so PII patterns added to the masker since the decision was stored are masked too).
    ``mask_pii=False`` uses the raw text and raises ValueError, writing nothing, when any row has none
    stored (the service stores it only with ``TRIAGE_STORE_RAW_TEXT=true``).

    The file is replaced atomically (a temporary file in the same folder, then a rename), so a reader
    never sees half an export; it is readable by its owner only, as it holds customer text.

    With nothing to export the file is empty and 0 is returned; ``load_labelled`` rejects an empty
    file ("no data rows"), so check the count before training on it.
    """
    examples = [e for e in store.corrected_examples() if e["corrected_heads"]]
    if not mask_pii:
        _require_raw_text(examples)
    lines = [json.dumps(_training_row(e, mask_pii), ensure_ascii=False) + "\n" for e in examples]
    write_text_atomically(Path(out), "".join(lines))
    return len(lines)


def _require_raw_text(examples: list[dict]) -> None:
    missing = [e["id"] for e in examples if e["raw_text"] is None]
    if missing:
        shown = ", ".join(repr(i) for i in missing[:5]) + (" …" if len(missing) > 5 else "")
        raise ValueError(
            f"cannot export unmasked text: {len(missing)} of {len(examples)} corrected decision(s) have no raw"
            f" text stored ({shown}); raw text is stored only when the service runs with"
            " TRIAGE_STORE_RAW_TEXT=true. Export with PII masking instead."
        )


def _training_row(example: dict, mask_pii: bool) -> dict:
    text = pii_masking.mask_pii(example["masked_text"]) if mask_pii else example["raw_text"]
    return {
        "id": example["id"],
        "text": text,
        **{head: example["labels"].get(head) for head in HEADS},
        "source": "feedback",
        "model_version": example["model_version"],
        "corrected_heads": example["corrected_heads"],
    }
