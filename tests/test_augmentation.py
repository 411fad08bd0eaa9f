"""Training augmentation: label-keeping perturbed copies, deterministic, about the asked fraction."""

import pytest

from helpdesk_triage.training.augmentation import augmented_rows

ROWS = [{"text": f"我的订单{i}号怎么还没发货呢", "category": "B", "severity": "medium", "sentiment": "neutral"} for i in range(400)]


def test_copies_keep_labels_change_text_and_follow_the_fraction():
    copies = augmented_rows(ROWS, 0.25)
    assert 60 <= len(copies) <= 140  # about a quarter; perturbations that do not apply give no copy
    originals = {row["text"] for row in ROWS}
    for copy in copies:
        assert copy["text"] not in originals
        assert (copy["category"], copy["severity"], copy["sentiment"]) == ("B", "medium", "neutral")


def test_same_seed_same_copies_and_fraction_bounds():
    assert augmented_rows(ROWS, 0.3) == augmented_rows(ROWS, 0.3)
    assert augmented_rows(ROWS, 0.3, seed=1) != augmented_rows(ROWS, 0.3)
    assert augmented_rows(ROWS, 0.0) == []
    with pytest.raises(ValueError, match="fraction"):
        augmented_rows(ROWS, 1.5)


def test_missing_labels_stay_missing():
    copies = augmented_rows([{"text": "在吗，这个有货吗", "category": "A"}] * 50, 1.0)
    assert copies and all(set(c) == {"text", "category"} for c in copies)
