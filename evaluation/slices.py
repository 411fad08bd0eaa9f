"""Metrics per value of a column of the evaluation data (``--slice-by source`` / ``channel``).

Per slice value: n (rows), category macro-F1 and accuracy, D recall (None without a true D row),
sentiment macro-F1, each over the slice's rows that carry that head's label (None when none does).
Slices with fewer than :data:`SMALL_SLICE` rows are flagged ``small``: their figures move a lot
with one or two rows. Rows without a value form the slice ``(missing)``. Largest slice first.
"""

from __future__ import annotations

from collections.abc import Sequence

from helpdesk_triage.evaluation.metrics import binary_recall_precision, head_metrics
from helpdesk_triage.evaluation.predictions import Predictions

__all__ = ["MISSING", "SMALL_SLICE", "SliceColumnError", "check_slice_column", "check_slice_name", "slice_metrics"]

SMALL_SLICE = 30
MISSING = "(missing)"


class SliceColumnError(ValueError):
    """The ``--slice-by`` column does not exist in the data."""


def check_slice_name(column: str) -> None:
    """Raise :class:`SliceColumnError` for a column the loader already uses (text, labels, ...)."""
    from helpdesk_triage.training.dataset_io import output_features

    reserved = [*output_features(), "usable"]
    if not column or not column.strip() or column in reserved:
        raise SliceColumnError(
            f"--slice-by {column!r}: not a column that can be sliced by; the text, label and bookkeeping"
            f" columns ({', '.join(reserved)}) are not allowed (slice by e.g. source or channel)"
        )


def check_slice_column(column: str, values: Sequence[str | None], files: Sequence[str]) -> None:
    """Raise :class:`SliceColumnError` when no row of any data file has a value for ``column``."""
    if all(v is None for v in values):
        shown = ", ".join(files)
        raise SliceColumnError(
            f"--slice-by {column}: no row of {shown} has a {column!r} field"
            " (slice by a field the rows carry, e.g. source or channel)"
        )


def slice_metrics(values: Sequence[str | None], predictions: Predictions, min_n: int = SMALL_SLICE) -> list[dict]:
    """One dict per slice value: ``{"value", "n", "small", "category_n", "category_macro_f1",
    "category_accuracy", "D_recall", "D_support", "sentiment_n", "sentiment_macro_f1", "negative_f1"}``
    (negative_f1: the F1 of negative sentiment, which misses complaint-questions first)."""
    if len(values) != predictions.n:
        raise ValueError(f"{len(values)} slice values for {predictions.n} rows")
    groups: dict[str, list[int]] = {}
    for i, v in enumerate(values):
        groups.setdefault(MISSING if v is None else v, []).append(i)
    rows = []
    for value, members in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        row: dict = {"value": value, "n": len(members), "small": len(members) < min_n}
        for head in ("category", "sentiment"):
            out = predictions.head(head)
            keep = [i for i in members if out.true[i] is not None]
            row[f"{head}_n"] = len(keep)
            if keep:
                t = [out.true[i] for i in keep]
                p = [out.pred[i] for i in keep]
                m = head_metrics(t, p, out.labels)
                row[f"{head}_macro_f1"] = m["macro_f1"]
                if head == "sentiment":
                    row["negative_f1"] = m["per_label"]["negative"]["f1"]
                if head == "category":
                    row["category_accuracy"] = m["accuracy"]
                    recall, _, support = binary_recall_precision(t, p, "D")
                    row["D_recall"] = recall if support else None
                    row["D_support"] = support
            else:
                row[f"{head}_macro_f1"] = None
                if head == "sentiment":
                    row["negative_f1"] = None
                if head == "category":
                    row.update({"category_accuracy": None, "D_recall": None, "D_support": 0})
        rows.append(row)
    return rows
